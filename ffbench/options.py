"""What one ``ffbench run`` (or ``ffbench.evaluate`` / ``ffbench.api.preflight``) call asks, as one value.

The CLI and the Python API both build a :class:`RunOptions`; :func:`ffbench.api.configure` turns it
into the normalised :class:`ffbench.runner.RunConfig` (what identity hashes and results.json records)
plus the connected model and the run directory. Each option is spelled out once, here: the CLI's
flags map onto these fields by name, the API's keyword arguments are these fields, and a keyword
that is not one is refused in one line naming it.

Three kinds of field, kept apart so it is clear what can change a run's numbers:
- *what is measured* (data, lengths, renderings, scorings, prompts, sampling): they go into the
  config, so changing one is another run;
- *how it is computed* (batching, executor, connection, output directory, progress): the numbers
  are the same whatever they are;
- *when it stops and what is kept* (stopping rules, prices, registry): recorded beside the results
  (``stop_reason``, ``cost``), never in the config's hash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from ffbench.errors import UsageError


@dataclass
class RunOptions:
    """One run's options: each field is the ``ffbench run`` flag of the same name (``render`` and
    ``scoring`` are ``--render``/``--scoring``; ``echo`` receives the run's notices). Lists may be
    Python lists or comma-separated strings. The first group decides what is measured (it goes into
    the config and its hash); the second only how it is computed; the third when the run stops, what
    it costs and whether it is recorded."""

    model: str
    # What is measured.
    suite: str | list[str] | None = None
    data: str | list[str] | None = None
    lengths: str | int | list[int] | None = None
    p_ignore: str | float | list[float] | None = None
    num: int | None = None
    seed: int | None = None
    render: str | list[str] | None = None  # None: the task's own rendering (symbolic for ffl)
    scoring: str | list[str] = "choice"
    fewshot: bool = False
    per_read: bool = False
    model_args: dict | None = None
    alphabet: int = 2
    chat_template: str | None = None
    system_prompt: str | None = None
    max_new_tokens: int | None = None
    reasoning_budget: int | None = None
    reasoning_end: str | None = None
    repeats: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    sampling_seed: int | None = None
    task: str | None = None  # ffl (None), undo, registers, haystack: ffbench.tasks
    registers: str | int | list[int] | None = None  # task registers: the numbers of registers to sweep
    context_tokens: str | int | list[int] | None = None  # task haystack: lengths as token budgets
    # How it is computed.
    batch_size: int | None = None
    max_batch_tokens: int | None = None
    base_url: str | None = None
    api_key: str | None = None
    output_dir: str | None = None
    progress: bool = False
    rescore: bool = False
    echo: Callable[[str], None] | None = None
    executor: str = "local"
    workers: int | None = None
    ray_address: str | None = None
    # When it stops, what it costs, and what is kept.
    stop_at_first_error: bool = False
    certify: float | None = None
    max_cost: float | None = None
    price_in: float | None = None
    price_out: float | None = None
    price_cached_in: float | None = None
    record: bool = False
    revision: str = ""
    registry: str | None = None

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def build(cls, model: str, where: str, **options) -> RunOptions:
        """``RunOptions(model, **options)``, refusing an unknown keyword in one line that names it
        (``where`` is the function the user called)."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise UsageError(f"{where}() got unknown option(s) {', '.join(map(repr, unknown))}; "
                             f"it takes: {', '.join(n for n in cls.names() if n != 'model')}")
        return cls(model=model, **options)
