"""The results schema: the one way anything reads or writes a run's results.

``results.json`` (docs/architecture.md has the contract) is one :class:`RunResults`: who was
scored (``model``, ``backend``, ``fingerprint``), on what (``config``, ``data_sha256``) and, per
cell, a :class:`CellResult`. The runner writes it, and check, the registry, the report, the
library API and the shipped references read it, only through these classes.

A cell has two identities, and each has one definition here:

* :class:`CellKey` says what a cell *measures*: the sequences' distribution (suite label, length,
  p_ignore) and how they were scored (rendering, scoring, and a ``variant`` for run options that
  change the answer, such as the few-shot demonstration). Two cells with equal keys are comparable,
  in one run or across runs, which is what ``ffbench check`` and the report's merges rely on.
* :attr:`CellResult.id` names one cell of one run: its key plus its data's content hash, so two
  cells of a run with the same key but different sequences (a suite regenerated with another seed
  beside a data file of the same suite) can never be mixed. Every row of ``samples.parquet``
  carries its cell's id in the ``cell`` column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ffbench.errors import Damaged, FFBenchError
from ffbench.sources import SourceSpec

SCHEMA_VERSION = 2


def _round_p(p) -> float | None:
    return None if p is None or (isinstance(p, float) and math.isnan(p)) else round(float(p), 6)



BY_PARAMETER_COUNTS = ("family", "reads", "errors", "ci95")  # the keys of a by_parameter row that are not parameters


def parameter_axes(row: dict) -> tuple[str, list[str]]:
    """How a ``by_parameter`` row (results.json) is laid out for reading: the parameter that varies (the
    last numeric one: a retraction depth ``k``, a stale ``distance``) and the others, fixed per line or
    row (stale's ``placement``). One rule for the printed summary and the report."""
    params = [p for p in row if p not in BY_PARAMETER_COUNTS]
    numeric = [p for p in params if isinstance(row[p], (int, float)) and not isinstance(row[p], bool)]
    varied = numeric[-1] if numeric else (params or ["family"])[-1]
    return varied, [p for p in params if p != varied]

@dataclass(frozen=True, order=True)
class CellKey:
    """What a cell measures; equal keys are comparable (see the module docstring)."""

    suite: str
    length: int
    p_ignore: float | None
    render: str
    scoring: str
    variant: str = ""  # run options that change what is scored ("" = none), e.g. "fewshot"

    def __post_init__(self) -> None:
        object.__setattr__(self, "length", int(self.length))
        object.__setattr__(self, "p_ignore", _round_p(self.p_ignore))

    def describe(self) -> str:
        p = "" if self.p_ignore is None else f" p={self.p_ignore:g}"
        variant = f" [{self.variant}]" if self.variant else ""
        return f"{self.suite} T={self.length}{p} {self.render} {self.scoring}{variant}"

    def slug(self) -> str:
        """A file-name-safe form (shard folders)."""
        p = "na" if self.p_ignore is None else f"{self.p_ignore:g}"
        raw = f"{self.suite}-T{self.length}-p{p}-{self.render}-{self.scoring}" + (f"-{self.variant}" if self.variant else "")
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


@dataclass(frozen=True)
class CellResult:
    """One cell's counts, exact interval and breakdowns (one entry of results.json's ``results``)."""

    key: CellKey
    data_sha256: str
    num_sequences: int
    reads: int
    errors: int
    invalid: int = 0
    truncated: int = 0
    glitch_rate: float = math.nan
    accuracy: float = math.nan
    ci95: tuple[float, float] = (0.0, 1.0)
    source: SourceSpec | None = None
    reads_scored_per_read: int = 0
    by_write_distance: tuple = ()
    by_read_position: tuple = ()
    by_point: tuple = ()  # stress cells: per point, its family, parameters, reads, errors and ci95
    tolerances: tuple = ()  # stress cells: per family (other parameters fixed), how far it stays right
    breakdowns: dict = field(default_factory=dict, hash=False, compare=False)  # further named breakdowns
    # run control (ffbench.control): a cell may hold only the first shards of its sequences
    complete: bool = True  # every planned sequence was scored (num_sequences == planned_sequences)
    planned_sequences: int | None = None  # the cell's sequences in the plan (None: not recorded)
    stop_reason: str = "complete"  # why no more were scored: complete|certified|refuted|first_error|max_cost
    certify: dict | None = field(default=None, hash=False, compare=False)  # --certify: bound and verdict
    sampled: dict | None = field(default=None, hash=False, compare=False)  # --repeats K > 1 (ffbench.sampling)

    @property
    def id(self) -> str:
        """This cell of this run: key + content hash (the ``cell`` column of samples.parquet)."""
        return f"{self.key.slug()}-{self.data_sha256[:12]}"

    # the key's fields, for readability at call sites
    suite = property(lambda self: self.key.suite)
    length = property(lambda self: self.key.length)
    p_ignore = property(lambda self: self.key.p_ignore)
    render = property(lambda self: self.key.render)
    scoring = property(lambda self: self.key.scoring)
    variant = property(lambda self: self.key.variant)

    def to_dict(self) -> dict:
        out = {"id": self.id, "suite": self.suite, "length": self.length, "p_ignore": self.p_ignore,
               "render": self.render, "scoring": self.scoring, "variant": self.variant,
               "source": None if self.source is None else self.source.as_dict(),
               "data_sha256": self.data_sha256, "num_sequences": self.num_sequences, "reads": self.reads,
               "errors": self.errors, "invalid": self.invalid, "truncated": self.truncated,
               "glitch_rate": self.glitch_rate, "accuracy": self.accuracy, "ci95": list(self.ci95),
               "reads_scored_per_read": self.reads_scored_per_read,
               "per_read_fraction": self.reads_scored_per_read / self.reads if self.reads else 0.0,
               "by_write_distance": list(self.by_write_distance), "by_read_position": list(self.by_read_position),
               "complete": self.complete, "planned_sequences": self.planned_sequences, "stop_reason": self.stop_reason}
        if self.certify is not None:
            out["certify"] = dict(self.certify)
        if self.sampled is not None:
            out["sampled"] = dict(self.sampled)
        if self.by_point:
            out["by_point"], out["tolerances"] = list(self.by_point), list(self.tolerances)
        out.update(self.breakdowns)
        return out

    @classmethod
    def from_dict(cls, raw: dict, variant: str = "") -> "CellResult":
        """A cell of results.json (schema 2, or schema 1 where ``variant`` comes from the run config)."""
        try:
            key = CellKey(raw["suite"], raw["length"], raw.get("p_ignore"), raw["render"], raw["scoring"],
                          raw.get("variant", variant))
            src = raw.get("source")
            source = SourceSpec.from_dict(src) if isinstance(src, dict) else None
            known = {f.name for f in fields(cls)} | {"id", "suite", "length", "p_ignore", "render", "scoring",
                                                    "variant"}
            return cls(key=key, data_sha256=str(raw.get("data_sha256") or ""),
                       num_sequences=int(raw.get("num_sequences", 0)), reads=int(raw["reads"]),
                       errors=int(raw["errors"]), invalid=int(raw.get("invalid", 0)),
                       truncated=int(raw.get("truncated", 0)), glitch_rate=float(raw.get("glitch_rate", math.nan)),
                       accuracy=float(raw.get("accuracy", math.nan)), ci95=tuple(raw.get("ci95", (0.0, 1.0))),
                       source=source, reads_scored_per_read=int(raw.get("reads_scored_per_read", 0)),
                       by_write_distance=tuple(raw.get("by_write_distance", ())),
                       by_read_position=tuple(raw.get("by_read_position", ())),
                       by_point=tuple(raw.get("by_point", ())), tolerances=tuple(raw.get("tolerances", ())),
                       breakdowns={k: v for k, v in raw.items() if k not in known},
                       complete=bool(raw.get("complete", True)),
                       planned_sequences=None if raw.get("planned_sequences") is None else int(raw["planned_sequences"]),
                       stop_reason=str(raw.get("stop_reason", "complete")), certify=raw.get("certify"),
                       sampled=raw.get("sampled"))
        except (KeyError, TypeError, ValueError) as exc:
            raise FFBenchError(f"malformed cell in results ({type(exc).__name__}: {exc})") from None


@dataclass
class RunResults:
    """A finished (or stopped) run: what results.json holds, plus where its samples are.

    ``results`` are the typed cells; :attr:`cells` and :attr:`samples` are the same as pandas
    DataFrames for notebooks. ``samples_complete`` is False for shipped references, which keep only
    their failing reads.
    """

    model: str
    config: dict
    results: list[CellResult]
    backend: dict = field(default_factory=dict)
    ffbench_version: str = ""
    created: str = ""
    fingerprint: dict = field(default_factory=dict)
    data_sha256: str = ""
    usage: dict = field(default_factory=dict)
    stop_reason: str = "complete"  # complete | first_error | max_cost | certified | refuted (ffbench.control)
    stop_detail: str = ""  # why scoring stopped and what that means for the numbers, in words
    control: dict = field(default_factory=dict)  # the stopping flags and prices the run was scored under
    cost: dict | None = None  # USD of the usage at the given prices (None: no price given)
    not_scored: list = field(default_factory=list)  # planned cells a stopped run never reached
    extra: dict = field(default_factory=dict)  # keys of results.json this version does not interpret
    label: str = ""  # how the user named the run (a path, ffbench/NAME, registry:MODEL@REV)
    samples_path: Path | None = None
    samples_complete: bool = True
    reference: bool = False

    TOP_KEYS = ("schema_version", "model", "backend", "ffbench_version", "created", "config", "fingerprint",
                "data_sha256", "stop_reason", "stop_detail", "control", "usage", "cost", "not_scored", "results")

    def to_dict(self) -> dict:
        out = {"schema_version": SCHEMA_VERSION, "model": self.model, "backend": self.backend,
               "ffbench_version": self.ffbench_version, "created": self.created, "config": self.config,
               "fingerprint": self.fingerprint, "data_sha256": self.data_sha256, "stop_reason": self.stop_reason,
               "stop_detail": self.stop_detail, "control": self.control, "usage": self.usage, "cost": self.cost,
               "not_scored": list(self.not_scored), "results": [c.to_dict() for c in self.results]}
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, raw: dict, label: str = "", samples_path: Path | None = None,
                  samples_complete: bool = True, reference: bool = False) -> "RunResults":
        if not isinstance(raw, dict) or not isinstance(raw.get("results"), list) or "model" not in raw:
            raise FFBenchError(f"{label or 'results'} is not an ffbench results.json (needs 'model' and 'results')")
        version = int(raw.get("schema_version", 1))
        if version > SCHEMA_VERSION:
            raise FFBenchError(f"{label or 'results'} was written by a newer ffbench (results schema {version}); "
                               "upgrade ffbench to read it")
        config = raw.get("config") or {}
        if version == 1:
            cells = [replace(CellResult.from_dict(c, variant_of(config, c.get("scoring", "choice"))),
                             source=_legacy_source(c, config)) for c in raw["results"]]
        else:
            cells = [CellResult.from_dict(c) for c in raw["results"]]
        return cls(model=raw["model"], config=config, results=cells,
                   backend=raw.get("backend") or {}, ffbench_version=str(raw.get("ffbench_version", "")),
                   created=str(raw.get("created", "")), fingerprint=raw.get("fingerprint") or {},
                   data_sha256=str(raw.get("data_sha256", "")), usage=raw.get("usage") or {},
                   stop_reason=str(raw.get("stop_reason", "complete")), stop_detail=str(raw.get("stop_detail") or ""),
                   control=raw.get("control") or {}, cost=raw.get("cost"), not_scored=list(raw.get("not_scored") or []),
                   extra={k: v for k, v in raw.items() if k not in cls.TOP_KEYS},
                   label=label, samples_path=samples_path, samples_complete=samples_complete, reference=reference)

    def with_model(self, model: str) -> "RunResults":
        return replace(self, model=model, config={**self.config, "model": model})

    def keys(self) -> set[CellKey]:
        return {c.key for c in self.results}

    @property
    def complete(self) -> bool:
        """Every planned sequence of every planned cell was scored (no stopping rule cut the run)."""
        return not self.not_scored and all(c.complete for c in self.results)

    # ------------------------------------------------------------------ pandas views
    @property
    def cells(self):
        """One row per cell (pandas DataFrame): key fields, counts, rates, interval, data hash."""
        import pandas as pd

        rows = []
        for c in self.results:
            d = c.to_dict()
            d["ci_low"], d["ci_high"] = c.ci95
            if c.certify:
                d["certify_low"], d["certify_high"] = c.certify.get("lower"), c.certify.get("upper")
                d["certify_verdict"] = c.certify.get("verdict")
            rows.append({k: v for k, v in d.items() if not isinstance(v, (list, dict))})
        return pd.DataFrame(rows)

    @property
    def samples(self):
        """One row per scored read (pandas DataFrame); a shipped reference holds only its failing reads."""
        if self.samples_path is None:
            raise FFBenchError(f"{self.label or self.model}: no samples (a registry entry keeps counts only)")
        return _read_samples(self.samples_path, self.label).to_pandas()

    def failing(self, cell: CellResult, limit: int | None = None):
        """The cell's failing reads as an Arrow table (first ``limit``), selected by the cell's id."""
        import pyarrow.compute as pc

        if self.samples_path is None:
            return None
        table = _read_samples(self.samples_path, self.label, filters=[("correct", "==", False)])
        if "cell" in table.column_names:
            mask = pc.equal(table.column("cell"), cell.id)
        else:  # schema 1 samples: select by every key field the rows carry
            mask = _legacy_mask(table, cell)
            if mask is None:
                return None
        out = table.filter(mask)
        return out if limit is None else out.slice(0, limit)


