"""ffbench: exact, fast measurement of attention glitches on the flip-flop language.

From Python, ``ffbench.evaluate(...)`` and ``ffbench.load(...)`` return ``RunResults`` (see
``ffbench.api``); both are imported on first use, so ``import ffbench`` stays instant.
"""

__version__ = "0.2.0"

__all__ = ["__version__", "evaluate", "load"]


def __getattr__(name: str):
    if name in ("evaluate", "load"):
        from ffbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'ffbench' has no attribute {name!r}")
