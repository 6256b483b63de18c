"""The report's template engine: Jinja2 with autoescaping, templates from the ``reports/`` folder.

Escaping is structural: whatever a template prints is HTML-escaped unless it is markup already.
Exactly one thing makes markup outside the templates: the ``svg`` filter, which draws a chart of
:mod:`ffbench.report.svg` (that module escapes every piece of text it puts into its SVG) and
returns it as :class:`markupsafe.Markup`. Model names, paths, configs and model replies are plain
strings and can never become tags.

The stylesheet and script are ``{% include %}``-d as template text, so the page stays one file;
``tests/test_report.py`` checks they contain no template syntax that would alter them.
"""

from __future__ import annotations

from functools import lru_cache

from ffbench.resources import resource_dir

PAGE = "report.html"


def _svg(drawing, title: str):
    """A chart's SVG as markup: the one place the report trusts a string (see the module docstring)."""
    from markupsafe import Markup

    return Markup(drawing.svg(title))


def _count(value) -> str:
    return f"{int(value):,}"


@lru_cache(maxsize=1)
def environment():
    """The Jinja2 environment of the report (one per process; templates are cached by Jinja)."""
    try:
        import jinja2
    except ImportError:  # a dependency; only a broken install lacks it
        from ffbench.errors import FFBenchError

        raise FFBenchError("ffbench report needs Jinja2: pip install 'jinja2>=3.1'") from None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resource_dir("reports"))), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["svg"] = _svg
    env.filters["count"] = _count
    return env


def render_page(**context) -> str:
    return environment().get_template(PAGE).render(**context)
