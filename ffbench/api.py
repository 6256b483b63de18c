"""ffbench as a library: ``ffbench.evaluate(...)`` runs what ``ffbench run`` runs, ``ffbench.load(ref)``
reads a finished run; both return :class:`ffbench.schema.RunResults`, whose ``.cells`` and
``.samples`` are pandas DataFrames::

    import ffbench
    res = ffbench.evaluate("ffbench/transformer-ref", suite="in_dist,dense", num=200)
    res.cells[["suite", "length", "reads", "errors", "glitch_rate", "ci_low", "ci_high"]]
    wrong = res.samples.query("not correct")
    ref = ffbench.load("ffbench/lstm-ref")        # or "runs/x", or "registry:MODEL@REV"

``ffbench.api.preflight(...)`` is ``ffbench run --dry-run``: what a run would send, and cost.
"""

from __future__ import annotations

from ffbench.errors import UsageError
from ffbench.options import RunOptions
from ffbench.schema import RunResults


def _list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)):
        return [value]
    return list(value)


def evaluate(model: str, **options) -> RunResults:
    """Score ``model`` (a ``provider/model`` spec) exactly as ``ffbench run`` does and return the results.

    ``options`` are the fields of :class:`ffbench.options.RunOptions` (the flags of ``ffbench run``,
    by the same names: ``suite``, ``lengths``, ``render``, ``num``, ``per_read``, ``certify``, ...);
    lists may be Python lists or comma-separated strings. The run directory (``output_dir``, default
    ``runs/<provider>_<model name>-<config hash>``) is resumable like the CLI's; nothing is recorded
    in the registry unless ``record=True`` (and never a run that a stopping rule cut short).
    ``stop_at_first_error``, ``certify`` (EPS) and ``max_cost`` (USD, with ``price_in`` /
    ``price_out`` in USD per million tokens) stop the run early (:mod:`ffbench.control`); the
    result's ``stop_reason`` and ``stop_detail`` say why. ``executor="ray"`` scores the shards on
    ``workers`` Ray actors (:mod:`ffbench.executors`), with identical results.
    ``task`` (``ffl`` by default, ``undo``, ``registers``, ``haystack``) picks the language
    (:mod:`ffbench.tasks`); ``registers`` (with ``task="registers"``) the numbers of registers to
    sweep; ``context_tokens`` (with ``task="haystack"``) lengths as token budgets of the model's own
    tokenizer; ``render`` defaults to the task's own rendering (``symbolic`` for ``ffl``).
    """
    return evaluate_options(RunOptions.build(model, "evaluate", **options))


def evaluate_options(opts: RunOptions) -> RunResults:
    """:func:`evaluate` for an options value the caller built (the CLI does)."""
    from ffbench import runner
    from ffbench.control import RunControl

    control = RunControl(stop_at_first_error=bool(opts.stop_at_first_error), certify=opts.certify,
                         max_cost=opts.max_cost, prices=_prices(opts))
    cfg, ref, out = configure(opts)
    results = runner.run(cfg, out, ref, progress=opts.progress, echo=opts.echo or (lambda m: None),
                         rescore=opts.rescore, control=control, executor=opts.executor, workers=opts.workers,
                         ray_address=opts.ray_address)
    if opts.record and results.complete:
        record(results, opts.revision, out, opts.registry, strict=True)
    return results


def preflight(model: str, **options):
    """What :func:`evaluate` with the same arguments would send (``ffbench run --dry-run``): requests,
    prompt tokens, generation budget, longest prompt against the context and cost (prices in USD
    per million tokens), per cell and in total. Loads a tokenizer at most; writes nothing.
    Returns a :class:`ffbench.preflight.Preflight` (``str()`` of it is the printed table)."""
    return preflight_options(RunOptions.build(model, "preflight", **options))


def preflight_options(opts: RunOptions):
    import dataclasses

    from ffbench import runner

    cfg, ref, _ = configure(dataclasses.replace(opts, api_key=None, echo=None), need_key=False)
    return runner.dry_run(cfg, ref, _prices(opts))


