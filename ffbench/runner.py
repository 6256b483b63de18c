"""``ffbench run``: the sweep (sources x renderings x scorings) as resumable shards.

A *source* (:mod:`ffbench.sources`) is a set of sequences; a *cell* is a source scored under one
rendering and one scoring. Each cell's sequences are split into fixed shards, and each finished
shard is written atomically with one row per read, so an interrupted run resumes exactly where it
stopped and never rescores. When every shard is done they are merged into ``samples.parquet`` and
summarised in ``results.json`` (:class:`ffbench.schema.RunResults`).

Order of work, so that nothing is wasted and nothing is mixed:

1. :func:`plan` validates everything the user asked for (usage errors, before anything loads);
2. the provider checks the plan and fingerprints the model without loading it where it can;
3. a resource preflight refuses a sequence that cannot fit in memory, with the figure;
4. the run directory is locked (one run at a time) and its identity compared: resume only when the
   config, the data's content hashes and the model's fingerprint are all identical;
5. the model loads, scores the missing shards, and the results are written.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ffbench import __version__, engine, metrics, prompting, redact, render, tasks
from ffbench.backends import ModelRef
from ffbench.control import Controller, RunControl, certify_entry, explain, run_reason
from ffbench.errors import FFBenchError, Interrupted, UsageError
from ffbench.identity import RunIdentity
from ffbench.resources import available_memory
from ffbench.rundir import SAMPLE_COLUMNS, RunDir
from ffbench.sampling import NOT_ASKED, Sampling, until_for
from ffbench.schema import CellKey, CellResult, RunResults, variant_of
from ffbench.sources import SequenceStore, SourceSpec, check_fits, plan_sources

SHARD_TOKENS = 32_768


@dataclass
class RunConfig:
    """Everything needed to rerun; recorded in results.json. Never holds secrets."""

    model: str
    model_args: dict = field(default_factory=dict)
    suites: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    p_ignore: list[float] = field(default_factory=list)
    num: int | None = None
    seed: int | None = None
    renders: list[str] = field(default_factory=lambda: ["symbolic"])
    scorings: list[str] = field(default_factory=lambda: ["choice"])
    fewshot: bool = False
    per_read: bool = False
    alphabet: int = 2
    batch_size: int | None = None  # sequences per scoring call and per shard (default: ~32k tokens)
    base_url: str | None = None
    # What a model receives and how long it may reply (ffbench.prompting); None = the default.
    chat_template: str | None = None  # None: auto; "none"; or a Jinja file's absolute path
    chat_template_sha256: str | None = None  # of that file's text, so an edited template is another run
    system_prompt: str | None = None
    max_new_tokens: int | None = None
    reasoning_budget: int | None = None
    reasoning_end: str | None = None  # None: </think>
    # Sampled greedy reads (ffbench.sampling); None = one greedy answer per read, as before.
    repeats: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    sampling_seed: int | None = None
    # The task's language (ffbench.tasks); None = ffl, the flip-flop language, as before tasks existed.
    task: str | None = None
    registers: list[int] | None = None  # --task registers: the numbers of registers to sweep (None: the default)
    context_tokens: list[int] | None = None  # --task haystack: the token budgets `lengths` were measured for

    ADDED_LATER = ("repeats", "temperature", "top_p", "sampling_seed", "task", "registers", "context_tokens")

    def as_dict(self) -> dict:
        """The config; fields added later are left out while unset, so a run without them keeps
        the config hash (and the default run directory) it had before they existed."""
        return {k: v for k, v in asdict(self).items() if not (k in self.ADDED_LATER and v is None)}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Cell:
    """A source scored under one rendering and one scoring."""

    source: SourceSpec
    render: str  # a template name or a path to one
    scoring: str
    variant: str = ""

    @property
    def render_name(self) -> str:
        return Path(self.render).stem

    @property
    def key(self) -> CellKey:
        return CellKey(self.source.label, self.source.length, self.source.p_ignore, self.render_name, self.scoring,
                       self.variant)


@dataclass
class Plan:
    """A validated run: its cells and the sequences they score."""

    config: RunConfig
    cells: list[Cell]
    store: SequenceStore
    templates: dict[str, render.Template]
    demo: np.ndarray | None
    until: str | None = None  # per-read sequential stopping of repeats (ffbench.sampling.until_for): run control

    def data_hashes(self) -> dict[str, str]:
        return {c.source.describe(): self.store.get(c.source)[2] for c in self.cells}

    def cell_id(self, cell: Cell) -> str:
        return f"{cell.key.slug()}-{self.store.get(cell.source)[2][:12]}"


# ----------------------------------------------------------------------------- planning
def plan(cfg: RunConfig, store: SequenceStore | None = None) -> Plan:
    """Validate every choice of ``cfg`` and list its cells; raises UsageError, loads no model."""
    from ffbench.scoring import SCORINGS

    if not cfg.renders:
        raise UsageError("--render needs at least one rendering")
    if not cfg.scorings:
        raise UsageError("--scoring needs at least one scoring")
    task = tasks.get(cfg.task)
    task.check_alphabet(cfg.alphabet)
    templates = {name: render.load_template(name) for name in cfg.renders}
    for template in templates.values():
        render.check_alphabet(template, cfg.alphabet)
        render.check_task(template, task)
    for s in cfg.scorings:
        if s not in SCORINGS:
            raise UsageError(f"unknown scoring {s!r} (use {' or '.join(SCORINGS)})")
    if cfg.batch_size is not None and cfg.batch_size <= 0:
        raise UsageError(f"--batch-size must be a positive integer, got {cfg.batch_size}")
    prompting.check_options(cfg)
    _check_sampling(cfg)
    store = store or SequenceStore()
    sources = plan_sources(cfg.suites, cfg.data, cfg.lengths, cfg.p_ignore, cfg.num, cfg.seed, cfg.alphabet, store,
                           task=cfg.task, registers_k=cfg.registers)
    check_fits(sources, available_memory())  # before a single sequence is generated
    config = cfg.as_dict()
    cells = [Cell(src, r, s, variant_of(config, s, chat=templates[r].chat, asks=templates[r].chat or bool(templates[r].ask)))
             for src in sources for r in cfg.renders for s in cfg.scorings]
    demo = (render.demo_sequence(alphabet=cfg.alphabet) if task.name == tasks.DEFAULT else task.demo()) \
        if cfg.fewshot else None
    return Plan(cfg, cells, store, templates, demo)


def _check_sampling(cfg: RunConfig) -> None:
    """Sampling options no run can use, and what this provider's model cannot do (one line each)."""
    from ffbench import backends, sampling

    provider = cfg.model.split("/", 1)[0]
    try:
        cls = backends.resolve(cfg.model, dict(cfg.model_args)).cls
    except (FFBenchError, UsageError, ImportError):
        cls = None  # the provider's own line (an unknown name, the extra to install) comes when it loads
    sampling.check(cfg, cfg.scorings, cls is None or cls.capabilities.sampling, provider)
    rules = getattr(cls, "check_sampling", None)
    if rules is not None and "greedy" in cfg.scorings:
        rules(cfg.model.split("/", 1)[-1], dict(cfg.model_args), sampling.Sampling.from_config(cfg),
              cfg.reasoning_budget)


