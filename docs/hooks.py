"""The settings reference, generated from `promptops._config.PARAMS`: in the Markdown file and in the site.

`docs/configuration.md` keeps a generated copy of the table (one row per setting: name, type, default,
environment variables, description) between `<!-- promptops:settings -->` and `<!-- /promptops:settings -->`,
so readers of the file on GitHub see it too (issue 17). `python docs/hooks.py` rewrites that copy;
tests/unit/test_docs.py fails when it is not current. As an MkDocs hook, the same table is put in the page
at build time, so the site can never drift from the code either.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- promptops:settings -->"
END_MARKER = "<!-- /promptops:settings -->"
PAGE = Path(__file__).with_name("configuration.md")


def _cell(text: str, *, github: bool) -> str:
    # Python-Markdown's tables ignore `|` inside code spans, where every pipe in PARAMS lives (`str | None`);
    # one outside a code span would start a new column. GitHub's tables split on any unescaped `|`, code span or
    # not, and show `\|` as `|` even inside one; Python-Markdown would show the backslash there.
    if "|" in "".join(text.split("`")[::2]):
        raise ValueError(f"a `|` outside a code span would break the settings table: {text!r}")
    text = text.replace("\n", " ")
    return text.replace("|", "\\|") if github else text


def _default(value: Any) -> str:
    if value is None:
        return "`None`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{json.dumps(value)}`"


def settings_table(*, github: bool = False) -> str:
    """The settings reference as a markdown table: for GitHub's renderer (the file's copy), or for the site's."""
    from promptops._config import PARAMS

    rows = [
        "| Setting | Type | Default | Environment | Description |",
        "|---|---|---|---|---|",
    ]
    for param in PARAMS:
        env = ", ".join(f"`{name}`" for name in (param.env, *param.env_fallbacks))
        doc = param.doc + (f" `configure({param.name}=None)`: {param.none}." if param.none else "")
        default = f"`{param.shown_default}`" if param.shown_default else _default(param.default)
        cells = [f"`{param.name}`", f"`{param.type_doc}`", default, env, doc]
        rows.append("| " + " | ".join(_cell(cell, github=github) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def with_settings_table(markdown: str, *, github: bool = False) -> str:
    """`markdown` with the current table between the settings markers (inserted after a lone start marker)."""
    if MARKER not in markdown:
        return markdown
    before, _, rest = markdown.partition(MARKER)
    _, found, after = rest.partition(END_MARKER)
    if not found:
        after = rest
    return f"{before}{MARKER}\n{settings_table(github=github)}{END_MARKER}{after}"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Put the current settings table in the page."""
    return with_settings_table(markdown)


if __name__ == "__main__":
    # Rewrite the generated copy in docs/configuration.md after a change to PARAMS.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    PAGE.write_text(with_settings_table(PAGE.read_text(encoding="utf-8"), github=True), encoding="utf-8")
    print(f"updated the settings table in {PAGE}")
