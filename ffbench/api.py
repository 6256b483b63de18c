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

from ffbench.schema import RunResults
from ffbench.errors import UsageError


def _list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)):
        return [value]
    return list(value)


def evaluate(model: str, suite=None, data=None, lengths=None, p_ignore=None, num: int | None = None,
             seed: int | None = None, render=None, scoring="choice", fewshot: bool = False,
             per_read: bool = False, model_args: dict | None = None, alphabet: int = 2, batch_size: int | None = None,
             max_batch_tokens: int | None = None, output_dir: str | None = None, base_url: str | None = None,
             api_key: str | None = None, progress: bool = False, rescore: bool = False, record: bool = False,
             revision: str = "", registry: str | None = None, echo=None, chat_template: str | None = None,
             system_prompt: str | None = None, max_new_tokens: int | None = None,
             reasoning_budget: int | None = None, reasoning_end: str | None = None, executor: str = "local",
             workers: int | None = None, ray_address: str | None = None, stop_at_first_error: bool = False,
             certify: float | None = None, max_cost: float | None = None, price_in: float | None = None,
             price_out: float | None = None, repeats: int | None = None, temperature: float | None = None,
             top_p: float | None = None, sampling_seed: int | None = None,
             price_cached_in: float | None = None, task: str | None = None, registers=None,
             context_tokens=None) -> RunResults:
    """Score ``model`` (a ``provider/model`` spec) exactly as ``ffbench run`` does and return the results.

    Lists may be given as Python lists or comma-separated strings. The run directory (``output_dir``,
    default ``runs/<provider>_<model name>-<config hash>``) is resumable like the CLI's; nothing is
    recorded in the registry unless ``record=True`` (and never a run that a stopping rule cut short).
    ``chat_template`` (auto, none or a Jinja file), ``system_prompt``, ``max_new_tokens``,
    ``reasoning_budget`` and ``reasoning_end`` are the run flags of the same names
    (:mod:`ffbench.prompting`). ``stop_at_first_error``, ``certify`` (EPS) and ``max_cost`` (USD, with
    ``price_in`` / ``price_out`` in USD per million tokens) stop the run early (:mod:`ffbench.control`);
    the result's ``stop_reason`` and ``stop_detail`` say why. ``executor="ray"`` scores the shards on
    ``workers`` Ray actors (:mod:`ffbench.executors`), with identical results. ``repeats``,
    ``temperature``, ``top_p`` and ``sampling_seed`` sample greedy reads (:mod:`ffbench.sampling`).
    ``task`` (``ffl`` by default, ``undo``, ``registers``) picks the language (:mod:`ffbench.tasks`);
    ``registers`` (with ``task="registers"``) the numbers of registers to sweep; ``context_tokens``
    (with ``task="haystack"``) lengths as token budgets of the model's own tokenizer; ``render`` defaults to
    the task's own rendering (``symbolic``, ``symbolic_undo``, ``symbolic_registers``).
    """
    from ffbench import runner
    from ffbench.control import RunControl
    from ffbench.cost import Prices

    control = RunControl(stop_at_first_error=bool(stop_at_first_error), certify=certify, max_cost=max_cost,
                         prices=Prices(price_in, price_out, price_cached_in))
    cfg, ref, out = _configure(model, suite, data, lengths, p_ignore, num, seed, render, scoring, fewshot, per_read,
                               model_args, alphabet, batch_size, max_batch_tokens, output_dir, base_url, api_key,
                               chat_template, system_prompt, max_new_tokens, reasoning_budget, reasoning_end, echo,
                               (repeats, temperature, top_p, sampling_seed), task=task, registers=registers,
                               context_tokens=context_tokens)
    results = runner.run(cfg, out, ref, progress=progress, echo=echo or (lambda m: None), rescore=rescore,
                         control=control, executor=executor, workers=workers, ray_address=ray_address)
    if record and results.complete:
        from ffbench.registry import Registry

        Registry(registry).record(results, revision, out)
    return results