def shard_size(length: int, batch_size: int | None) -> int:
    return batch_size or max(1, SHARD_TOKENS // length)


def dry_run(cfg: RunConfig, model: ModelRef, prices=None):
    """``ffbench run --dry-run``: what the run would send, counted without loading weights or making
    a run directory (:mod:`ffbench.preflight`)."""
    from ffbench import preflight

    p = plan(cfg)
    model.check(list(p.templates.values()), cfg.scorings, cfg.alphabet, cfg.fewshot)
    return preflight.estimate(p, model, prices)


# ----------------------------------------------------------------------------- running
def run(cfg: RunConfig, out_dir: str, model: ModelRef, progress: bool = True,
        echo: Callable[[str], None] = print, rescore: bool = False, control: RunControl | None = None,
        executor: str = "local", workers: int | None = None, ray_address: str | None = None) -> RunResults:
    """Score every cell (resuming finished shards) and write the run directory; return the results.

    ``control`` (:mod:`ffbench.control`) may stop the run before every shard is scored; it is not part
    of the run's identity, so a stopped run continues under other stopping flags. ``executor`` "ray"
    scores shards on ``workers`` Ray actors (:mod:`ffbench.engine`); the results are identical.
    """
    from ffbench import executors

    control = control or RunControl()
    executors.check(executor, workers)
    p = plan(cfg)
    model.check(list(p.templates.values()), cfg.scorings, cfg.alphabet, cfg.fewshot)
    rd = RunDir(out_dir)
    rd.check_usable()
    fingerprint = model.fingerprint_before_load()
    preflight_memory(model, p)
    existed = rd.path.exists()
    with rd.lock():
        try:
            return _run_locked(p, rd, model, fingerprint, progress, echo, rescore, control,
                               (executor, workers, ray_address))
        except BaseException as exc:
            if not existed:
                rd.remove_if_empty()  # failed before scoring anything: leave no directory behind
            if isinstance(exc, KeyboardInterrupt):  # before scoring began (loading, a server's listing)
                raise Interrupted(f"interrupted before scoring began; {rd.shard_count()} shards are kept in "
                                  f"{rd.path}; rerun the same command to resume" if rd.path.exists() else
                                  "interrupted before scoring began; nothing was kept") from None
            raise


def _run_locked(p: Plan, rd: RunDir, model: ModelRef, fingerprint: dict | None, progress: bool,
                echo: Callable[[str], None], rescore: bool, control: RunControl,
                executor: tuple = ("local", None, None)) -> RunResults:
    cfg = p.config
    wanted = RunIdentity(cfg.as_dict(), p.data_hashes(), fingerprint or {})
    held = rd.identity()
    if held is None and rd.holds_work() and not rescore:
        raise UsageError(f"{str(rd.path)!r} holds unfinished work of unknown provenance (an older ffbench?); "
                           "use --rescore to discard it, or another --output-dir")
    if held is not None:
        diff = held.differences(wanted, include_model=fingerprint is not None)
        if diff:
            _refuse_or_clear(rd, diff, rescore, echo)
            held = None
        elif rescore:  # asked to rescore: everything goes, whatever it is
            echo(f"--rescore: discarding what {rd.path} held and scoring it again")
            rd.clear()
            held = None
        elif fingerprint is not None and rd.is_complete():
            done = _finished(rd, control, echo)
            if done is not None:
                return done
    elif rescore:
        rd.clear()

    _drop_damaged(p, rd, echo)
    p.until = until_for(control.stop_at_first_error, control.certify)
    ctl = _controller(p, rd, control)
    work = _pending(p, rd, ctl)
    scorer = None
    if work or fingerprint is None:
        kind, workers, address = executor
        scorer = engine.start(model, RunJob(p), kind, workers, address, echo)
    try:
        if fingerprint is None:  # only the loaded model (or the server) can say what it is
            fingerprint = scorer.fingerprint()
            wanted.model = fingerprint
            if held is not None and held.model.get("id") != fingerprint.get("id"):
                _refuse_or_clear(rd, [_model_diff(held, wanted)], rescore, echo)
                ctl = _controller(p, rd, control)
                work = _pending(p, rd, ctl)
            elif held is not None and rd.is_complete():
                done = _finished(rd, control, echo)
                if done is not None:
                    return done
        for cell, _ in work:
            scorer.call("check_context", p.cells.index(cell))
        rd.start(wanted)
        estimator = None
        if control.max_cost is not None:
            from ffbench.preflight import Estimator

            estimator = Estimator(p, model)  # the dry run's own counting, before every shard
        _score(p, rd, scorer, work, ctl, progress, echo, estimator)
    finally:
        if scorer is not None:
            scorer.close()
    return _finish(p, rd, scorer, wanted, ctl)


def _finished(rd: RunDir, control: RunControl, echo) -> RunResults | None:
    """The finished run in ``rd`` when it answers this request, else None (after reopening it).

    A complete run answers any stopping flags (nothing is left to score), and a stopped run answers
    the flags it stopped under. Other flags score on from its kept shards: they decide how much is
    scored, never what a read measures, so the kept shards are valid under them.
    """
    problem = rd.finished_problem()
    if problem:
        echo(f"{rd.path}: {problem}; scoring it again from its {rd.shard_count()} kept shards")
        rd.reopen()
        return None
    done = rd.load()
    if done.complete:
        echo(f"run already complete in {rd.path}; nothing rescored")
        return done
    if done.control == control.as_dict():
        echo(f"run in {rd.path} already stopped ({done.stop_reason}) under these flags; nothing rescored")
        return done
    echo(f"run in {rd.path} stopped ({done.stop_reason}); scoring on from its {rd.shard_count()} kept shards "
         "under the new stopping flags")
    rd.reopen()
    return None


def _refuse_or_clear(rd: RunDir, diff: list[str], rescore: bool, echo) -> None:
    if not rescore:
        raise UsageError(f"{str(rd.path)!r} holds results of another run ({'; '.join(diff)} differ): use "
                           "--rescore to discard them, or another --output-dir")
    echo(f"--rescore: discarding what {rd.path} held ({'; '.join(diff)} differ)")
    rd.clear()


def _drop_damaged(p: Plan, rd: RunDir, echo) -> None:
    """Verify every kept shard against what the plan says it holds (its cell, sequence range and
    read count) and remove, with a line each, those that do not: they are scored again."""
    planned = {}
    for cell in p.cells:
        seq_index = p.store.get(cell.source)[1].seq_index
        for start in _starts(p, cell):
            stop = _stop(p, cell, start)
            lo, hi = np.searchsorted(seq_index, [start, stop])
            planned[(p.cell_id(cell), start)] = (stop, int(hi - lo))
    for cid, start, path in rd.shard_files():
        if (cid, start) not in planned:
            continue  # not a shard of this plan: never read
        stop, reads = planned[(cid, start)]
        problem = rd.shard_problem(cid, start, stop, reads)
        if problem:
            echo(f"shard {path.relative_to(rd.path)} is damaged ({problem}); scoring it again")
            rd.drop_shard(cid, start)


def _model_diff(held: RunIdentity, wanted: RunIdentity) -> str:
    return held.differences(wanted, include_model=True)[-1]


def _starts(p: Plan, cell: Cell) -> list[int]:
    """First sequence of every shard of a cell, in scoring order."""
    return list(range(0, p.store.sequences(cell.source).shape[0], shard_size(cell.source.length, p.config.batch_size)))


def _stop(p: Plan, cell: Cell, start: int) -> int:
    return min(start + shard_size(cell.source.length, p.config.batch_size), p.store.sequences(cell.source).shape[0])


def _pending(p: Plan, rd: RunDir, ctl: Controller | None = None) -> list[tuple[Cell, list[int]]]:
    """(cell, first sequences of the shards still to score) for every cell with work left that run
    control lets go on (all of them without ``ctl``)."""
    out = []
    for cell in p.cells:
        if ctl is not None and not ctl.open(p.cell_id(cell)):
            continue
        todo = [s for s in _starts(p, cell) if not rd.has_shard(p.cell_id(cell), s)]
        if todo:
            out.append((cell, todo))
    return out


def _controller(p: Plan, rd: RunDir, control: RunControl) -> Controller:
    """A controller that has seen every kept shard (so a resumed run applies its rules to them too)."""
    ctl = Controller(control)
    if not control.active:
        return ctl
    for cell in p.cells:
        cid = p.cell_id(cell)
        for start in _starts(p, cell):
            if rd.has_shard(cid, start):
                wrong, reads, usage = rd.read_counts(cid, start)
                stop = _stop(p, cell, start)
                glitched = rd.glitched_count(cid, start) if control.stop_at_first_error else None
                ctl.observe(cid, wrong, reads, stop - start, usage, _where(cell, start, stop), glitched=glitched)
    return ctl


def _where(cell: Cell, start: int, stop: int) -> str:
    return f"{cell.key.describe()}, sequences {start}-{stop - 1}"


def _score(p: Plan, rd: RunDir, shards, work, ctl: Controller, progress: bool, echo=print,
           estimator=None) -> None:
    """Score every pending shard through ``shards`` (a scorer of :mod:`ffbench.engine`, here or on
    Ray actors: the same loop either way). Run control is asked before each shard is sent (the cell still open, and
    with ``--max-cost`` the shard affordable); the driver writes each shard as it comes back."""
    index = {cell: k for k, cell in enumerate(p.cells)}
    units = [(index[cell], start, _stop(p, cell, start)) for cell, todo in work for start in todo]
    announced: set[str] = set()
    flying: dict[tuple, float] = {}  # shard -> its estimated cost, while sent and not yet kept

    def go_on(unit) -> bool:
        cell, start, stop = p.cells[unit[0]], unit[1], unit[2]
        if not ctl.open(p.cell_id(cell)):
            return False
        if estimator is not None:
            estimate = estimator.shard(cell, _rendered(p, cell, start, stop))
            if not ctl.afford(estimate, _where(cell, start, stop), in_flight=sum(flying.values())):
                return False
            flying[unit] = estimate.cost(ctl.control.prices)
        return True

    bar = _bar(progress, p, work, shards.workers)
    try:
        for (k, start, stop), (table, usage) in shards.imap(units, go_on=go_on):
            flying.pop((k, start, stop), None)
            cell = p.cells[k]
            cid = p.cell_id(cell)
            _keep(p, rd, ctl, cell, start, stop, table, usage)
            if bar is not None:
                bar.set_description(_describe_cell(cell), refresh=False)
                bar.update(stop - start)
            if ctl.decision(cid) is not None and cid not in announced:
                announced.add(cid)
                echo(f"{cell.key.describe()}: {ctl.decision(cid)} at --certify {ctl.control.certify:g}")
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {rd.shard_count()} of {sum(len(_starts(p, c)) for c in p.cells)} shards are "
                          f"kept in {rd.path}; rerun the same command to resume") from None
    finally:
        if bar is not None:
            bar.close()
    if ctl.stop is not None:
        echo(f"stopping ({ctl.stop}): {ctl.stop_detail}")


