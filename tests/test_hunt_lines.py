"""The map checks tolerance lines: every stress family's own reads get their own label, a hunt of a model
that fails exactly from 14 opposite ignores on contradicts a line that claims more (with the reads that
do it) and never the true lines, and a stress run of another model or another T is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ffbench import language, stress
from ffbench.errors import UsageError
from ffbench.hunt import HuntConfig, hunt, lines, plan
from ffbench.resources import BASELINES_DIR
from tests.conftest import needs_native
from tests.test_hunt import synthetic_ref
from tests.test_hunt_map import THRESHOLD, OppositeRunModel, opposite_since_write

LENGTH = 64


@pytest.mark.parametrize("length", (32, 64))
def test_every_stress_read_is_labelled_with_its_own_family_and_parameters(length):
    """The grid's reads, as the hunt would meet them: all get their point's label, except the families
    the labels leave out (dense_interference, density-0.5 distractor runs)."""
    unlabelled = {}
    for p in stress.grid(length):
        arr = stress.sample_point(p, length)
        for row in arr:
            instr, data = row[0::2], row[1::2].astype(np.int64) - language.ZERO
            for e in np.flatnonzero(instr == language.R):
                if (p.family, dict(p.params)) not in lines.labels(instr, data, int(e)):
                    unlabelled.setdefault(p.family, set()).add(dict(p.params).get("density"))
    assert unlabelled == {"dense_interference": {None}, "distractor_run": {0.5}}


def _labels(text: str) -> list:
    arr = language.to_array([text])[0]
    instr, data = arr[0::2], arr[1::2].astype(np.int64) - language.ZERO
    return lines.labels(instr, data, instr.size - 1)


def test_labels_of_hand_built_reads():
    assert _labels("w0" + "i1" * 5 + "r0") == [
        ("distractor_run", {"density": 1.0, "write_at": "start", "k": 5}),
        ("distractor_run", {"density": 1.0, "write_at": "adjacent", "k": 5}), ("write_distance", {"distance": 6}),
        ("run_blocks", {"k": 5}), ("reads_in_run", {"gap": 5})]
    # a read in between: only reads_in_run, and only when every stretch since the write has gap opposite ignores
    assert _labels("w0i1i1r0i1i1r0") == [("reads_in_run", {"gap": 2})]
    assert _labels("w0i1r0i1i1r0") == []
    assert ("reads_in_run", {"gap": 2}) in _labels("w1i0i0w0i1i1r0i1i1r0")  # after a stale write and ignores
    assert ("reads_in_run", {"gap": 2}) not in _labels("w1r1i0w0i1i1r0i1i1r0")  # a read before the write
    # an ignore of the written bit first: a start run of 3, not a block
    assert _labels("w0i0i1i1i1r0") == [("distractor_run", {"density": 1.0, "write_at": "start", "k": 3}),
                                       ("write_distance", {"distance": 5})]
    # two decoys (slot 0 and right before the decisive write), filler between: decoy_run
    assert ("decoy_run", {"decoys": 2, "run": 3}) in _labels("w1i0i1w1w0i1i1i1r0")
    assert not any(f == "decoy_run" for f, _ in _labels("w1i0w1i1w0i1i1i1r0"))  # the second decoy not adjacent
    # a later run_blocks block: a pure run after a write that follows one write of the other bit, whatever
    # came before (the previous block need not have the same k: the region is what the descriptors test)
    assert ("run_blocks", {"k": 2}) in _labels("w1i0i0r1i1w0i1i1r0")
    assert ("run_blocks", {"k": 2}) in _labels("w0r0i1i0i0w1r1i0i0w0i1i1r0")
    assert ("run_blocks", {"k": 2}) not in _labels("w0i1w0i1i1r0")  # the write before is of the same bit
    assert ("run_blocks", {"k": 2}) not in _labels("w1w0i1r0i1i1r0")  # a read in between
    assert _labels("w1" * 15 + "w0w1i1i0i1w0i1i1r0") == []  # more writes than blocks fit: a decoy cluster


def _reference_regions(text: str, q: int) -> set:
    """The regions of the read whose answer is text[q], symbol by symbol from the family's words (not from
    the descriptors): run_blocks, reads_in_run, decoy_run and distractor_run (adjacent)."""
    ops, bits = text[0:q + 1:2], [int(c) for c in text[1:q + 1:2]]
    e = len(ops) - 1
    w = max(j for j in range(e) if ops[j] == "w")
    b = bits[w]
    since = list(zip(ops[w + 1:e], bits[w + 1:e]))
    pure = all(o == "i" and x != b for o, x in since)
    writes_before = [j for j in range(w) if ops[j] == "w"]
    plain = w == 0 or (bits[0] != b and all(o == "i" for o in ops[1:w]))
    out = set()
    if pure:
        k = len(since)
        sparse = (len(writes_before) + 1) * (k + 2) <= e + 1  # no more writes than blocks of k + 2 fit
        if w == 0 or bits[writes_before[-1]] != b and (len(writes_before) < 2 or bits[writes_before[-2]] == b) and sparse:
            out.add(("run_blocks", k))
        if plain:
            out.add(("distractor_run/adjacent", k))
        decoys = [j for j in writes_before if bits[j] != b]
        if decoys and decoys == writes_before and decoys[0] == 0 and len(decoys) > 1 \
                and decoys[1:] == list(range(w - len(decoys) + 1, w)) and w - len(decoys) + 1 > 0:
            out.add((f"decoy_run/{len(decoys)}", k))
    reads = [j for j, (o, _) in enumerate(since) if o == "r"]
    if since and plain and all(o == "r" or x != b for o, x in since):
        stretches = [len(s) for s in "".join("r" if o == "r" else "i" for o, _ in since).split("r")]
        if len(set(stretches)) == 1 and stretches[0] >= 1 and len(stretches) == len(reads) + 1:
            out.add(("reads_in_run", stretches[0]))
    return out


def test_regions_agree_with_an_independent_recount_on_map_candidates():
    """Every read of 300 map candidates and of the T = 64 grid: the descriptor regions of run_blocks,
    reads_in_run, decoy_run and distractor_run (adjacent) hold exactly the reads a symbol-by-symbol reading
    of the families' words puts there."""
    from ffbench.hunt import atlas

    rng = np.random.default_rng(5)
    n = LENGTH // 2
    arr = np.stack([atlas.build(atlas.random_target(rng, n), LENGTH, rng) for _ in range(300)]
                   + [stress.sample_point(p, LENGTH)[0] for p in stress.grid(LENGTH)])
    found = lines.label_reads(arr)
    names = {"run_blocks": "k", "reads_in_run": "gap", "distractor_run": "k", "decoy_run": "run"}
    j, hits = 0, {}
    for text in language.to_strings(arr):
        for q in range(1, len(text), 2):
            if text[q - 1] != "r":
                continue
            got = set()
            for family, params in found[j]:
                if family == "distractor_run" and params["write_at"] == "adjacent":
                    got.add(("distractor_run/adjacent", params["k"]))
                elif family == "decoy_run":
                    got.add((f"decoy_run/{params['decoys']}", params["run"]))
                elif family in ("run_blocks", "reads_in_run"):
                    got.add((family, params[names[family]]))
            want = {r for r in _reference_regions(text, q) if not r[0].startswith("decoy_run/")
                    or r[0] in ("decoy_run/2", "decoy_run/10")}
            assert got == want, (text[: q + 1], got, want)
            for r in got:
                hits[r[0].split("/")[0]] = hits.get(r[0].split("/")[0], 0) + 1
            j += 1
    assert j == len(found) and min(hits.values()) >= 10 and len(hits) == 4, hits


