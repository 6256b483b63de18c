"""The exceptions every user-facing failure is reported with.

The CLI prints an :class:`FFBenchError` as one line (no traceback), so every message must name the
bad value and say what was expected. The exit status follows one rule (docs/architecture.md, "Exit
status"): a :class:`UsageError` when the command as given cannot succeed, whatever the machine does
(a bad flag value, an unknown name, a missing or illegal input file, a directory holding another
run) exits 2; every other :class:`FFBenchError` (a model that fails to load, a server that does not
answer, an unusable registry, a failed gate) exits 1.
"""


class FFBenchError(Exception):
    """A problem with the user's input or environment, reported as one line."""


class UsageError(FFBenchError):
    """The user asked for something that cannot be done as asked (exit status 2)."""


class Damaged(FFBenchError):
    """A kept file (results, samples, a shard) that cannot be read or does not hold what it should."""


class CouldNotJudge(FFBenchError):
    """``ffbench check`` could not decide (a run it cannot read): exit status 3, never 1, so a CI step
    never reads a damaged file as a regression found."""


class Interrupted(FFBenchError):
    """The user pressed Ctrl-C; the message says what was kept and how to resume (exit status 130)."""