def _keep(p: Plan, rd: RunDir, ctl: Controller, cell: Cell, start: int, stop: int, table, usage: dict) -> None:
    """Write a scored shard, then let run control see its reads (so a stop never loses a kept shard)."""
    cid = p.cell_id(cell)
    rd.write_shard(cid, start, table, usage, stop)
    correct = table.column("correct").to_numpy()
    glitched = None  # with repeats: reads with any wrong answer (what --stop-at-first-error stops on)
    if "wrong_repeats" in table.column_names:
        glitched = int((table.column("wrong_repeats").to_numpy() > 0).sum())
    ctl.observe(cid, int(correct.size - correct.sum()), int(correct.size), stop - start, usage,
                _where(cell, start, stop), glitched=glitched)


def _describe_cell(cell: Cell) -> str:
    return f"{cell.source.label} T={cell.source.length} {cell.render_name} {cell.scoring}"


def _bar(progress: bool, p: Plan, work, workers: int):
    """One progress bar over the run's sequences (those already kept count as done)."""
    if not progress:
        return None
    import sys

    from tqdm import tqdm

    total = sum(p.store.sequences(c.source).shape[0] for c in p.cells)
    todo = sum(_stop(p, cell, start) - start for cell, starts in work for start in starts)
    where = f" on {workers} Ray workers" if workers > 1 else ""
    return tqdm(total=total, initial=total - todo, desc=f"scoring{where}", unit="seq", file=sys.stderr,
                dynamic_ncols=True)


