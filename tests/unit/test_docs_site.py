"""The built documentation site renders every page: no Markdown left raw in the HTML (issue 11).

`mkdocs build --strict` passes even when a code fence is not recognised: pymdownx.superfences took
```` ```python test="skip" ```` for text, and from there to the end of the page the reader saw raw Markdown in one
grey block (seven pages). A fence that did not become a code block leaves its backticks in the HTML, so no page
of the built site may contain three backticks in a row.

That alone missed one on an API page (the `promptops.feedback()` docstring, fixed in 3b34c07): there the fence
was the only backticks of its paragraph, and Markdown read ```` ```python test="skip" ... ``` ```` as an
inline code span. The backticks vanish into a `<code>` element outside any `<pre>`, holding the info string, a
line break and the code. So inline code that starts with a fence's language and spans lines fails the test
too, on every page, mkdocstrings' API pages included.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The first line of a fence superfences did not take: a language the docs use, then attributes (`test="skip"`)
# or braces (`{.python test="skip"}`). A bare ```` ```python ```` is always taken, so a wrapped inline code span
# that happens to start with "python" is not one.
_INFO = re.compile(
    r"\s*\{?\s*\.?(?:python|py|pycon|bash|console|shell|sh|text|toml|json|yaml|sql|ini|html)\b[^\n]*[={}][^\n]*\n"
)


class _InlineCode(HTMLParser):
    """Collects the text of each `<code>` element that is not inside a `<pre>` (inline code)."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self._pre = 0
        self._code: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre":
            self._pre += 1
        elif tag == "code" and not self._pre:
            self._code = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._pre -= 1
        elif tag == "code" and self._code is not None:
            self.inline.append("".join(self._code))
            self._code = None

    def handle_data(self, data: str) -> None:
        if self._code is not None:
            self._code.append(data)


def raw_fences(html: str) -> list[str]:
    """Fenced blocks Markdown took for inline code: a language's name, then lines of code, in one `<code>`."""
    parser = _InlineCode()
    parser.feed(html)
    return [text for text in parser.inline if _INFO.match(text)]


def test_raw_fences_finds_a_fence_read_as_inline_code() -> None:
    # What Python-Markdown made of the unrecognised fence in the feedback() docstring (before 3b34c07).
    broken = '<p><code>python test="skip"\npromptops.feedback(trace_id, "thumbs", 1)\n</code></p>'
    assert raw_fences(broken) == ['python test="skip"\npromptops.feedback(trace_id, "thumbs", 1)\n']
    assert raw_fences('<p><code>{.bash test="skip"}\npromptops list\n</code></p>')
    fine = (
        "<p>Run <code>python -m promptops.provider_server</code>.</p>"
        "<p>then <code>python\n  docs/hooks.py</code> (an inline span wrapped across lines)</p>"
        '<div class="highlight"><pre><code>python\nprint(1)\n</code></pre></div>'
    )
    assert raw_fences(fine) == []


def test_no_page_of_the_built_site_shows_a_raw_code_fence(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 20, [page.name for page in pages]  # the build produced the whole site
    raw = [str(page.relative_to(site)) for page in pages if "```" in page.read_text(encoding="utf-8")]
    assert raw == [], f"pages showing a raw code fence (an info string superfences does not accept?): {raw}"
    inline = {
        str(page.relative_to(site)): found for page in pages if (found := raw_fences(page.read_text(encoding="utf-8")))
    }
    assert inline == {}, f"fences rendered as inline code (an info string superfences does not accept?): {inline}"
    assert any(page.parent.parent.name == "api" for page in pages)  # mkdocstrings' pages are among those checked
    # Every fence of a page became a highlighted code block, those only compiled by the docs tests
    # ({.python test="skip"}) included.
    for name in ("replay", "capture", "resilience", "scorers", "langchain"):
        fences = [line for line in (ROOT / "docs" / f"{name}.md").read_text(encoding="utf-8").splitlines()]
        opening = sum(1 for line in fences if line.startswith("```")) // 2
        html = (site / name / "index.html").read_text(encoding="utf-8")
        assert html.count('<div class="highlight">') == opening, name
