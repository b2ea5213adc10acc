"""Sphinx configuration of hubmon's documentation.

Build it from the repository root, after building the extension (autodoc
imports hubmon, and hubmon imports its C core)::

    python setup.py build_ext --inplace
    sphinx-build -W -b html docs docs/_build/html
"""
from __future__ import annotations

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

try:
    import hubmon
    from hubmon.config import Config
except ImportError as error:  # pragma: no cover - a message for the person building the docs
    raise ImportError(
        "the documentation imports hubmon, whose C extension must be built first: "
        "run 'python setup.py build_ext --inplace' or 'pip install -e .' in %s (%s)"
        % (ROOT, error)) from error

project = "hubmon"
author = "the hubmon authors"
copyright = "the hubmon authors; MIT licence"
release = hubmon.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
nitpicky = False
highlight_language = "python3"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"undoc-members": False}

html_theme = "alabaster"
html_theme_options = {
    "description": "Find the greenlet that blocks your gevent hub",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []


def _text(value: object) -> str:
    """*value* as reStructuredText that shows it literally (no markup)."""
    return re.sub(r"([\\`*_|])", r"\\\1", " ".join(str(value).split()))


def _settings_table() -> list[str]:
    """The reStructuredText of a table of every setting, from Config.describe()."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 22 18 20 10 30",
        "",
        "   * - Environment variable",
        "     - ``hubmon.config`` attribute",
        "     - Type",
        "     - Default",
        "     - Meaning",
    ]
    for item in Config.describe():
        lines += [
            "   * - ``%s``" % (item["env"],),
            "     - :attr:`~hubmon.config.Config.%s`" % (item["name"],),
            "     - %s" % (_text(item["type"]),),
            "     - ``%r``" % (item["default"],),
            "     - %s" % (_text(item["doc"]),),
        ]
    return lines


def setup(app):  # noqa: D103 - Sphinx's hook
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class SettingsTable(SphinxDirective):
        """``.. hubmon-settings::``: the table of settings, generated from the code."""

        def run(self):
            container = nodes.container()
            source = StringList(_settings_table(), source="hubmon.config.Config.describe()")
            self.state.nested_parse(source, self.content_offset, container)
            return container.children

    app.add_directive("hubmon-settings", SettingsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


