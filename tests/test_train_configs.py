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


# ----------------------------------------------------------------------------- --set KEY=VALUE
RECIPE_MIX = "ffbench/baselines/recipes/transformer-mix.yaml"
# Each argv with the identity digest the hand-declared flags before --set gave for the same settings
# (sha256 of config.identity, first 16 hex; recorded from that code with these old spellings:
# --sharpen entropy --sharpen-coef 0.1 --seed 3 --weight-decay 0.05 --no-bf16 --style llama
# --activation swiglu --temperature 0.5 | --arch ssm --expand 3 --d-conv 2 --mode generative |
# --data-seed 5 --sharpen-start 7 --sharpen-schedule linear --compile).
SAME_CONFIG = [
    (["--arch", "lstm"], "f1910d11c6980dcd"),
    (["--arch", "transformer", "--layers", "2", "--width", "128", "--heads", "4", "--length", "128", "--steps", "3000"],
     "bf534da31d1f9631"),
    (["--arch", "transformer", "--layers", "2", "--positions", "alibi", "--lr", "1e-3", "--train-mix", "0.9,0.98,0.1",
      "--set", "sharpen=entropy", "--set", "sharpen_coef=0.1", "--set", "data_seed=3", "--set", "init_seed=3",
      "--set", "weight_decay=0.05", "--set", "bf16=false", "--set", "model.style=llama",
      "--set", "model.activation=swiglu", "--set", "model.temperature=0.5"], "1199d4f2f0d3710b"),
    (["--set", "model.arch=ssm", "--d-state", "4", "--set", "model.expand=3", "--set", "model.d_conv=2",
      "--set", "mode=generative"], "c94af0fb0c167455"),
    (["--recipe", RECIPE_MIX, "--steps", "10", "--embd-dropout", "0.2", "--set", "data_seed=5",
      "--set", "sharpen_start=7", "--set", "sharpen_schedule=linear", "--set", "compile=true"], "e3d8c790c1139473"),
]


def _config_of(argv, monkeypatch, tmp_path):
    """The TrainConfig ``ffbench train ARGV`` trains with (the trainer itself is not run)."""
    import hashlib
    import json

    from ffbench.train import config, trainer

    seen = []

    def capture(cfg, **kw):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(trainer, "train", capture)
    with pytest.raises(SystemExit):
        main(["train", *argv, "--out", str(tmp_path / "never")])
    return seen[0], hashlib.sha256(json.dumps(config.identity(seen[0]), sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize("argv,digest", SAME_CONFIG)
def test_set_and_the_aliases_give_the_config_identity_of_the_old_flags(argv, digest, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    assert _config_of(argv, monkeypatch, tmp_path)[1] == digest


def test_set_wins_over_an_alias_and_an_alias_over_the_recipe(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    cfg, _ = _config_of(["--recipe", RECIPE_MIX, "--layers", "3", "--set", "model.n_layer=2", "--set", "lr=1e-3",
                         "--set", "betas=0.9,0.95", "--steps", "7"], monkeypatch, tmp_path)
    assert (cfg.model.n_layer, cfg.lr, cfg.betas, cfg.steps) == (2, 1e-3, (0.9, 0.95), 7)


@pytest.mark.parametrize("argv,message", [
    (["--set", "model.n_layr=2"], "--set model.n_layr=2: unknown key 'model.n_layr' (did you mean 'model.n_layer'?)"),
    (["--set", "stesp=5"], "--set stesp=5: unknown key 'stesp' (did you mean 'steps'?)"),
    (["--set", "model.n_layer=two"], "--set model.n_layer=two: model.n_layer must be an integer, got 'two'"),
    (["--set", "lr=fast"], "--set lr=fast: lr must be a number, got 'fast'"),
    (["--set", "bf16=maybe"], "--set bf16=maybe: bf16 must be true or false, got 'maybe'"),
    (["--set", "betas=0.9"], "--set betas=0.9: betas must be two comma-separated numbers, got '0.9'"),
    (["--set", "steps"], "--set 'steps': expected KEY=VALUE, e.g. --set model.n_layer=2"),
    (["--layers", "two"], "--layers two: model.n_layer must be an integer, got 'two'"),
    (["--set", "model.positions=alibii"], ("model.positions must be one of learned, sinusoidal, rope, alibi, none, "
                                          "got 'alibii' (did you mean 'alibi'?)")),
    (["--set", "model.n_layer=0"], "model.n_layer must be at least 1, got 0"),
])
def test_a_bad_set_names_itself_in_one_line_and_exits_2(argv, message, tmp_path, capsys):
    line = _refused(["train", "--arch", "transformer", *argv, "--out", str(tmp_path / "out")], capsys)
    assert line == f"ffbench: error: {message}", line
    assert not (tmp_path / "out").exists()


def test_help_lists_every_settable_key_with_its_default(capsys):
    from dataclasses import fields

    from ffbench.train.config import PAPER_DEFAULTS, ModelConfig, TrainConfig

    try:
        main(["train", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    listed = {}
    text = capsys.readouterr().out
    assert "Settable keys (--set KEY=VALUE" in text
    for line in text.split("Settable keys", 1)[1].splitlines()[1:]:
        if line.strip():
            key, rest = line.strip().split("=", 1)
            listed[key] = rest.split()[1] if len(rest.split()) > 1 else ""
    model, train = ModelConfig(), TrainConfig()
    expected = {f"model.{f.name}": getattr(model, f.name) for f in fields(ModelConfig)}
    expected.update({f.name: getattr(train, f.name) for f in fields(TrainConfig) if f.name != "model"})
    assert set(listed) == set(expected)
    for key in ("model.n_layer", "model.hidden", "steps", "eval_num", "model.positions"):
        assert listed[key] == str(expected[key]), (key, listed[key])
    assert listed["lr"] == "0.0003" and listed["bf16"] == "true" and listed["train_mix"] == "0.8"
    assert PAPER_DEFAULTS["lstm"]["steps"] == 500  # shown beside the default: "10000 (lstm 500, ssm 500)"
