"""The built documentation site renders every page: no Markdown left raw in the HTML (issue 11).

`mkdocs build --strict` passes even when a code fence is not recognised: pymdownx.superfences took
```` ```python test="skip" ```` for text, and from there to the end of the page the reader saw raw Markdown in one
grey block (seven pages). A fence that did not become a code block leaves its backticks in the HTML, so no page
of the built site may contain three backticks in a row.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
    # Every fence of a page became a highlighted code block, those only compiled by the docs tests
    # ({.python test="skip"}) included.
    for name in ("replay", "capture", "resilience", "scorers", "langchain"):
        fences = [line for line in (ROOT / "docs" / f"{name}.md").read_text(encoding="utf-8").splitlines()]
        opening = sum(1 for line in fences if line.startswith("```")) // 2
        html = (site / name / "index.html").read_text(encoding="utf-8")
        assert html.count('<div class="highlight">') == opening, name