def record(results: RunResults, revision: str, run_dir: str, registry: str | None, strict: bool) -> str:
    """The record policy, in one place: only a complete run is recorded (one a stopping rule cut short
    holds only part of its cells). ``strict`` (``ffbench record``, ``evaluate(record=True)``) raises
    when the run cannot be recorded; otherwise (``ffbench run``, whose run is safe on disk anyway)
    the returned line says why it was not. Returns the line to show."""
    from ffbench.errors import FFBenchError
    from ffbench.registry import Registry

    if not results.complete:
        why = f"stopped early ({results.stop_reason}) and holds only part of its cells"
        if strict:
            raise FFBenchError(f"{run_dir!r} {why}; complete it (rerun without the stopping flags) before recording it")
        return f"registry: not recorded: the run {why}; complete it (rerun without the stopping flags) to record it"
    reg = Registry(registry)
    try:
        run_id = reg.record(results, revision, run_dir)
    except FFBenchError as exc:
        if strict:
            raise
        return f"ffbench: warning: run not recorded: {exc}"
    what = f"recorded as #{run_id}" if run_id is not None else "already recorded"
    return f"registry: {what} in {reg.path}" + (f" (revision {revision})" if revision else "")


def check_certified(results: RunResults, opts: RunOptions) -> None:
    """A run asked to ``--certify`` that ended any other way fails (exit 1), its results kept: a CI
    step that must certify cannot pass on an undecided or stopped run."""
    from ffbench.errors import FFBenchError

    if opts.certify is not None and results.stop_reason != "certified":
        raise FFBenchError(f"not certified: {results.stop_detail or results.stop_reason} "
                           f"(the run is kept in {results.label})")


