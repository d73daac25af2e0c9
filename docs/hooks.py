"""MkDocs hook: render the settings reference from `promptops._config.PARAMS`.

A page that contains the marker `<!-- promptops:settings -->` gets it replaced by a table with one row per
setting (name, type, default, environment variables, description), so the docs can never drift from the
code that reads the settings.
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "<!-- promptops:settings -->"


def _cell(text: str) -> str:
    # Python-Markdown's tables ignore `|` inside code spans, where every pipe in PARAMS lives (`str | None`);
    # one outside a code span would start a new column.
    if "|" in "".join(text.split("`")[::2]):
        raise ValueError(f"a `|` outside a code span would break the settings table: {text!r}")
    return text.replace("\n", " ")


def _default(value: Any) -> str:
    if value is None:
        return "`None`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{json.dumps(value)}`"


def settings_table() -> str:
    """The settings reference as a markdown table."""
    from promptops._config import PARAMS

    rows = [
        "| Setting | Type | Default | Environment | Description |",
        "|---|---|---|---|---|",
    ]
    for param in PARAMS:
        env = ", ".join(f"`{name}`" for name in (param.env, *param.env_fallbacks))
        cells = [f"`{param.name}`", f"`{param.type_doc}`", _default(param.default), env, param.doc]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace the settings marker with the generated table."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, settings_table())
    return markdown