def check_context(backend, p: Plan, cell: Cell) -> None:
    limit = backend.context_length()
    if not limit:
        return
    template = p.templates[cell.render]
    text = render.render(p.store.sequences(cell.source)[0], template, p.config.alphabet, p.demo).text + template.ask
    tokens = backend.count_tokens(text)
    if tokens is not None and tokens > limit:
        raise UsageError(
            f"model context is {limit} tokens but {cell.source.label} at T={cell.source.length} rendered "
            f"'{cell.render_name}' needs {tokens}: use a shorter --length or another rendering")


def score_shard(backend, p: Plan, cell: Cell, start: int, stop: int):
    """Score sequences [start, stop) of a cell; return the shard's rows as an Arrow table."""
    import pyarrow as pa

    from ffbench import scoring

    _, reads, _ = p.store.get(cell.source)
    template = p.templates[cell.render]
    rendered = _rendered(p, cell, start, stop)
    outcome = scoring.score(backend, rendered, template, cell.scoring, per_read=p.config.per_read,
                            options=prompting.PromptOptions.from_config(p.config),
                            sampling=replace(Sampling.from_config(p.config), until=p.until))
    lo, hi = np.searchsorted(reads.seq_index, [start, stop])
    n = hi - lo
    target = reads.target[lo:hi]
    src = cell.source
    columns = {
        "cell": pa.array([p.cell_id(cell)] * n, pa.string()),
        "suite": pa.array([src.label] * n, pa.string()),
        "length": pa.array(np.full(n, src.length, np.int32)),
        "p_ignore": pa.array(np.full(n, np.nan if src.p_ignore is None else src.p_ignore)),
        "render": pa.array([cell.render_name] * n, pa.string()),
        "scoring": pa.array([cell.scoring] * n, pa.string()),
        "seq_index": pa.array(reads.seq_index[lo:hi]),
        "read_index": pa.array(reads.read_index[lo:hi]),
        "position": pa.array(reads.position[lo:hi]),
        "target": pa.array(target),
        "prediction": pa.array(outcome.prediction),
        "correct": pa.array(outcome.prediction == target),
        "invalid": pa.array(outcome.invalid),
        "truncated": pa.array(outcome.truncated),
        "write_distance": pa.array(reads.write_distance[lo:hi].astype(np.int64)),
        "evidence_distance": pa.array(reads.evidence_distance[lo:hi].astype(np.int64)),
        "margin": pa.array(outcome.margin),
        "per_read": pa.array(outcome.per_read),
        "output": pa.array(outcome.output, pa.string()),
    }
    columns.update(stress_columns(p.store.columns(cell.source), reads.seq_index[lo:hi]))
    assert tuple(columns)[: len(SAMPLE_COLUMNS)] == SAMPLE_COLUMNS
    heuristic = tasks.get(p.config.task).heuristic
    if heuristic is not None:  # a reference heuristic's answer to each read (undo: the toggle), beside the model's
        name, answers = heuristic
        columns[name] = pa.array(answers(p.store.sequences(cell.source)[start:stop]))
    if outcome.repeats is not None:  # --repeats K > 1: every answer asked, beside the majority in `prediction`
        asked = outcome.repeats != NOT_ASKED  # all K, unless sequential stopping settled the read sooner
        columns["repeats"] = pa.array(asked.sum(axis=1).astype(np.int32))
        columns["wrong_repeats"] = pa.array(((outcome.repeats != target[:, None]) & asked).sum(axis=1).astype(np.int32))
        columns["predictions"] = pa.array([row[row != NOT_ASKED].tolist() for row in outcome.repeats],
                                          pa.list_(pa.int64()))
        columns["outputs"] = pa.array(outcome.repeat_outputs, pa.list_(pa.string()))
    return pa.table(columns)