def example_sequence(task, data: str | None, row: int, length: int, p_ignore: float, seed: int,
                     registers_k: int | None = None):
    """The one sequence ``ffbench render`` shows: row ``row`` of a data file, else a fresh draw of
    ``task`` at (``length``, ``p_ignore``, ``seed``). The default length 16 (eight two-character
    instructions) becomes eight register instructions (24) under a three-character task."""
    from ffbench import datafiles

    if data is not None:
        ds = datafiles.read_sequences(data, task=task.name)
        if not 0 <= row < ds.num:
            raise UsageError(f"--row {row} out of range (file has {ds.num} rows)")
        return ds.sequences[row]
    if registers_k is not None and task.default_registers is None:
        raise UsageError(f"--registers applies to --task registers only, not --task {task.name}")
    if task.unit == 3 and length == 16:
        length = 3 * (length // 2)
    return task.sample(task.dist(p_ignore, length, registers_k=registers_k), 1, seed)[0]


def gate(candidate: str, baseline: str | None, max_glitch_rate: float | None = None, alpha: float = 0.05,
         allow_missing_baseline: bool = False, registry: str | None = None, notify=lambda m: None):
    """``ffbench check``'s verdict on ``candidate`` against ``baseline`` and/or a ceiling.

    What each failure means is decided here: a reference that names no run, or runs that share no
    cell, are usage errors (exit 2); a run that cannot be read (a damaged file) or any other failure
    to judge is :class:`~ffbench.errors.CouldNotJudge` (exit 3), never a regression (exit 1). With
    ``allow_missing_baseline`` and a ceiling, a baseline not recorded yet is said (``notify``) and
    only the ceiling applies."""
    from ffbench import check, runs
    from ffbench.errors import CouldNotJudge, Damaged, FFBenchError

    if baseline is None and max_glitch_rate is None:
        raise UsageError("give --baseline, --max-glitch-rate, or both")

    def load(ref: str, **kw):
        try:
            return runs.load(ref, registry, **kw)
        except Damaged as exc:
            raise CouldNotJudge(str(exc)) from None
        except FFBenchError as exc:
            raise UsageError(str(exc)) from None

    try:
        cand = load(candidate)
        base = None
        if baseline:
            try:
                base = load(baseline, comparable_to=cand.keys())
            except UsageError as exc:
                if not (allow_missing_baseline and max_glitch_rate is not None):
                    raise
                notify(f"no baseline yet ({exc}); applying only --max-glitch-rate")
            else:
                if baseline.startswith("registry:"):
                    notify(f"baseline: {base.label} recorded {base.created}")
        verdict = check.compare(cand, base, alpha=alpha, max_glitch_rate=max_glitch_rate)
    except (UsageError, CouldNotJudge):
        raise
    except FFBenchError as exc:  # a failure to judge is never a regression
        raise CouldNotJudge(str(exc)) from None
    if not verdict.tests:
        raise UsageError(f"nothing to compare: no cell of {candidate!r} matches one of {baseline!r} "
                         "(same suite, length, p_ignore, render, scoring and variant)")
    return verdict


def _prices(opts: RunOptions):
    from ffbench.cost import Prices

    return Prices(opts.price_in, opts.price_out, opts.price_cached_in)


def configure(opts: RunOptions, need_key: bool = True):
    """The run config, model reference and run directory of one call (usage errors raised here;
    ``need_key``: a remote model without an API key is one, as a run would send requests)."""
    import os

    from ffbench import model_handle, prompting, runner, tasks
    from ffbench.rundir import RunDir

    chosen = tasks.get(opts.task)  # an unknown task is refused before the model resolves
    render = opts.render if opts.render is not None else chosen.default_render

    model = model_handle.resolve(opts.model, opts.model_args, opts.base_url, opts.api_key,
                                 opts.max_batch_tokens, need_key=need_key)
    template, template_sha = prompting.resolve_chat_template(opts.chat_template)
    model.check_chat_template(template, opts.chat_template)
    reasoning_end = opts.reasoning_end
    if reasoning_end == prompting.DEFAULT_REASONING_END:
        reasoning_end = None  # the default spelled out is the same run
    lengths = [int(x) for x in _list(opts.lengths)]
    budgets = [int(x) for x in _list(opts.context_tokens)] or None
    if budgets:  # --context-tokens: the lengths whose rendering takes that many of the model's tokens
        chosen.requires("context_tokens", "--context-tokens")
        if lengths:
            raise UsageError("give --length or --context-tokens, not both")
        from ffbench import preflight
        from ffbench import render as rnd

        lengths = preflight.lengths_for_tokens(model, rnd.load_template(_list(render)[0]), chosen, budgets,
                                               opts.alphabet)
    if not lengths and (n := model.default_length()):
        lengths = [n]
    cfg = runner.RunConfig(model=model.spec, model_args=model.recorded_args, suites=_list(opts.suite),
                           data=[os.path.abspath(d) for d in _list(opts.data)], lengths=lengths,
                           p_ignore=[float(x) for x in _list(opts.p_ignore)], num=opts.num, seed=opts.seed,
                           renders=_list(render), scorings=_list(opts.scoring), fewshot=opts.fewshot,
                           per_read=opts.per_read, alphabet=opts.alphabet, batch_size=opts.batch_size,
                           base_url=model.recorded_base_url, chat_template=template,
                           chat_template_sha256=template_sha, system_prompt=opts.system_prompt or None,
                           max_new_tokens=opts.max_new_tokens, reasoning_budget=opts.reasoning_budget or None,
                           reasoning_end=reasoning_end,
                           repeats=None if opts.repeats in (None, 1) else int(opts.repeats),
                           temperature=opts.temperature, top_p=opts.top_p, sampling_seed=opts.sampling_seed,
                           task=tasks.config_value(opts.task),
                           registers=[int(k) for k in _list(opts.registers)] or None, context_tokens=budgets)
    out = opts.output_dir or runner.default_output_dir(cfg)
    ref = model.connect(RunDir(out).request_cache, opts.echo)
    return cfg, ref, out


def load(ref: str, registry: str | None = None) -> RunResults:
    """A finished run: a run directory, a shipped reference (``ffbench/lstm-ref``) or ``registry:MODEL[@REV]``."""
    from ffbench import runs

    return runs.load(ref, registry)
