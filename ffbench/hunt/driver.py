"""The resumable hunt: rounds of candidate sequences, scored, confirmed and recorded.

Order of work, as in ``ffbench run``: :func:`plan` finds every usage error before anything loads;
the provider checks the plan and fingerprints the model; the hunt directory is locked and its
identity (the config without the budgets, plus the model's fingerprint) compared with what it
holds, so a hunt resumes only on identical settings and weights; then rounds run until the budget
is spent. Each round draws its randomness from ``SeedSequence([seed, round])`` and ends with the
state written atomically, so an interrupted hunt resumes exactly where it stopped, and raising
``--budget`` continues a finished one.

Map search (default, ``search="map"``). A round fills its reads with candidates from the map
(:mod:`ffbench.hunt.atlas`: cover empty regions, refine uncertain or failing cells, mutate elites);
every read of every candidate is scored once (dense where the backend can) and counted in its cell
(:mod:`ffbench.hunt.descriptors`); failing sequences are confirmed as below, and the first glitch of
each region is shrunk (:mod:`ffbench.hunt.shrink`) to a minimal shape, its reads counted in the
budget (at most ``SHRINK_READS`` per glitch and ``SHRINK_SHARE`` of the budget).

Bandit search (``search="bandit"``). A round asks the bandit (:mod:`ffbench.hunt.bandit`) for candidates:
fresh rows of a family point (:mod:`ffbench.hunt.families`) or, from the ``exploit`` arm, a mutant
(:mod:`ffbench.hunt.mutations`) of a sequence in the *pool* (the lowest-margin sequences seen, at
most ``POOL_PER_ROOT`` per family point so one lineage cannot fill it). Every candidate is scored
by choice (:func:`ffbench.scoring.score`: dense where the backend can), never twice. A candidate
with a wrong read is scored once more, alone with the other failures of its round, and is
reported only if the same read is wrong again.

Estimate mode (``--estimate``): the budget goes to importance sampling
(:mod:`ffbench.hunt.estimator`), one scored read per sample: cross-entropy stages adapt the
proposal, then the estimate comes from samples of the final proposal; every sample is stored with
its weight (samples.parquet), and a failing one that fails again is also reported as a glitch
(padded to length T with ignores and a final read).

With ``--estimator surrogate`` the rounds score whole i.i.d. sequences of the target instead, every
read (:mod:`ffbench.hunt.surrogate_hunt`); failing sequences are confirmed and reported as in the
searches, and once the hunt stops on its budget a learned guess of each read's verdict is fitted
and used as control variate (samples.parquet: every scored read with its fold and guess).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ffbench import __version__, engine, language, render
from ffbench.backends import ModelRef
from ffbench.errors import Interrupted, UsageError
from ffbench.hunt import bandit as bandit_mod
from ffbench.hunt import estimator, families, job, mutations, surrogate_hunt
from ffbench.hunt.families import pad_to
from ffbench.hunt.huntdir import HuntDir
from ffbench.identity import RunIdentity

ROUND_READS = 512  # reads scored per search round
STAGE_READS = 4000  # reads per cross-entropy stage (at most a twentieth of the budget)
MAX_STAGES = 6
ADAPT_SHARE = 0.3  # the cross-entropy stages spend at most this share of the budget
POOL_SIZE = 64
POOL_PER_ROOT = 8
EXPLOIT = "exploit"
STATE_VERSION = 1
SEARCHES = ("map", "bandit")
SHRINK_READS = 400  # at most this many scored reads shrink one glitch ...
SHRINK_PER_CELL = 1  # ... and only the first glitch of each region (its failing read's cell on atlas.COVER_AXES)
SHRINK_SHARE = 0.25  # shrinking spends at most this share of the budget


@dataclass
class HuntConfig:
    """Everything a hunt depends on; recorded in hunt.json. Never holds secrets."""

    model: str
    budget: int
    length: int
    model_args: dict = field(default_factory=dict)
    budget_tokens: int | None = None
    seed: int = 0
    render: str = "symbolic"
    estimate: str | None = None
    families: list[str] = field(default_factory=list)
    per_read: bool = False
    base_url: str | None = None
    iid: str | None = None  # a run of this model on the i.i.d. suites to compare yields with (summary only)
    search: str = "map"  # map (coverage of the descriptor map, the default) | bandit (over family points)
    lines: str | None = None  # a stress run of this model whose tolerance lines the map checks (default: shipped)
    task: str | None = None  # --task: None is ffl (then absent from hunt.json and the identity, as before tasks)
    estimator: str = "importance"  # --estimator: importance | surrogate (recorded only when not the default)

    def __post_init__(self) -> None:
        if self.task == "ffl":  # the default task is recorded as no task, so its identity is what it always was
            self.task = None

    def as_dict(self) -> dict:
        out = asdict(self)
        if out["task"] is None:
            del out["task"]
        if out["estimator"] == "importance":  # the default: hunts from before --estimator keep their identity
            del out["estimator"]
        return out

    def identity(self) -> dict:
        """What a resumed hunt must share: everything but the budgets (raising them continues), the
        i.i.d. run it is compared with and the stress run whose lines it checks (both read when
        hunt.json is written)."""
        return {k: v for k, v in self.as_dict().items() if k not in ("budget", "budget_tokens", "iid", "lines")}

    def digest(self) -> str:
        import json

        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()


@dataclass
class Plan:
    config: HuntConfig
    template: render.Template
    target: estimator.Target | None
    arms: list[tuple[str, object]]

    def arm_families(self) -> dict[str, str]:
        out = {families.point_label(f, p): f for f, p in self.arms}
        out[EXPLOIT] = EXPLOIT
        return out

    def arm_params(self) -> dict[str, tuple[str, object]]:
        return {families.point_label(f, p): (f, p) for f, p in self.arms}


def plan(cfg: HuntConfig) -> Plan:
    """Validate ``cfg`` (UsageError for every bad choice); loads no model."""
    if isinstance(cfg.budget, bool) or not isinstance(cfg.budget, int) or cfg.budget <= 0:
        raise UsageError(f"--budget must be a positive number of reads, got {cfg.budget!r}")
    if cfg.budget_tokens is not None and (not isinstance(cfg.budget_tokens, int) or cfg.budget_tokens <= 0):
        raise UsageError(f"--budget-tokens must be a positive number of tokens, got {cfg.budget_tokens!r}")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {cfg.seed!r}")
    if cfg.estimator not in surrogate_hunt.ESTIMATORS:
        raise UsageError(f"--estimator must be one of {', '.join(surrogate_hunt.ESTIMATORS)}, got {cfg.estimator!r}")
    if cfg.task is not None:
        return _plan_task(cfg)
    if cfg.estimator != "importance" and not cfg.estimate:
        raise UsageError(f"--estimator {cfg.estimator} chooses how --estimate estimates: add --estimate TARGET")
    if not isinstance(cfg.length, int) or cfg.length < 8 or cfg.length % 2:
        raise UsageError(f"--length must be an even integer >= 8, got {cfg.length!r}")
    template = render.load_template(cfg.render)
    render.check_alphabet(template, 2)
    target = estimator.parse_target(cfg.estimate, cfg.length) if cfg.estimate else None
    if target is not None and cfg.estimator == surrogate_hunt.METHOD:
        surrogate_hunt.check(target, cfg.budget)
    if cfg.search not in SEARCHES:
        raise UsageError(f"--search must be one of {', '.join(SEARCHES)}, got {cfg.search!r}")
    if cfg.families and cfg.search != "bandit":
        raise UsageError("--family chooses the bandit's families: add --search bandit (the map search builds its "
                         "own targets)")
    if cfg.lines is not None:
        if cfg.search != "map" or target is not None:
            raise UsageError("--lines checks tolerance lines against the map search's reads: drop --estimate and "
                             "--search bandit, or --lines")
        from ffbench.hunt import lines

        lines.load(cfg.model, cfg.length, cfg.render, cfg.lines)  # refuses another model's run or another T
    arms = families.arms(cfg.length, cfg.families or None)
    if target is None and not arms:
        raise UsageError(f"no family point fits length {cfg.length}: use a longer --length")
    return Plan(cfg, template, target, arms)


def _plan_task(cfg: HuntConfig) -> Plan:
    """The plan of a hunt of another task than ffl: the map search over the task's descriptors only."""
    from ffbench import tasks
    from ffbench.hunt import parts

    task = tasks.get(cfg.task)
    parts.for_task(task.name)  # refuses a task the hunt is not wired into
    if cfg.estimate or cfg.estimator != "importance" or cfg.search != "map" or cfg.families or cfg.lines is not None:
        raise UsageError(f"--task {task.name} hunts with the map search only: drop --estimate, --estimator, "
                         "--search bandit, --family and --lines (they are the flip-flop language's)")
    unit = task.unit
    if not isinstance(cfg.length, int) or cfg.length < 4 * unit or cfg.length % unit:
        raise UsageError(f"--length must be a multiple of {unit} and >= {4 * unit} for --task {task.name} "
                         f"({unit} characters per instruction), got {cfg.length!r}")
    template = render.load_template(cfg.render)
    render.check_task(template, task)
    return Plan(cfg, template, None, [])