def _read_samples(path: Path, label: str, **kwargs):
    """A run's samples as an Arrow table; a damaged file is one line naming it."""
    import pyarrow.parquet as pq

    from ffbench.io import damage_errors, one_line

    try:
        return pq.read_table(path, **kwargs)
    except damage_errors() as exc:
        raise Damaged(f"{label or path}: {Path(path).name} is damaged ({one_line(exc)}); "
                           "rerun the same 'ffbench run' to rescore it") from None


def _legacy_source(cell: dict, config: dict) -> SourceSpec | None:
    """The source a schema-1 cell was scored on, rebuilt from its config the way that runner built it."""
    from ffbench import language

    kind = cell.get("source")
    seed = config.get("seed")
    alphabet = int(config.get("alphabet", 2) or 2)
    common = dict(label=cell["suite"], length=int(cell["length"]), num=int(cell.get("num_sequences", 0)),
                  alphabet=alphabet)
    if kind == "suite" and cell["suite"] in language.SUITES:
        suite = language.SUITES[cell["suite"]]
        return SourceSpec("suite", p_ignore=suite.p_ignore, seed=suite.seed if seed is None else seed, **common)
    if kind == "ffl":
        return SourceSpec("ffl", p_ignore=cell.get("p_ignore"), seed=0 if seed is None else seed, **common)
    if isinstance(kind, str) and kind not in ("suite", "ffl"):
        return SourceSpec("file", path=kind, **common)
    return None


