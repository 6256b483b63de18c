"""``ffbench hunt --task undo|registers``: exact descriptors (against plain loops), legal candidates, a map
that finds exactly where a heuristic model fails, resume, and hunts of the shipped references whose
every glitch replays as the same wrong read through ``ffbench run``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ffbench import backends, language, registers, tasks, undo
from ffbench.backends.base import Backend, Capabilities, SpanScores
from ffbench.errors import Interrupted, UsageError
from ffbench.hunt import HuntConfig, hunt, outputs, parts, plan
from ffbench.hunt.huntdir import HuntDir
from tests.conftest import needs_native
from tests.test_hunt import _cli


# ----------------------------------------------------------------------------- plain-loop references
def undo_reference(text: str) -> list[dict]:
    """Every read's UNDO descriptors from the definitions, walking the text (no ffbench helpers)."""
    ops, vals = text[0::2], [int(c) for c in text[1::2]]
    n, out, stack = len(ops), [], []
    for e in range(n):
        if ops[e] == "w":
            stack.append(e)
        elif ops[e] == "u":
            stack.pop()
        elif ops[e] == "r":
            w = stack[-1]
            last = max(j for j in range(e) if ops[j] == "w")
            undos_since = sum(ops[j] == "u" for j in range(last + 1, e))
            toggle = vals[last] ^ (undos_since % 2)
            out.append({"retracted": sum(ops[j] == "w" for j in range(w + 1, e)), "chain": undos_since,
                        "depth": len(stack), "write_distance": e - w,
                        "reads_between": sum(ops[j] == "r" for j in range(w + 1, e)),
                        "toggle_wrong": int(toggle != vals[e]), "copy_wrong": int(vals[last] != vals[e]),
                        "fraction": e / (n - 1), "slot": e})
    return out


def registers_reference(text: str) -> list[dict]:
    ops, regs, vals = text[0::3], text[1::3], [int(c) for c in text[2::3]]
    n, out = len(ops), []
    for e in range(n):
        if ops[e] != "r":
            continue
        g = regs[e]
        w = max(j for j in range(e) if ops[j] == "w" and regs[j] == g)
        between = range(w + 1, e)
        last_any = max(j for j in range(e) if ops[j] == "w")
        out.append({"staleness": e - w, "other_writes": sum(ops[j] == "w" for j in between),
                    "registers_since": len({regs[j] for j in between if ops[j] == "w"}),
                    "own_opposite": sum(ops[j] == "i" and regs[j] == g and vals[j] != vals[w] for j in between),
                    "reads_between": sum(ops[j] == "r" for j in between),
                    "one_variable_wrong": int(vals[last_any] != vals[e]), "registers": len(set(regs)),
                    "fraction": e / (n - 1), "slot": e})
    return out


REFERENCE = {"undo": undo_reference, "registers": registers_reference}


def check_descriptors(task: str, arr: np.ndarray) -> int:
    mp = parts.for_task(task)
    got = mp.describe(arr)
    rows = [(k, r) for k, t in enumerate(language.to_strings(arr)) for r in REFERENCE[task](t)]
    assert got["seq_index"].tolist() == [k for k, _ in rows]
    for name in rows[0][1]:
        assert np.allclose(got[name], [r[name] for _, r in rows]), name
    return len(rows)