# ----------------------------------------------------------------------------- entry points
DEFAULT_LENGTH = 512


def hunt_model(model: str, budget: int, out: str | None = None, length: int | None = None, seed: int = 0,
               render_name: str | None = None, budget_tokens: int | None = None, estimate: str | None = None,
               families: list[str] | None = None, per_read: bool = False, model_args: dict | None = None,
               base_url: str | None = None, api_key: str | None = None, iid: str | None = None,
               search: str | None = None, lines: str | None = None, progress: bool = False,
               echo: Callable[[str], None] = print, executor: str = "local", workers: int | None = None,
               ray_address: str | None = None, task: str | None = None,
               estimator_name: str | None = None) -> tuple[dict, str]:
    """Resolve ``model`` (a provider/model spec) and hunt it; return (summary, hunt directory).

    The length defaults to an ffbench/ checkpoint's training length, else the task's default (512 for
    ffl); the rendering to the task's; the directory to ``hunts/<provider>_<model name>-<config hash>``.
    """

    from ffbench import model_handle, tasks
    from ffbench.hunt import parts

    the_task = parts.for_task(task).task  # a task the hunt is not wired into is refused before anything loads
    handle = model_handle.resolve(model, model_args, base_url, api_key)
    cfg = HuntConfig(model=handle.spec, budget=budget,
                     length=length or handle.default_length() or the_task.default_length,
                     model_args=handle.recorded_args, budget_tokens=budget_tokens, seed=seed,
                     render=render_name or the_task.default_render, estimate=estimate,
                     families=list(families or []), per_read=per_read, iid=iid,
                     search=search or ("bandit" if families else "map"), lines=lines,
                     task=tasks.config_value(task), estimator=estimator_name or surrogate_hunt.ESTIMATORS[0])
    plan(cfg)  # the usage errors of the hunt's own flags, before the provider is imported
    cfg.base_url = handle.recorded_base_url
    if out is None:
        from ffbench import backends

        out = backends.default_directory("hunts", handle.spec, cfg.digest()[:10])
    ref = handle.connect(HuntDir(out).request_cache, echo)
    return hunt(cfg, out, ref, progress=progress, echo=echo, executor=executor, workers=workers,
                ray_address=ray_address), out


