"""Recipes, sweep files and training flags fail cleanly: one line naming the bad value, exit 2, and
nothing created. Through ``ffbench.cli.main`` in-process (no torch is needed to refuse them)."""

from __future__ import annotations

import pytest

from ffbench.cli import main

GOOD_BASE = "base:\n  model: {arch: lstm, hidden: 8}\n  length: 16\n  steps: 2\n"


def _refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ffbench: error: "), err
    return err[0]


@pytest.mark.parametrize("text,message", [
    ("model: {arch: lstm\nsteps: 3\n", "is not valid YAML at line 2, column 6: expected ',' or '}'"),
    ("- a\n- b\n", "must be a YAML mapping of settings, got list"),
    ("model: {arch: lstm, hiden: 8}\n", "model: unknown key 'hiden' (did you mean 'hidden'?)"),
    ("model: {arch: lstm}\nstesp: 5\n", "unknown key 'stesp' (did you mean 'steps'?)"),
    ("model: {arch: lstm}\nzzz: 5\n", "unknown key 'zzz' (known keys: model, length, train_mix, steps,"),
    ("model: {arch: lstm}\nsteps: three\n", "steps must be an integer, got 'three'"),
    ("model: {arch: lstm}\ntrain_mix: 0.8\n", "train_mix must be a non-empty list of numbers, got 0.8"),
    ("model: {arch: lstm}\nbetas: [0.9]\n", "betas must be a list of two numbers, got [0.9]"),
    ("model: {arch: lstm}\nbf16: maybe\n", "bf16 must be true or false, got 'maybe'"),
    ("model: lstm\n", "model must be a mapping of model settings, got 'lstm'"),
    ("model: {arch: lstm}\nsteps: 0\n", "steps must be at least 1, got 0"),
    ("model: {arch: lstm}\nlr: -0.1\n", "lr must be positive, got -0.1"),
    ("model: {arch: lstm}\nlength: 15\n", "length must be an even integer >= 4, got 15"),
    ("model: {arch: lstm}\ntrain_mix: [0.8, 1.5]\n", "each train_mix probability must lie in [0, 1], got 1.5"),
    ("model: {arch: transformer, positions: alibii}\n", "model.positions must be one of learned, sinusoidal, rope, "
                                                        "alibi, none, got 'alibii' (did you mean 'alibi'?)"),
    ("model: {arch: transformer, d_model: 30, n_head: 4}\n", "model.d_model 30 is not divisible by model.n_head 4"),
    ("model: {arch: ssm, d_state: 0}\n", "model.d_state must be at least 1, got 0"),
    ("model: {arch: lstm, embd_dropout: 1.0}\n", "model.embd_dropout must lie in [0, 1), got 1.0"),
    ("model: {arch: lstm}\nsharpen: entropy\nsharpen_coef: 1\n", "sharpening losses (sharpen) need arch transformer"),
])
def test_a_bad_recipe_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    line = _refused(["train", "--recipe", str(recipe), "--out", str(tmp_path / "out")], capsys)
    assert message in line, line
    assert not (tmp_path / "out").exists()


def test_bad_flags_and_a_missing_recipe_are_refused_the_same_way(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert "steps must be at least 1, got 0" in _refused(["train", "--arch", "ssm", "--steps", "0", "--out", out], capsys)
    assert "model.d_model must be at least 1, got 0" in _refused(["train", "--arch", "ssm", "--width", "0", "--out", out],
                                                               capsys)
    assert "model.d_model 512 is not divisible by model.n_head 3" in _refused(
        ["train", "--arch", "transformer", "--heads", "3", "--out", out], capsys)
    assert "cannot read recipe" in _refused(["train", "--recipe", str(tmp_path / "none.yaml"), "--out", out], capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text,message", [
    ("base: {model: {arch: lstm}\n", "is not valid YAML"),
    (GOOD_BASE + "replicate: 3\n", "unknown key 'replicate' (did you mean 'replicates'?)"),
    ("name: x\n", "needs 'base', a mapping of training settings"),
    (GOOD_BASE + "grid: {model.hiden: [8, 16]}\n", "grid: unknown key 'model.hiden' (did you mean 'model.hidden'?)"),
    (GOOD_BASE + "grid: {model.hidden: 16}\n", "grid.model.hidden must be a non-empty list of values, got 16"),
    (GOOD_BASE + "grid: {model.hidden: [8, 0]}\n", "at grid point model.hidden=0: model.hidden must be at least 1"),
    (GOOD_BASE + "grid: {steps: [2, two]}\n", "at grid point steps='two': steps must be an integer, got 'two'"),
    (GOOD_BASE + "replicates: 0\n", "replicates must be an integer >= 1, got 0"),
    (GOOD_BASE + "data_seeds: [0, -1]\n", "data_seeds must be a non-empty list of integers >= 0"),
    (GOOD_BASE + "eval: {suites: [in_dist, sparce]}\n", "eval.suites: unknown suite 'sparce'"),
    (GOOD_BASE + "eval: {suite: [in_dist]}\n", "eval: unknown key 'suite' (did you mean 'suites'?)"),
    (GOOD_BASE + "eval: {length: 7}\n", "eval.length must be an even integer >= 4, got 7"),
    ("base:\n  model: {arch: lstm, hidden: 8}\n  stpes: 2\n", "base: unknown key 'stpes' (did you mean 'steps'?)"),
])
def test_a_bad_sweep_file_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    config = tmp_path / "sweep.yaml"
    config.write_text(text)
    line = _refused(["sweep", str(config), "--out", str(tmp_path / "out")], capsys)
    assert message in line, line
    assert f"sweep config '{config}'" in line
    assert not (tmp_path / "out").exists()


def test_a_bad_suites_override_is_refused_before_the_sweep_starts(tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(GOOD_BASE)
    line = _refused(["sweep", str(config), "--suites", "in_dist,nope", "--out", str(tmp_path / "out")], capsys)
    assert "unknown suite 'nope'" in line and not (tmp_path / "out").exists()


def test_the_shipped_recipes_and_sweep_files_are_valid():
    from ffbench.resources import BASELINES_DIR
    from ffbench.train import config, sweep

    recipes = sorted((BASELINES_DIR / "recipes").glob("*.yaml"))
    assert len(recipes) >= 4
    for path in recipes:
        raw = config.load_yaml(path, "recipe")
        if "base" in raw:
            assert sweep.expand(sweep.load_config(str(path)))
        else:
            config.validate(config.from_mapping(raw, str(path)))


def test_ssm_ref_recipe_is_exactly_the_ssm_defaults():
    from ffbench.resources import BASELINES_DIR
    from ffbench.train import config

    recipe = config.from_mapping(config.load_yaml(BASELINES_DIR / "recipes" / "ssm-ref.yaml", "recipe"), "ssm-ref")
    assert config.identity(recipe) == config.identity(config.paper_config("ssm"))