def preflight(model: str, suite=None, data=None, lengths=None, p_ignore=None, num: int | None = None,
              seed: int | None = None, render=None, scoring="choice", fewshot: bool = False,
              per_read: bool = False, model_args: dict | None = None, alphabet: int = 2,
              batch_size: int | None = None, max_batch_tokens: int | None = None, base_url: str | None = None,
              chat_template: str | None = None, system_prompt: str | None = None, max_new_tokens: int | None = None,
              reasoning_budget: int | None = None, reasoning_end: str | None = None,
              price_in: float | None = None, price_out: float | None = None, repeats: int | None = None,
              temperature: float | None = None, top_p: float | None = None, sampling_seed: int | None = None,
              price_cached_in: float | None = None, task: str | None = None, registers=None, context_tokens=None):
    """What :func:`evaluate` with the same arguments would send (``ffbench run --dry-run``): requests,
    prompt tokens, generation budget, longest prompt against the context and cost (prices in USD
    per million tokens), per cell and in total. Loads a tokenizer at most; writes nothing.
    Returns a :class:`ffbench.preflight.Preflight` (``str()`` of it is the printed table)."""
    from ffbench import runner
    from ffbench.cost import Prices

    cfg, ref, _ = _configure(model, suite, data, lengths, p_ignore, num, seed, render, scoring, fewshot, per_read,
                             model_args, alphabet, batch_size, max_batch_tokens, None, base_url, None, chat_template,
                             system_prompt, max_new_tokens, reasoning_budget, reasoning_end, None,
                             (repeats, temperature, top_p, sampling_seed), need_key=False, task=task,
                             registers=registers, context_tokens=context_tokens)
    return runner.dry_run(cfg, ref, Prices(price_in, price_out, price_cached_in))


def _configure(spec, suite, data, lengths, p_ignore, num, seed, render, scoring, fewshot, per_read, model_args,
               alphabet, batch_size, max_batch_tokens, output_dir, base_url, api_key, chat_template, system_prompt,
               max_new_tokens, reasoning_budget, reasoning_end, echo, sampling=(None, None, None, None),
               need_key=True, task: str | None = None, registers=None, context_tokens=None):
    """The run config, model reference and run directory of one call (usage errors raised here;
    ``need_key``: a remote model without an API key is one, as a run would send requests)."""
    import os

    from ffbench import model_handle, prompting, runner, tasks
    from ffbench.rundir import RunDir

    chosen = tasks.get(task)  # an unknown task is refused before the model resolves
    if render is None:
        render = chosen.default_render

    model = model_handle.resolve(spec, model_args, base_url, api_key, max_batch_tokens, need_key=need_key)
    template, template_sha = prompting.resolve_chat_template(chat_template)
    model.check_chat_template(template, chat_template)
    if reasoning_end == prompting.DEFAULT_REASONING_END:
        reasoning_end = None  # the default spelled out is the same run
    lengths = [int(x) for x in _list(lengths)]
    budgets = [int(x) for x in _list(context_tokens)] or None
    if budgets:  # --context-tokens: the lengths whose rendering takes that many of the model's tokens
        chosen.requires("context_tokens", "--context-tokens")
        if lengths:
            raise UsageError("give --length or --context-tokens, not both")
        from ffbench import preflight, render as rnd

        lengths = preflight.lengths_for_tokens(model, rnd.load_template(_list(render)[0]), chosen, budgets, alphabet)
    if not lengths and (n := model.default_length()):
        lengths = [n]
    cfg = runner.RunConfig(model=model.spec, model_args=model.recorded_args, suites=_list(suite),
                           data=[os.path.abspath(d) for d in _list(data)], lengths=lengths,
                           p_ignore=[float(x) for x in _list(p_ignore)], num=num, seed=seed, renders=_list(render),
                           scorings=_list(scoring), fewshot=fewshot, per_read=per_read, alphabet=alphabet,
                           batch_size=batch_size, base_url=model.recorded_base_url,
                           chat_template=template, chat_template_sha256=template_sha, system_prompt=system_prompt or None,
                           max_new_tokens=max_new_tokens, reasoning_budget=reasoning_budget or None,
                           reasoning_end=reasoning_end, repeats=None if sampling[0] in (None, 1) else int(sampling[0]),
                           temperature=sampling[1], top_p=sampling[2], sampling_seed=sampling[3],
                           task=tasks.config_value(task), registers=[int(k) for k in _list(registers)] or None,
                           context_tokens=budgets)
    out = output_dir or runner.default_output_dir(cfg)
    ref = model.connect(RunDir(out).request_cache, echo)
    return cfg, ref, out


def load(ref: str, registry: str | None = None) -> RunResults:
    """A finished run: a run directory, a shipped reference (``ffbench/lstm-ref``) or ``registry:MODEL[@REV]``."""
    from ffbench import runs

    return runs.load(ref, registry)