def hunt(cfg: HuntConfig, out_dir: str, model: ModelRef, progress: bool = False,
         echo: Callable[[str], None] = print, executor: str = "local", workers: int | None = None,
         ray_address: str | None = None) -> dict:
    """Run (or resume) a hunt in ``out_dir``; return the summary written to hunt.json.

    ``executor`` "ray" scores each round's candidates on ``workers`` Ray actors (:mod:`ffbench.engine`),
    a share each; the hunt is the same as a local one wherever the model's scores do not depend on
    the size of a batch of equal-length sequences (API models, the reference models on CPU: tested;
    :func:`ffbench.hunt.job.split`)."""
    from ffbench import executors

    executors.check(executor, workers)
    p = plan(cfg)
    if model.serving().chat:  # the provider's own answer for these args (openai/ with api=chat is a chat model)
        raise UsageError(f"{model.spec} is a chat model: the hunt needs log-probabilities of answers (choice "
                         "scoring); use a base model, or an API that returns prompt log-probabilities")
    model.check([p.template], ["choice"])
    hd = HuntDir(out_dir)
    hd.check_usable()
    fingerprint = model.fingerprint_before_load()
    existed = hd.path.exists()
    with hd.lock():
        try:
            return _hunt_locked(p, hd, model, fingerprint, progress, echo, (executor, workers, ray_address))
        except BaseException as exc:
            if not existed:
                hd.remove_if_empty()
            if isinstance(exc, KeyboardInterrupt):  # before the first round (loading, a server's listing)
                kept = "nothing was kept" if not hd.path.exists() else f"what {out_dir} holds is kept; rerun to resume"
                raise Interrupted(f"interrupted before the hunt began; {kept}") from None
            raise


def _hunt_locked(p: Plan, hd: HuntDir, model: ModelRef, fingerprint: dict | None, progress: bool, echo,
                 executor: tuple = ("local", None, None)) -> dict:
    cfg = p.config
    state = hd.read_state()
    if state is None and hd.holds_other_files():
        raise UsageError(f"{str(hd.path)!r} holds files but no hunt state: choose another --out")
    from ffbench.hunt import parts

    if state is not None and not parts.for_task(cfg.task).compatible(state.get("map", {})):
        raise UsageError(f"{str(hd.path)!r} holds a map with other axes (an earlier ffbench's hunt): choose another "
                         "--out")
    wanted = RunIdentity(cfg.identity(), {}, fingerprint or {})
    if state is not None:
        _check_identity(hd, state, wanted, include_model=fingerprint is not None)
    backend = None
    try:
        if fingerprint is None or _work_left(state, cfg):
            backend = engine.start(model, job.HuntJob(cfg.render, cfg.per_read), *executor, echo=echo)
        if fingerprint is None:
            fingerprint = backend.fingerprint()
            wanted.model = fingerprint
            if state is not None:
                _check_identity(hd, state, wanted, include_model=True)
        if state is None:
            hd.clear_rounds()  # a first round cut short left no state: start it again
            state = _new_state(p, wanted)
        hunter = Hunter(p, hd, state, backend, echo)
        if not _work_left(state, cfg):
            echo(f"hunt already complete in {hd.path} ({state['spent']['reads']:,} reads); nothing scored")
        else:
            hunter.run(progress)
        return hunter.finish()
    finally:
        if backend is not None:
            backend.close()


def _check_identity(hd: HuntDir, state: dict, wanted: RunIdentity, include_model: bool) -> None:
    held = RunIdentity.from_dict(state.get("identity") or {})
    if "search" not in held.config:  # a hunt from before the map search: it was a bandit (or an estimate)
        held.config = {**held.config, "search": wanted.config["search"] if held.config.get("estimate") else "bandit"}
    diff = held.differences(wanted, include_model=include_model)
    if diff:
        raise UsageError(f"{str(hd.path)!r} holds another hunt ({'; '.join(diff)} differ): choose another --out, "
                           "or delete the directory to start over")


def _work_left(state: dict | None, cfg: HuntConfig) -> bool:
    if state is None:
        return True
    spent = state["spent"]
    if spent["reads"] >= cfg.budget or (cfg.budget_tokens is not None and spent["tokens"] >= cfg.budget_tokens):
        return False
    return state.get("stop_reason") != "exhausted" or cfg.budget > state.get("exhausted_budget", 0)


def _new_state(p: Plan, identity: RunIdentity) -> dict:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    state = {"version": STATE_VERSION, "identity": identity.as_dict(), "created": now, "round": 0,
             "spent": {"reads": 0, "tokens": 0, "sequences": 0, "rescored_reads": 0, "rescored_tokens": 0},
             "bandit": {}, "pool": [], "glitches": [], "seen": [], "unconfirmed": 0, "stop_reason": None}
    if p.target is None and p.config.search == "map":
        state["map"] = {}
        state["origins"] = {}
        state["shapes"] = {}
        state["shrunk_cells"] = {}
        state["labeled"] = {}  # reads with a stress family's construction (ffbench.hunt.lines), for its lines
        state["spent"]["shrink_reads"] = 0
    if p.target is not None and p.config.estimator == surrogate_hunt.METHOD:
        state["estimate"] = {"method": surrogate_hunt.METHOD, "sequences": 0}
    elif p.target is not None:
        proposal = estimator.Proposal.initial(p.target)
        state["estimate"] = {"phase": "adapt", "stage": 0, "proposal": proposal.as_dict(), "stages": [],
                             "final_rounds": [], "sequences": 0}
    return state


