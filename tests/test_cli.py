"""The command line as a user runs it: exit codes, one-line errors, no debris.

Bad input is checked in-process through ``ffbench.cli.main(argv)`` (fast, exact exit codes); each
command also has one real subprocess smoke test, because that is how users run it.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from ffbench import datafiles, language
from ffbench.cli import main
from tests.conftest import needs_native, needs_torch


def ffbench(*args, cwd=None):
    """A real subprocess, as a user runs ffbench."""
    return subprocess.run([sys.executable, "-m", "ffbench", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=180)


def run_main(capsys, *args) -> tuple[int, str, str]:
    """``ffbench ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str, fragment: str) -> None:
    """Exactly one error line, last, holding ``fragment``; before it at most a 'loading MODEL ...' note."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and fragment in lines[-1] and lines[-1].startswith("ffbench: "), err
    assert all(line.startswith("loading ") for line in lines[:-1]), err


def test_help_imports_nothing_heavy():
    code = ("import sys; from ffbench.cli import cli\n"
            "for args in (['--help'], ['generate', '--help'], ['render', '--help'], ['run', '--help']):\n"
            "    try: cli.main(args=args, standalone_mode=False)\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('numpy', 'pyarrow', 'torch', 'transformers', 'vllm', 'openai', 'lm_eval', 'pandas')"
            " if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


# ----------------------------------------------------------------------------- one smoke test per command
def test_generate_and_validate_as_a_user_runs_them(tmp_path):
    out = tmp_path / "f.jsonl"
    res = ffbench("generate", "--length", 32, "--p-ignore", 0.5, "--num", 100, "--seed", 7, "--out", out)
    assert res.returncode == 0, res.stderr
    ds = datafiles.read_sequences(out)
    assert np.array_equal(ds.sequences, language.sample(language.FFL.from_p_ignore(0.5, 32), 100, 7))
    assert "suite" not in ds.columns
    res = ffbench("validate", out)
    assert res.returncode == 0 and f"sha256 {ds.sha256}" in res.stdout and "100 sequences of length 32" in res.stdout


def test_render_as_a_user_runs_it():
    """The default example (FFL(0.5), T=16, seed 0) as the paper's light-switch sentences: every
    read marked with the last written bit, checked against the sequence itself."""
    import re

    res = ffbench("render", "--length", 16, "--render", "lightswitch")
    assert res.returncode == 0, res.stderr
    seq = language.to_strings(language.sample(language.FFL.from_p_ignore(0.5, 16), 1, 0))[0]
    expected, bit = [], None
    for op, value in zip(seq[0::2], seq[1::2]):
        bit = value if op == "w" else bit
        if op == "r":
            expected.append({"0": "off", "1": "on"}[bit])
    assert res.stdout.splitlines()[0] == f"# sequence: {seq}"
    assert f"rendering 'lightswitch': {len(expected)} scored reads" in res.stdout
    text = res.stdout.splitlines()[-1]
    assert re.findall(r"\[ (on|off)\]", text) == expected and len(expected) >= 2
    assert text.count("Alice turns the light") == seq[0::2].count("w")
    assert text.endswith(f"The light is turned[ {expected[-1]}].")


def test_generate_suite_with_overrides(tmp_path, capsys):
    out = tmp_path / "p.parquet"
    code, _, err = run_main(capsys, "generate", "--suite", "paper", "--num", 10, "--length", 64, "--out", out)
    assert code == 0, err
    ds = datafiles.read_sequences(out)
    assert ds.sequences.shape == (30, 64)
    assert ds.columns["suite"] == ["in_dist"] * 10 + ["sparse"] * 10 + ["dense"] * 10
    first = language.SUITES["in_dist"]
    assert np.array_equal(ds.sequences[:10], language.sample(first.distribution(64), 10, first.seed))


def test_generate_explicit_p(tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    code, _, err = run_main(capsys, "generate", "--length", 64, "--p", "0.5,0.5,0", "--num", 50, "--out", out)
    assert code == 0, err
    instr = datafiles.read_sequences(out).sequences[:, 0::2]
    assert not (instr == ord("i")).any()


# ----------------------------------------------------------------------------- usage errors: exit 2
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--length", 7, "--num", 3], "length must be an even integer >= 4, got 7"),
        (["--length", 2, "--num", 3], "got 2"),
        (["--p-ignore", 1.5, "--num", 3], "p_ignore must lie in [0, 1], got 1.5"),
        (["--p", "0.5,0.5,0.5", "--num", 3], "must sum to 1"),
        (["--p", "0.5,0.5", "--num", 3], "expected three numbers W,R,I, got '0.5,0.5'"),
        (["--num", 0], "--num"),
        (["--num", -4], "-4 is not in the range x>=1"),
        (["--seed", -1, "--num", 3], "-1 is not in the range x>=0"),
        (["--alphabet", 1, "--num", 3], "alphabet must be between 2 and 10, got 1"),
        (["--suite", "tails"], "unknown suite 'tails'"),
        (["--num", 3, "--render", "x"], "No such option '--render'"),
    ],
)
def test_bad_generate_input_is_one_line_exit_2_and_leaves_no_file(tmp_path, capsys, args, fragment):
    code, _, err = run_main(capsys, "generate", *args, "--out", tmp_path / "o.parquet")
    assert code == 2
    one_line(err, fragment)
    assert list(tmp_path.iterdir()) == []


def test_bad_output_extension_and_folder(tmp_path, capsys):
    code, _, err = run_main(capsys, "generate", "--num", 3, "--out", tmp_path / "o.csv")
    assert code == 2
    one_line(err, "unsupported data file extension '.csv'")
    code, _, err = run_main(capsys, "generate", "--num", 3, "--out", tmp_path / "nowhere" / "o.parquet")
    assert code == 2
    one_line(err, "does not exist")


def test_validate_illegal_file_names_row_and_alphabet_matches_run(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "w0r0"}) + "\n" + json.dumps({"text": "r0r0"}) + "\n")
    code, _, err = run_main(capsys, "validate", bad)
    assert code == 2
    assert err.strip() == f"ffbench: error: {bad}: row 1, position 0: the first instruction must be 'w', got 'r'"
    # validate's default alphabet is run's (2): a file run would reject is rejected here too
    digits = tmp_path / "digits.jsonl"
    digits.write_text(json.dumps({"text": "w5i0r5"}) + "\n")
    code, _, err = run_main(capsys, "validate", digits)
    assert code == 2
    one_line(err, "data symbol must be a digit in 0..1, got '5'")
    code, out, _ = run_main(capsys, "validate", digits, "--alphabet", 10)
    assert code == 0 and "1 sequence" in out


def test_render_unknown_is_exit_2(capsys):
    code, _, err = run_main(capsys, "render", "--render", "klingon")
    assert code == 2
    one_line(err, "unknown rendering 'klingon'")
    code, out, _ = run_main(capsys, "render", "--list")
    assert code == 0 and "lightswitch" in out and "chat" in out


NATIVE = "ffbench/transformer-ref"


def _native(args, fragment):
    """A case whose error is found once the ffbench/ provider is resolved (it needs torch installed)."""
    return pytest.param(args, fragment, marks=needs_native)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--model", "hugging/face"], "unknown provider 'hugging' in model spec 'hugging/face' (known: hf, vllm, "
                                      "openai, anthropic, ffbench)"),
        (["--model", "gpt2"], "model spec 'gpt2' must look like provider/model"),
        _native(["--model", NATIVE, "--render", "klingon"], "unknown rendering 'klingon'"),
        (["--model", NATIVE, "--length", "12,abc"], "expected a comma-separated list of lengths"),
        _native(["--model", NATIVE, "--length", 7], "length must be an even integer >= 4, got 7"),
        _native(["--model", NATIVE, "--p-ignore", 1.5], "p_ignore must lie in [0, 1], got 1.5"),
        _native(["--model", NATIVE, "--scoring", "vibes"], "unknown scoring 'vibes'"),
        (["--model", NATIVE, "--seed", -1], "-1 is not in the range x>=0"),
        (["--model", NATIVE, "--num", 0], "0 is not in the range x>=1"),
        _native(["--model", NATIVE, "--suite", "tails"], "unknown suite 'tails'"),
        _native(["--model", NATIVE, "--model-arg", "device=cuda"], "device 'cuda' requested but"),
        _native(["--model", NATIVE, "--render", "lightswitch"], "ffbench/ models read the symbolic rendering only"),
        (["--model", "ffbench/no-such-model"], "no ffbench checkpoint 'no-such-model'"),
        (["--model", NATIVE, "--model-arg", "dtype"], "--model-arg must be key=value"),
        (["--model", "openai/m", "--model-arg", "api=chat"], "gives no log-probabilities of answers"),
        _native(["--model", NATIVE, "--data", "no-such-file.parquet"], "does not exist"),
        pytest.param(["--model", "hf/./no/such/dir"], "model path './no/such/dir' does not exist", marks=needs_torch),
    ],
)
def test_bad_run_input_is_one_line_exit_2_before_anything_loads(tmp_path, capsys, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "run", *args, "--output-dir", tmp_path / "r", "--no-record")
    assert code == 2
    one_line(err, fragment)
    assert not (tmp_path / "r").exists()


@needs_native
def test_num_beyond_a_data_file_is_refused_and_within_it_takes_the_first_rows(tmp_path, capsys):
    data = tmp_path / "f.jsonl"
    run_main(capsys, "generate", "--length", 128, "--num", 10, "--out", data)
    code, _, err = run_main(capsys, "run", "--model", "ffbench/transformer-ref", "--data", data, "--num", 11,
                            "--output-dir", tmp_path / "r", "--no-record")
    assert code == 2
    one_line(err, "--num 11 exceeds the 10 sequences of")
    code, out, err = run_main(capsys, "run", "--model", "ffbench/transformer-ref", "--data", data, "--num", 4,
                              "--output-dir", tmp_path / "r", "--no-record")
    assert code == 0, err
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["results"][0]["num_sequences"] == 4
    first4 = language.sample(language.FFL.from_p_ignore(0.8, 128), 4, 0)
    assert res["results"][0]["data_sha256"] == datafiles.content_sha256(first4)


@needs_native
def test_template_errors_are_usage_errors(tmp_path, capsys):
    same = tmp_path / "same.yaml"
    same.write_text('write: "w{value}"\nignore: "i{value}"\nread: "r{answer}"\nanswers: ["x", "x"]\n')
    code, _, err = run_main(capsys, "run", "--model", "ffbench/transformer-ref", "--render", same,
                            "--output-dir", tmp_path / "r", "--no-record")
    assert code == 2
    one_line(err, "the answers must be different strings, got ['x', 'x']")
    typo = tmp_path / "typo.yaml"
    typo.write_text('write: "w{val}"\nignore: "i{value}"\nread: "r{answer}"\nanswers: "{value}"\n')
    code, _, err = run_main(capsys, "render", "--render", typo)
    assert code == 2
    one_line(err, "field 'write' has an unknown or malformed placeholder ('val')")
    assert not (tmp_path / "r").exists()


def test_run_unreachable_base_url_is_a_runtime_error(tmp_path, capsys):
    pytest.importorskip("openai")
    code, _, err = run_main(capsys, "run", "--model", "openai/m", "--base-url", "http://127.0.0.1:9/v1", "--num", 3,
                            "--scoring", "greedy", "--output-dir", tmp_path / "r", "--no-record")
    assert code == 1
    one_line(err, "cannot reach an OpenAI-compatible server at http://127.0.0.1:9/v1")
    assert not (tmp_path / "r").exists()


def test_run_missing_model_and_short_context(tmp_path, capsys, short_gpt2):
    code, _, err = run_main(capsys, "run", "--model", f"hf/{tmp_path}/nope", "--num", 3, "--output-dir", tmp_path / "r")
    assert code == 2
    one_line(err, "does not exist")
    code, _, err = run_main(capsys, "run", "--model", f"hf/{short_gpt2}", "--suite", "sparse", "--num", 3,
                            "--output-dir", tmp_path / "r", "--no-record")
    assert code == 2
    one_line(err, "model context is 48 tokens but sparse at T=512 rendered 'symbolic' needs 512")
    assert not (tmp_path / "r").exists()


def test_report_out_directory_is_exit_2(tmp_path, capsys):
    code, _, err = run_main(capsys, "report", "ffbench/transformer-ref", "--no-refs", "--out", tmp_path)
    assert code == 2
    one_line(err, "is a directory; give a file name")


@needs_native
def test_memory_preflight_refuses_what_cannot_fit(tmp_path, capsys):
    """T = 10 million on the reference Transformer: refused before loading, with the figure."""
    code, _, err = run_main(capsys, "run", "--model", "ffbench/transformer-ref", "--length", 10_000_000, "--num", 1,
                            "--suite", "in_dist", "--output-dir", tmp_path / "r", "--no-record")
    assert code == 2
    one_line(err, "one sequence of 10,000,000 tokens (in_dist T=10000000) needs about")
    assert "available: use a shorter --length" in err
    assert not (tmp_path / "r").exists()