def _rendered(p: Plan, cell: Cell, start: int, stop: int) -> list:
    arr = p.store.sequences(cell.source)
    template = p.templates[cell.render]
    return [render.render(arr[i], template, p.config.alphabet, p.demo) for i in range(start, stop)]


def stress_columns(per_row: dict[str, list], seq_index: np.ndarray) -> dict:
    """The stress family, point and parameter columns of each read (null for reads of other sources)."""
    from ffbench import stress

    rows = seq_index.tolist()
    return stress.arrow_columns({name: [per_row[name][i] for i in rows] if name in per_row else [None] * len(rows)
                                 for name in stress.COLUMNS})


def _finish(p: Plan, rd: RunDir, scorer, identity: RunIdentity, ctl: Controller) -> RunResults:
    """Merge the scored shards into samples.parquet and results.json.

    Cells a stopping rule cut hold their scored shards only (``complete`` false, ``num_sequences`` the
    scored count); cells it never reached are listed in ``not_scored``; the shards stay on disk
    while anything is left, so the run can be continued.
    """
    import pyarrow as pa

    cfg, control = p.config, ctl.control
    tables, usage, cells, not_scored, verdicts = [], {}, [], [], []
    for cell in p.cells:
        arr, _, sha = p.store.get(cell.source)
        cid = p.cell_id(cell)
        kept = [s for s in _starts(p, cell) if rd.has_shard(cid, s)]
        complete = len(kept) == len(_starts(p, cell))
        reason = "complete" if complete else (ctl.decision(cid) or ctl.stop or "incomplete")
        if not kept:
            not_scored.append({**asdict(cell.key), "planned_sequences": int(arr.shape[0]), "stop_reason": reason})
            continue
        parts = []
        for start in kept:
            table, shard_usage = rd.read_shard(cid, start)
            for k, v in shard_usage.items():
                usage[k] = usage.get(k, 0) + v
            parts.append(table)
        table = pa.concat_tables(parts)
        tables.append(table)
        scored = sum(_stop(p, cell, s) - s for s in kept)
        result = cell_result(cell, scored, table, sha, repeats=p.config.repeats)
        certify = None
        if control.certify is not None:
            certify = certify_entry(result.errors, result.reads, control.certify)
            verdicts.append(certify["verdict"])
        cells.append(replace(result, complete=complete, planned_sequences=int(arr.shape[0]), stop_reason=reason,
                             certify=certify))
    if not tables:
        raise FFBenchError(f"nothing was scored: {ctl.stop_detail or 'no shard was allowed'}; raise --max-cost")
    reason = run_reason(control, ctl.stop, verdicts)
    partial = [c.key.describe() for c in cells if not c.complete] + \
        [CellKey(**{k: e[k] for k in CellKey.__dataclass_fields__}).describe() for e in not_scored]
    undecided = [c.key.describe() for c in cells if c.certify and c.certify["verdict"] == "undecided"]
    refuted = [c.key.describe() for c in cells if c.certify and c.certify["verdict"] == "above"]
    combined = hashlib.sha256("".join(f"{k}:{v}\n" for k, v in sorted(identity.data.items())).encode()).hexdigest()
    results = RunResults(
        model=cfg.model, config=cfg.as_dict(), results=cells,
        backend=redact.value(scorer.describe()) if scorer is not None else {"provider": cfg.model.split("/")[0]},
        ffbench_version=__version__, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        fingerprint=identity.fingerprint(), data_sha256=combined, usage=usage, stop_reason=reason,
        stop_detail=explain(reason, control, ctl.stop_detail, partial, undecided, refuted),
        control=control.as_dict(), cost=_cost(control, usage), not_scored=not_scored,
        label=str(rd.path), samples_path=rd.samples)
    rd.finish(results, pa.concat_tables(tables), keep_shards=bool(partial))
    return results


