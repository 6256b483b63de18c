"""ffbench as a library: ``ffbench.evaluate(...)`` runs what ``ffbench run`` runs, ``ffbench.load(ref)``
reads a finished run; both return :class:`ffbench.schema.RunResults`, whose ``.cells`` and
``.samples`` are pandas DataFrames::

    import ffbench
    res = ffbench.evaluate("ffbench/transformer-ref", suite="in_dist,dense", num=200)
    res.cells[["suite", "length", "reads", "errors", "glitch_rate", "ci_low", "ci_high"]]
    wrong = res.samples.query("not correct")
    ref = ffbench.load("ffbench/lstm-ref")        # or "runs/x", or "registry:MODEL@REV"
"""

from __future__ import annotations

from ffbench.schema import RunResults


def _list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)):
        return [value]
    return list(value)


def evaluate(model: str, suite=None, data=None, lengths=None, p_ignore=None, num: int | None = None,
             seed: int | None = None, render="symbolic", scoring="choice", fewshot: bool = False,
             per_read: bool = False, model_args: dict | None = None, alphabet: int = 2, batch_size: int | None = None,
             max_batch_tokens: int | None = None, output_dir: str | None = None, base_url: str | None = None,
             api_key: str | None = None, progress: bool = False, rescore: bool = False, record: bool = False,
             revision: str = "", registry: str | None = None, echo=None, executor: str = "local",
             workers: int | None = None, ray_address: str | None = None, stop_at_first_error: bool = False,
             certify: float | None = None, max_cost: float | None = None, price_in: float | None = None,
             price_out: float | None = None) -> RunResults:
    """Score ``model`` (a ``provider/model`` spec) exactly as ``ffbench run`` does and return the results.

    Lists may be given as Python lists or comma-separated strings. The run directory
    (``output_dir``, default ``runs/<model>-<config hash>``) is resumable like the CLI's; nothing is
    recorded in the registry unless ``record=True`` (and never a run that a stopping rule cut short).
    ``stop_at_first_error``, ``certify`` (EPS) and ``max_cost`` (USD, with ``price_in`` / ``price_out``
    in USD per million tokens) stop the run early (:mod:`ffbench.control`); the result's
    ``stop_reason`` and ``stop_detail`` say why.
    """
    import os

    from ffbench import backends, runner
    from ffbench.control import RunControl
    from ffbench.cost import Prices
    from ffbench.errors import UsageError

    control = RunControl(stop_at_first_error=bool(stop_at_first_error), certify=certify, max_cost=max_cost,
                         prices=Prices(price_in, price_out))
    ref = backends.resolve(model, dict(model_args or {}))
    if max_batch_tokens:
        if ref.provider not in ("hf", "ffbench"):
            raise UsageError(f"--max-batch-tokens applies to hf/ and ffbench/ models, not {ref.provider}/")
        ref.args["max_batch_tokens"] = max_batch_tokens
    lengths = [int(x) for x in _list(lengths)]
    if ref.provider == "ffbench" and not lengths:
        from ffbench.backends.native import training_length

        lengths = [n] if (n := training_length(ref.name)) else []
    remote = ref.cls.connection_env
    if remote:
        base_url = base_url or os.environ.get(remote.get("base_url", ""))
        api_key = api_key or os.environ.get(remote.get("api_key", ""))
    cfg = runner.RunConfig(model=ref.spec, model_args=backends.public_args(ref.args), suites=_list(suite),
                           data=[os.path.abspath(d) for d in _list(data)], lengths=lengths,
                           p_ignore=[float(x) for x in _list(p_ignore)], num=num, seed=seed, renders=_list(render),
                           scorings=_list(scoring), fewshot=fewshot, per_read=per_read, alphabet=alphabet,
                           batch_size=batch_size, base_url=base_url if remote else None)
    out = output_dir or runner.default_output_dir(cfg)
    if remote:
        from ffbench.rundir import RunDir

        ref.options = {"base_url": base_url, "api_key": api_key, "cache_path": str(RunDir(out).request_cache),
                       "notify": echo or (lambda m: None)}
    results = runner.run(cfg, out, ref, progress=progress, echo=echo or (lambda m: None), rescore=rescore,
                         control=control, executor=executor, workers=workers, ray_address=ray_address)
    if record and results.complete:
        from ffbench.registry import Registry

        Registry(registry).record(results, revision, out)
    return results


def load(ref: str, registry: str | None = None) -> RunResults:
    """A finished run: a run directory, a shipped reference (``ffbench/lstm-ref``) or ``registry:MODEL[@REV]``."""
    from ffbench import runs

    return runs.load(ref, registry)
