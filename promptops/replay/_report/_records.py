"""The records section: every record, worst change first, with side-by-side outputs and its scores."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from .._json import jsonable
from ._diff import word_diff
from ._format import cut, cut_note, display_text, escape, finite, fmt_num, tone, trace_link

if TYPE_CHECKING:
    from .._result import MetricSummary, RecordResult, ReplayResult

_EXCERPT_CHARS: Final = 200  # per side, for records past the detail limit
_INPUTS_PREVIEW: Final = 600  # characters of inputs shown before "show all"
_INPUTS_MAX: Final = 5_000  # inputs beyond this are cut even when expanded
_PREVIEW_CHARS: Final = 140  # the one-line preview in a record's summary row
_SPOOL_CHUNK: Final = 1 << 16  # characters copied from the spooled pages at a time
PAGE_SIZE: Final = 100
"""Records in the page as it loads; the others wait as JSON data and are shown a page at a time (issue 15)."""


def _key_metric(result: ReplayResult) -> tuple[str | None, bool]:
    """The metric records are ordered by: the first scorer's, and whether higher is better for it."""
    names = [name for name in result.scorers if name in result.metrics] or list(result.metrics)
    if not names:
        names = [name for record in result.records[:1] for name in record.deltas]
    if not names:
        return None, True
    summary = result.metrics.get(names[0])
    return names[0], summary.higher_is_better if summary is not None else True


def _order(records: Sequence[RecordResult], metric: str | None, higher_is_better: bool) -> list[int]:
    """Record indexes, worst change of `metric` first; records without a delta last, errors first among them."""

    def key(index: int) -> tuple[int, float, int, int]:
        record = records[index]
        delta = finite(record.deltas.get(metric)) if metric is not None else None
        if delta is None:
            return (1, 0.0, 0 if record.error is not None else 1, index)
        return (0, delta if higher_is_better else -delta, 0, index)

    return sorted(range(len(records)), key=key)


def _missing(error: str | None) -> str:
    return f'<span class="none">{"call raised" if error else "no output"}</span>'


def _outputs(record: RecordResult, detailed: bool, max_chars: int) -> tuple[str, str, bool]:
    """Both outputs as HTML (diffed when detailed), and whether they differ."""
    limit = max_chars if detailed else _EXCERPT_CHARS
    old = None if record.baseline_output is None else display_text(record.baseline_output)
    new = None if record.candidate_output is None else display_text(record.candidate_output)
    old_cut, old_dropped = cut(old or "", limit)
    new_cut, new_dropped = cut(new or "", limit)
    if detailed and old is not None and new is not None:
        left, right = word_diff(old_cut, new_cut)
    else:
        left, right = escape(old_cut), escape(new_cut)
    short = not detailed
    left = (left if old is not None else _missing(record.baseline_error)) + cut_note(old_dropped, short=short)
    right = (right if new is not None else _missing(record.error)) + cut_note(new_dropped, short=short)
    return left, right, old != new


def _inputs(inputs: dict[str, Any]) -> str:
    text = display_text(inputs)
    if len(text) <= _INPUTS_PREVIEW:
        return f'<pre class="json">{escape(text)}</pre>'
    full, dropped = cut(text, _INPUTS_MAX)
    return (
        f'<pre class="json">{escape(text[:_INPUTS_PREVIEW])}<span class="cut">…</span></pre>'
        f"<details class='more'><summary>Show all inputs ({len(text):,} characters)</summary>"
        f'<pre class="json">{escape(full)}{cut_note(dropped)}</pre></details>'
    )


