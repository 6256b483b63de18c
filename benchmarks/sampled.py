"""Coverage of the sampled-read interval (``ffbench run --repeats K``, issue 27).

Each simulated run is a real ``ffbench run`` against the fake OpenAI-compatible server's sampled
model (``tests/fault_server.py``, ``sampled=Q``): every read has its own known probability of a
wrong answer (between 0 and Q from the prompt's hash; a prompt the server always garbles counts
as 1), and each request draws its answer at random. Runs differ in their data seed (new
sequences) and the server's random seed (new answers).

The target is the population mean per-read error probability of the cell's distribution (the
ratio of expected summed probabilities to expected reads per sequence), computed from the known
probabilities of ``--truth-sequences`` fresh sequences, no server needed. Printed: how often the
95% cluster-robust interval covers it (with an exact interval for that rate), and how often it
covers the mean over the run's own reads (conditional on the sequences drawn).

    python benchmarks/sampled.py --runs 200 --num 25 --repeats 4
    python benchmarks/sampled.py --offline --runs 400 --num 10   # no server: the shipped interval
                                                                 # beside a percentile cluster bootstrap
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ffbench import language, metrics, render, runner, sampling  # noqa: E402
from ffbench.backends import resolve  # noqa: E402
from tests.fault_server import MODEL, FaultServer, garbage  # noqa: E402

ARGS = {"retry_base": 0.01, "timeout": 5, "concurrency": 4, "echo": False}


def read_probabilities(srv: FaultServer, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per read of the symbolic rendering: its sequence and its known error probability."""
    template = render.load_template("symbolic")
    seqs, probs = [], []
    for i, seq in enumerate(arr):
        out = render.render(seq, template)
        for k in range(len(out.targets)):
            prompt = out.prompt(k) + template.ask
            seqs.append(i)
            probs.append(1.0 if garbage(prompt) else srv.error_probability(prompt))
    return np.array(seqs), np.array(probs)


def percentile_bootstrap(seq: np.ndarray, share: np.ndarray, rng, resamples: int = 1000) -> tuple[float, float]:
    """The percentile cluster bootstrap over sequences (the first version's interval), for comparison."""
    _, inverse = np.unique(seq, return_inverse=True)
    sums, counts = np.bincount(inverse, weights=share), np.bincount(inverse).astype(float)
    draw = rng.integers(0, sums.size, size=(resamples, sums.size))
    stats = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    lo, hi = np.quantile(stats, [0.025, 0.975])
    return float(lo), float(hi)


def offline(a, srv: FaultServer, dist, truth: float) -> None:
    """The same process without HTTP: answers drawn here from the known probabilities."""
    rng = np.random.default_rng(5)
    hits = {"cluster-robust CR1-t (shipped)": 0, "percentile cluster bootstrap": 0}
    for r in range(a.runs):
        seq, p = read_probabilities(srv, language.sample(dist, a.num, r + 1))
        share = rng.binomial(a.repeats, p) / a.repeats
        for name, (lo, hi) in (("cluster-robust CR1-t (shipped)", sampling.cluster_interval(seq, share)),
                               ("percentile cluster bootstrap", percentile_bootstrap(seq, share, rng))):
            hits[name] += lo <= truth <= hi
    for name, n in hits.items():
        print(f"offline, {a.runs} runs of {a.num} sequences: {name} covers {n / a.runs:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--num", type=int, default=25, help="sequences per run")
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--p-ignore", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--max-probability", type=float, default=0.3, help="Q: per-read probabilities in [0, Q]")
    ap.add_argument("--truth-sequences", type=int, default=50_000)
    ap.add_argument("--offline", action="store_true", help="simulate the answers here, compare two intervals")
    a = ap.parse_args()

    dist = language.FFL.from_p_ignore(a.p_ignore, a.length)
    covered = covered_own = 0
    widths = []
    start = time.time()
    with FaultServer(faults=False, sampled=a.max_probability) as probe:
        _, truth_p = read_probabilities(probe, language.sample(dist, a.truth_sequences, 10_000_019))
    truth = float(truth_p.mean())
    if a.offline:
        with FaultServer(faults=False, sampled=a.max_probability) as probe:
            offline(a, probe, dist, truth)
        return
    for r in range(a.runs):
        with FaultServer(faults=False, sampled=a.max_probability, sample_seed=r) as srv, \
                tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "run")
            cfg = runner.RunConfig(model=f"openai/{MODEL}", model_args=ARGS, lengths=[a.length],
                                   p_ignore=[a.p_ignore], num=a.num, seed=r + 1, scorings=["greedy"],
                                   repeats=a.repeats, base_url=srv.url)
            ref = resolve(f"openai/{MODEL}", dict(ARGS), base_url=srv.url, api_key="x", cache_path=None)
            cell = runner.run(cfg, out, ref, progress=False, echo=lambda m: None).results[0]
            _, own = read_probabilities(srv, language.sample(dist, a.num, r + 1))
        lo, hi = cell.sampled["ci95"]
        covered += lo <= truth <= hi
        covered_own += lo <= own.mean() <= hi
        widths.append(hi - lo)
    n = a.runs
    clo, chi = metrics.clopper_pearson(covered, n)
    print(f"{n} runs of {a.num} sequences (FFL({a.p_ignore}), T={a.length}), {a.repeats} answers per read, "
          f"per-read error probabilities in [0, {a.max_probability}] (garbled prompts: 1)")
    print(f"population mean per-read error probability: {truth:.4f} (from {a.truth_sequences:,} sequences)")
    print(f"coverage of the population mean: {covered / n:.3f} (exact 95% [{clo:.3f}, {chi:.3f}]); nominal 0.95")
    print(f"coverage of the mean over each run's own reads: {covered_own / n:.3f}")
    print(f"median interval width: {np.median(widths):.4f}; {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
