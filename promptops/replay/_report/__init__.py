"""The HTML report of a replay: one self-contained file that answers "is this candidate safe to promote?".

Verdict first, then the run's facts, the per-metric statistics with score distributions, the prompt template
diff, and every record with side-by-side output diffs, worst change first. The file loads nothing: CSS, the
SVG plots and a few lines of JavaScript (filtering, expand/collapse) are inline, and a Content-Security-Policy
forbids any network load, so it can be attached to a CI run or mailed as is. Everything that comes from the
user (outputs, inputs, ids, gate texts, templates) goes through `html.escape`.

Size stays bounded for thousands of records: every record is listed (collapsed), the `detail_limit` largest
changes carry a word-level diff of up to `max_chars` characters per side, the others a short excerpt; the
JSON document has everything. A browser lays out one page of `PAGE_SIZE` records at a time: the first page is
in the document, the others are JSON data in an inert `<script type="application/json">` that the page's
script shows on demand, and filters over (issue 15). `iter_html()` yields the document in pieces, a record at a time,
so a report of any size is written without being whole in memory.
"""

from ._page import DETAIL_LIMIT, MAX_CHARS, iter_html, render_html
from ._records import PAGE_SIZE

__all__ = ["DETAIL_LIMIT", "MAX_CHARS", "PAGE_SIZE", "iter_html", "render_html"]
