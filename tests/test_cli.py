"""The command line as a user runs it: real subprocesses, exit codes, one-line errors, no debris."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ffbench import datafiles, language


def ffbench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ffbench", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_help_imports_nothing_heavy():
    code = ("import sys; from ffbench.cli import cli\n"
            "for args in (['--help'], ['generate', '--help'], ['render', '--help'], ['run', '--help']):\n"
            "    try: cli.main(args=args, standalone_mode=False)\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('numpy', 'pyarrow', 'torch', 'transformers', 'vllm', 'openai', 'lm_eval') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_generate_custom_and_validate(tmp_path):
    out = tmp_path / "f.jsonl"
    res = ffbench("generate", "--length", 32, "--p-ignore", 0.5, "--num", 100, "--seed", 7, "--out", out)
    assert res.returncode == 0, res.stderr
    ds = datafiles.read_sequences(out)
    assert np.array_equal(ds.sequences, language.sample(language.FFL.from_p_ignore(0.5, 32), 100, 7))
    assert "suite" not in ds.columns
    res = ffbench("validate", out)
    assert res.returncode == 0 and f"sha256 {ds.sha256}" in res.stdout and "100 sequences of length 32" in res.stdout


def test_generate_suite_with_overrides(tmp_path):
    out = tmp_path / "p.parquet"
    res = ffbench("generate", "--suite", "paper", "--num", 10, "--length", 64, "--out", out)
    assert res.returncode == 0, res.stderr
    ds = datafiles.read_sequences(out)
    assert ds.sequences.shape == (30, 64)
    assert ds.columns["suite"] == ["in_dist"] * 10 + ["sparse"] * 10 + ["dense"] * 10
    first = language.SUITES["in_dist"]
    assert np.array_equal(ds.sequences[:10], language.sample(first.distribution(64), 10, first.seed))


def test_generate_explicit_p(tmp_path):
    out = tmp_path / "p.jsonl"
    res = ffbench("generate", "--length", 64, "--p", "0.5,0.5,0", "--num", 50, "--out", out)
    assert res.returncode == 0, res.stderr
    instr = datafiles.read_sequences(out).sequences[:, 0::2]
    assert not (instr == ord("i")).any()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--length", 7, "--num", 3], "length must be an even integer >= 4, got 7"),
        (["--length", 2, "--num", 3], "got 2"),
        (["--p-ignore", 1.5, "--num", 3], "p_ignore must lie in [0, 1], got 1.5"),
        (["--p", "0.5,0.5,0.5", "--num", 3], "must sum to 1"),
        (["--p", "0.5,0.5", "--num", 3], "expected three numbers W,R,I, got '0.5,0.5'"),
        (["--num", 0], "--num"),
        (["--num", -4], "got -4"),
        (["--alphabet", 1, "--num", 3], "alphabet must be between 2 and 10, got 1"),
        (["--suite", "tails"], "unknown suite 'tails'"),
        (["--num", 3, "--render", "x"], "No such option '--render'"),
    ],
)
def test_bad_generate_input_is_one_line_and_leaves_no_file(tmp_path, args, fragment):
    out = tmp_path / "o.parquet"
    res = ffbench("generate", *args, "--out", out)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_output_extension_and_folder(tmp_path):
    res = ffbench("generate", "--num", 3, "--out", tmp_path / "o.csv")
    assert res.returncode != 0 and "unsupported data file extension '.csv'" in res.stderr
    res = ffbench("generate", "--num", 3, "--out", tmp_path / "nowhere" / "o.parquet")
    assert res.returncode != 0 and "does not exist" in res.stderr and len(res.stderr.splitlines()) == 1


def test_validate_illegal_file_names_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "w0r0"}) + "\n" + json.dumps({"text": "r0r0"}) + "\n")
    res = ffbench("validate", bad)
    assert res.returncode == 1
    assert res.stderr.strip() == f"ffbench: error: {bad}: row 1, position 0: the first instruction must be 'w', got 'r'"


def test_render_marks_answers_and_rejects_unknown():
    res = ffbench("render", "--length", 16, "--render", "lightswitch")
    assert res.returncode == 0
    text = res.stdout.splitlines()[-1]
    reads = int(res.stdout.split("rendering 'lightswitch': ")[1].split(" ")[0])
    assert text.count("[ on]") + text.count("[ off]") == reads
    res = ffbench("render", "--render", "klingon")
    assert res.returncode == 1 and "unknown rendering 'klingon'" in res.stderr and len(res.stderr.splitlines()) == 1
    res = ffbench("render", "--list")
    assert "lightswitch" in res.stdout and "chat" in res.stdout


# ----------------------------------------------------------------------------- run: bad input
def _one_line_error(res, fragment):
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0
    assert "Traceback" not in res.stderr and fragment in lines[-1], res.stderr
    assert all(not line.startswith("ffbench: error") for line in lines[:-1])


def test_run_unknown_provider_and_bad_values(tmp_path):
    res = ffbench("run", "--model", "hugging/face", "--output-dir", tmp_path / "r")
    _one_line_error(res, "unknown provider 'hugging' in model spec 'hugging/face' (known: hf, vllm, openai, anthropic, ffbench)")
    res = ffbench("run", "--model", "hf/x", "--render", "klingon", "--output-dir", tmp_path / "r")
    _one_line_error(res, "unknown rendering 'klingon'")
    res = ffbench("run", "--model", "hf/x", "--length", "12,abc", "--output-dir", tmp_path / "r")
    _one_line_error(res, "expected a comma-separated list of lengths, got 'abc'")
    res = ffbench("run", "--model", "hf/x", "--scoring", "vibes", "--output-dir", tmp_path / "r")
    _one_line_error(res, "unknown scoring 'vibes'")
    assert not (tmp_path / "r").exists()


def test_run_unreachable_base_url(tmp_path):
    pytest.importorskip("openai")
    res = ffbench("run", "--model", "openai/m", "--base-url", "http://127.0.0.1:9/v1", "--num", 3,
                  "--output-dir", tmp_path / "r")
    _one_line_error(res, "cannot reach an OpenAI-compatible server at http://127.0.0.1:9/v1")
    assert not (tmp_path / "r").exists()


def test_run_missing_model_and_short_context(tmp_path, short_gpt2):
    res = ffbench("run", "--model", f"hf/{tmp_path}/nope", "--num", 3, "--output-dir", tmp_path / "r")
    _one_line_error(res, "does not exist")
    res = ffbench("run", "--model", f"hf/{short_gpt2}", "--suite", "sparse", "--num", 3, "--output-dir", tmp_path / "r")
    _one_line_error(res, "model context is 48 tokens but sparse at T=512 rendered 'symbolic' needs 512")
    assert not (tmp_path / "r").exists()
