"""What a newcomer sees is true (issue 29): the report, the dry run, help texts, renderings, exit
statuses, registry numbers and run-directory names say exactly what happens.

Every CLI call runs ``ffbench.cli.main(argv)`` in process and asserts the line a user reads.
"""

from __future__ import annotations

import re

import pytest

from ffbench import cli
from ffbench.report import build_report, views
from ffbench.report.data import Model
from ffbench import runs
from tests.conftest import needs_torch
from tests.rundirs import cell, write_run


def _main(argv, capsys) -> tuple[int, str, str]:
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


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
    assert names == ["ffbench/transformer-ref", "ffbench/lstm-ref (reference)", "ffbench/transformer-ref (reference)"]
    # the user's two runs merge into one model (0 + 300 errors of the first run: the second run's cells
    # share their keys), apart from the reference
    assert "</span>ffbench/transformer-ref</td><td class=num>2</td><td class=num>36,224</td><td class=num>300</td>" \
        in glance
    fig4 = _section(html, "sparse-dense", "length")
    assert "No model here was evaluated on both the sparse and the dense suite" not in fig4
    assert "ffbench/transformer-ref (reference)" in fig4


# ----------------------------------------------------------------------------- 2. at a glance: errors of the worst cell's cells
def test_at_a_glance_counts_the_cells_its_worst_cell_comes_from():
    """lstm-ref: 0 errors in the 754,599 reads of its 7 cells outside the stress grid, the grid's 2,105 errors apart."""
    row, = views.at_a_glance([Model("ffbench/lstm-ref", runs.reference_runs("lstm-ref"))])
    assert (row.cells, row.reads, row.errors) == (7, 754_599, 0)
    assert row.worst_rate.startswith("0 errors in ")
    assert row.stress == "2,105 errors in 12,592 reads; 233 of 311 points without an error"


# ----------------------------------------------------------------------------- 3. the dry run of an ffbench/ model is exact
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
                   f"trained on), not {rendering!r}\n")


# ----------------------------------------------------------------------------- 5. text the tokenizer cannot represent
def test_unencodable_names_the_characters_a_tokenizer_reads_as_unknown():
    from ffbench.backends import unencodable
    from ffbench.tokenizer import CharTokenizer

    assert unencodable(CharTokenizer(), "w0 r1\nThe light is on.") == [".", "T", "e", "g", "h", "l", "n", "o", "s", "t"]
    assert unencodable(CharTokenizer(), "w0i1r0") == []


@needs_torch
def test_a_rendering_the_tokenizer_cannot_encode_is_refused_before_scoring(tmp_path, capsys):
    """The README's char-level tiny-gpt2 maps every letter to <pad>: lightswitch is refused in one line
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