def _cost(control: RunControl, usage: dict) -> dict | None:
    """The run's cost at the given prices, from the usage its backends reported (None without prices)."""
    prices = control.prices
    if not prices.given:
        return None
    out = {"usd": prices.of_usage(usage), **prices.as_dict(), "max_cost": control.max_cost,
           "prompt_tokens": int(usage.get("prompt_tokens", 0)), "completion_tokens": int(usage.get("completion_tokens", 0))}
    for name in ("cached_tokens", "cache_write_tokens"):  # of prompt_tokens, where a prompt cache answered (ffbench.cost)
        if usage.get(name):
            out[name] = int(usage[name])
    return out


def cell_result(cell: Cell, num_sequences: int, table, sha: str, repeats: int | None = None) -> CellResult:
    """A cell's results from its rows; ``repeats``: the K asked of each read (to flag reads that
    sequential stopping settled with fewer)."""
    correct = table.column("correct").to_numpy()
    invalid = table.column("invalid").to_numpy()
    truncated = table.column("truncated").to_numpy()
    per_read = table.column("per_read").to_numpy()
    slot = tasks.get(cell.source.task).slot(table.column("position").to_numpy())
    counts = metrics.summarize(correct, invalid, truncated)
    by_point, tolerances = stress_breakdown(table)
    return CellResult(
        key=cell.key, data_sha256=sha, num_sequences=num_sequences, source=cell.source,
        reads=counts["reads"], errors=counts["errors"], invalid=counts["invalid"], truncated=counts["truncated"],
        glitch_rate=counts["glitch_rate"], accuracy=counts["accuracy"], ci95=tuple(counts["ci95"]),
        reads_scored_per_read=int(per_read.sum()),
        by_write_distance=tuple(metrics.breakdown(table.column("write_distance").to_numpy(), correct)),
        by_read_position=tuple(metrics.breakdown(slot, correct, edges=(0,) + metrics.DISTANCE_EDGES)),
        by_point=tuple(by_point), tolerances=tuple(tolerances), sampled=_sampled(table, correct, repeats),
        breakdowns={**heuristic_breakdown(cell, table), **family_breakdown(table)})


