"""The HTML report of a replay: one self-contained file that answers "is this candidate safe to promote?".

Verdict first, then the run's facts, the per-metric statistics with score distributions, the prompt template
diff, and every record with side-by-side output diffs, worst change first. The file loads nothing: CSS, the
SVG plots and a few lines of JavaScript (filtering, expand/collapse) are inline, and a Content-Security-Policy
forbids any network load, so it can be attached to a CI run or mailed as is. Everything that comes from the
user (outputs, inputs, ids, gate texts, templates) goes through `html.escape`.

Size stays bounded for thousands of records: every record is listed (collapsed), the `detail_limit` largest
changes carry a word-level diff of up to `max_chars` characters per side, the others a short excerpt; the
JSON document has everything.
"""

from __future__ import annotations

import datetime
import difflib
import html
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from .._version import __version__
from ._json import jsonable
from ._result import GateResult, MetricSummary, RecordResult, ReplayResult, VersionInfo

__all__ = ["render_html"]

DETAIL_LIMIT: Final = 200
"""Records (largest changes first) rendered with a full word-level diff."""
MAX_CHARS: Final = 4000
"""Characters of each output shown in a detailed record; the rest is cut with a note."""
_EXCERPT_CHARS: Final = 200  # per side, for records past the detail limit
_INPUTS_PREVIEW: Final = 600  # characters of inputs shown before "show all"
_INPUTS_MAX: Final = 5_000  # inputs beyond this are cut even when expanded
_PREVIEW_CHARS: Final = 140  # the one-line preview in a record's summary row
_DISCRETE_MAX: Final = 8  # a metric with at most this many distinct values is plotted as categories
_BINS: Final = 20
_DIFF_BUDGET: Final = 20_000  # token comparisons per difflib pass before it falls back to its autojunk heuristic

_BASELINE_COLOUR: Final = "#94a3b8"
_CANDIDATE_COLOUR: Final = "#2563eb"
_WORSE_COLOUR: Final = "#dc2626"
_BETTER_COLOUR: Final = "#16a34a"
_NEUTRAL_COLOUR: Final = "#64748b"

_SURROGATES: Final = re.compile("[\ud800-\udfff]")
# A word or a punctuation mark, with the spaces after it: "Summarize:" and "Summarize briefly:" differ by a word.
_WORDS: Final = re.compile(r"\w+\s*|[^\w\s]\s*|\s+")


def _e(value: object) -> str:
    text = str(value)
    if not text.isascii():  # a lone surrogate from a target's output would make the file impossible to save
        text = _SURROGATES.sub("\ufffd", text)
    return html.escape(text, quote=True)


# --------------------------------------------------------------------------------------------------- numbers


def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "–"
    if not math.isfinite(value):
        return "NaN" if value != value else ("+∞" if value > 0 else "-∞")
    size = abs(value)
    if size == 0:
        text = "0"
    elif size >= 1000:
        text = f"{value:,.0f}"
    elif size >= 100:
        text = f"{value:.1f}"
    elif size >= 10:
        text = f"{value:.2f}"
    elif size >= 0.01:
        text = f"{value:.3f}"
    else:
        text = f"{value:.2g}"
    return f"+{text}" if signed and value > 0 else text


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _change(before: float | None, after: float | None) -> str:
    return _num(after) if before is None else f"{_num(before)} → {_num(after)}"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _tone(delta: float | None, higher_is_better: bool) -> str:
    """CSS class of a change: `better`, `worse` or `same`."""
    if delta is None or not math.isfinite(delta) or abs(delta) < 1e-12:
        return "same"
    return "better" if (delta > 0) == higher_is_better else "worse"


def _summary_tone(summary: MetricSummary) -> str:
    """A metric's change is coloured only when its confidence interval excludes zero: otherwise it is noise."""
    low, high = _finite(summary.ci_low), _finite(summary.ci_high)
    if low is None or high is None:
        return _tone(summary.delta, summary.higher_is_better) + " weak"
    if low > 0 or high < 0:
        return _tone(summary.delta, summary.higher_is_better)
    return "same"


# ----------------------------------------------------------------------------------------------------- texts


