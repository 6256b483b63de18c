"""One exception type for every user-facing failure.

The CLI prints an :class:`FFBenchError` as one line (no traceback) and exits non-zero, so every
message must name the bad value and say what was expected.
"""


class FFBenchError(Exception):
    """A problem with the user's input or environment, reported as one line."""
