"""What a newcomer sees is true (issue 29): the report, the dry run, help texts, renderings, exit
statuses, registry numbers and run-directory names say exactly what happens.

Every CLI call runs ``ffbench.cli.main(argv)`` in process and asserts the line a user reads.
"""

from __future__ import annotations

import re

import pytest

from ffbench import runs
from ffbench.report import build_report, views
from ffbench.report.data import Model
from tests.conftest import needs_torch
from tests.rundirs import cell, write_run
from tests.test_first_hour import _main


def _section(html: str, start: str, end: str) -> str:
    return html[html.index(f'id="{start}"'):html.index(f'id="{end}"')]


# ----------------------------------------------------------------------------- 1. the report keeps the reference
def test_a_run_of_a_shipped_model_is_drawn_beside_its_reference(tmp_path):
    """The main job's run is of ffbench/transformer-ref: the report still draws the shipped
    transformer-ref beside it (as the run's "next:" line promises), and Fig. 4 has its point, although
    the user's runs have no sparse cell."""
    mine = [write_run(tmp_path / f"run{k}", "ffbench/transformer-ref",
                      [cell("in_dist", k, 7_237, length=128), cell("dense", 300 + k, 28_987, length=128)],
                      created=f"2026-12-0{k + 1}T00:00:00+00:00") for k in range(2)]
    html = build_report([str(p) for p in mine], attention_reads=0)
    glance = _section(html, "glance", "summary")
    names = re.findall(r'</span>([^<]+)</td><td class=num>', glance)
    assert names == ["ffbench/transformer-ref", "ffbench/lstm-ref (reference)",
                     "ffbench/transformer-ref (reference)"]
    # the user's two runs merge into one model (0 + 300 errors of the first run: the second run's cells
    # share their keys), apart from the reference
    mine = "</span>ffbench/transformer-ref</td><td class=num>2</td><td class=num>36,224</td><td class=num>300</td>"
    assert mine in glance
    fig4 = _section(html, "sparse-dense", "length")
    assert "No model here was evaluated on both the sparse and the dense suite" not in fig4
    assert "ffbench/transformer-ref (reference)" in fig4


# ------------------------------------------------------------------ 2. at a glance: one set of cells
def test_at_a_glance_counts_the_cells_its_worst_cell_comes_from():
    """lstm-ref: 0 errors in the 754,599 reads of its 7 cells outside the stress grid, the grid's 8,090
    errors apart."""
    row, = views.at_a_glance([Model("ffbench/lstm-ref", runs.reference_runs("lstm-ref"))])
    assert (row.cells, row.reads, row.errors) == (7, 754_599, 0)
    assert row.worst_rate.startswith("0 errors in ")
    assert row.stress == "8,090 errors in 31,098 reads; 359 of 532 points without an error"


