"""``--task`` through the commands: generate, validate, render and run with ``--task undo`` end to end on
a tiny model, one-line refusals of what the task does not support, and ffl identities unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ffbench import datafiles, language, runner, undo
from tests.conftest import cli_exit

# Computed by ffbench before the task dimension existed (the main checkout, same arguments).
BEFORE = {
    "digest": "55a5bebb8c88dd585cc45b64c5557836a7281153b9e7ff8bd9ef142d7d094f1b",
    "cell": "in_dist-T64-p0.8-symbolic-choice-4ae93f9250f2",
    "data": {"in_dist T=64 seed 1000": "4ae93f9250f213d6d34dece56437601e280627a7a29b33bc03abd045c8b88384"},
    "digest_fewshot_stress": "15b332b4dca8200cc7f3c1e028c78c5937cc2fde6bc391a0684700638baf885f",
}


def test_runs_without_a_task_keep_their_identity():
    cfg = runner.RunConfig(model="hf/gpt2", suites=["in_dist"], lengths=[64], num=10)
    assert "task" not in cfg.as_dict() and cfg.digest() == BEFORE["digest"]
    assert runner.default_output_dir(cfg) == "runs/hf_gpt2-55a5bebb8c"
    p = runner.plan(cfg)
    assert [p.cell_id(c) for c in p.cells] == [BEFORE["cell"]] and p.data_hashes() == BEFORE["data"]
    other = runner.RunConfig(model="ffbench/lstm-ref", suites=["stress", "paper"], fewshot=True,
                             renders=["symbolic", "lightswitch"])
    assert other.digest() == BEFORE["digest_fewshot_stress"]
    undo_cfg = runner.RunConfig(model="hf/gpt2", suites=["in_dist"], lengths=[64], num=10, task="undo",
                                renders=["symbolic_undo"])
    assert undo_cfg.digest() != BEFORE["digest"]
    assert [c.key.variant for c in runner.plan(undo_cfg).cells] == ["task=undo"]


def test_generate_validate_render_with_task_undo(tmp_path, capsys):
    out = tmp_path / "undo.parquet"
    assert cli_exit(["generate", "--task", "undo", "--suite", "paper", "--length", "32", "--num", "40",
                     "--out", out]) == 0
    ds = datafiles.read_sequences(out, task="undo")
    assert ds.num == 120 and list(dict.fromkeys(ds.columns["suite"])) == ["in_dist", "sparse", "dense"]
    want = undo.sample(undo.UndoFFL.from_p_ignore(0.7, 32), 40, 1000)
    assert np.array_equal(ds.sequences[:40], want)
    capsys.readouterr()
    assert cli_exit(["validate", "--task", "undo", out]) == 0
    reads = len(undo.extract_reads(ds.sequences))
    assert f"ok: 120 sequences of length 32, {reads:,} reads" in capsys.readouterr().out
    assert cli_exit(["validate", out]) == 2  # read as ffl, the first undo breaks a rule, and says which task fits
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "got 'u' (an UNDO flip-flop sequence? pass --task undo)" in err
    chains = tmp_path / "chains.jsonl"
    assert cli_exit(["generate", "--task", "undo", "--suite", "retraction", "--length", "16", "--num", "4",
                     "--out", chains]) == 0
    ds = datafiles.read_sequences(chains, task="undo")
    assert ds.columns["k"] == [1] * 4 + [2] * 4 and ds.num == 8  # depth d fits T = 16 when 2 d + 2 <= 8
    capsys.readouterr()
    assert cli_exit(["render", "--task", "undo", "--render", "lightswitch_undo", "--data", chains, "--row", "0"]) == 0
    assert "Alice takes back her last switch. The light is turned[" in capsys.readouterr().out


@pytest.mark.parametrize("args,fragment", [
    (["run", "--model", "ffbench/lstm-ref", "--task", "undo", "--suite", "stress"],
     "the stress grid is the flip-flop language's: with --task undo use --suite retraction"),
    (["run", "--model", "ffbench/lstm-ref", "--task", "undo", "--render", "lightswitch"],
     "rendering 'lightswitch' has no 'undo' piece"),
    (["run", "--model", "ffbench/lstm-ref", "--task", "undo", "--alphabet", "3"], "--task undo is binary"),
    (["run", "--model", "ffbench/lstm-ref", "--task", "undo", "--num", "3"],
     "ffbench/lstm-ref cannot read rendering 'symbolic_undo': its tokenizer has no token for 'u'"),
    (["run", "--model", "ffbench/lstm-ref", "--task", "needles"],
     "unknown task 'needles' (known: ffl, undo, registers, haystack)"),
    (["run", "--model", "ffbench/lstm-ref", "--task", "haystack", "--render", "lightswitch"],
     "rendering 'lightswitch' has no 'filler' piece"),
    (["run", "--model", "ffbench/lstm-ref", "--task", "undo", "--registers", "3"],
     "--registers applies to --task registers only, not --task undo"),
    (["run", "--model", "ffbench/lstm-ref", "--task", "registers", "--length", "64"],
     "--task registers needs a length that is a multiple of 3"),
    (["run", "--model", "ffbench/lstm-ref", "--task", "registers", "--registers", "9", "--length", "48"],
     "--registers must be between 1 and 8, got 9"),
    (["run", "--model", "ffbench/lstm-ref", "--task", "registers", "--render", "symbolic_undo", "--length", "48"],
     "rendering 'symbolic_undo' has no 'registers' piece"),
    (["run", "--model", "ffbench/lstm-ref", "--render", "symbolic_registers"],
     "rendering 'symbolic_registers' reads three-character register instructions"),
    (["generate", "--task", "registers", "--suite", "stale", "--length", "50", "--out", "x.jsonl"],
     "--task registers needs a length that is a multiple of 3 and >= 6"),
    (["generate", "--task", "undo", "--registers", "2", "--num", "3", "--out", "x.jsonl"],
     "--registers applies to --task registers only, not --task undo"),
    (["hunt", "--model", "ffbench/lstm-ref", "--task", "undo", "--budget", "10"],
     "ffbench/lstm-ref cannot read rendering 'symbolic_undo': its tokenizer has no token for 'u'"),
    (["generate", "--task", "undo", "--p", "0.2,0.2,0.6", "--num", "3", "--out", "x.jsonl"],
     "--p takes four probabilities W,R,I,U with --task undo, got 3"),
    (["generate", "--p", "0.1,0.1,0.7,0.1", "--num", "3", "--out", "x.jsonl"],
     "--p takes three probabilities W,R,I with --task ffl"),
    (["generate", "--task", "undo", "--suite", "retraction", "--length", "6", "--out", "x.jsonl"],
     "no retraction chain fits length 6"),
])
def test_what_a_task_lacks_is_refused_in_one_line(tmp_path, monkeypatch, capsys, args, fragment):
    monkeypatch.chdir(tmp_path)
    assert cli_exit([*args, "--no-record"] if args[0] == "run" else args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ffbench: error: ") and err.count("\n") == 0 and fragment in err, err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_run_task_undo_end_to_end_scores_every_read_with_the_toggle_beside(tiny_gpt2, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_exit(["run", "--model", f"hf/{tiny_gpt2}", "--task", "undo", "--suite", "in_dist,retraction",
                     "--length", "24", "--num", "6", "--render", "symbolic_undo,lightswitch_undo", "--no-record",
                     "--output-dir", out]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["task"] == "undo"
    cells = {(c["suite"], c["render"]): c for c in results["results"]}
    iid = undo.sample(undo.UndoFFL.from_p_ignore(0.7, 24), 6, 1000)
    chains, depths = undo.retraction_suite(24, 6)
    assert depths == [1] * 6 + [2] * 6 + [4] * 6
    for render in ("symbolic_undo", "lightswitch_undo"):
        assert cells[("in_dist", render)]["reads"] == len(undo.extract_reads(iid))
        assert cells[("retraction", render)]["reads"] == 18 and cells[("in_dist", render)]["variant"] == "task=undo"
    samples = pd.read_parquet(out / "samples.parquet")
    chain_rows = samples[(samples.suite == "retraction") & (samples.render == "symbolic_undo")]
    assert chain_rows.toggle.tolist() == undo.toggle_predictions(chains).tolist()
    assert (chain_rows.toggle != chain_rows.target).all() and chain_rows.k.tolist() == depths
    h = cells[("retraction", "symbolic_undo")]["heuristic"]
    assert h["name"] == "toggle" and h["accuracy"] == 0.0 and h["reads_where_wrong"] == 18
    assert h["errors_there"] == int((chain_rows.prediction != chain_rows.target).sum())
    assert h["agrees_there"] == pytest.approx((chain_rows.prediction == chain_rows.toggle).mean())
    assert chain_rows.family.unique().tolist() == ["retraction_chain"]
    html = tmp_path / "report.html"
    assert cli_exit(["report", out, "--out", html]) == 0
    page = html.read_text()
    assert "<th scope=\"col\">heuristic</th>" in page and "<td>undo</td>" in page
    assert f"toggle: {h['agrees_there']:.0%} of 18</td>" in page
    iid_rows = samples[(samples.suite == "in_dist") & (samples.render == "symbolic_undo")]
    assert iid_rows.target.tolist() == undo.extract_reads(iid).target.tolist()
    assert set(language.to_strings(iid)[0]) >= {"w", "r"}


@pytest.mark.parametrize("task, model, suite, length, params", [
    ("undo", "ffbench/undo-lstm", "retraction", 64, ["k"]),
    ("registers", "ffbench/registers-lstm", "stale", 96, ["distance", "placement"])])
def test_a_structured_family_is_counted_per_parameter_as_its_samples_say(tmp_path, capsys, task, model, suite,
                                                                         length, params):
    """results.json ``by_parameter`` (and the printed summary) of a retraction or stale cell: per depth
    or distance and placement, the reads and errors of an independent recount of samples.parquet."""
    pytest.importorskip("torch")
    out = tmp_path / "run"
    assert cli_exit(["run", "--model", model, "--task", task, "--suite", suite, "--length", length, "--num", 12,
                     "--no-record", "--output-dir", out]) == 0
    printed = capsys.readouterr().out
    (cell,) = json.loads((out / "results.json").read_text())["results"]
    samples = pd.read_parquet(out / "samples.parquet")
    recount = samples.assign(wrong=~samples.correct).groupby(["family", *params]).wrong.agg(["size", "sum"])
    got = {(r["family"], *(r[p] for p in params)): (r["reads"], r["errors"]) for r in cell["by_parameter"]}
    assert got == {(k if isinstance(k, tuple) else (k,)): (int(v["size"]), int(v["sum"]))
                   for k, v in recount.iterrows()}
    assert sum(r["reads"] for r in cell["by_parameter"]) == cell["reads"] and len(got) > 2
    assert 0 < sum(e for _, e in got.values()) < cell["reads"]  # mixed verdicts: the recount can tell
    assert "structured families, errors / reads per parameter" in printed