# The parameters of a task's structured families (samples columns): undo's retraction chains by depth,
# registers' stale reads by distance and what fills the gap. A stress read (its ``point`` set) is counted
# by stress_breakdown instead.
FAMILY_PARAMETERS = ("k", "distance", "placement")


def family_breakdown(table) -> dict:
    """``{"by_parameter": [...]}`` for the reads of a task's structured family (retraction, stale): per
    family and parameter values, reads, errors and the exact interval, so a cell says at which depth or
    distance a model breaks, not only how often (empty for every other cell)."""
    names = table.column_names
    if "family" not in names or table.column("family").null_count == table.num_rows:
        return {}  # most cells: no family at all, decided without a Python list per read
    family = table.column("family").to_pylist()
    point = table.column("point").to_pylist() if "point" in names else [None] * len(family)
    keep = [i for i, (f, p) in enumerate(zip(family, point)) if f is not None and p is None]
    if not keep:
        return {}
    values = {n: table.column(n).to_pylist() for n in FAMILY_PARAMETERS if n in names}
    params = [n for n, col in values.items() if any(col[i] is not None for i in keep)]
    correct = table.column("correct").to_numpy()
    counts: dict[tuple, list[int]] = {}
    for i in keep:
        acc = counts.setdefault((family[i], *(values[n][i] for n in params)), [0, 0])
        acc[0] += 1
        acc[1] += int(not correct[i])
    rows = []
    for key in sorted(counts, key=lambda k: tuple((v is None, str(type(v)), v) for v in k)):
        reads, errors = counts[key]
        rows.append({"family": key[0], **{n: (int(v) if isinstance(v, float) and v.is_integer() else v)
                                          for n, v in zip(params, key[1:])},
                     "reads": reads, "errors": errors, "ci95": list(metrics.clopper_pearson(errors, reads))})
    return {"by_parameter": rows}


def heuristic_breakdown(cell: Cell, table) -> dict:
    """``{"heuristic": ...}`` for a task with a reference heuristic (undo: the toggle; registers: one
    variable): how often it is right, and on the reads where it is wrong, the model's errors and how
    often the model gives the heuristic's answer (1.0: the model behaves as the heuristic there)."""
    heuristic = tasks.get(cell.source.task).heuristic
    if heuristic is None or heuristic[0] not in table.column_names:
        return {}
    guess = table.column(heuristic[0]).to_numpy()
    target, prediction = table.column("target").to_numpy(), table.column("prediction").to_numpy()
    wrong = guess != target
    there = int(wrong.sum())
    return {"heuristic": {"name": heuristic[0], "accuracy": float(1 - wrong.mean()) if wrong.size else None,
                          "reads_where_wrong": there, "errors_there": int((prediction[wrong] != target[wrong]).sum()),
                          "agrees_there": float((prediction[wrong] == guess[wrong]).mean()) if there else None}}


def _sampled(table, correct: np.ndarray, planned: int | None = None) -> dict | None:
    """A cell's sampled figures (:func:`ffbench.sampling.cell_stats`) when its reads were repeated."""
    if "wrong_repeats" not in table.column_names:
        return None
    from ffbench import sampling

    return sampling.cell_stats(table.column("seq_index").to_numpy(), table.column("wrong_repeats").to_numpy(),
                               table.column("repeats").to_numpy(), correct, planned=planned)


def stress_breakdown(table) -> tuple[list[dict], list[dict]]:
    """Per stress point (family, parameters, reads, errors, exact interval) and one tolerance per family
    and fixed parameters, for the reads of a cell that carry a stress point (empty otherwise).

    A sampled run (``--repeats``) judges its tolerances on the per-read error probability: a point
    is clean when none of its answers is wrong, and the lines count answers with the cluster-robust
    interval of the point's mean per-read error probability (:func:`ffbench.sampling.cell_stats`),
    which each point also gets beside its majority-answer counts."""
    from ffbench import sampling, stress

    points = table.column("point").to_pylist()
    keep = [k for k, p in enumerate(points) if p is not None]
    if not keep:
        return [], []
    correct = table.column("correct").to_numpy()[keep]
    positions = table.column("position").to_numpy()[keep]
    lengths = set(table.column("length").to_numpy()[keep].tolist())
    if len(lengths) != 1:
        raise FFBenchError(f"a stress cell holds sequences of one length, not {sorted(lengths)}")
    length = int(lengths.pop())
    outcomes = stress.count_outcomes([points[k] for k in keep], correct, positions, length)
    by_point = [{"point": stress.Point(o.family, o.params, o.reads).id, "family": o.family,
                 **dict(o.params), "reads": o.reads, "errors": o.errors,
                 "ci95": list(metrics.clopper_pearson(o.errors, o.reads))} for o in outcomes]
    if "wrong_repeats" in table.column_names:
        ids = np.asarray([points[k] for k in keep], dtype=object)
        seq = table.column("seq_index").to_numpy()[keep]
        wrong, asked = (table.column(c).to_numpy()[keep] for c in ("wrong_repeats", "repeats"))
        thirds = np.asarray([stress.third_of(q, length) for q in positions], dtype=object)
        for j, o in enumerate(outcomes):
            at = ids == stress.Point(o.family, o.params, o.reads).id
            figures = sampling.cell_stats(seq[at], wrong[at], asked[at], correct[at])
            by_point[j].update(answers=figures["answers"], wrong_answers=figures["wrong_answers"],
                               error_probability=figures["error_probability"], error_probability_ci95=figures["ci95"])
            by_third = tuple((t, int(asked[at & (thirds == t)].sum()), int(wrong[at & (thirds == t)].sum()))
                             for t in stress.THIRDS if (at & (thirds == t)).any())  # answers, as the totals
            outcomes[j] = replace(o, reads=figures["answers"], errors=figures["wrong_answers"],
                                   unit="answers", ci95=tuple(figures["ci95"]), by_third=by_third)
    return by_point, [t.as_dict() for t in stress.profile(outcomes)]


