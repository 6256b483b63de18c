"""One option object: ``ffbench run``'s flags, ``ffbench.evaluate``'s keywords and ``RunOptions``'s
fields are the same set of names, so an option cannot be added to one and forgotten in another."""

from __future__ import annotations

import pytest

import ffbench
from ffbench import api, cli
from ffbench.errors import UsageError
from ffbench.options import RunOptions

# The CLI spells some options in its own words, since each takes a comma-separated list.
CLI_NAMES = {"renders": "render", "scorings": "scoring", "registers_k": "registers"}
CLI_ONLY = {"dry_run"}  # a different command, not an option of the run (api.preflight)
API_ONLY = {"echo"}  # a callback; the CLI passes click.echo


def test_the_run_command_and_run_options_name_the_same_options():
    flags = {CLI_NAMES.get(p.name, p.name) for p in cli.run.params} - CLI_ONLY
    assert flags == set(RunOptions.names()) - API_ONLY


def test_an_unknown_keyword_is_refused_in_one_line_naming_it():
    for call in (ffbench.evaluate, api.preflight):
        with pytest.raises(UsageError, match=r"got unknown option\(s\) 'lenghts'; it takes: suite, data, lengths"):
            call("ffbench/transformer-ref", lenghts=[64])


def test_the_dry_run_and_the_run_hash_the_same_config(tmp_path):
    """preflight drops only what cannot change the numbers (the key, the callback), so the dry run
    describes exactly the run that evaluate would start."""
    opts = RunOptions("ffbench/transformer-ref", suite="in_dist", lengths="32,64", num=3, api_key="k",
                      output_dir=str(tmp_path / "r"))
    cfg, _, out = api.configure(opts)
    dry = api.preflight_options(opts)
    assert out == str(tmp_path / "r") and not (tmp_path / "r").exists()  # configuring writes nothing
    assert cfg.lengths == [32, 64] and cfg.suites == ["in_dist"] and cfg.num == 3
    assert [c.sequences for c in dry.cells] == [3, 3] and ["T=32" in c.cell for c in dry.cells] == [True, False]
