"""What a newcomer reads in the first hour is true: printed counts and rates, the one-line message
for a row with stray whitespace, ``run --length`` help, and the "next:" hint after a run.

Every CLI call runs ``ffbench.cli.main(argv)`` in process.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from ffbench import cli, datafiles, generate, language
from ffbench.errors import FFBenchError
from tests.conftest import needs_torch


def _main(argv, capsys) -> tuple[int, str, str]:
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- generate's printed lines
@pytest.mark.parametrize("n, noun, expected", [(1, "sequence", "1 sequence"), (0, "token", "0 tokens"),
                                              (2, "sequence", "2 sequences"), (1600000, "token", "1,600,000 tokens")])
def test_counts_agree_in_number(n, noun, expected):
    assert cli._count(n, noun) == expected


@pytest.mark.parametrize("tokens, seconds, expected", [
    (8, 0.03, "267 tokens/s"),  # a tiny job: no "0.0 M tokens/s"
    (8, 4.0, "2 tokens/s"),
    (64_000, 0.5, "128 k tokens/s"),
    (512_000_000, 1.6, "320 M tokens/s"),
    (3_000_000_000, 2.0, "1.5 G tokens/s"),
])
def test_rates_have_a_readable_unit(tokens, seconds, expected):
    assert cli._rate(tokens, seconds) == expected


def test_generate_says_1_sequence_and_a_nonzero_rate(tmp_path, capsys):
    out = tmp_path / "one.jsonl"
    code, stdout, _ = _main(["generate", "--length", "8", "--num", "1", "--out", str(out), "--no-progress"], capsys)
    assert code == 0
    wrote, timing = stdout.splitlines()
    assert wrote.startswith(f"wrote 1 sequence to {out}: ")
    match = re.fullmatch(r"8 tokens in \d+\.\d\d s \((\d[\d.,]*) (?:([kMG]) )?tokens/s\); sha256 [0-9a-f]{64}", timing)
    assert match, timing
    assert float(match.group(1).replace(",", "")) > 0  # never rounded away to 0.0
    code, stdout, _ = _main(["generate", "--length", "8", "--num", "2", "--out", str(out), "--no-progress"], capsys)
    assert stdout.startswith(f"wrote 2 sequences to {out}: ")


# ----------------------------------------------------------------------------- stray whitespace
@pytest.mark.parametrize("rows, row, position, shown", [
    ([" w0i1r0"], 0, 0, "' ' (a space)"),  # the only fault is a leading space: length 7
    (["w0i1r0", " w0i1r0"], 1, 0, "' ' (a space)"),  # unequal lengths, the longer row has the space
    ([" w0i1r0", "w0i1r0"], 0, 0, "' ' (a space)"),  # ... or row 0 has it
    (["w0i1r0\n"], 0, 6, "'\\n' (a newline)"),
    (["w0\ti1r0"], 0, 2, "'\\t' (a tab)"),
])
def test_stray_whitespace_is_named_with_its_position(tmp_path, capsys, rows, row, position, shown):
    path = tmp_path / "pasted.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    code, _, err = _main(["validate", str(path)], capsys)
    assert code == 2
    assert err == (f"ffbench: error: {path}: row {row}, position {position}: unexpected character {shown}: "
                   "a flip-flop string holds only w, r, i and digits\n")


def test_stray_whitespace_in_parquet_and_other_odd_lengths(tmp_path):
    path = tmp_path / "pasted.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["w0i1r0 "]}), path)
    with pytest.raises(FFBenchError, match=r"row 0, position 6: unexpected character ' ' \(a space\)"):
        datafiles.read_sequences(path)
    # an odd length without whitespace is still reported as a length
    err = language.first_violation(language.to_array(["w0i1r0x"]))
    assert str(err) == "row 0, position 7: length must be even and >= 4, got 7"


# ----------------------------------------------------------------------------- run --length and the next hint
def test_run_length_help_says_what_happens_per_provider():
    from ffbench.backends.native import training_length

    option = next(p for p in cli.run.params if p.name == "lengths")
    text = " ".join(option.help.split())
    assert "hf/, vllm/ and openai/ models at the suites' 512" in text
    assert "ffbench/ checkpoints at their training length (transformer-ref and transformer-mix: 128, lstm-ref: 512)" \
        in text
    # ... and it is true: the shipped checkpoints' training lengths and the suites' length
    assert {name: training_length(name) for name in ("transformer-ref", "transformer-mix", "lstm-ref")} == \
        {"transformer-ref": 128, "transformer-mix": 128, "lstm-ref": 512}
    assert {part.dist.length for name in language.SUITES for part in generate.suite_parts(name, None, 1, None, 2)} \
        == {512}


@needs_torch
def test_next_hint_writes_the_report_into_the_run_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = os.path.join("runs", "lstm")
    code, stdout, err = _main(["run", "--model", "ffbench/lstm-ref", "--suite", "in_dist", "--num", "2", "--no-record",
                               "--no-progress", "--output-dir", out], capsys)
    assert code == 0, err
    hint = stdout.splitlines()[-1]
    assert hint == f"next: ffbench report {out} --out {os.path.join(out, 'report.html')}   (beside the shipped references)"
    results = json.loads((tmp_path / out / "results.json").read_text())
    assert {r["length"] for r in results["results"]} == {512}  # lstm-ref at its training length, as --help says