def _true_lines(length: int) -> list[dict]:
    """The synthetic model's own lines: the stress grid at T scored by its rule (wrong iff THRESHOLD or more
    opposite ignores since the write), independently of the hunt."""
    ids, correct, positions = [], [], []
    for p in stress.grid(length):
        arr = stress.sample_point(p, length)
        for text in language.to_strings(arr):
            for q in range(1, len(text), 2):
                if text[q - 1] == "r":
                    ids.append(p.id)
                    positions.append(q)
                    correct.append(opposite_since_write(text[: q + 1]) < THRESHOLD)
    return [t.as_dict() for t in stress.profile(stress.count_outcomes(ids, correct, positions, length))]


@pytest.fixture(scope="module")
def hunted(tmp_path_factory):
    """A map hunt of the synthetic model at T = 64 checked against transformer-ref's shipped stress run,
    given as a copied run directory (--lines)."""
    tmp = tmp_path_factory.mktemp("lines")
    run = tmp / "stress-run"
    shutil.copytree(BASELINES_DIR / "transformer-ref" / "stress", run)
    cfg = HuntConfig(model="ffbench/transformer-ref", budget=2500, length=LENGTH, lines=str(run))
    s = hunt(cfg, str(tmp / "h"), synthetic_ref(OppositeRunModel()), echo=lambda m: None)
    state = json.loads((tmp / "h" / "state.json").read_text())
    return s, state


