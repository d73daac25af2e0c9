"""Inline SVG histograms of the baseline's and the candidate's scores, and of the per-record changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

from ._format import escape, finite, fmt_num

if TYPE_CHECKING:
    from .._result import RecordResult, ReplayResult

_DISCRETE_MAX: Final = 8  # a metric with at most this many distinct values is plotted as categories
_BINS: Final = 20
_BASELINE_COLOUR: Final = "#94a3b8"
_CANDIDATE_COLOUR: Final = "#2563eb"
_WORSE_COLOUR: Final = "#dc2626"
_BETTER_COLOUR: Final = "#16a34a"
_NEUTRAL_COLOUR: Final = "#64748b"


def _tick(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e6 else fmt_num(value)


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
        f'<svg class="plot" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
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
            where = _tick(lo) if discrete else f"{fmt_num(lo)} to {fmt_num(hi)}"
            parts.append(
                f'<rect x="{x:.1f}" y="{base_y - height:.1f}" width="{max(bar - 1, 1):.1f}" height="{height:.1f}" '
                f'fill="{fill}"><title>{escape(name)}: {count} at {where}</title></rect>'
            )
    if discrete:
        for index, (value, _) in enumerate(bins):
            parts.append(
                f'<text x="{_PAD_L + slot * (index + 0.5):.1f}" y="{_H - 6}" text-anchor="middle">{_tick(value)}</text>'
            )
    else:
        for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
            label = fmt_num(low + (high - low) * fraction)
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
                f'stroke-dasharray="4 3"><title>{escape(name)} mean {fmt_num(mean)}</title></line>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _values(records: Sequence[RecordResult], metric: str) -> tuple[list[float], list[float], list[float]]:
    baseline: list[float] = []
    candidate: list[float] = []
    deltas: list[float] = []
    for record in records:
        for source, target in ((record.baseline_scores, baseline), (record.scores, candidate), (record.deltas, deltas)):
            value = finite(source.get(metric))
            if value is not None:
                target.append(value)
    return baseline, candidate, deltas


def plots_section(result: ReplayResult, baseline_label: str, candidate_label: str) -> str:
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
            f'<div class="card plotcard"><h3>{escape(name)} <span class="muted small">'
            f"{'higher' if higher else 'lower'} is better</span></h3>"
            f'<div class="legend"><span class="sw" style="background:{_BASELINE_COLOUR}"></span>{escape(baseline_label)}'
            f'<span class="sw" style="background:{_CANDIDATE_COLOUR}"></span>{escape(candidate_label)}'
            f'<span class="muted small">dashed: means</span></div>{values_svg}'
            f'<div class="legend small muted">per-record change (candidate − baseline)</div>{delta_svg}</div>'
        )
    return f'<div class="plots">{"".join(cards)}</div>' if cards else ""
