"""`rollout status --report FILE.html`: the arms side by side, as one self-contained HTML page."""

from __future__ import annotations

import html
from pathlib import Path

from .._usage import usage_line
from ._compare import Comparison

__all__ = ["render_report", "write_report"]

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}.pass{color:#1a7f37}.fail{color:#cf222e}.pending{color:#9a6700}
"""


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def render_report(comparison: Comparison) -> str:
    """The comparison as an HTML page."""
    state = comparison.state
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(metric)}</td><td>{_fmt(s.baseline_mean)} <small>n={s.baseline_n}</small></td>"
        f"<td>{_fmt(s.candidate_mean)} <small>n={s.candidate_n}</small></td><td>{_fmt(s.delta)}</td>"
        f"<td>[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]</td><td>[{_fmt(s.av_low)}, {_fmt(s.av_high)}]</td></tr>"
        for metric, s in sorted(comparison.metrics.items())
    )
    gates = "".join(
        f"<li class='{o.verdict}'><b>{esc(o.gate.expr)}</b>: {o.verdict.upper()} – {esc(o.reason)}</li>"
        for o in comparison.gates
    )
    baseline = f"{state.baseline} (version {state.baseline_version})" if state.baseline_version else state.baseline
    usage = f"<p>{esc(usage_line(comparison.usage))}</p>" if comparison.usage else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Rollout {esc(state.id)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>Rollout of {esc(state.prompt)}</h1>"
        f"<p>{esc(state.status)}: candidate version {state.candidate} at share {state.share:g} against "
        f"{esc(baseline)}; rollout <code>{esc(state.id)}</code>.</p>"
        f"<p>Calls: baseline {comparison.calls['baseline']:,}, candidate {comparison.calls['candidate']:,}. "
        f"Gates decide on always-valid intervals (overall alpha {comparison.alpha:g}), once each arm has "
        f"{comparison.min_calls} observations.</p>"
        f"{usage}<table><tr><th>metric</th><th>baseline</th><th>candidate</th><th>delta</th><th>95% bootstrap CI</th>"
        f"<th>always-valid</th></tr>{rows}</table><h2 class='{comparison.verdict}'>Verdict: {comparison.verdict}</h2>"
        f"<ul>{gates}</ul></body></html>"
    )


def write_report(comparison: Comparison, path: str | Path) -> Path:
    """Write `render_report(comparison)` to `path` (parent directories created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(comparison), encoding="utf-8")
    return target