def default_output_dir(cfg: RunConfig) -> str:
    from ffbench.backends import default_directory

    return default_directory("runs", cfg.model, cfg.digest()[:10])


# ----------------------------------------------------------------------------- resources
def preflight_memory(model: ModelRef, p: Plan, available: int | None = None) -> None:
    """Refuse, before loading anything, a sequence (or a batch) that cannot fit in memory."""
    cell = max(p.cells, key=lambda c: c.source.length)
    template = p.templates[cell.render]
    first = p.store.sequences(cell.source)[0]
    tokens = _tokens_of(model, render.render(first, template, p.config.alphabet, p.demo).text)
    need = model.cls.memory_per_sequence(model.name, model.args, tokens)
    available = available_memory() if available is None else available
    if need is None or available is None:
        return
    budget = int(0.8 * available)
    if need > budget:
        raise UsageError(f"one sequence of {tokens:,} tokens ({cell.source.label} T={cell.source.length}) needs about "
                         f"{_gb(need)} in one forward pass of {model.spec}, and {_gb(available)} of memory is "
                         "available: use a shorter --length")
    batch_tokens = int(model.args.get("max_batch_tokens") or getattr(model.cls, "default_max_batch_tokens", 0) or 0)
    per_batch = max(1, batch_tokens // max(1, tokens)) if batch_tokens else 1
    per_batch = min(per_batch, len(p.store.sequences(cell.source)))  # never more sequences than the cell has
    by_batch = getattr(model.cls, "memory_per_batch", None)
    need_batch = (by_batch(model.name, model.args, tokens, per_batch) if by_batch else None) or per_batch * need
    if need_batch > budget:
        fit = max(1, budget // need)
        raise UsageError(f"a batch of {per_batch} sequences of {tokens:,} tokens needs about {_gb(need_batch)} "
                         f"and {_gb(available)} is available: pass --max-batch-tokens {fit * tokens} (or less)")


def _tokens_of(model: ModelRef, text: str) -> int:
    """Tokens of ``text`` in the model's own tokenizer when one loads without weights (hf/, vllm/,
    ffbench/), else its characters: an upper bound for the ASCII texts ffbench renders, since every
    token covers at least one character. Natural-language renderings (a haystack) take 3-4 times
    fewer tokens than characters, so counting characters would refuse what fits."""
    try:
        tokenizer = model.tokenizer()
    except Exception:  # the run itself will say why the model cannot load; here characters bound tokens
        tokenizer = None
    if tokenizer is None:
        return len(text)
    from ffbench.backends.tokenized import encode

    return len(encode(tokenizer, [text])[0][0])


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


# ----------------------------------------------------------------------------- the run's job
class RunJob:
    """What the engine's workers do with a run's units (:mod:`ffbench.engine`): a unit is one shard,
    (cell index, start, stop), scored into its rows. A Ray actor rebuilds the plan from the run's
    config (sampling is deterministic), so a shard is sent as three numbers."""

    def __init__(self, p: Plan):
        self.plan = p

    @classmethod
    def from_config(cls, config: dict, until: str | None = None) -> RunJob:
        p = plan(RunConfig(**config))
        p.until = until
        return cls(p)

    def recipe(self) -> tuple[Callable, tuple]:
        return RunJob.from_config, (self.plan.config.as_dict(), self.plan.until)

    def score(self, backend, cell_index: int, start: int, stop: int):
        return score_shard(backend, self.plan, self.plan.cells[cell_index], start, stop)

    def check_context(self, backend, cell_index: int) -> None:
        check_context(backend, self.plan, self.plan.cells[cell_index])