# ------------------------------------------------------------------ 3. an exact native dry run
@needs_torch
@pytest.mark.parametrize("per_read", [False, True])
def test_dry_run_of_a_native_model_counts_what_the_run_sends(tmp_path, capsys, per_read):
    import ffbench

    flags = ["--suite", "in_dist", "--num", "20", "--length", "32"] + (["--per-read"] if per_read else [])
    code, out, _ = _main(["run", "--model", "ffbench/transformer-ref", *flags, "--dry-run"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == ("tokens counted with the model's own tokenizer, chat template and BOS included; "
                        "context none (no position table: any length)")
    requests, tokens, budget, longest = lines[-1].split()[1:5]
    res = ffbench.evaluate("ffbench/transformer-ref", suite="in_dist", num=20, lengths=32, per_read=per_read,
                           output_dir=str(tmp_path / "run"))
    assert (int(requests), int(tokens.replace(",", ""))) == (res.usage["requests"], res.usage["prompt_tokens"])
    assert (budget, longest) == ("0", "31" if per_read else "32")  # a per-read prompt stops before the last answer
    assert lines[-1].endswith(" / any") and "ESTIMATED" not in out and "re-asked" not in out


def test_dry_run_of_a_native_model_with_a_position_table_names_its_context(tmp_path):
    """A learned-position checkpoint: the context is its position table, and a longer T does not fit."""
    import json
    import shutil

    from ffbench import api
    from ffbench.resources import BASELINES_DIR

    ckpt = tmp_path / "learned"
    shutil.copytree(BASELINES_DIR / "transformer-ref", ckpt, ignore=shutil.ignore_patterns("run", "lengths", "stress"))
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["ffbench_model"]["positions"] = "learned"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    shown = api.preflight(f"ffbench/{ckpt}", suite="in_dist", num=4, lengths=[64, 256])
    assert shown.exact and shown.context == 128
    assert [(c.longest, c.fits) for c in shown.cells] == [(64, True), (256, False)]
    assert "  64 / 128" in str(shown) and "256 / 128 !" in str(shown)


# ----------------------------------------------------------------------------- 4. ffbench/ models read symbolic only
@pytest.mark.parametrize("rendering", ["symbolic_spaced", "lightswitch", "chat"])
def test_native_models_refuse_every_rendering_but_symbolic(capsys, rendering):
    code, out, err = _main(["run", "--model", "ffbench/transformer-ref", "--suite", "in_dist", "--num", "5",
                            "--render", rendering, "--dry-run"], capsys)
    assert (code, out) == (2, "")
    assert err == (f"ffbench: error: ffbench/ models read the symbolic rendering only (the compact string they were "
                   f"trained on), not {rendering!r}; a text-vocabulary checkpoint such as ffbench/haystack-lstm "
                   f"reads natural-language renderings\n")


# ----------------------------------------------------------------------------- 5. text the tokenizer cannot represent
def test_unencodable_names_the_characters_a_tokenizer_reads_as_unknown():
    from ffbench.backends import unencodable
    from ffbench.tokenizer import CharTokenizer

    assert unencodable(CharTokenizer(), "w0 r1\nThe light is on.") == [".", "T", "e", "g", "h", "l", "n", "o", "s", "t"]
    assert unencodable(CharTokenizer(), "w0i1r0") == []


@needs_torch
def test_a_rendering_the_tokenizer_cannot_encode_is_refused_before_scoring(tmp_path, capsys):
    """A tiny-gpt2 over the default characters (w r i 0-9, space, newline) maps every letter to <pad>: lightswitch is refused in one line
    naming the letters, before any run directory exists; symbolic and symbolic_spaced are read."""
    from ffbench.tokenizer import DEFAULT_CHARS
    from tests.models import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny-gpt2", chars=DEFAULT_CHARS)
    capsys.readouterr()  # transformers' own progress lines
    out = tmp_path / "runs" / "tiny"
    args = ["run", "--model", f"hf/{model}", "--suite", "in_dist", "--length", "16", "--num", "5", "--output-dir",
            str(out), "--no-record"]
    code, stdout, err = _main([*args, "--render", "symbolic,lightswitch"], capsys)
    assert (code, stdout) == (2, "")
    assert err == (f"ffbench: error: hf/{model} cannot read rendering 'lightswitch': its tokenizer has no token for "
                   "'.ABTabcdefghlnopstu' (it reads them as '<pad>'); use a rendering made of characters it knows, "
                   "e.g. symbolic\n")
    assert not out.exists()
    code, _, err = _main([*args, "--render", "symbolic_spaced", "--dry-run"], capsys)
    assert code == 0, err


# ----------------------------------------------------------------------------- 6. a stress-named column of another type
def test_a_family_column_of_integers_is_one_line_in_validate_and_run(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ffbench import language

    path = tmp_path / "mine.parquet"
    texts = language.to_strings(language.sample(language.FFL.from_p_ignore(0.8, 16), 4, 1))
    pq.write_table(pa.table({"text": texts, "family": [7, 8, 9, 10]}), path)
    line = (f"{path}: row 0: column 'family' holds 7, but ffbench reads 'family' as the stress grid's family (text); "
            "rename the column to keep it as your own")
    for argv in (["validate", str(path)],
                 ["run", "--model", "ffbench/transformer-ref", "--data", str(path), "--dry-run"],
                 ["run", "--model", "ffbench/transformer-ref", "--data", str(path), "--output-dir",
                  str(tmp_path / "r"), "--no-record"]):
        assert _main(argv, capsys) == (2, "", f"ffbench: error: {line}\n")
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- 8. one exit-status rule
def _bad_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "w0r1"}\n')
    return path


@pytest.mark.parametrize("argv, fragment", [
    (lambda t: ["validate", str(_bad_file(t))], "read 'r1' does not match the most recent write 'w0'"),
    (lambda t: ["run", "--model", "ffbench/transformer-ref", "--data", str(_bad_file(t)), "--dry-run"],
     "read 'r1' does not match the most recent write 'w0'"),
    (lambda t: ["render", "--data", str(_bad_file(t))], "read 'r1' does not match the most recent write 'w0'"),
    (lambda t: ["generate", "--num", "2", "--out", str(t / "nowhere" / "x.parquet")], "does not exist"),
    (lambda t: ["report", str(t / "no-such-run"), "--out", str(t / "r.html")], "no run"),
    (lambda t: ["record", str(t)], "is not a finished run directory"),
    (lambda t: ["check", "--candidate", str(t / "no-such-run"), "--max-glitch-rate", "0"], "no run"),
])
def test_the_command_as_given_cannot_succeed_exits_2(tmp_path, capsys, argv, fragment):
    code, out, err = _main(argv(tmp_path), capsys)
    assert code == 2 and err.startswith("ffbench: error: ") and err.count("\n") == 1 and fragment in err, err


@needs_torch
def test_a_run_directory_of_another_config_exits_2_and_is_kept(tmp_path, capsys):
    args = ["run", "--model", "ffbench/transformer-ref", "--suite", "in_dist", "--length", "16", "--output-dir",
            str(tmp_path / "r"), "--no-record", "--no-progress"]
    assert _main([*args, "--num", "3", "--batch-size", "2"], capsys)[0] == 0
    code, out, err = _main([*args, "--num", "3", "--batch-size", "3"], capsys)
    assert (code, out) == (2, "")
    assert err == (f"ffbench: error: '{tmp_path / 'r'}' holds results of another run (config (batch_size) differ): use "
                   "--rescore to discard them, or another --output-dir\n")
    assert (tmp_path / "r" / "results.json").is_file()


def test_the_rule_is_one_sentence_in_the_architecture():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    section = doc[doc.index("## Exit status"):doc.index("## Run identity")]
    rule, = (" ".join(r.split()) for r in re.findall(r"\*\*(.+?)\*\*", section, re.DOTALL))
    assert len(re.findall(r"[.!?](?:\s|$)", rule)) == 1 and rule.endswith("130 when interrupted.")
    assert rule.startswith("2 when the command as given cannot succeed")


# ----------------------------------------------------------------------------- 7. help and printed lines
def test_help_quick_start_starts_with_run_and_model_help_names_every_provider(capsys):
    code, out, _ = _main(["--help"], capsys)
    assert code == 0
    quick = out[out.index("Quick start:"):out.index("Options:")].split("\n")[1:]
    assert quick[0].split() == ["ffbench", "run", "--model", "ffbench/transformer-ref", "--suite", "in_dist,dense",
                                "--num", "1000", "#", "score", "a", "shipped", "model"]
    code, out, _ = _main(["run", "--help"], capsys)
    spec = " ".join(out[out.index("--model SPEC"):out.index("--suite NAMES")].split())
    assert spec == ("--model SPEC provider/model: hf/<hub id or dir>, vllm/<hub id or dir>, openai/<name>, "
                    "anthropic/<name>, ffbench/<name or dir>. [required]")


def test_bare_ffbench_prints_its_help_not_an_error(capsys):
    code, out, err = _main([], capsys)
    assert (code, err) == (0, "")
    assert out.startswith("Usage: ffbench [OPTIONS] COMMAND [ARGS]...\n") and "Commands:" in out


@pytest.mark.parametrize("rendering, line", [
    ("symbolic", "# rendering 'symbolic': 3 scored reads, each answered with '0' or '1'"),
    ("lightswitch", "# rendering 'lightswitch': 3 scored reads, each answered with ' off' or ' on'"),
])
def test_render_says_what_a_read_is_answered_with(capsys, rendering, line):
    code, out, _ = _main(["render", "--render", rendering], capsys)
    assert code == 0 and out.splitlines()[:2] == ["# sequence: w1i0r1i1w0r0i0r0", line]


@pytest.mark.parametrize("reason, line", [
    ("budget", "hunt directory: hunts/mix (stopped: the --budget of 20,000 reads is spent; a larger --budget "
               "continues it)"),
    ("token budget", "hunt directory: hunts/mix (stopped: the --budget-tokens of 500,000 tokens is spent)"),
    ("exhausted", "hunt directory: hunts/mix (stopped: no new candidate fits the reads left in the budget)"),
    ("in progress", "hunt directory: hunts/mix (in progress)"),
])
def test_the_hunt_says_why_it_stopped(reason, line):
    from ffbench.hunt.outputs import format_summary

    summary = {"config": {"model": "ffbench/transformer-mix", "length": 128, "budget": 20_000,
                          "budget_tokens": 500_000},
               "spent": {"reads": 20_000, "rescored_reads": 0}, "families": [], "stop_reason": reason,
               "glitches": {"distinct": 0, "failing_reads": 0, "per_scored_read": None}}
    assert format_summary(summary, "hunts/mix").splitlines()[-1] == line


# ----------------------------------------------------------------------------- 9. registry numbers and directories
def test_registry_ids_count_recorded_runs_and_a_replaced_directory_leaves_the_old_record(tmp_path, capsys):
    import json

    reg, run = tmp_path / "reg.sqlite", tmp_path / "runs" / "mine"
    record = ["record", str(run), "--registry", str(reg)]
    write_run(run, "ffbench/transformer-ref", [cell("in_dist", 1, 7_237, length=128)],
              created="2026-12-01T00:00:00+00:00")
    assert _main(record, capsys)[1] == f"registry: recorded as #1 in {reg}\n"
    assert _main(record, capsys)[1] == f"registry: already recorded in {reg}\n"
    # --rescore put another model's run into the same directory
    write_run(run, "ffbench/lstm-ref", [cell("in_dist", 0, 26_433)], created="2026-12-02T00:00:00+00:00")
    assert _main(record, capsys)[1] == f"registry: recorded as #2 in {reg}\n"
    code, out, _ = _main(["history", "--json", "--registry", str(reg)], capsys)
    entries = [json.loads(line) for line in out.splitlines()]
    assert [(e["id"], e["model"], e["run_dir"]) for e in entries] == [
        (1, "ffbench/transformer-ref", None), (2, "ffbench/lstm-ref", str(run.resolve()))]
    assert entries[0]["results"][0]["errors"] == 1  # the old record keeps its results


# ------------------------------------------------------------------ 10. next line, directory names
@pytest.mark.parametrize("spec, name", [
    ("hf//home/me/work/tiny-gpt2", "hf_tiny-gpt2"),  # a local directory: its own name, not its path
    ("ffbench//tmp/x/runs/tf-mix", "ffbench_tf-mix"),
    ("hf/Qwen/Qwen2.5-0.5B-Instruct", "hf_Qwen_Qwen2.5-0.5B-Instruct"),  # a hub id stays whole
    ("ffbench/transformer-ref", "ffbench_transformer-ref"),
    ("openai/gpt-4o-mini", "openai_gpt-4o-mini"),
])
def test_default_directories_are_named_by_the_model_s_own_name(tmp_path, monkeypatch, spec, name):
    from ffbench.backends import default_directory

    monkeypatch.chdir(tmp_path)
    assert default_directory("runs", spec, "0123456789") == f"runs/{name}-0123456789"


def test_a_directory_named_by_an_older_ffbench_still_resumes(tmp_path, monkeypatch):
    from ffbench.backends import default_directory

    monkeypatch.chdir(tmp_path)
    old = tmp_path / "runs" / "hf__home_me_work_tiny-gpt2-0123456789"  # what it was called before
    old.mkdir(parents=True)
    assert default_directory("runs", "hf//home/me/work/tiny-gpt2", "0123456789") == str(old.relative_to(tmp_path))
    assert default_directory("runs", "hf//home/me/work/tiny-gpt2", "9876543210") == "runs/hf_tiny-gpt2-9876543210"


@needs_torch
def test_train_prints_the_next_command_and_its_run_is_named_by_the_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(["train", "--arch", "lstm", "--steps", "2", "--hidden", "8", "--length", "16",
                            "--batch-size", "2", "--out", "ckpt/tr", "--no-progress"], capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == ("next: ffbench run --model ffbench/ckpt/tr --suite paper   (scored at its training "
                                    "length, T = 16)")
    code, out, err = _main(["run", "--model", "ffbench/ckpt/tr", "--suite", "in_dist", "--num", "2", "--no-record",
                            "--no-progress"], capsys)
    assert code == 0, err
    run_dir, = (line.removeprefix("run directory: ") for line in out.splitlines() if line.startswith("run directory:"))
    assert re.fullmatch(r"runs/ffbench_tr-[0-9a-f]{10}", run_dir)
    assert (tmp_path / run_dir / "results.json").is_file()
