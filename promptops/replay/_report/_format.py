"""Formatting shared by the report's sections: escaping, numbers, durations, texts and labels."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._json import jsonable

if TYPE_CHECKING:
    from .._result import MetricSummary, VersionInfo


_SURROGATES: Final = re.compile("[\ud800-\udfff]")


# A word or a punctuation mark, with the spaces after it: "Summarize:" and "Summarize briefly:" differ by a word.


def escape(value: object) -> str:
    text = str(value)
    if not text.isascii():  # a lone surrogate from a target's output would make the file impossible to save
        text = _SURROGATES.sub("\ufffd", text)
    return html.escape(text, quote=True)


# --------------------------------------------------------------------------------------------------- numbers


def fmt_num(value: float | None, *, signed: bool = False) -> str:
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


def plural(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def change(before: float | None, after: float | None) -> str:
    return fmt_num(after) if before is None else f"{fmt_num(before)} → {fmt_num(after)}"


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def tone(delta: float | None, higher_is_better: bool) -> str:
    """CSS class of a change: `better`, `worse` or `same`."""
    if delta is None or not math.isfinite(delta) or abs(delta) < 1e-12:
        return "same"
    return "better" if (delta > 0) == higher_is_better else "worse"


def summary_tone(summary: MetricSummary) -> str:
    """A metric's change is coloured only when its confidence interval excludes zero: otherwise it is noise."""
    low, high = finite(summary.ci_low), finite(summary.ci_high)
    if low is None or high is None:
        return tone(summary.delta, summary.higher_is_better) + " weak"
    if low > 0 or high < 0:
        return tone(summary.delta, summary.higher_is_better)
    return "same"


# ----------------------------------------------------------------------------------------------------- texts


def display_text(value: Any) -> str:
    """How an output or input is shown: strings as they are, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False)


def cut(text: str, limit: int) -> tuple[str, int]:
    """The text cut to `limit` characters, and how many were dropped."""
    if len(text) <= limit:
        return text, 0
    return text[:limit], len(text) - limit


def cut_note(dropped: int, *, short: bool = False) -> str:
    if not dropped:
        return ""
    if short:  # repeated in thousands of excerpts: the records' introduction explains where the rest is
        return f'<span class="cut">… {dropped:,} more characters</span>'
    return f'<span class="cut">… {dropped:,} more characters (the JSON output has the full text)</span>'


def side_label(info: VersionInfo) -> str:
    label = info.label
    if label.isdigit():
        return f"v{label}"
    if info.version is not None:
        return f"{label} (v{info.version})"
    if info.versions:
        return f"{label} (v{', v'.join(str(version) for version in info.versions)})"
    return label


def template_text(template: str) -> str:
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


def trace_link(trace_id: str | None, trace_url: Callable[[str], str] | None) -> str:
    if not trace_id:
        return '<span class="muted">–</span>'
    text = f"<code>{escape(trace_id)}</code>"
    if trace_url is None:
        return text
    url = trace_url(trace_id)
    # Only plain web or relative links: a `javascript:` URL must never become clickable.
    if not url.lower().startswith(("http://", "https://", "/", "./", "../", "#")):
        return text
    return f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">{text}</a>'