def _scores_table(record: RecordResult, metrics: dict[str, MetricSummary]) -> str:
    names = list(dict.fromkeys([*metrics, *record.scores, *record.baseline_scores]))
    rows: list[str] = []
    for name in names:
        summary = metrics.get(name)
        higher = summary.higher_is_better if summary is not None else True
        delta = record.deltas.get(name)
        reason = record.reasons.get(name)
        rows.append(
            f"<tr><td><code>{escape(name)}</code></td><td class='num'>{fmt_num(record.baseline_scores.get(name))}</td>"
            f"<td class='num'>{fmt_num(record.scores.get(name))}</td>"
            f"<td class='num {tone(delta, higher)}'>{fmt_num(delta, signed=True)}</td>"
            f"<td class='reason'>{escape(reason) if reason else ''}</td></tr>"
        )
    if not rows:
        return '<p class="muted small">no scores</p>'
    return (
        "<table class='scores'><thead><tr><th>Metric</th><th class='num'>Baseline</th><th class='num'>Candidate</th>"
        f"<th class='num'>Δ</th><th>Reason</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _errors(record: RecordResult, limit: int) -> str:
    parts: list[str] = []
    for who, error in (("Candidate", record.error), ("Baseline", record.baseline_error)):
        if error is not None:
            text, dropped = cut(error, limit)
            parts.append(f'<div class="errbox"><b>{who} raised</b><pre>{escape(text)}{cut_note(dropped)}</pre></div>')
    return "".join(parts)


def _detail_body(
    record: RecordResult,
    left: str,
    right: str,
    *,
    metrics: dict[str, MetricSummary],
    max_chars: int,
    labels: tuple[str, str],
    trace_url: Callable[[str], str] | None,
) -> str:
    baseline_label, candidate_label = labels
    expected = ""
    if record.expected is not None:
        text, dropped = cut(display_text(record.expected), max_chars)
        expected = (
            '<details class="more"><summary>Expected output</summary>'
            f'<pre class="out">{escape(text)}{cut_note(dropped)}</pre></details>'
        )
    latency = ""
    if record.latency_ms is not None or record.baseline_latency_ms is not None:
        latency = f"<div><dt>Latency</dt><dd>{fmt_num(record.baseline_latency_ms)} → {fmt_num(record.latency_ms)} ms</dd></div>"
    return (
        f'<div class="body"><div class="sbs"><div class="col"><h4>Baseline · {escape(baseline_label)}</h4>'
        f'<pre class="out">{left}</pre></div><div class="col"><h4>Candidate · {escape(candidate_label)}</h4>'
        f'<pre class="out">{right}</pre></div></div>{_errors(record, max_chars)}{expected}'
        f'<div class="meta"><div><h4>Scores</h4>{_scores_table(record, metrics)}</div>'
        f"<div><h4>Inputs</h4>{_inputs(record.inputs)}</div></div>"
        f'<dl class="facts small"><div><dt>Candidate trace</dt><dd>{trace_link(record.trace_id, trace_url)}</dd></div>'
        f"<div><dt>Baseline trace</dt><dd>{trace_link(record.baseline_trace_id, trace_url)}</dd></div>{latency}</dl></div>"
    )


def _compact_body(record: RecordResult, left: str, right: str, *, trace_url: Callable[[str], str] | None) -> str:
    """Past the detail limit: excerpts and one line of facts, so thousands of records stay a few MB."""
    facts = [
        f"{escape(name)} {fmt_num(record.baseline_scores.get(name))} → {fmt_num(value)}"
        for name, value in record.scores.items()
    ]
    if record.trace_id:
        facts.append(f"trace {trace_link(record.trace_id, trace_url)}")
    inputs = json.dumps(jsonable(record.inputs), ensure_ascii=False)
    text, dropped = cut(inputs, _EXCERPT_CHARS // 2)
    facts.append(f"inputs <code>{escape(text)}{'…' if dropped else ''}</code>")
    return (
        f'<div class="body cbody"><div class="sbs"><pre class="out">{left}</pre><pre class="out">{right}</pre></div>'
        f'{_errors(record, _EXCERPT_CHARS)}<p class="small muted">{" · ".join(facts)}</p></div>'
    )


def _record(
    rank: int,
    record: RecordResult,
    *,
    metrics: dict[str, MetricSummary],
    key: str | None,
    higher: bool,
    detailed: bool,
    max_chars: int,
    labels: tuple[str, str],
    trace_url: Callable[[str], str] | None,
) -> tuple[str, str, int]:
    """The record's HTML, the text the filter searches (lower case), and its flags (1: error, 2: changed)."""
    delta = finite(record.deltas.get(key)) if key is not None else None
    others = " ".join(
        f'<span class="{tone(value, metrics[name].higher_is_better if name in metrics else True)}">'
        f"{escape(name)} {fmt_num(value, signed=True)}</span>"
        for name, value in record.deltas.items()
        if name != key and value is not None
    )
    preview_source = record.error if record.candidate_output is None and record.error else record.candidate_output
    preview = " ".join(display_text(preview_source)[:_PREVIEW_CHARS].split()) if preview_source is not None else ""
    badges = ""
    if record.error is not None:
        badges += '<span class="badge err">error</span>'
    if record.baseline_error is not None:
        badges += '<span class="badge berr">baseline error</span>'
    summary = (
        f'<summary><span class="rank">{rank}</span><span class="rid">{escape(record.id)}</span>'
        f'<span class="kd {tone(delta, higher)}">{fmt_num(delta, signed=True)}</span>'
        f'<span class="od">{others}</span>{badges}<span class="pv">{escape(preview)}</span></summary>'
    )
    left, right, changed = _outputs(record, detailed, max_chars)
    changed = changed or record.error is not None
    if detailed:
        body = _detail_body(
            record, left, right, metrics=metrics, max_chars=max_chars, labels=labels, trace_url=trace_url
        )
    else:
        body = _compact_body(record, left, right, trace_url=trace_url)
    attributes = (' data-err="1"' if record.error is not None else "") + (' data-chg="1"' if changed else "")
    kind = "rec" + (" det" if detailed else "") + (" has-err" if record.error is not None else "")
    html = f'<details class="{kind}"{attributes}>{summary}{body}</details>'
    text = jsonable(f"{rank} {record.id} {fmt_num(delta, signed=True)} {preview}".lower())
    return html, text, (1 if record.error is not None else 0) | (2 if changed else 0)


def _json_script(kind: str, data: Any) -> str:
    """`data` as JSON in an inert `<script type="application/json" class="{kind}">`."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Inside <script> the HTML parser only looks for `</script` (and for `<!--`, which changes how it does): the
    # JSON escapes of both (`<\/`, `\u003c!--`) keep the data inert, whatever the user's text holds.
    text = text.replace("</", "<\\/").replace("<!--", "\\u003c!--")
    return f'<script type="application/json" class="{kind}">{text}</script>'


def records_section(
    result: ReplayResult,
    *,
    labels: tuple[str, str],
    trace_url: Callable[[str], str] | None,
    detail_limit: int,
    max_chars: int,
    suffix: str = "",
    page_size: int = PAGE_SIZE,
    shown: Callable[[RecordResult], RecordResult] | None = None,
) -> Iterator[str]:
    """Every record, worst change first: the first `page_size` as HTML, the rest as data the script pages through.

    Without JavaScript (an artifact viewer that blocks scripts) the first page still reads; the note says where the
    rest is. Yields the section in pieces, rendering one record at a time (each through `shown`, the reports'
    redaction): the pages past the first wait in a temporary file, not in memory, until the index of what the
    filters read (a short text and flags per record) has been written before them (issue 15).
    """
    key, higher = _key_metric(result)
    order = _order(result.records, key, higher)
    total = len(order)
    page_size = max(page_size, 1)
    if key is not None:
        direction = "lowest" if higher else "highest"
        how = f"ordered by the change in <code>{escape(key)}</code>, worst first ({direction} delta first)"
    else:
        how = "in dataset order"
    detail_note = (
        f"the first {min(detail_limit, total):,} carry a word-level diff, the rest an excerpt of each output "
        "(the JSON output has every record in full)"
        if total > detail_limit
        else "each with a word-level diff"
    )
    paged = total > page_size
    pages = (total + page_size - 1) // page_size
    pager = (
        f'<span class="pager"{"" if paged else " hidden"}><button type="button" class="prev">‹ Previous</button> '
        f'page <span class="pageno">1 / {pages:,}</span> <button type="button" class="next">Next ›</button></span>'
    )
    toolbar = (
        '<div class="toolbar"><input type="search" class="q" placeholder="Filter by id or text" aria-label="filter">'
        '<label><input type="checkbox" class="only-err"> errors only</label>'
        '<label><input type="checkbox" class="only-chg"> changed output only</label>'
        '<button type="button" class="open-all">Expand shown</button>'
        '<button type="button" class="close-all">Collapse all</button>'
        f'<span class="muted"><span class="shown">{total:,}</span> of {total:,}</span>{pager}</div>'
    )
    title = "Records" if not suffix else f"Records · candidate {escape(labels[1])}"
    yield (
        f'<section id="records{suffix}" class="records"><h2>{title}</h2><p class="muted">{total:,} records {how}; '
        f"{detail_note}. Click a record to see both outputs side by side: <del>removed</del> and <ins>added</ins> "
        f'words are marked.</p>{toolbar}<div class="reclist" data-page="{page_size}">'
    )
    with contextlib.ExitStack() as stack:
        # Records past the first page: their HTML a page per inert <script>, spooled; what the filters read, kept.
        spool = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8")) if paged else None
        index: list[list[str | int]] = []
        page: list[str] = []
        for rank, position in enumerate(order):
            record = result.records[position]
            html, text, flags = _record(
                rank + 1,
                record if shown is None else shown(record),
                metrics=result.metrics,
                key=key,
                higher=higher,
                detailed=rank < detail_limit,
                max_chars=max_chars,
                labels=labels,
                trace_url=trace_url,
            )
            if spool is None or rank < page_size:
                yield html
                continue
            index.append([text, flags])
            page.append(html)
            if len(page) == page_size or rank == total - 1:
                spool.write(_json_script("recpage", page))
                page.clear()
        if not total:
            yield "<p class=muted>No records.</p>"
        yield "</div>"
        if spool is not None:
            # The index is parsed when the page loads, a page's HTML only when it is shown: a 20,000-record report
            # laid out as one list took Chromium 11.8 s (issue 15).
            yield (
                f'<p class="muted small nojs">This page lists the first {page_size:,} records; the other '
                f"{total - page_size:,} are shown a page at a time by the page's script (open the file in a browser), "
                f"and the JSON output has them all.</p>"
            )
            yield _json_script("recindex", index)
            spool.seek(0)
            while chunk := spool.read(_SPOOL_CHUNK):
                yield chunk
    yield "</section>"