def _display_text(value: Any) -> str:
    """How an output or input is shown: strings as they are, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False)


def _cut(text: str, limit: int) -> tuple[str, int]:
    """The text cut to `limit` characters, and how many were dropped."""
    if len(text) <= limit:
        return text, 0
    return text[:limit], len(text) - limit


def _cut_note(dropped: int, *, short: bool = False) -> str:
    if not dropped:
        return ""
    if short:  # repeated in thousands of excerpts: the records' introduction explains where the rest is
        return f'<span class="cut">… {dropped:,} more characters</span>'
    return f'<span class="cut">… {dropped:,} more characters (the JSON output has the full text)</span>'


def _side_label(info: VersionInfo) -> str:
    label = info.label
    if label.isdigit():
        return f"v{label}"
    if info.version is not None:
        return f"{label} (v{info.version})"
    if info.versions:
        return f"{label} (v{', v'.join(str(version) for version in info.versions)})"
    return label


def _template_text(template: str) -> str:
    """Chat templates are stored as JSON text: show them as role-headed blocks so the diff is per line."""
    stripped = template.strip()
    if not stripped.startswith(("[", "{")):
        return template
    try:
        data = json.loads(stripped)
    except ValueError:
        return template
    if isinstance(data, list) and all(isinstance(item, dict) and "content" in item for item in data):  # pyright: ignore[reportUnknownVariableType]
        messages: list[dict[str, Any]] = data  # pyright: ignore[reportUnknownVariableType]
        blocks: list[str] = []
        for message in messages:
            content = message["content"]
            body = content if isinstance(content, str) else json.dumps(content, indent=2, ensure_ascii=False)
            blocks.append(f"[{message.get('role', 'message')}]\n{body}")
        return "\n\n".join(blocks)
    return json.dumps(data, indent=2, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------------- diffs


def _opcodes(old: list[str], new: list[str]) -> list[tuple[str, int, int, int, int]]:
    """`SequenceMatcher` opcodes, bounded in time whatever the texts.

    The common head and tail are matched directly (the usual case: a few words changed). On the rest, difflib
    costs about (occurrences in `new` of each token of `old`) per pass: fine for prose, but minutes for texts
    made of a few repeated tokens (`"a, a, a, ..."`, tables, base64). Past a budget, difflib's own heuristic
    (`autojunk`: tokens in more than 1% of positions are not used as anchors) bounds it, at some precision.
    """
    size = min(len(old), len(new))
    head = 0
    while head < size and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < size - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    old_core, new_core = old[head : len(old) - tail], new[head : len(new) - tail]
    counts = Counter(new_core)
    cost = sum(counts[token] for token in old_core)
    matcher = difflib.SequenceMatcher(None, old_core, new_core, autojunk=cost > _DIFF_BUDGET)
    codes: list[tuple[str, int, int, int, int]] = [("equal", 0, head, 0, head)] if head else []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        codes.append((tag, i1 + head, i2 + head, j1 + head, j2 + head))
    if tail:
        codes.append(("equal", len(old) - tail, len(old), len(new) - tail, len(new)))
    return codes


def _word_diff(old: str, new: str) -> tuple[str, str]:
    """Both texts as HTML, words only in `old` in `<del>`, words only in `new` in `<ins>`."""
    old_tokens, new_tokens = _WORDS.findall(old), _WORDS.findall(new)
    # Compare words without their trailing spaces, so a reflowed line does not read as changed; each side
    # is then rendered with its own tokens.
    codes = _opcodes([token.rstrip() for token in old_tokens], [token.rstrip() for token in new_tokens])
    left: list[str] = []
    right: list[str] = []
    for tag, i1, i2, j1, j2 in codes:
        old_part, new_part = _e("".join(old_tokens[i1:i2])), _e("".join(new_tokens[j1:j2]))
        if tag == "equal":
            left.append(old_part)
            right.append(new_part)
            continue
        if old_part:
            left.append(f"<del>{old_part}</del>")
        if new_part:
            right.append(f"<ins>{new_part}</ins>")
    return "".join(left), "".join(right)


def _template_diff(old: str, new: str) -> str:
    old_lines, new_lines = old.splitlines(), new.splitlines()
    rows: list[str] = []
    added = removed = 0

    def row(kind: str, old_no: int | None, new_no: int | None, text: str) -> None:
        mark = {"ctx": " ", "del": "−", "add": "+"}[kind]
        rows.append(
            f'<tr class="{kind}"><td class="ln">{"" if old_no is None else old_no + 1}</td>'
            f'<td class="ln">{"" if new_no is None else new_no + 1}</td><td class="mk">{mark}</td>'
            f"<td>{text or '&nbsp;'}</td></tr>"
        )

    for tag, i1, i2, j1, j2 in _opcodes(old_lines, new_lines):
        if tag == "equal":
            for offset in range(i2 - i1):
                row("ctx", i1 + offset, j1 + offset, _e(old_lines[i1 + offset]))
            continue
        removed += i2 - i1
        added += j2 - j1
        pairs = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        lefts: list[str] = []
        rights: list[str] = []
        for offset in range(pairs):
            left, right = _word_diff(old_lines[i1 + offset], new_lines[j1 + offset])
            lefts.append(left)
            rights.append(right)
        lefts += [f"<del>{_e(line)}</del>" for line in old_lines[i1 + pairs : i2]]
        rights += [f"<ins>{_e(line)}</ins>" for line in new_lines[j1 + pairs : j2]]
        for offset, text in enumerate(lefts):
            row("del", i1 + offset, None, text)
        for offset, text in enumerate(rights):
            row("add", None, j1 + offset, text)
    stats = (
        f'<p class="muted"><span class="worse">{_count(removed, "line")} removed</span> · '
        f'<span class="better">{_count(added, "line")} added</span></p>'
    )
    return f'{stats}<table class="tdiff"><tbody>{"".join(rows)}</tbody></table>'


# ----------------------------------------------------------------------------------------------------- plots


def _tick(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e6 else _num(value)


def _binning(values: Sequence[float]) -> tuple[list[tuple[float, float]], bool]:
    """Bins over the values: one per distinct value when there are few (0/1 metrics), else equal widths."""
    distinct = sorted(set(values))
    if len(distinct) <= _DISCRETE_MAX:
        return [(value, value) for value in distinct], True
    low, high = distinct[0], distinct[-1]
    width = (high - low) / _BINS
    return [(low + index * width, low + (index + 1) * width) for index in range(_BINS)], False


def _counts(values: Iterable[float], bins: list[tuple[float, float]], discrete: bool) -> list[int]:
    counts = [0] * len(bins)
    if discrete:
        where = {low: index for index, (low, _) in enumerate(bins)}
        for value in values:
            counts[where[value]] += 1
        return counts
    low, high = bins[0][0], bins[-1][1]
    span = high - low
    for value in values:
        index = min(int((value - low) / span * len(bins)), len(bins) - 1)
        counts[index] += 1
    return counts


_W: Final = 340
_H: Final = 118
_PAD_L: Final = 30
_PAD_R: Final = 8
_PAD_T: Final = 8
_PAD_B: Final = 20


def _histogram(
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    title: str,
    bar_colour: Callable[[float, float], str] | None = None,
    zero_line: bool = False,
) -> str:
    """An inline SVG histogram of one or more series, bars grouped per bin, means marked."""
    values = [value for _, _, data in series for value in data]
    if not values:
        return '<p class="muted small">no values</p>'
    bins, discrete = _binning(values)
    counts = [_counts(data, bins, discrete) for _, _, data in series]
    peak = max(max(row) for row in counts) or 1
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B
    slot = plot_w / len(bins)
    bar = min(slot * (0.8 if discrete else 0.92) / len(series), 28.0)  # two categories must not be slabs
    base_y = _PAD_T + plot_h
    low, high = bins[0][0], bins[-1][1]

    def x_of(value: float) -> float:  # continuous axes only
        return _PAD_L + (value - low) / (high - low) * plot_w

    parts = [
        f'<svg class="plot" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<line x1="{_PAD_L}" y1="{base_y}" x2="{_W - _PAD_R}" y2="{base_y}" stroke="#cbd5e1"/>',
        f'<text x="{_PAD_L - 4}" y="{_PAD_T + 8}" text-anchor="end">{peak}</text>',
        f'<text x="{_PAD_L - 4}" y="{base_y}" text-anchor="end">0</text>',
    ]
    for which, ((name, colour, _), row) in enumerate(zip(series, counts, strict=True)):
        for index, count in enumerate(row):
            if not count:
                continue
            lo, hi = bins[index]
            fill = bar_colour((lo + hi) / 2, hi - lo) if bar_colour is not None else colour
            height = max(count / peak * plot_h, 1.0)
            x = _PAD_L + slot * index + (slot - bar * len(series)) / 2 + bar * which
            where = _tick(lo) if discrete else f"{_num(lo)} to {_num(hi)}"
            parts.append(
                f'<rect x="{x:.1f}" y="{base_y - height:.1f}" width="{max(bar - 1, 1):.1f}" height="{height:.1f}" '
                f'fill="{fill}"><title>{_e(name)}: {count} at {where}</title></rect>'
            )
    if discrete:
        for index, (value, _) in enumerate(bins):
            parts.append(
                f'<text x="{_PAD_L + slot * (index + 0.5):.1f}" y="{_H - 6}" text-anchor="middle">{_tick(value)}</text>'
            )
    else:
        for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
            label = _num(low + (high - low) * fraction)
            parts.append(
                f'<text x="{_PAD_L + plot_w * fraction:.1f}" y="{_H - 6}" text-anchor="{anchor}">{label}</text>'
            )
    if zero_line and low <= 0 <= high and not discrete:
        x = x_of(0.0)
        parts.append(f'<line x1="{x:.1f}" y1="{_PAD_T}" x2="{x:.1f}" y2="{base_y}" stroke="#0f172a" stroke-width="1"/>')
    for name, colour, data in series:
        if data and not discrete:
            mean = sum(data) / len(data)
            x = x_of(mean)
            parts.append(
                f'<line x1="{x:.1f}" y1="{_PAD_T}" x2="{x:.1f}" y2="{base_y}" stroke="{colour}" stroke-width="1.5" '
                f'stroke-dasharray="4 3"><title>{_e(name)} mean {_num(mean)}</title></line>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _values(records: Sequence[RecordResult], metric: str) -> tuple[list[float], list[float], list[float]]:
    baseline: list[float] = []
    candidate: list[float] = []
    deltas: list[float] = []
    for record in records:
        for source, target in ((record.baseline_scores, baseline), (record.scores, candidate), (record.deltas, deltas)):
            value = _finite(source.get(metric))
            if value is not None:
                target.append(value)
    return baseline, candidate, deltas


def _plots(result: ReplayResult, baseline_label: str, candidate_label: str) -> str:
    cards: list[str] = []
    for name, summary in result.metrics.items():
        baseline, candidate, deltas = _values(result.records, name)
        higher = summary.higher_is_better

        def delta_colour(centre: float, width: float, higher: bool = higher) -> str:
            if abs(centre) <= width / 2:
                return _NEUTRAL_COLOUR
            return _BETTER_COLOUR if (centre > 0) == higher else _WORSE_COLOUR

        values_svg = _histogram(
            [(baseline_label, _BASELINE_COLOUR, baseline), (candidate_label, _CANDIDATE_COLOUR, candidate)],
            title=f"{name}: distribution of per-record values",
        )
        delta_svg = _histogram(
            [("delta", _NEUTRAL_COLOUR, deltas)],
            title=f"{name}: per-record change, candidate minus baseline",
            bar_colour=delta_colour,
            zero_line=True,
        )
        cards.append(
            f'<div class="card plotcard"><h3>{_e(name)} <span class="muted small">'
            f"{'higher' if higher else 'lower'} is better</span></h3>"
            f'<div class="legend"><span class="sw" style="background:{_BASELINE_COLOUR}"></span>{_e(baseline_label)}'
            f'<span class="sw" style="background:{_CANDIDATE_COLOUR}"></span>{_e(candidate_label)}'
            f'<span class="muted small">dashed: means</span></div>{values_svg}'
            f'<div class="legend small muted">per-record change (candidate − baseline)</div>{delta_svg}</div>'
        )
    return f'<div class="plots">{"".join(cards)}</div>' if cards else ""


# -------------------------------------------------------------------------------------------------- sections


def _gate_metric(expr: str, metrics: Iterable[str]) -> str | None:
    """The metric a gate tests: the longest metric name the expression starts with (`rougeL.delta >= ...`)."""
    text = expr.strip()
    best: str | None = None
    for name in metrics:
        if text.startswith(name) and text[len(name) : len(name) + 1] in (".", " ", "\t") and len(text) > len(name):
            if best is None or len(name) > len(best):
                best = name
    return best


def _gate_item(gate: GateResult) -> str:
    mark, kind = ("✓", "ok") if gate.passed else ("✗", "fail")
    value = "" if gate.value is None else f' <span class="muted">value {_num(gate.value)}</span>'
    return (
        f'<li class="gate {kind}"><span class="mk">{mark}</span><code>{_e(gate.expr)}</code>'
        f'<span class="detail">{_e(gate.detail)}</span>{value}</li>'
    )


def _verdict(result: ReplayResult, candidate: str, baseline: str) -> str:
    passed = result.passed
    failed = [gate for gate in result.gates if not gate.passed]
    held = [gate for gate in result.gates if gate.passed]
    errors = sum(1 for record in result.records if record.error is not None)
    skipped = sum(result.skipped.values())
    if result.gates:
        tally = f"{len(held)} of {len(result.gates)} gates passed"
    else:
        tally = "no gates set: the verdict only checks that the run completed"
    facts = [_count(len(result.records), "record"), _count(errors, "error")]
    if skipped:
        facts.append(f"{skipped:,} skipped")
    facts.append(_duration(result.duration_s))
    items = "".join(_gate_item(gate) for gate in failed + held)
    if items:
        items = f'<ul class="gates">{items}</ul>'
    notice = ""
    if result.interrupted:
        notice = (
            '<p class="alert">The run was interrupted before every record finished: '
            f"the results cover the {len(result.records):,} records that did.</p>"
        )
    return (
        f'<header class="verdict {"pass" if passed else "fail"}"><div class="big">{"PASS" if passed else "FAIL"}</div>'
        f'<div class="vbody"><h1>Replay of <code>{_e(result.target)}</code></h1>'
        f'<p class="lead">Candidate <b>{_e(candidate)}</b> vs baseline <b>{_e(baseline)}</b> of prompt '
        f"<b>{_e(result.prompt_name)}</b> on <b>{_e(result.dataset)}</b></p>"
        f'<p class="tally"><b>{_e(tally)}</b> · {" · ".join(facts)}</p>{notice}'
        f"{items}</div></header>"
    )


def _trace(trace_id: str | None, trace_url: Callable[[str], str] | None) -> str:
    if not trace_id:
        return '<span class="muted">–</span>'
    text = f"<code>{_e(trace_id)}</code>"
    if trace_url is None:
        return text
    url = trace_url(trace_id)
    # Only plain web or relative links: a `javascript:` URL must never become clickable.
    if not url.lower().startswith(("http://", "https://", "/", "./", "../", "#")):
        return text
    return f'<a href="{_e(url)}" target="_blank" rel="noopener noreferrer">{text}</a>'


def _facts(result: ReplayResult) -> str:
    started = result.started_at
    if started.tzinfo is None:
        started = started.replace(tzinfo=datetime.timezone.utc)
    errors = sum(1 for record in result.records if record.error is not None)
    baseline_errors = sum(1 for record in result.records if record.baseline_error is not None)
    count = len(result.records)
    rate = f" ({errors / count:.1%})" if count else ""
    skipped = ", ".join(f"{_e(reason)}: {number:,}" for reason, number in result.skipped.items() if number) or "none"
    rows = [
        ("Target", f"<code>{_e(result.target)}</code>"),
        ("Prompt", f"<code>{_e(result.prompt_name)}</code>"),
        ("Candidate", _e(_side_label(result.candidate))),
        ("Baseline", _e(_side_label(result.baseline))),
        ("Dataset", _e(result.dataset)),
        ("Scorers", ", ".join(f"<code>{_e(name)}</code>" for name in result.scorers) or "none"),
        ("Records replayed", f"{count:,}"),
        ("Skipped", skipped),
        ("Errors", f"candidate {errors:,}{rate} · baseline {baseline_errors:,}"),
        ("Baseline repeats", f"{result.repeats} per record"),
        ("Workers", str(result.workers)),
        ("Started", _e(started.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))),
        ("Duration", _duration(result.duration_s)),
        ("MLflow run", f"<code>{_e(result.mlflow_run_id)}</code>" if result.mlflow_run_id else "not logged"),
    ]
    cells = "".join(f"<div><dt>{name}</dt><dd>{value}</dd></div>" for name, value in rows)
    return f'<section id="facts"><h2>Run</h2><dl class="facts">{cells}</dl></section>'


def _metrics(result: ReplayResult, candidate: str, baseline: str) -> str:
    if not result.metrics:
        return '<section id="metrics"><h2>Metrics</h2><p class="muted">No metrics were computed.</p></section>'
    gates: dict[str, list[GateResult]] = {}
    for gate in result.gates:
        metric = _gate_metric(gate.expr, result.metrics)
        if metric is not None:
            gates.setdefault(metric, []).append(gate)
    rows: list[str] = []
    for name, summary in result.metrics.items():
        arrow = "↑" if summary.higher_is_better else "↓"
        direction = "higher is better" if summary.higher_is_better else "lower is better"
        ci = ""
        if summary.ci_low is not None or summary.ci_high is not None:
            ci = f'<div class="ci">[{_num(summary.ci_low, signed=True)}, {_num(summary.ci_high, signed=True)}]</div>'
        extra: list[str] = []
        if summary.corpus_baseline is not None or summary.corpus_candidate is not None:
            extra.append(f"corpus {_num(summary.corpus_baseline)} → {_num(summary.corpus_candidate)}")
        if summary.p50 is not None or summary.p95 is not None:
            extra.append(
                f"p50 {_change(summary.baseline_p50, summary.p50)} · p95 {_change(summary.baseline_p95, summary.p95)}"
            )
        if summary.ratio is not None:
            extra.append(f"ratio {_num(summary.ratio)}")
        if summary.p95_ratio is not None:
            extra.append(f"p95 ratio {_num(summary.p95_ratio)}")
        if summary.rate is not None:
            extra.append(f"rate {summary.rate:.1%}")
        if summary.noise is not None:
            extra.append(f"noise ±{_num(summary.noise)}")
        verdicts = gates.get(name, [])
        if verdicts:
            gate_cells = "".join(
                f'<div class="{"ok" if gate.passed else "fail"}" title="{_e(gate.detail)}">'
                f"{'✓' if gate.passed else '✗'} <code>{_e(gate.expr)}</code></div>"
                for gate in verdicts
            )
        else:
            gate_cells = '<span class="muted">–</span>'
        rows.append(
            f'<tr><th scope="row"><code>{_e(name)}</code> <span class="muted" title="{direction}">{arrow}</span></th>'
            f'<td class="num">{summary.n:,}</td><td class="num">{_num(summary.baseline)}</td>'
            f'<td class="num">{_num(summary.candidate)}</td>'
            f'<td class="num delta {_summary_tone(summary)}">{_num(summary.delta, signed=True)}{ci}</td>'
            f'<td class="extra">{"<br>".join(extra) or "–"}</td><td class="gatecell">{gate_cells}</td></tr>'
        )
    head = (
        f'<tr><th>Metric</th><th class="num">n</th><th class="num">Baseline<div class="sub">{_e(baseline)}</div></th>'
        f'<th class="num">Candidate<div class="sub">{_e(candidate)}</div></th>'
        '<th class="num">Δ<div class="sub">95% CI</div></th><th>Details</th><th>Gates</th></tr>'
    )
    return (
        f'<section id="metrics"><h2>Metrics</h2><div class="card tablecard"><table class="metrics"><thead>{head}'
        f'</thead><tbody>{"".join(rows)}</tbody></table><p class="note muted small">Δ is the mean paired '
        "difference (candidate − baseline) with a bootstrap 95% confidence interval; it is coloured only when "
        "the interval excludes zero.</p></div>"
        f"{_plots(result, baseline, candidate)}</section>"
    )


def _prompt(result: ReplayResult) -> str:
    old, new = result.baseline.template, result.candidate.template
    title = f"Prompt template: {_e(_side_label(result.baseline))} → {_e(_side_label(result.candidate))}"
    if old is None and new is None:
        body = '<p class="muted">Neither template is known, so there is no diff to show.</p>'
    elif old is None or new is None:
        missing, known, text = ("baseline", "candidate", new) if old is None else ("candidate", "baseline", old)
        why = ""
        if missing == "baseline" and result.baseline.versions:
            shown = ", ".join(str(version) for version in result.baseline.versions)
            why = f" (the captured records span versions {_e(shown)})"
        body = (
            f'<p class="muted">The {missing} template is not known{why}; the {known} template:</p>'
            f'<pre class="tpl">{_e(_template_text(text or ""))}</pre>'
        )
    elif _template_text(old) == _template_text(new):
        body = (
            '<p class="muted">The templates are identical: differences come from the model\'s variation.</p>'
            f'<details><summary>Show the template</summary><pre class="tpl">{_e(_template_text(new))}</pre></details>'
        )
    else:
        body = _template_diff(_template_text(old), _template_text(new))
    return f'<section id="prompt"><h2>{title}</h2><div class="card">{body}</div></section>'


# --------------------------------------------------------------------------------------------------- records


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
        delta = _finite(record.deltas.get(metric)) if metric is not None else None
        if delta is None:
            return (1, 0.0, 0 if record.error is not None else 1, index)
        return (0, delta if higher_is_better else -delta, 0, index)

    return sorted(range(len(records)), key=key)


def _missing(error: str | None) -> str:
    return f'<span class="none">{"call raised" if error else "no output"}</span>'


def _outputs(record: RecordResult, detailed: bool, max_chars: int) -> tuple[str, str, bool]:
    """Both outputs as HTML (diffed when detailed), and whether they differ."""
    limit = max_chars if detailed else _EXCERPT_CHARS
    old = None if record.baseline_output is None else _display_text(record.baseline_output)
    new = None if record.candidate_output is None else _display_text(record.candidate_output)
    old_cut, old_dropped = _cut(old or "", limit)
    new_cut, new_dropped = _cut(new or "", limit)
    if detailed and old is not None and new is not None:
        left, right = _word_diff(old_cut, new_cut)
    else:
        left, right = _e(old_cut), _e(new_cut)
    short = not detailed
    left = (left if old is not None else _missing(record.baseline_error)) + _cut_note(old_dropped, short=short)
    right = (right if new is not None else _missing(record.error)) + _cut_note(new_dropped, short=short)
    return left, right, old != new


def _inputs(inputs: dict[str, Any]) -> str:
    text = _display_text(inputs)
    if len(text) <= _INPUTS_PREVIEW:
        return f'<pre class="json">{_e(text)}</pre>'
    full, dropped = _cut(text, _INPUTS_MAX)
    return (
        f'<pre class="json">{_e(text[:_INPUTS_PREVIEW])}<span class="cut">…</span></pre>'
        f"<details class='more'><summary>Show all inputs ({len(text):,} characters)</summary>"
        f'<pre class="json">{_e(full)}{_cut_note(dropped)}</pre></details>'
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
            f"<tr><td><code>{_e(name)}</code></td><td class='num'>{_num(record.baseline_scores.get(name))}</td>"
            f"<td class='num'>{_num(record.scores.get(name))}</td>"
            f"<td class='num {_tone(delta, higher)}'>{_num(delta, signed=True)}</td>"
            f"<td class='reason'>{_e(reason) if reason else ''}</td></tr>"
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
            text, dropped = _cut(error, limit)
            parts.append(f'<div class="errbox"><b>{who} raised</b><pre>{_e(text)}{_cut_note(dropped)}</pre></div>')
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
        text, dropped = _cut(_display_text(record.expected), max_chars)
        expected = (
            '<details class="more"><summary>Expected output</summary>'
            f'<pre class="out">{_e(text)}{_cut_note(dropped)}</pre></details>'
        )
    latency = ""
    if record.latency_ms is not None or record.baseline_latency_ms is not None:
        latency = (
            f"<div><dt>Latency</dt><dd>{_num(record.baseline_latency_ms)} → {_num(record.latency_ms)} ms</dd></div>"
        )
    return (
        f'<div class="body"><div class="sbs"><div class="col"><h4>Baseline · {_e(baseline_label)}</h4>'
        f'<pre class="out">{left}</pre></div><div class="col"><h4>Candidate · {_e(candidate_label)}</h4>'
        f'<pre class="out">{right}</pre></div></div>{_errors(record, max_chars)}{expected}'
        f'<div class="meta"><div><h4>Scores</h4>{_scores_table(record, metrics)}</div>'
        f"<div><h4>Inputs</h4>{_inputs(record.inputs)}</div></div>"
        f'<dl class="facts small"><div><dt>Candidate trace</dt><dd>{_trace(record.trace_id, trace_url)}</dd></div>'
        f"<div><dt>Baseline trace</dt><dd>{_trace(record.baseline_trace_id, trace_url)}</dd></div>{latency}</dl></div>"
    )


def _compact_body(record: RecordResult, left: str, right: str, *, trace_url: Callable[[str], str] | None) -> str:
    """Past the detail limit: excerpts and one line of facts, so thousands of records stay a few MB."""
    facts = [
        f"{_e(name)} {_num(record.baseline_scores.get(name))} → {_num(value)}" for name, value in record.scores.items()
    ]
    if record.trace_id:
        facts.append(f"trace {_trace(record.trace_id, trace_url)}")
    inputs = json.dumps(jsonable(record.inputs), ensure_ascii=False)
    text, dropped = _cut(inputs, _EXCERPT_CHARS // 2)
    facts.append(f"inputs <code>{_e(text)}{'…' if dropped else ''}</code>")
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
) -> str:
    delta = _finite(record.deltas.get(key)) if key is not None else None
    others = " ".join(
        f'<span class="{_tone(value, metrics[name].higher_is_better if name in metrics else True)}">'
        f"{_e(name)} {_num(value, signed=True)}</span>"
        for name, value in record.deltas.items()
        if name != key and value is not None
    )
    preview_source = record.error if record.candidate_output is None and record.error else record.candidate_output
    preview = " ".join(_display_text(preview_source)[:_PREVIEW_CHARS].split()) if preview_source is not None else ""
    badges = ""
    if record.error is not None:
        badges += '<span class="badge err">error</span>'
    if record.baseline_error is not None:
        badges += '<span class="badge berr">baseline error</span>'
    summary = (
        f'<summary><span class="rank">{rank}</span><span class="rid">{_e(record.id)}</span>'
        f'<span class="kd {_tone(delta, higher)}">{_num(delta, signed=True)}</span>'
        f'<span class="od">{others}</span>{badges}<span class="pv">{_e(preview)}</span></summary>'
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
    return f'<details class="{kind}"{attributes}>{summary}{body}</details>'


def _records(
    result: ReplayResult,
    *,
    labels: tuple[str, str],
    trace_url: Callable[[str], str] | None,
    detail_limit: int,
    max_chars: int,
) -> str:
    key, higher = _key_metric(result)
    order = _order(result.records, key, higher)
    items = [
        _record(
            rank + 1,
            result.records[index],
            metrics=result.metrics,
            key=key,
            higher=higher,
            detailed=rank < detail_limit,
            max_chars=max_chars,
            labels=labels,
            trace_url=trace_url,
        )
        for rank, index in enumerate(order)
    ]
    total = len(items)
    if key is not None:
        direction = "lowest" if higher else "highest"
        how = f"ordered by the change in <code>{_e(key)}</code>, worst first ({direction} delta first)"
    else:
        how = "in dataset order"
    detail_note = (
        f"the first {min(detail_limit, total):,} carry a word-level diff, the rest an excerpt of each output "
        "(the JSON output has every record in full)"
        if total > detail_limit
        else "each with a word-level diff"
    )
    toolbar = (
        '<div class="toolbar"><input type="search" id="q" placeholder="Filter by id or text" aria-label="filter">'
        '<label><input type="checkbox" id="only-err"> errors only</label>'
        '<label><input type="checkbox" id="only-chg"> changed output only</label>'
        '<button type="button" id="open-all">Expand shown</button><button type="button" id="close-all">Collapse all</button>'
        f'<span class="muted"><span id="shown">{total:,}</span> of {total:,} shown</span></div>'
    )
    return (
        f'<section id="records"><h2>Records</h2><p class="muted">{total:,} records {how}; {detail_note}. '
        "Click a record to see both outputs side by side: <del>removed</del> and <ins>added</ins> words are marked.</p>"
        f'{toolbar}<div class="reclist">{"".join(items) or "<p class=muted>No records.</p>"}</div></section>'
    )


# ------------------------------------------------------------------------------------------------------ page

_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

_CSS: Final = """
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff;--better:#15803d;--worse:#b91c1c;
--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:20px;margin:0 0 4px;font-weight:600}
h2{font-size:17px;margin:28px 0 10px;font-weight:600}
h3{font-size:14px;margin:0 0 6px;font-weight:600}
h4{font-size:12px;margin:0 0 4px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
code,pre{font-family:var(--mono);font-size:12.5px}
code{background:#f1f5f9;border-radius:4px;padding:0 4px}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
a{color:#1d4ed8}
.muted{color:var(--muted)}.small{font-size:12px}
.better{color:var(--better)}.worse{color:var(--worse)}.same{color:var(--muted)}
.delta.better,.delta.worse{font-weight:600}.delta.weak{font-weight:400}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px}
nav{display:flex;gap:16px;font-size:13px;margin:0 0 12px}nav a{text-decoration:none}
.verdict{display:flex;gap:20px;align-items:flex-start;border-radius:10px;padding:18px 22px;border:1px solid}
.verdict.pass{background:#ecfdf5;border-color:#6ee7b7}.verdict.fail{background:#fef2f2;border-color:#fca5a5}
.verdict .big{font-size:40px;font-weight:800;letter-spacing:.04em;line-height:1;padding:6px 18px;border-radius:8px;
color:#fff;flex:none}
.verdict.pass .big{background:#059669}.verdict.fail .big{background:#dc2626}
.vbody{min-width:0}.lead{margin:0 0 2px}.tally{margin:0 0 8px;color:#334155}
.gates{list-style:none;margin:0;padding:0}
.gate{display:flex;gap:8px;align-items:baseline;padding:3px 0;flex-wrap:wrap}
.gate .mk{font-weight:700;width:14px}.gate.fail .mk{color:var(--worse)}.gate.ok .mk{color:var(--better)}
.gate.fail code{background:#fee2e2}.gate.ok{color:#334155}.gate .detail{color:#334155}
.alert{background:#fff7ed;border:1px solid #fdba74;border-radius:6px;padding:6px 10px;margin:6px 0}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:8px 20px;margin:0}
.facts dt{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.facts dd{margin:0;overflow-wrap:anywhere}
#facts .facts{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:12px;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line)}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.sub,.ci{font-size:11px;color:var(--muted);font-weight:400}
.tablecard{padding:4px 8px;overflow-x:auto}.tablecard tbody tr:last-child>*{border-bottom:0}
.extra{font-size:12px;color:#334155}.gatecell .ok{color:var(--better)}.gatecell .fail{color:var(--worse);font-weight:600}
.note{margin:6px 10px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(372px,1fr));gap:12px;margin-top:12px}
.plot{display:block;max-width:100%;height:auto}.plot text{font-size:10px;fill:#64748b;font-family:inherit}
.legend{display:flex;gap:6px;align-items:center;font-size:12px;margin:2px 0}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-left:6px}
del{background:#fee2e2;color:#991b1b;text-decoration:line-through;text-decoration-color:#f87171}
ins{background:#dcfce7;color:#166534;text-decoration:none}
.tdiff td{border:0;padding:1px 8px;font-family:var(--mono);font-size:12.5px;white-space:pre-wrap;overflow-wrap:anywhere}
.tdiff .ln{color:#94a3b8;text-align:right;width:1%;white-space:nowrap;user-select:none}
.tdiff .mk{width:1%;color:#94a3b8}
.tdiff tr.del{background:#fef2f2}.tdiff tr.add{background:#f0fdf4}
.tdiff tr.del del,.tdiff tr.add ins{background:#fecaca}.tdiff tr.add ins{background:#bbf7d0}
.tpl{background:#f8fafc;border:1px solid var(--line);border-radius:6px;padding:10px;max-height:480px;overflow:auto}
.toolbar{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin:0 0 10px}
.toolbar input[type=search]{flex:1;min-width:220px;padding:6px 10px;border:1px solid #cbd5e1;border-radius:6px;font:inherit}
button{font:inherit;font-size:13px;padding:5px 10px;border:1px solid #cbd5e1;border-radius:6px;background:#fff;cursor:pointer}
button:hover{background:#f1f5f9}
.reclist{border:1px solid var(--line);border-radius:8px;background:var(--card);overflow:hidden}
.rec{border-bottom:1px solid var(--line)}.rec:last-child{border-bottom:0}
.rec>summary{display:flex;gap:10px;align-items:baseline;padding:6px 12px;cursor:pointer;list-style:none;
white-space:nowrap}
.rec>summary::-webkit-details-marker{display:none}
.rec>summary::before{content:"▸";color:#94a3b8;width:10px;flex:none}.rec[open]>summary::before{content:"▾"}
.rec>summary:hover{background:#f8fafc}.rec[open]>summary{background:#f1f5f9;border-bottom:1px solid var(--line)}
.rank{color:#94a3b8;font-size:12px;width:40px;text-align:right;flex:none;font-variant-numeric:tabular-nums}
.rid{font-family:var(--mono);font-size:12.5px;max-width:200px;overflow:hidden;text-overflow:ellipsis;flex:none}
.kd{font-weight:600;width:64px;text-align:right;flex:none;font-variant-numeric:tabular-nums}
.od{font-size:12px;flex:none;display:flex;gap:8px}
.pv{color:var(--muted);overflow:hidden;text-overflow:ellipsis;min-width:0;flex:1}
.badge{font-size:11px;border-radius:10px;padding:0 8px;flex:none}
.badge.err{background:#fee2e2;color:#991b1b}.badge.berr{background:#ffedd5;color:#9a3412}
.body{padding:12px 16px 16px}
.cbody .out::before{display:block;font-size:11px;font-weight:600;color:var(--muted);text-transform:uppercase;
letter-spacing:.04em}
.cbody .out:first-child::before{content:"Baseline"}.cbody .out:last-child::before{content:"Candidate"}
.sbs{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.out{background:#f8fafc;border:1px solid var(--line);border-radius:6px;padding:8px 10px;max-height:420px;overflow:auto;
font-size:13px;line-height:1.5}
.none{color:#94a3b8;font-style:italic}
.cut{display:block;color:#94a3b8;font-style:italic;font-size:12px;margin-top:4px}
.errbox{margin-top:10px;background:#fef2f2;border:1px solid #fecaca;border-radius:6px;padding:6px 10px;color:#991b1b}
.meta{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px;margin-top:12px}
.scores td,.scores th{padding:3px 8px;font-size:12.5px}.reason{color:var(--muted);font-size:12px}
.json{background:#f8fafc;border:1px solid var(--line);border-radius:6px;padding:8px 10px;max-height:360px;overflow:auto}
details.more{margin-top:6px}details.more>summary{cursor:pointer;color:#1d4ed8;font-size:12.5px}
.body .facts{margin-top:12px}
footer{margin-top:32px;color:var(--muted);font-size:12px}
@media (max-width:800px){.sbs,.meta{grid-template-columns:1fr}.od{display:none}}
"""

_JS: Final = """
(function(){
var recs=[].slice.call(document.querySelectorAll('details.rec'));
var q=document.getElementById('q'),err=document.getElementById('only-err'),chg=document.getElementById('only-chg');
var shown=document.getElementById('shown');if(!q)return;
var text=recs.map(function(r){return r.querySelector('summary').textContent.toLowerCase();});
function apply(){var s=q.value.trim().toLowerCase(),n=0;
recs.forEach(function(r,i){var ok=(!s||text[i].indexOf(s)>=0)&&(!err.checked||r.hasAttribute('data-err'))&&
(!chg.checked||r.hasAttribute('data-chg'));r.hidden=!ok;if(ok)n++;});shown.textContent=n.toLocaleString();}
q.addEventListener('input',apply);err.addEventListener('change',apply);chg.addEventListener('change',apply);
document.getElementById('open-all').addEventListener('click',function(){recs.forEach(function(r){if(!r.hidden)r.open=true;});});
document.getElementById('close-all').addEventListener('click',function(){recs.forEach(function(r){r.open=false;});});
})();
"""


def render_html(
    result: ReplayResult,
    *,
    trace_url: Callable[[str], str] | None = None,
    detail_limit: int = DETAIL_LIMIT,
    max_chars: int = MAX_CHARS,
) -> str:
    """The self-contained HTML report of a replay.

    Args:
        result: The replay's result.
        trace_url: Maps a trace id to a link (e.g. the MLflow UI's trace view); without it trace ids are shown
            as text. Only `http(s)://` and relative links are made clickable.
        detail_limit: How many records (largest changes first) get a word-level output diff; the others show
            an excerpt. Keeps the file small for thousands of records.
        max_chars: Characters of each output shown in a detailed record.

    Returns:
        One HTML document that loads nothing from the network.
    """
    candidate, baseline = _side_label(result.candidate), _side_label(result.baseline)
    verdict = "PASS" if result.passed else "FAIL"
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        _verdict(result, candidate, baseline),
        '<nav><a href="#facts">Run</a><a href="#metrics">Metrics</a><a href="#prompt">Prompt diff</a>'
        f'<a href="#records">Records ({len(result.records):,})</a></nav>',
        _facts(result),
        _metrics(result, candidate, baseline),
        _prompt(result),
        _records(
            result,
            labels=(baseline, candidate),
            trace_url=trace_url,
            detail_limit=max(detail_limit, 0),
            max_chars=max(max_chars, 1),
        ),
        f"<footer>Generated by promptops {_e(__version__)} on {generated}. This file is self-contained: it loads "
        "nothing from the network.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{verdict} · promptops replay · {_e(result.target)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(sections)}</main><script>{_JS}</script></body></html>\n"
    )