# ----------------------------------------------------------------------------- scoring
@dataclass
class Scored:
    """Per read (row-major over the sequences): the language's reads plus the model's verdicts."""

    reads: language.Reads
    correct: np.ndarray
    margin: np.ndarray
    prediction: np.ndarray
    tokens: np.ndarray  # per sequence

    def sequence_reads(self, k: int) -> slice:
        lo, hi = np.searchsorted(self.reads.seq_index, [k, k + 1])
        return slice(int(lo), int(hi))


def digest(seq: np.ndarray) -> str:
    return hashlib.blake2b(seq.tobytes(), digest_size=10).hexdigest()


# ----------------------------------------------------------------------------- the hunter
class Hunter:
    def __init__(self, p: Plan, hd: HuntDir, state: dict, backend, echo):
        self.p, self.hd, self.state, self.backend, self.echo = p, hd, state, backend, echo
        self.cfg = p.config
        self.bandit = bandit_mod.Bandit(p.arm_families())
        self.bandit.load(state["bandit"])
        self.params = p.arm_params()
        self.seen = set(state["seen"])
        self.glitch_texts = {g["text"] for g in state["glitches"]}
        from ffbench.hunt import parts

        self.parts = parts.for_task(self.cfg.task)  # the task's descriptors, candidates and shrinking moves

    # ------------------------------------------------------------------ budget
    def remaining(self) -> tuple[int, float]:
        spent = self.state["spent"]
        tokens = math.inf if self.cfg.budget_tokens is None else self.cfg.budget_tokens - spent["tokens"]
        return self.cfg.budget - spent["reads"], tokens

    def run(self, progress: bool) -> None:
        bar = None
        if progress:
            import sys

            from tqdm import tqdm

            bar = tqdm(total=self.cfg.budget, initial=self.state["spent"]["reads"], desc="hunt", unit="read",
                       file=sys.stderr, dynamic_ncols=True)
        try:
            while True:
                reads, tokens = self.remaining()
                if reads <= 0 or tokens <= 0:
                    self.state["stop_reason"] = "budget" if reads <= 0 else "token budget"
                    break
                rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.cfg.seed,
                                                                                   self.state["round"]])))
                before = self.state["spent"]["reads"]
                if self.p.target is not None and self.cfg.estimator == surrogate_hunt.METHOD:
                    done = self._surrogate_round(rng)
                elif self.p.target is not None:
                    done = self._estimate_round(rng)
                elif self.cfg.search == "map":
                    done = self._map_round(rng)
                else:
                    done = self._search_round(rng)
                if not done:
                    self.state["stop_reason"] = "exhausted"  # no new candidate fits what is left
                    self.state["exhausted_budget"] = self.cfg.budget
                    break
                self.state["round"] += 1
                self.state["bandit"] = self.bandit.state()
                self.state["seen"] = sorted(self.seen)
                self.hd.write_state(self.state)
                self._write_outputs(final=False)
                if bar is not None:
                    bar.update(self.state["spent"]["reads"] - before)
        except KeyboardInterrupt:
            # the outputs describe the last finished round, exactly what a rerun resumes from
            self.state = self.hd.read_state() or self.state
            self.bandit = bandit_mod.Bandit(self.p.arm_families())
            self.bandit.load(self.state["bandit"])
            if self.state["round"]:
                self._write_outputs(final=True)
            raise Interrupted(f"interrupted: {self.state['round']} rounds ({self.state['spent']['reads']:,} reads) "
                              f"are kept in {self.hd.path}; rerun the same command to resume") from None
        finally:
            if bar is not None:
                bar.close()
        self.hd.write_state(self.state)

    def _score(self, arr: np.ndarray) -> Scored:
        out = self._scored("all", arr)
        reads = self.parts.task.extract_reads(arr)
        return Scored(reads, out["prediction"] == reads.target, out["margin"], out["prediction"], out["tokens"])

    def _scored(self, kind: str, rows) -> dict:
        """Every candidate of ``rows`` scored through the engine (:mod:`ffbench.hunt.job`): one unit
        per worker, put back in order."""
        parts = job.split([len(row) for row in rows], self.backend.workers)
        units = [(k, kind, [rows[i] for i in idx] if kind == "last" else rows[idx]) for k, idx in enumerate(parts)]
        done = sorted(((unit[0], out) for unit, (out, _usage) in self.backend.imap(units)), key=lambda u: u[0])
        merged = {name: np.concatenate([out[name] for _, out in done]) for name in done[0][1]}
        if kind == "last":  # one read per sequence: each unit's rows go back to their places
            order = np.concatenate(parts)
            for name, values in merged.items():
                merged[name] = np.empty_like(values)
                merged[name][order] = values
        return merged

    def _tokens(self, text: str) -> int:
        return self._count_tokens([text])[0]

    def _count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens as the model counts them (characters with no model loaded, or where it cannot say)."""
        return [len(t) for t in texts] if self.backend is None else self.backend.call("count_tokens", texts)

    def _confirm(self, arr: np.ndarray, first: Scored, failing: list[int]) -> dict[int, dict]:
        """Score the failing sequences once more; keep the reads wrong both times."""
        if not failing:
            return {}
        again = self._score(arr[failing])
        self.state["spent"]["rescored_reads"] += len(again.reads)
        self.state["spent"]["rescored_tokens"] += int(again.tokens.sum())
        out = {}
        for j, k in enumerate(failing):
            a, b = first.sequence_reads(k), again.sequence_reads(j)
            both = ~first.correct[a] & ~again.correct[b]
            if both.any():
                idx = np.flatnonzero(both)
                out[k] = {"failing_reads": idx.tolist(),
                          "failing_positions": first.reads.position[a][idx].tolist(),
                          "margins": first.margin[a][idx].tolist(),
                          "rescored_margins": again.margin[b][idx].tolist(),
                          "write_distance": first.reads.write_distance[a][idx].tolist()}
            else:
                self.state["unconfirmed"] += 1
        return out

    def _record_glitch(self, seq: np.ndarray, meta: dict, confirmed: dict) -> bool:
        text = language.to_strings(seq[None])[0]
        if text in self.glitch_texts:
            return False
        self.glitch_texts.add(text)
        reads_in = self.parts.reads_in(seq)
        self.state["glitches"].append({"text": text, **meta, **confirmed, "reads": reads_in,
                                       "round": self.state["round"],
                                       "found_after_reads": self.state["spent"]["reads"]})
        return True

    # ------------------------------------------------------------------ search
    def _search_round(self, rng: np.random.Generator) -> bool:
        reads_left, tokens_left = self.remaining()
        goal = min(ROUND_READS, reads_left)
        pool = self.state["pool"]
        available = set(self.params) | ({EXPLOIT} if pool else set())
        rows, metas, planned, round_keys = [], [], 0, set()
        attempts = 0
        while planned < goal and attempts < 8 * ROUND_READS:
            attempts += 1
            (label,) = self.bandit.choose(rng, 1, available)
            if label == EXPLOIT:
                made = self._mutant(rng)
                if made is None:
                    continue
                seq, meta = made
            else:
                family, params = self.params[label]
                seq = families.FAMILIES[family].sample(params, self.cfg.length, rng, 1)[0]
                meta = {"family": family, "point": label, "params": dict(params), "origin": "explore",
                        "mutations": 0, "moves": []}
            key = digest(seq)
            n_reads = int(np.count_nonzero(seq[0::2] == language.R))
            if key in self.seen or key in round_keys:
                self.bandit.skip(label, n_reads)  # a repeat earns nothing and costs no read
                continue
            if planned + n_reads > reads_left:
                break
            round_keys.add(key)
            rows.append(seq)
            metas.append((label, meta))
            planned += n_reads
        round_ = self._score_candidates(rows, metas, tokens_left)
        if round_ is None:
            return False
        arr, metas, scored, confirmed = round_
        rewards = bandit_mod.reward(scored.correct, scored.margin)
        for k, (label, meta) in enumerate(metas):
            s = scored.sequence_reads(k)
            new = k in confirmed and self._record_glitch(arr[k], meta, confirmed[k])
            self.bandit.update(label, s.stop - s.start, float(rewards[s].sum()),
                               int(np.count_nonzero(~scored.correct[s])), int(new))
            self._offer_to_pool(arr[k], meta, scored, s)
        return True

    def _score_candidates(self, rows: list, metas: list, tokens_left):
        """Score a round's candidates (as many as the token budget lets through), count what they
        spent, and re-score the failing ones: (sequences, their metas, scores, confirmed glitches),
        or None when not one candidate fits."""
        keep = self._fit_tokens(rows, tokens_left)
        if keep == 0:
            return None
        arr, metas = np.stack(rows[:keep]), metas[:keep]
        scored = self._score(arr)
        spent = self.state["spent"]
        spent["reads"] += len(scored.reads)
        spent["tokens"] += int(scored.tokens.sum())
        spent["sequences"] += arr.shape[0]
        self.seen.update(digest(row) for row in arr)
        failing = [k for k in range(arr.shape[0]) if not scored.correct[scored.sequence_reads(k)].all()]
        return arr, metas, scored, self._confirm(arr, scored, failing)

    # ------------------------------------------------------------------ map search
    def _map_round(self, rng: np.random.Generator) -> bool:
        """One round of the coverage-driven search (:mod:`ffbench.hunt.atlas`): candidates that cover
        empty cells, refine uncertain ones and mutate elites; every read of every candidate counted
        in its cell; each new glitch in a cell not yet shrunk is shrunk to a minimal shape."""
        from ffbench.hunt import descriptors, lines

        mp = self.parts
        amap = mp.atlas(self.state["map"], self.state.setdefault("map_aims", {}) if mp.flipflop else None)
        reads_left, tokens_left = self.remaining()
        goal = min(ROUND_READS, reads_left)
        rows, metas, planned, round_keys, attempts = [], [], 0, set(), 0
        while planned < goal and attempts < 8 * ROUND_READS:
            attempts += 1
            seq, meta = mp.candidate(amap, self.cfg.length, rng)
            key = digest(seq)
            n_reads = mp.reads_in(seq)
            if key in self.seen or key in round_keys:
                continue
            if planned + n_reads > reads_left:
                break
            round_keys.add(key)
            rows.append(seq)
            metas.append(meta)
            planned += n_reads
        round_ = self._score_candidates(rows, metas, tokens_left)
        if round_ is None:
            return False
        arr, metas, scored, confirmed = round_
        keys = mp.cell_keys(arr)
        slots = mp.task.slot(scored.reads.position)
        labeled = self.state.setdefault("labeled", {})
        new_glitches = []
        for k, meta in enumerate(metas):
            s = scored.sequence_reads(k)
            wrong = np.zeros(s.stop - s.start, dtype=bool)
            if k in confirmed:
                wrong[confirmed[k]["failing_reads"]] = True
            amap.add(arr[k], keys[s], slots[s], wrong, scored.margin[s], meta["origin"])
            if mp.lines:
                lines.record(labeled, arr[k], slots[s], wrong)
            origin = self.state["origins"].setdefault(meta["origin"], {"reads": 0, "sequences": 0, "errors": 0,
                                                                      "glitches": 0})
            origin["reads"] += s.stop - s.start
            origin["sequences"] += 1
            origin["errors"] += int(wrong.sum())
            record = {"family": "map", "point": f"map:{meta['origin']}", "params": {"target": meta["target"]},
                      "origin": meta["origin"], "mutations": len(meta["moves"]), "moves": meta["moves"]}
            if k in confirmed and self._record_glitch(arr[k], record, confirmed[k]):
                origin["glitches"] += 1
                first = confirmed[k]["failing_reads"][0]
                new_glitches.append((k, confirmed[k]["failing_positions"][0], descriptors.key_string(keys[s][first])))
        for k, position, cell in new_glitches:
            self._shrink(arr[k], position, cell)
        return True

    def _shrink(self, seq: np.ndarray, position: int, cell: str) -> None:
        """Shrink one glitch (the first of its region) within the shrinking budget and record its shape;
        a glitch that holds a minimal shape already found is counted there instead."""
        from ffbench.hunt import shrink

        mp = self.parts
        spent = self.state["spent"]
        region = ",".join(mp.project(cell))  # the cell on the cover axes: shrink once per region
        done = self.state["shrunk_cells"].get(region, 0)
        reads_left, tokens_left = self.remaining()
        allowance = min(SHRINK_READS, reads_left, int(SHRINK_SHARE * self.cfg.budget) - spent["shrink_reads"])
        if done >= SHRINK_PER_CELL or allowance <= 0 or tokens_left <= 0:
            return

        def fails(cands: list[np.ndarray]) -> np.ndarray:
            out = self._score_last(cands)
            spent["tokens"] += int(out.tokens.sum())
            return ~out.correct

        start = shrink.cut_after(seq, position)
        known = next((e for e in self.state["shapes"].values()
                      if e["minimal"] and mp.contains(start, language.to_array([e["text"]])[0])), None)
        if known is not None:  # it holds a minimal shape already found: counted there, no reads spent
            self.state["shrunk_cells"][region] = done + 1
            known["containing"] = known.get("containing", 0) + 1
            return
        if math.isfinite(tokens_left):  # every candidate is at most as long as the cut glitch
            allowance = min(allowance, int(tokens_left // self._tokens(render.render(start, self.p.template).text)))
            if allowance <= 0:
                return
        self.state["shrunk_cells"][region] = done + 1
        result = shrink.shrink(start, fails, allowance, mp.moves or shrink.FlipFlopMoves)
        spent["reads"] += result.reads
        spent["shrink_reads"] += result.reads
        again = self._score_last([result.seq])  # the shrunk read, confirmed once more
        spent["rescored_reads"] += 1
        spent["rescored_tokens"] += int(again.tokens.sum())
        if again.correct[0]:
            self.state["unconfirmed"] += 1
            return
        name = mp.shape(result.seq)
        entry = self.state["shapes"].setdefault(name, {"shape": name, "text": result.text,
                                                       "length": int(result.seq.size), "minimal": result.minimal,
                                                       "glitches": 0, "containing": 0, "cells": [],
                                                       "margin": float(again.margin[0])})
        entry["glitches"] += 1
        entry["cells"].append(cell)

    def _fit_tokens(self, rows: list[np.ndarray], tokens_left: float) -> int:
        """How many of ``rows`` (in order) fit the token budget left, counted before anything is scored."""
        if not math.isfinite(tokens_left):
            return len(rows)
        counts = np.array(self._count_tokens([render.render(row, self.p.template).text for row in rows]))
        return int(np.searchsorted(np.cumsum(counts), tokens_left, side="right"))

    def _offer_to_pool(self, seq: np.ndarray, meta: dict, scored: Scored, s: slice) -> None:
        """Keep the sequence among the lowest-margin ones seen (its weakest read decides), at most
        ``POOL_PER_ROOT`` per family point."""
        correct, margin = scored.correct[s], scored.margin[s]
        if correct.size == 0:
            return
        # a wrong read counts as its margin (<= 0; 0 when unknown), a right one as its margin (+inf when unknown)
        signed = np.where(correct, np.nan_to_num(margin, nan=np.inf), np.minimum(np.nan_to_num(margin, nan=0.0), 0.0))
        weak = int(np.argmin(signed))
        if not math.isfinite(signed[weak]):
            return
        entry = {"text": language.to_strings(seq[None])[0], "margin": float(signed[weak]),
                 "slot": int((scored.reads.position[s][weak] - 1) // 2), "family": meta["family"],
                 "point": meta["point"], "params": meta["params"], "mutations": meta["mutations"],
                 "moves": meta["moves"]}
        pool = sorted(self.state["pool"] + [entry], key=lambda e: e["margin"])
        kept, per_root = [], {}
        for e in pool:
            if per_root.get(e["point"], 0) < POOL_PER_ROOT:
                per_root[e["point"]] = per_root.get(e["point"], 0) + 1
                kept.append(e)
        self.state["pool"] = kept[:POOL_SIZE]

    def _mutant(self, rng: np.random.Generator):
        pool = self.state["pool"]
        parent = pool[int(len(pool) * rng.random() ** 2)]  # biased toward the lowest margins
        seq = language.to_array([parent["text"]])[0].copy()
        made = mutations.neighbours(seq, parent["slot"], rng, 1)
        if not made:
            return None
        child, moves = made[0]
        meta = {"family": parent["family"], "point": parent["point"], "params": parent["params"],
                "origin": "exploit", "mutations": parent["mutations"] + len(moves),
                "moves": parent["moves"] + moves}
        return child, meta

    # ------------------------------------------------------------------ estimate
    def _estimate_round(self, rng: np.random.Generator) -> bool:
        """One stage (adapting) or round (final) of importance samples: one scored read each."""
        import pyarrow as pa

        est = self.state["estimate"]
        target = self.p.target
        proposal = estimator.Proposal.from_dict(est["proposal"])
        reads_left, tokens_left = self.remaining()
        adapt = est["phase"] == "adapt"
        num = min(self._stage_reads() if adapt else ROUND_READS, reads_left)
        draw = estimator.sample(target, proposal, num, rng)
        seqs = draw.sequences()
        keep = self._fit_tokens(seqs, tokens_left)
        if keep == 0:
            return False
        if keep < num:
            draw = estimator.Draw(draw.slot[:keep], draw.outcomes[:keep], draw.first_bit[:keep],
                                  draw.component[:keep])
            seqs = seqs[:keep]
        scored = self._score_last(seqs)
        weight = estimator.weights(target, proposal, draw)
        distance = draw.write_distance()
        wrong = ~scored.correct
        spent = self.state["spent"]
        spent["reads"] += keep
        spent["tokens"] += int(scored.tokens.sum())
        spent["sequences"] += keep
        first = est["sequences"]
        est["sequences"] += keep
        r = self.state["round"]
        self.hd.write_round(r, pa.table({
            "round": pa.array(np.full(keep, r, np.int64)),
            "phase": pa.array([est["phase"]] * keep, pa.string()),
            "stage": pa.array(np.full(keep, est["stage"], np.int64)),
            "sample": pa.array(np.arange(first, first + keep, dtype=np.int64)),
            "slot": pa.array(draw.slot.astype(np.int64)),
            "position": pa.array(2 * draw.slot.astype(np.int64) + 1),
            "target": pa.array(scored.reads.target), "prediction": pa.array(scored.prediction),
            "correct": pa.array(scored.correct), "margin": pa.array(scored.margin), "weight": pa.array(weight),
            "write_distance": pa.array(distance.astype(np.int64)),
            "component": pa.array(draw.component.astype(np.int64)),
            "text": pa.array([language.to_strings(q[None])[0] for q in seqs], pa.string()),
        }))
        failing = np.flatnonzero(wrong).tolist()
        if failing:
            again = self._score_last([seqs[k] for k in failing])
            self.state["spent"]["rescored_reads"] += len(failing)
            self.state["spent"]["rescored_tokens"] += int(again.tokens.sum())
            for j, k in enumerate(failing):
                if again.correct[j]:
                    self.state["unconfirmed"] += 1
                    continue
                seq = pad_to(seqs[k], self.cfg.length)
                meta = {"family": "is_proposal", "point": f"is_proposal(target={target.name})",
                        "params": {"target": target.name, "phase": est["phase"], "stage": est["stage"],
                                   "component": int(draw.component[k])},
                        "origin": "estimate", "mutations": 0, "moves": []}
                info = {"failing_reads": [int(np.count_nonzero(seqs[k][0::2] == language.R)) - 1],
                        "failing_positions": [len(seqs[k]) - 1], "margins": [float(scored.margin[k])],
                        "rescored_margins": [float(again.margin[j])],
                        "write_distance": [int(distance[k])]}
                self._record_glitch(seq, meta, info)
        if adapt:
            local = estimator.estimate(target, wrong, weight, proposal.max_weight(target))
            chosen = estimator.elite(scored.margin, wrong)
            new = estimator.update(target, proposal, draw, weight, chosen)
            level = scored.margin[chosen & ~wrong]
            est["stages"].append({"stage": est["stage"], "samples": keep, "failing": int(wrong.sum()),
                                  "elite": int(chosen.sum()),
                                  "elite_margin_level": float(np.nanmax(level)) if level.size else 0.0,
                                  "estimate": local.rate, "shares": proposal.shares.tolist()})
            est["proposal"] = new.as_dict()
            est["stage"] += 1
            adapt_spent = sum(st["samples"] for st in est["stages"])
            if est["stage"] >= MAX_STAGES or adapt_spent + self._stage_reads() > ADAPT_SHARE * self.cfg.budget:
                est["phase"] = "final"
        else:
            est["final_rounds"].append(r)
        return True

    def _surrogate_round(self, rng: np.random.Generator) -> bool:
        """One round of whole i.i.d. sequences of the target, every read scored (:mod:`ffbench.hunt.surrogate_hunt`);
        failing sequences confirmed as in the searches, their doubly wrong reads reported as glitches."""
        import pyarrow as pa

        target = self.p.target
        reads_left, tokens_left = self.remaining()
        rows = surrogate_hunt.draw(target, min(ROUND_READS, reads_left), rng)
        keep = self._fit_tokens(rows, tokens_left) if rows else 0
        if keep == 0:
            return False
        arr = np.stack(rows[:keep])
        scored = self._score(arr)
        spent = self.state["spent"]
        spent["reads"] += len(scored.reads)
        spent["tokens"] += int(scored.tokens.sum())
        spent["sequences"] += keep
        est = self.state["estimate"]
        first = est["sequences"]
        est["sequences"] += keep
        texts = language.to_strings(arr)
        seq = scored.reads.seq_index.astype(np.int64)
        r = self.state["round"]
        self.hd.write_round(r, pa.table({
            "round": pa.array(np.full(seq.size, r, np.int64)),
            "sequence": pa.array(first + seq),
            "slot": pa.array(self.parts.task.slot(scored.reads.position).astype(np.int64)),
            "position": pa.array(scored.reads.position.astype(np.int64)),
            "target": pa.array(scored.reads.target), "prediction": pa.array(scored.prediction),
            "correct": pa.array(scored.correct), "margin": pa.array(scored.margin),
            "write_distance": pa.array(scored.reads.write_distance.astype(np.int64)),
            "text": pa.array([texts[k] for k in seq], pa.string()),
        }))
        failing = [k for k in range(keep) if not scored.correct[scored.sequence_reads(k)].all()]
        for k, info in self._confirm(arr, scored, failing).items():
            meta = {"family": "target", "point": f"target({target.name})", "params": {"target": target.name},
                    "origin": "estimate", "mutations": 0, "moves": []}
            self._record_glitch(arr[k], meta, info)
        return True

    def _surrogate_outputs(self, final: bool) -> dict:
        """hunt.json's estimate of a surrogate hunt: fitted once the hunt has stopped (the budget spent,
        not an interruption), with samples.parquet holding every scored read, its fold and its guess."""
        target = self.p.target
        if not final or not self.state.get("stop_reason"):
            return {"method": surrogate_hunt.METHOD, "target": target.name, "result": None,
                    "reason": "in progress" if not final else "interrupted: rerun the same command to finish"}
        tables = self.hd.read_rounds(range(self.state["round"]))
        if not tables:
            return {"method": surrogate_hunt.METHOD, "target": target.name, "result": None,
                    "reason": "nothing scored: raise --budget"}
        import pyarrow as pa

        self.echo(f"fitting the guess ({surrogate_hunt.surrogate.FOLDS} folds) on "
                  f"{self.state['estimate']['sequences']:,} scored sequences")
        out, table = surrogate_hunt.final(pa.concat_tables(tables), target, self.cfg.seed)
        self.hd.write_samples(table)
        return out

    def _score_last(self, seqs: list[np.ndarray]) -> Scored:
        """Score only the last read of each sequence (the prefix is context, its reads are not asked)."""
        out = self._scored("last", list(seqs))
        targets = out["target"]
        n = len(seqs)
        reads = language.Reads(np.arange(n), np.zeros(n, np.int64), np.array([len(q) - 1 for q in seqs]), targets,
                               np.zeros(n, np.int64), np.zeros(n, np.int64))
        return Scored(reads, out["prediction"] == targets, out["margin"], out["prediction"], out["tokens"])

    def _stage_reads(self) -> int:
        return max(200, min(STAGE_READS, self.cfg.budget // 20))

    # ------------------------------------------------------------------ outputs
    def finish(self) -> dict:
        return self._write_outputs(final=True)

    def _write_outputs(self, final: bool) -> dict:
        from ffbench.hunt import outputs

        if self.state["glitches"]:
            outputs.write_glitches(self.hd.glitches, self.state["glitches"], self.cfg.length)
        estimate = None
        if self.p.target is not None and self.cfg.estimator == surrogate_hunt.METHOD:
            estimate = self._surrogate_outputs(final)
        elif self.p.target is not None:
            est = self.state["estimate"]
            if final:
                tables = self.hd.read_rounds(range(self.state["round"]))
                if tables:
                    import pyarrow as pa

                    self.hd.write_samples(pa.concat_tables(tables))
                estimate = self._final_estimate()
            else:
                estimate = {"target": self.p.target.name, "result": None, "reason": "in progress"}
            estimate["stages"] = est["stages"]
            estimate["proposal"] = est["proposal"]
        summary = outputs.summary(self.cfg, self.state, self.bandit, estimate, __version__)
        self.hd.write_summary(summary)
        return summary

    def _final_estimate(self) -> dict:
        est = self.state["estimate"]
        target = self.p.target
        proposal = estimator.Proposal.from_dict(est["proposal"])
        tables = self.hd.read_rounds(est["final_rounds"])
        out = {"target": target.name, "distribution": target.dist.label(),
               "expected_reads_per_sequence": target.expected_reads(), "defensive": proposal.defensive,
               "max_weight": proposal.max_weight(target), "adapt_reads": sum(st["samples"] for st in est["stages"]),
               "proposal_readable": proposal.describe(target)}
        if not tables:
            out["result"] = None
            out["reason"] = "the budget ended before the final proposal was sampled: raise --budget"
            return out
        import pyarrow as pa

        t = pa.concat_tables(tables)
        result = estimator.estimate(target, ~t.column("correct").to_numpy(), t.column("weight").to_numpy(),
                                    proposal.max_weight(target))
        width = result.ci95[1] - result.ci95[0]
        total = out["adapt_reads"] + result.samples
        out["result"] = result.as_dict()
        out["iid_same_reads"] = estimator.iid_comparison(result.rate, width, total)
        out["iid_same_reads_final_only"] = estimator.iid_comparison(result.rate, width, result.samples)
        # Per token the comparison differs: an i.i.d. read costs a target sequence's tokens over its reads,
        # a sample costs its whole prefix.
        needed = out["iid_same_reads"]["reads_for_same_width"]
        if needed:
            example = language.sample(target.dist, 1, 0)[0]
            per_read = self._tokens(render.render(example, self.p.template).text) / target.expected_reads()
            spent = self.state["spent"]["tokens"]
            out["iid_same_tokens"] = {"tokens_per_iid_read": per_read, "tokens_for_same_width": needed * per_read,
                                      "tokens_spent": spent, "token_ratio": needed * per_read / spent if spent else None}
        return out