@needs_native
def test_a_line_claiming_too_much_is_contradicted_by_exactly_the_reads_beyond_the_threshold(hunted):
    s, state = hunted
    assert s["lines"]["source"].endswith("stress-run") and len(s["lines"]["checked"]) == 9  # 11 minus density 0.5
    assert sorted((u["family"], u["fixed"].get("density")) for u in s["lines"]["unchecked"]) == [
        ("dense_interference", None), ("distractor_run", 0.5), ("distractor_run", 0.5)]
    store = state["labeled"]
    # the lines whose reads have a fixed number of opposite ignores since the write (the others have random
    # filler there, so their grid lines are only statistical claims a hunt may rightly contradict)
    true = [t for t in _true_lines(LENGTH) if t["family"] in ("run_blocks", "decoy_run", "decoy_writes", "reads_in_run")
            or t["fixed"] == {"density": 1.0, "write_at": "adjacent"}]
    assert len(true) == 7
    held = lines.check_lines(true, store, LENGTH)
    assert held["contradictions"] == [] and sum(c["claimed"] for c in held["checked"]) > 20
    (blocks,) = [t for t in true if t["family"] == "run_blocks"]
    assert blocks["clean_through"] == 12  # the fine grid's last value below 14
    wrong = {**blocks, "clean_through": 20}  # deliberately wrong: the model fails from 14
    out = lines.check_lines([wrong], store, LENGTH)
    # the reads it claims wrongly: every labelled run_blocks read with 14 <= k <= 20 (the model fails all)
    # inside the range of the other descriptors its own grid reads had (the envelope)
    points = lines.line_envelope(wrong, LENGTH)
    labelled = [(json.loads(key), e) for key, e in store.items() if json.loads(key)["family"] == "run_blocks"]
    expect = sum(e["reads"] for r, e in labelled if 14 <= r["k"] <= 20 and lines.measured(r, "k", points))
    lo, hi = wrong["region"]["positions"]
    outside = sum(e["reads"] for r, e in labelled if lo <= r["position"] <= hi and not lines.measured(r, "k", points))
    assert expect > 0 and out["checked"][0]["contradicting"] == expect
    assert out["checked"][0]["outside_measured"] == outside
    for c in out["contradictions"]:
        prefix = c["text"][: c["position"] + 1]
        assert 14 <= c["params"]["k"] <= 20 and opposite_since_write(prefix) >= THRESHOLD
        b = int(prefix[-1])
        assert prefix.endswith(f"w{b}" + f"i{1 - b}" * c["params"]["k"] + f"r{b}") and c["line"] == wrong["line"]
    # the shipped transformer-ref line (run_blocks clean through k = 14 at T = 64) is wrong for this model
    shipped = {c["family"]: c for c in s["lines"]["checked"]}
    assert shipped["run_blocks"]["clean_through"] == 14
    at14 = sum(e["reads"] for r, e in labelled if r["k"] == 14 and lines.measured(r, "k", points))
    assert shipped["run_blocks"]["contradicting"] == at14
    assert all(c["params"]["k"] >= THRESHOLD for c in s["contradictions"] if c["family"] == "run_blocks")


@needs_native
def test_the_summary_names_the_contradicted_lines(hunted):
    from ffbench.hunt import outputs

    s, _ = hunted
    text = outputs.format_summary(s, "h")
    bad = sum(1 for c in s["lines"]["checked"] if c["contradicting"])
    assert "9 checked" in text and f"; {bad} contradicted" in text
    if s["contradictions"]:
        assert f"contradicts {s['contradictions'][0]['line'][:40]}" in text


def test_a_stress_run_of_another_model_or_length_is_refused(tmp_path):
    run = tmp_path / "lstm-stress"
    shutil.copytree(BASELINES_DIR / "lstm-ref" / "stress", run)
    base = {"model": "ffbench/transformer-ref", "budget": 10, "length": LENGTH}
    with pytest.raises(UsageError, match="is a run of ffbench/lstm-ref, not of ffbench/transformer-ref"):
        plan(HuntConfig(**base, lines=str(run)))
    with pytest.raises(UsageError, match="holds no stress results at T=48 rendered symbolic"):
        plan(HuntConfig(**{**base, "model": "ffbench/lstm-ref", "length": 48}, lines=str(run)))
    with pytest.raises(UsageError, match="not a run directory"):
        plan(HuntConfig(**base, lines=str(tmp_path / "nothing")))
    with pytest.raises(UsageError, match="--lines checks tolerance lines against the map search"):
        plan(HuntConfig(**base, lines=str(run), search="bandit"))
    assert plan(HuntConfig(**{**base, "model": "ffbench/lstm-ref"}, lines=str(run)))


def test_a_line_claims_only_the_range_its_own_grid_reads_had():
    """write_distance at T = 128: the grid's 32 draws at distance 63 have about half their ignores opposite, so
    `w1 i0*62 r1` (every one opposite: in the family's draw space, where lstm-ref and ssm-ref fail) is labelled
    but not claimed, while every grid read of the line is inside its own range."""
    line = {"family": "write_distance", "fixed": {}, "axis": "distance"}
    points = lines.line_envelope(line, 128)
    arr = language.to_array(["w1" + "i0" * 62 + "r1"])
    assert ("write_distance", {"distance": 63}) in lines.label_reads(arr)[0]
    from ffbench.hunt import descriptors

    env = {k: int(v[0]) for k, v in lines._envelope_values(descriptors.describe(arr)).items()}
    assert not lines.measured({"distance": 63, "env": env}, "distance", points)
    for p in stress.grid(128):
        if p.family != "write_distance":
            continue
        grid = stress.sample_point(p, 128)
        values = lines._envelope_values(descriptors.describe(grid))
        for j in range(grid.shape[0]):
            read = {"distance": p.params["distance"], "env": {k: int(v[j]) for k, v in values.items()}}
            assert lines.measured(read, "distance", points)
