"""The gate's paired permutation test for sampled runs (ffbench.paired), against simulation and end to
end through ``ffbench check`` on two runs of the fake server's sampled model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ffbench import paired


def _simulate(rng, sequences=30, reads=6, k=4, shift=0.0):
    """Per-read error probabilities with a strong sequence effect (some sequences are hard for every
    read), K answers per read from each run; the candidate's probabilities raised by ``shift``."""
    hard = rng.random(sequences) < 0.2
    p = np.where(hard[:, None], 0.6, 0.05) * rng.random((sequences, reads)) * 2
    p = np.clip(p, 0, 1)
    cand = rng.binomial(k, np.clip(p + shift, 0, 1)) / k
    base = rng.binomial(k, p) / k
    seq = np.repeat(np.arange(sequences), reads)
    return seq, cand.ravel(), base.ravel()


def test_false_alarms_stay_at_alpha_and_a_worse_model_is_caught():
    rng = np.random.default_rng(0)
    runs = 400
    p_null = [paired.sign_flip_p(paired.sequence_differences(*_simulate(rng)), flips=999) for _ in range(runs)]
    p_worse = [paired.sign_flip_p(paired.sequence_differences(*_simulate(rng, shift=0.1)), flips=999)
               for _ in range(100)]
    false_alarms = np.mean(np.array(p_null) <= 0.05)
    assert false_alarms <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / runs)  # nominal, within sampling error
    assert np.mean(np.array(p_worse) <= 0.05) >= 0.9


def test_exact_enumeration_for_few_sequences():
    assert paired.sign_flip_p(np.array([1.0, 1.0, 1.0])) == pytest.approx(1 / 8)  # only the identity flip ties
    assert paired.sign_flip_p(np.array([1.0, -1.0])) == pytest.approx(3 / 4)
    assert paired.sign_flip_p(np.zeros(5)) == 1.0


@pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai not installed")
def test_check_compares_two_sampled_runs_by_the_paired_permutation_test(tmp_path):
    from ffbench import check, runner
    from ffbench.backends import resolve
    from tests.fault_server import MODEL, FaultServer

    args = {"retry_base": 0.01, "timeout": 5, "concurrency": 1, "echo": False}  # one order: reproducible draws

    def run(name, q, seed):
        with FaultServer(faults=False, sampled=q, sample_seed=seed) as srv:
            cfg = runner.RunConfig(model=f"openai/{MODEL}", model_args=args, lengths=[32], p_ignore=[0.5], num=30,
                                   seed=3, scorings=["greedy"], repeats=3, base_url=srv.url)
            ref = resolve(f"openai/{MODEL}", dict(args), base_url=srv.url, api_key="x", cache_path=None)
            return runner.run(cfg, str(tmp_path / name), ref, progress=False, echo=lambda m: None)

    base, same, worse = run("base", 0.2, 1), run("same", 0.2, 2), run("worse", 0.6, 3)
    ok = check.compare(same, base)
    assert [t.method for t in ok.tests] == ["sign-flip"] and ok.passed
    assert not check.compare(worse, base).passed
    # the registry keeps a sampled cell's figures, and check finds the recorded baseline
    import ffbench
    from ffbench.registry import Registry

    Registry(str(tmp_path / "reg.sqlite")).record(base, "v1", str(tmp_path / "base"))
    recorded = ffbench.load(f"registry:openai/{MODEL}@v1", registry=str(tmp_path / "reg.sqlite"))
    assert recorded.results[0].sampled == base.results[0].sampled and recorded.results[0].variant == "repeats=3"
    # the report renders a run whose samples hold K answers per read
    from ffbench.report import build_report

    html = build_report([str(tmp_path / "worse")], references=[])
    assert "repeats=3" in html
