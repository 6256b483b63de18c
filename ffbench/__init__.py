"""ffbench: exact, fast measurement of attention glitches on the flip-flop language."""

__version__ = "0.1.0"