def candidates(task: str, length: int, num: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """``num`` candidates of the map search, the archive filled as they come (so every kind is drawn)."""
    mp = parts.for_task(task)
    amap = mp.atlas({})
    rng = np.random.default_rng(seed)
    seqs, origins = [], {}
    for _ in range(num):
        seq, meta = mp.candidate(amap, length, rng)
        keys = mp.cell_keys(seq[None])
        slots = mp.task.slot(mp.task.extract_reads(seq[None]).position)
        amap.add(seq, keys, slots, np.zeros(len(keys), bool), rng.random(len(keys)), meta["origin"])
        seqs.append(seq)
        origins[meta["origin"]] = origins.get(meta["origin"], 0) + 1
    return np.stack(seqs), origins


@pytest.mark.parametrize("p_ignore", [0.1, 0.7, 0.95])
def test_undo_descriptors_match_the_reference(p_ignore):
    assert check_descriptors("undo", undo.sample(undo.UndoFFL.from_p_ignore(p_ignore, 96), 40, 3)) > 40
    assert check_descriptors("undo", undo.retraction_suite(64, 4)[0]) == 4 * len(undo.retraction_depths(64))


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_registers_descriptors_match_the_reference(k):
    assert check_descriptors("registers", registers.sample(registers.Registers.from_p_ignore(0.6, 96, k), 40, 3)) > 40
    assert check_descriptors("registers", registers.stale_suite(48, max(k, 2), 2)[0]) > 10


@pytest.mark.parametrize("task,length", [("undo", 64), ("registers", 96)])
def test_every_candidate_is_legal_and_every_kind_is_drawn(task, length):
    arr, origins = candidates(task, length, 300)
    assert arr.dtype == np.uint8 and tasks.get(task).first_violation(arr) is None  # never an illegal sequence
    assert set(origins) == {"cover", "refine", "preset", "elite"} and min(origins.values()) >= 20
    assert check_descriptors(task, arr) > 300  # the descriptors of the hunt's own candidates are exact too
    keys = parts.for_task(task).cell_keys(arr)
    assert len({tuple(k) for k in keys}) > 150  # spread over the map, not one cell


# ----------------------------------------------------------------------------- a model that is a heuristic
class HeuristicModel(Backend):
    """Answers every read as the task's heuristic does (undo: the toggle; registers: one variable), margin
    +-1; reads the symbolic rendering (the compact string)."""

    provider = "synthetic"
    capabilities = Capabilities(dense=True)

    def __init__(self, task: str, interrupt_at: int | None = None):
        super().__init__(f"{task}-heuristic")
        self.task, self.calls, self.interrupt_at = tasks.get(task), 0, interrupt_at

    def score_dense(self, requests):
        self.calls += 1
        if self.interrupt_at is not None and self.calls >= self.interrupt_at:
            raise KeyboardInterrupt
        out = []
        for r in requests:
            lp = np.full((len(r.spans), 2), -1.0)
            for j, (a, _) in enumerate(r.spans.tolist()):
                guess = int(self.task.heuristic[1](language.to_array([r.text[: a + 1]]))[-1])
                lp[j, guess] = 0.0
            out.append(SpanScores(lp, lp.argmax(axis=1)))
        return out

    def count_tokens(self, text):
        return len(text)


def heuristic_ref(task: str, model: HeuristicModel | None = None):
    ref = backends.resolve("ffbench/undo-ssm" if task == "undo" else "ffbench/registers-ssm")
    ref.load = lambda: model or HeuristicModel(task)
    return ref


def _task_hunt(tmp_path, task: str, name="h", budget=1200, model=None):
    length = 64 if task == "undo" else 96
    cfg = HuntConfig(model=heuristic_ref(task).spec, budget=budget, length=length, task=task,
                     render=tasks.get(task).default_render)
    return hunt(cfg, str(tmp_path / name), heuristic_ref(task, model), echo=lambda m: None)


FLAG = {"undo": "toggle_wrong", "registers": "one_variable_wrong"}


@needs_native
@pytest.mark.parametrize("task", ["undo", "registers"])
def test_the_map_finds_exactly_where_the_heuristic_is_wrong(tmp_path, task):
    s = _task_hunt(tmp_path, task)
    m, spent = s["map"], s["spent"]
    assert s["config"]["task"] == task and spent["reads"] <= 1200
    assert sum(c["reads"] for c in m["cells"]) == spent["reads"] - spent["shrink_reads"]
    assert sum(c["errors"] for c in m["cells"]) == s["glitches"]["failing_reads"] > 0
    axis = [a["name"] for a in m["axes"]].index(FLAG[task])
    assert all(c["errors"] == (c["reads"] if c["bins"][axis] else 0) for c in m["cells"])
    assert {r["family"] for r in s["families"]} >= {"map:cover", "map:preset"}
    printed = outputs.format_summary(s, "DIR")
    assert f"on --task {task}" in printed and f"--task {task} --data DIR/glitches.parquet" in printed
    # every glitch is legal and every failing read is one where the heuristic is wrong
    g = pd.read_parquet(tmp_path / "h" / "glitches.parquet")
    arr = language.to_array(g.text.tolist())
    assert tasks.get(task).first_violation(arr) is None
    ref = REFERENCE[task]
    for text, positions in zip(g.text, g.failing_positions):
        flags = {r["slot"]: r[FLAG[task]] for r in ref(text)}
        assert all(flags[tasks.get(task).slot(p)] == 1 for p in positions)
    # the shapes: legal, still wrong for the heuristic at their last read, and short
    assert s["shapes"]
    for sh in s["shapes"]:
        seq = language.to_array([sh["text"]])
        assert tasks.get(task).first_violation(seq) is None and ref(sh["text"])[-1][FLAG[task]] == 1
    unit = tasks.get(task).unit
    assert min(sh["length"] for sh in s["shapes"] if sh["minimal"]) // unit <= 4  # w w u r / wa0 wb1 ra0 ...


@needs_native
def test_an_interrupted_task_hunt_resumes_to_exactly_the_uninterrupted_result(tmp_path):
    model = HeuristicModel("undo")
    whole = _task_hunt(tmp_path, "undo", "whole", budget=1200, model=model)
    with pytest.raises(Interrupted):  # in its last round
        _task_hunt(tmp_path, "undo", "cut", budget=1200, model=HeuristicModel("undo", interrupt_at=model.calls - 1))
    assert 0 < HuntDir(tmp_path / "cut").read_state()["spent"]["reads"] < 1200
    resumed = _task_hunt(tmp_path, "undo", "cut", budget=1200)
    a, b = (json.loads((tmp_path / d / "state.json").read_text()) for d in ("whole", "cut"))
    assert a == {**b, "created": a["created"]}
    assert whole["map"] == resumed["map"] and whole["glitches"] == resumed["glitches"]


def test_the_ffl_identity_is_unchanged_and_a_task_enters_it():
    ffl = HuntConfig(model="ffbench/transformer-ref", budget=10, length=32)
    assert "task" not in ffl.as_dict() and "task" not in ffl.identity()
    assert HuntConfig(model="ffbench/transformer-ref", budget=10, length=32, task="ffl").digest() == ffl.digest()
    undo_cfg = HuntConfig(model="ffbench/undo-ssm", budget=10, length=32, task="undo", render="symbolic_undo")
    assert undo_cfg.identity()["task"] == "undo" and undo_cfg.digest() != ffl.digest()
    with pytest.raises(UsageError, match="map search only"):
        plan(HuntConfig(model="m", budget=10, length=32, task="undo", render="symbolic_undo", estimate="in_dist"))
    with pytest.raises(UsageError, match="multiple of 3"):
        plan(HuntConfig(model="m", budget=10, length=64, task="registers", render="symbolic_registers"))
    with pytest.raises(UsageError, match="no 'undo' piece"):
        plan(HuntConfig(model="m", budget=10, length=64, task="undo"))


def test_a_haystack_hunt_of_a_symbolic_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "h"
    assert _cli(["hunt", "--model", "ffbench/undo-ssm", "--task", "haystack", "--budget", "10", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "symbolic rendering" in err and "haystack-lstm" in err and not out.exists()


@needs_native
def test_a_haystack_hunt_is_ffls_map_in_the_story_and_its_reads_replay(tmp_path):
    """--task haystack: the flip-flop map (ffl's axes) over sequences told as a story to a model that reads
    text; hunt.json names the task, every map read is counted, and a glitch-free hunt's map reads replay
    right under ffbench run --task haystack (the shipped haystack-lstm makes no error at its length)."""
    from ffbench.hunt import descriptors

    out = tmp_path / "h"
    assert _cli(["hunt", "--model", "ffbench/haystack-lstm", "--task", "haystack", "--budget", 200, "--out", out]) == 0
    s = json.loads((out / "hunt.json").read_text())
    assert s["config"]["task"] == "haystack" and s["config"]["render"] == "haystack"
    assert [a["name"] for a in s["map"]["axes"]] == list(descriptors.MAP_DIMENSIONS)
    assert sum(c["reads"] for c in s["map"]["cells"]) == s["spent"]["reads"] > 150
    assert s["glitches"]["distinct"] == 0 and "lines" not in s or not (s.get("lines") or {}).get("checked")


# ----------------------------------------------------------------------------- the shipped references
@pytest.fixture(scope="module", params=[("undo", "ffbench/undo-ssm", 64), ("registers", "ffbench/registers-lstm", 96)],
                ids=["undo-ssm", "registers-lstm"])
def shipped(request, tmp_path_factory):
    task, model, length = request.param  # half the training length: the same failures, half the time
    tmp = tmp_path_factory.mktemp(task)
    assert _cli(["hunt", "--model", model, "--task", task, "--budget", 600, "--length", length, "--out", tmp / "h"]) == 0
    assert _cli(["run", "--model", model, "--task", task, "--data", tmp / "h" / "glitches.parquet",
                 "--output-dir", tmp / "replay", "--no-record"]) == 0
    return task, tmp


@needs_native
def test_every_glitch_of_a_shipped_reference_is_legal_and_replays_wrong(shipped):
    task, tmp = shipped
    s = json.loads((tmp / "h" / "hunt.json").read_text())
    g = pd.read_parquet(tmp / "h" / "glitches.parquet")
    assert s["config"]["task"] == task and s["glitches"]["distinct"] == len(g) > 0
    assert tasks.get(task).first_violation(language.to_array(g.text.tolist())) is None
    samples = pd.read_parquet(tmp / "replay" / "samples.parquet")
    for seq, row in g.iterrows():  # the plain run path gives the same wrong reads
        mine = samples[samples.seq_index == seq].set_index("position")
        assert not mine.loc[list(row.failing_positions), "correct"].any()
        assert (mine.loc[list(row.failing_positions), "prediction"] != mine.loc[list(row.failing_positions),
                                                                               "target"]).all()
    # the map's error counts are an exact recount of the glitches' failing reads, cell by cell
    mp = parts.for_task(task)
    recount: dict[tuple, int] = {}
    for text, positions in zip(g.text, g.failing_positions):
        rows = {r["slot"]: r for r in REFERENCE[task](text)}
        for p in positions:
            r = rows[tasks.get(task).slot(p)]
            key = tuple(int(np.searchsorted(edges, r[name], side="right") - 1) for name, edges in mp.dimensions.items())
            recount[key] = recount.get(key, 0) + 1
    held = {tuple(c["bins"]): c["errors"] for c in s["map"]["cells"] if c["errors"]}
    assert held == recount
    assert sum(c["reads"] for c in s["map"]["cells"]) == s["spent"]["reads"] - s["spent"]["shrink_reads"]
    if task == "undo":  # the toggle's failure: retraction chains of two or more undos that the model gets wrong
        chains = [r for text, positions in zip(g.text, g.failing_positions) for r in undo_reference(text)
                  if r["slot"] in {p // 2 for p in positions} and r["chain"] >= 2 and r["toggle_wrong"]]
        assert chains


@needs_native
def test_the_report_draws_a_task_hunts_map_on_its_own_axes_beside_its_references(shipped, tmp_path):
    """``ffbench report HUNT_DIR`` of a task hunt: the task's heatmaps (every pair whose axes the map has),
    each cell's counts summed from hunt.json's cells, and the task's shipped references beside it."""
    from ffbench.report import build_report, huntmaps

    task, tmp = shipped
    s = json.loads((tmp / "h" / "hunt.json").read_text())
    view = huntmaps.map_view(s)
    assert [p.title for p in view.panels] == [f"{huntmaps.NAMES[r]} × {huntmaps.NAMES[c]}"
                                             for r, c in huntmaps.TASK_PAIRS[task]]
    axes = [a["name"] for a in s["map"]["axes"]]
    r, c = huntmaps.TASK_PAIRS[task][0]
    total = sum(cell.reads for cell in view.panels[0].heatmap.cells.values())
    assert total == sum(cell["reads"] for cell in s["map"]["cells"]) and r in axes and c in axes
    html = build_report([str(tmp / "h")])
    assert html.count('<svg class="heat"') == len(huntmaps.TASK_PAIRS[task])
    assert f"ffbench/{task}-lstm" in html and "ffbench/transformer-ref" not in html


@needs_native
def test_a_task_hunts_glitches_export_as_a_dataset_config(shipped, tmp_path):
    """``export dataset --hunt`` of a task hunt: one config named by the task, every glitch row and column."""
    task, tmp = shipped
    assert _cli(["export", "dataset", "--hunt", tmp / "h", "--out", tmp_path / "ds"]) == 0
    g = pd.read_parquet(tmp / "h" / "glitches.parquet")
    length = len(g.text.iloc[0])
    out = pd.read_parquet(tmp_path / "ds" / "data" / f"hunt_{task}_T{length}" / "test.parquet")
    pd.testing.assert_frame_equal(out, g)
    card = (tmp_path / "ds" / "README.md").read_text()
    assert f"task: {task}" in card and f"--task {task}" in card