def _legacy_mask(table, cell: CellResult):
    import pyarrow.compute as pc

    mask = pc.and_(pc.equal(table.column("suite"), cell.suite), pc.equal(table.column("length"), cell.length))
    mask = pc.and_(mask, pc.and_(pc.equal(table.column("render"), cell.render),
                                 pc.equal(table.column("scoring"), cell.scoring)))
    if "p_ignore" in table.column_names:
        col = table.column("p_ignore")
        mask = pc.and_(mask, pc.is_nan(col) if cell.p_ignore is None else pc.equal(pc.round(col, 6), cell.p_ignore))
    return mask


def variant_of(config: dict, scoring: str = "choice", chat: bool = False, asks: bool = False) -> str:
    """The part of a run's config that changes what a read is asked, beyond rendering and scoring.

    ``chat``: the rendering is a chat rendering (a chat template may wrap it); ``asks``: a greedy read
    is a question whose reply is parsed (the rendering has an ``ask``, or it is a chat rendering),
    so the generation budget and the reasoning settings matter. Long values (a system prompt, a
    template file) enter as a short hash of their text; options that cannot change a cell's reads
    do not enter its variant, so such cells stay comparable.
    """
    import hashlib

    def short(value) -> str:
        value = str(value)
        return value if len(value) <= 16 and "/" not in value else hashlib.sha256(value.encode()).hexdigest()[:8]

    parts = []
    if config.get("task"):  # a task other than ffl (ffbench.tasks): its cells never match an ffl cell
        parts.append(f"task={config['task']}")
    if config.get("fewshot"):
        parts.append("fewshot")
    if int(config.get("alphabet", 2) or 2) != 2:
        parts.append(f"M{int(config['alphabet'])}")
    template = config.get("chat_template")
    if chat and template not in (None, ""):  # None: the tokenizer's own template (auto), the default
        parts.append("chat_template=none" if template == "none"
                     else f"chat_template={short(config.get('chat_template_sha256') or template)}")
    if config.get("system_prompt"):
        parts.append(f"system_prompt={short(config['system_prompt'])}")
    if scoring == "greedy" and asks:
        for name in ("max_new_tokens", "reasoning_budget", "reasoning_end"):
            if config.get(name):
                parts.append(f"{name}={short(config[name])}")
    if scoring == "greedy":
        from ffbench.sampling import Sampling

        parts += Sampling.from_config(config).variant_parts()
    return "+".join(parts)
