"""``ffbench export dataset``: the folder loads with the consumer's own library (``datasets``, offline)
with exactly the rows ffbench generates, per config and split; the card's digests are the files'."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from ffbench import language, sources, stress
from tests.conftest import cli_exit

needs_datasets = pytest.mark.skipif(importlib.util.find_spec("datasets") is None,
                                    reason="the Hugging Face datasets library is not installed")


def _cli(args) -> int:
    return cli_exit(args)


def _card(folder) -> dict:
    return yaml.safe_load((folder / "README.md").read_text().split("---", 2)[1])


LOAD = """
import json, sys, datasets
folder, configs = sys.argv[1], json.loads(sys.argv[2])
out = {}
for name in configs:
    ds = datasets.load_dataset(folder, name)
    out[name] = {split: ds[split].to_list() for split in ds}
print(json.dumps(out))
"""


def _load_offline(folder, configs: list[str], tmp_path) -> dict:
    """Each config as ``datasets.load_dataset`` reads it, in a process with the network switched off."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", LOAD, str(folder), json.dumps(configs)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_datasets
def test_suites_and_stress_load_offline_with_exactly_ffbenchs_rows(tmp_path):
    out = tmp_path / "ds"
    assert _cli(["export", "dataset", "--suite", "paper,stress", "--length", "16,24", "--num", 7, "--out", out]) == 0
    card = _card(out)
    names = [c["config_name"] for c in card["configs"]]
    from huggingface_hub import DatasetCard  # the Hub's own reader of the card

    assert [c["config_name"] for c in DatasetCard.load(out / "README.md").data.to_dict()["configs"]] == names
    assert names == ["in_dist_T16", "in_dist_T24", "sparse_T16", "sparse_T24", "dense_T16", "dense_T24",
                     "stress_T16", "stress_T24"]
    loaded = _load_offline(out, names, tmp_path)
    for name in names:
        assert list(loaded[name]) == ["test"]
        rows = loaded[name]["test"]
        meta = card["ffbench"]["configs"][name]
        if meta["kind"] == "suite":  # the suite's own sequences: FFL(p) from its fixed seed
            suite = language.SUITES[meta["suite"]]
            expected = language.to_strings(language.sample(suite.distribution(meta["length"]), 7, suite.seed))
            assert [r["text"] for r in rows] == expected and {r["suite"] for r in rows} == {suite.name}
        else:  # every point of the stress grid, 7 per point, with its family, point and parameters
            arr, columns = stress.sample_suite(meta["length"], stress.STRESS_SEED, 7)
            assert [r["text"] for r in rows] == language.to_strings(arr)
            for col in stress.COLUMNS:
                assert [r[col] for r in rows] == columns[col], col
            assert meta["points"] == len(stress.grid(meta["length"], num=7)) and len(rows) == 7 * meta["points"]
        assert meta["rows"] == len(rows)
        path = out / meta["path"]
        assert meta["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert meta["content_sha256"] == hashlib.sha256("".join(r["text"] + "\n" for r in rows).encode()).hexdigest()
        assert meta["file_sha256"] in (out / "README.md").read_text().split("---", 2)[2]  # and in the prose


def test_an_exported_suite_file_is_recognised_as_the_preset_by_ffbench_run(tmp_path):
    out = tmp_path / "ds"
    assert _cli(["export", "dataset", "--suite", "sparse", "--length", "32", "--num", 5, "--out", out]) == 0
    (spec,) = sources.plan_sources([], [str(out / "data/sparse_T32/test.parquet")], [], [], None, None)
    assert (spec.kind, spec.label, spec.p_ignore, spec.seed, spec.num) == ("suite", "sparse", 0.98, 2000, 5)


@needs_datasets
@pytest.mark.parametrize("task, flags, names", [
    ("undo", [], ["undo_in_dist_T24", "undo_sparse_T24", "undo_dense_T24", "undo_retraction_T24"]),
    ("registers", ["--registers", 3], ["registers_in_dist_K3_T24", "registers_sparse_K3_T24",
                                         "registers_dense_K3_T24", "registers_stale_K3_T24"]),
])
def test_a_tasks_presets_export_as_ffbench_generate_writes_them_and_run_recognises_them(tmp_path, task, flags, names):
    """--task: each preset of the group and each structured family is one config holding exactly the
    rows of ``ffbench generate --task`` (compared file to file), and ``ffbench run --task --data`` on
    an exported file plans the preset's own cell (the same source as ``--suite``)."""
    out = tmp_path / "ds"
    extra = "stale" if task == "registers" else "retraction"
    assert _cli(["export", "dataset", "--task", task, *flags, "--suite", f"paper,{extra}", "--length", 24,
                 "--num", 4, "--out", out]) == 0
    card = _card(out)
    assert [c["config_name"] for c in card["configs"]] == names
    loaded = _load_offline(out, names, tmp_path)
    for name in names:
        meta = card["ffbench"]["configs"][name]
        generated = tmp_path / f"{name}.parquet"
        assert _cli(["generate", "--task", task, *flags, "--suite", meta["suite"], "--length", 24, "--num", 4,
                     "--out", generated]) == 0
        assert [r["text"] for r in loaded[name]["test"]] == pq.read_table(generated).column("text").to_pylist()
        assert meta["rows"] == len(loaded[name]["test"]) and meta["task"] == task
        (spec,) = sources.plan_sources([], [str(out / meta["path"])], [], [], None, None, task=task,
                                       registers_k=[3] if task == "registers" else None)
        (preset,) = sources.plan_sources([meta["suite"]], [], [24], [], 4, None, task=task,
                                         registers_k=[3] if task == "registers" else None)
        assert {key: v for key, v in spec.as_dict().items() if key not in ("path", "part")} == preset.as_dict()
    assert _cli(["export", "dataset", "--task", "undo", "--suite", "stress", "--out", tmp_path / "x"]) == 2
    assert _cli(["export", "dataset", "--registers", 3, "--suite", "in_dist", "--out", tmp_path / "y"]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@needs_datasets
def test_a_hunts_glitches_export_with_every_column(tmp_path):
    from tests.test_hunt import _hunt

    _hunt(tmp_path, "hunt", budget=600)
    glitches = pq.read_table(tmp_path / "hunt" / "glitches.parquet")
    assert glitches.num_rows > 0
    out = tmp_path / "ds"
    assert _cli(["export", "dataset", "--hunt", tmp_path / "hunt", "--out", out]) == 0
    meta = _card(out)["ffbench"]["configs"]["hunt_T32"]
    assert meta["model"] == "ffbench/transformer-ref" and meta["rows"] == glitches.num_rows
    rows = _load_offline(out, ["hunt_T32"], tmp_path)["hunt_T32"]["test"]
    assert rows == glitches.to_pylist()


def test_usage_errors_write_nothing(tmp_path, capsys):
    assert _cli(["export", "dataset", "--out", tmp_path / "a"]) == 2
    assert _cli(["export", "dataset", "--suite", "nope", "--out", tmp_path / "a"]) == 2
    assert _cli(["export", "dataset", "--hunt", tmp_path, "--out", tmp_path / "a"]) == 2
    assert "nothing to export" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    assert _cli(["export", "dataset", "--suite", "dense", "-T", 16, "-n", 2, "--out", tmp_path / "full"]) == 2
    assert (tmp_path / "full" / "x").read_text() == "mine" and len(list((tmp_path / "full").iterdir())) == 1


def test_a_hunt_without_glitches_is_named_as_such(tmp_path, capsys):
    from tests.test_hunt import WriteDistanceModel, _hunt

    _hunt(tmp_path, "clean", budget=200, model=WriteDistanceModel(k=10_000))  # never wrong
    assert not (tmp_path / "clean" / "glitches.parquet").exists()
    assert _cli(["export", "dataset", "--hunt", tmp_path / "clean", "--out", tmp_path / "ds"]) == 2
    assert "found no glitches" in capsys.readouterr().err and not (tmp_path / "ds").exists()


def test_export_without_a_subcommand_still_exports_a_checkpoint(capsys):
    assert _cli(["export", "/no/such/checkpoint", "--out", "/tmp/never"]) in (1, 2)
    err = capsys.readouterr().err
    assert err.startswith("ffbench: error:") and "/no/such/checkpoint" in err and "No such command" not in err
