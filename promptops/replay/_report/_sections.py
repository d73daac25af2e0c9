"""The report's upper sections: the verdict with each gate, the run's facts, the metrics table, the prompt diff."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..._usage import usage_line
from ._diff import template_diff
from ._format import change, duration, escape, fmt_num, plural, side_label, summary_tone, template_text
from ._plots import plots_section

if TYPE_CHECKING:
    from .._result import GateResult, ReplayResult


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
    value = "" if gate.value is None else f' <span class="muted">value {fmt_num(gate.value)}</span>'
    return (
        f'<li class="gate {kind}"><span class="mk">{mark}</span><code>{escape(gate.expr)}</code>'
        f'<span class="detail">{escape(gate.detail)}</span>{value}</li>'
    )


def verdict_section(result: ReplayResult, candidate: str, baseline: str) -> str:
    passed = result.passed
    held = [gate for gate in result.gates if gate.passed]
    errors = sum(1 for record in result.records if record.error is not None)
    skipped = sum(result.skipped.values())
    if result.gates:
        tally = f"{len(held)} of {len(result.gates)} gates passed"
    else:
        tally = "no gates set: the verdict only checks that the run completed"
    facts = [plural(len(result.records), "record"), plural(errors, "error")]
    if skipped:
        facts.append(f"{skipped:,} skipped")
    facts.append(duration(result.duration_s))
    items = gates_list(result.gates)
    notice = ""
    if result.could_not_measure is not None:
        notice += f'<p class="alert">Could not measure: {escape(result.could_not_measure)}</p>'
    if result.stopped is not None:
        notice += (
            f'<p class="alert">{escape(result.stopped[:1].upper() + result.stopped[1:])}: '
            f"the results cover the {len(result.records):,} records that finished.</p>"
        )
    if result.interrupted:
        notice += (
            '<p class="alert">The run was interrupted before every record finished: '
            f"the results cover the {len(result.records):,} records that did.</p>"
        )
    return (
        f'<header class="verdict {"pass" if passed else "fail"}"><div class="big">{"PASS" if passed else "FAIL"}</div>'
        f'<div class="vbody"><h1>Replay of <code>{escape(result.target)}</code></h1>'
        f'<p class="lead">Candidate <b>{escape(candidate)}</b> vs baseline <b>{escape(baseline)}</b> of prompt '
        f"<b>{escape(result.prompt_name)}</b> on <b>{escape(result.dataset)}</b></p>"
        f'<p class="tally"><b>{escape(tally)}</b> · {" · ".join(facts)}</p>{notice}'
        f"{items}</div></header>"
    )


def facts_section(result: ReplayResult) -> str:
    started = result.started_at
    if started.tzinfo is None:
        started = started.replace(tzinfo=datetime.timezone.utc)
    errors = sum(1 for record in result.records if record.error is not None)
    baseline_errors = sum(1 for record in result.records if record.baseline_error is not None)
    count = len(result.records)
    rate = f" ({errors / count:.1%})" if count else ""
    skipped = (
        ", ".join(f"{escape(reason)}: {number:,}" for reason, number in result.skipped.items() if number) or "none"
    )
    rows = [
        ("Target", f"<code>{escape(result.target)}</code>"),
        ("Prompt", f"<code>{escape(result.prompt_name)}</code>"),
        ("Candidate", escape(side_label(result.candidate))),
        ("Baseline", escape(side_label(result.baseline))),
        ("Dataset", escape(result.dataset)),
        ("Scorers", ", ".join(f"<code>{escape(name)}</code>" for name in result.scorers) or "none"),
        ("Records replayed", f"{count:,}"),
        ("Skipped", skipped),
        ("Errors", f"candidate {errors:,}{rate} · baseline {baseline_errors:,}"),
        ("Baseline repeats", f"{result.repeats} per record"),
        ("Workers", str(result.workers)),
        (
            "Provider",
            f"{result.calls:,} calls"
            + (f" ({result.reused:,} reused from an earlier run)" if result.reused else "")
            + f" · {result.infrastructure_errors:,} infrastructure errors · "
            f"{result.retries:,} retries ({result.rate_limited:,} rate limited)"
            + (
                f" · concurrency down to {result.lowest_concurrency}"
                if result.lowest_concurrency is not None and result.lowest_concurrency < result.workers
                else ""
            ),
        ),
        *([("Usage", escape(usage_line(result.usage, result.spent)))] if result.usage else []),
        ("Started", escape(started.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))),
        ("Duration", duration(result.duration_s)),
        ("MLflow run", f"<code>{escape(result.mlflow_run_id)}</code>" if result.mlflow_run_id else "not logged"),
    ]
    cells = "".join(f"<div><dt>{name}</dt><dd>{value}</dd></div>" for name, value in rows)
    return f'<section id="facts"><h2>Run</h2><dl class="facts">{cells}</dl></section>'


def candidates_section(result: ReplayResult) -> str:
    """The comparison matrix of a replay with several candidates: metric x version, the best passing one marked."""
    if len(result.candidates) < 2:
        return ""
    head = (
        '<tr><th>Metric</th><th class="num">Baseline</th>'
        + "".join(
            f'<th class="num">{escape(candidate.label)}<div class="sub">{"PASS" if candidate.passed else "FAIL"}'
            + (' · <span class="best">best</span>' if candidate.label == result.best else "")
            + "</div></th>"
            for candidate in result.candidates
        )
        + "</tr>"
    )
    names = list(dict.fromkeys(name for candidate in result.candidates for name in candidate.metrics))
    rows: list[str] = []
    for name in names:
        baseline = next((c.metrics[name].baseline for c in result.candidates if name in c.metrics), None)
        cells = "".join(
            f'<td class="num">{fmt_num(m.candidate)}<div class="ci">{fmt_num(m.delta, signed=True)}</div></td>'
            if m is not None
            else '<td class="num">–</td>'
            for m in (candidate.metrics.get(name) for candidate in result.candidates)
        )
        rows.append(
            f'<tr><th scope="row"><code>{escape(name)}</code></th><td class="num">{fmt_num(baseline)}</td>{cells}</tr>'
        )
    return (
        f'<section id="candidates"><h2>Candidates</h2><div class="card tablecard"><table class="metrics"><thead>{head}'
        f'</thead><tbody>{"".join(rows)}</tbody></table><p class="note muted small">Each cell: the candidate\'s mean, '
        "and below it the mean paired delta against the baseline. Each candidate's metrics, prompt diff and records "
        "follow: "
        + " · ".join(
            f'<a href="#{candidate_anchor(position)}">{escape(candidate.label)}</a>'
            for position, candidate in enumerate(result.candidates)
        )
        + ".</p></div></section>"
    )


def candidate_anchor(position: int) -> str:
    """The id of a candidate's part of the report: the first candidate's is the page's own sections."""
    return "metrics" if position == 0 else f"candidate-{position}"


def gates_list(gates: list[GateResult]) -> str:
    """The gates, failed ones first, as the verdict lists them."""
    items = "".join(_gate_item(gate) for gate in [g for g in gates if not g.passed] + [g for g in gates if g.passed])
    return f'<ul class="gates">{items}</ul>' if items else ""


def metrics_section(result: ReplayResult, candidate: str, baseline: str, suffix: str = "") -> str:
    if not result.metrics:
        return f'<section id="metrics{suffix}"><h2>Metrics</h2><p class="muted">No metrics were computed.</p></section>'
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
            ci = f'<div class="ci">[{fmt_num(summary.ci_low, signed=True)}, {fmt_num(summary.ci_high, signed=True)}]</div>'
        extra: list[str] = []
        if summary.corpus_baseline is not None or summary.corpus_candidate is not None:
            extra.append(f"corpus {fmt_num(summary.corpus_baseline)} → {fmt_num(summary.corpus_candidate)}")
        if summary.p50 is not None or summary.p95 is not None:
            extra.append(
                f"p50 {change(summary.baseline_p50, summary.p50)} · p95 {change(summary.baseline_p95, summary.p95)}"
            )
        if summary.ratio is not None:
            extra.append(f"ratio {fmt_num(summary.ratio)}")
        if summary.p95_ratio is not None:
            extra.append(f"p95 ratio {fmt_num(summary.p95_ratio)}")
        if summary.rate is not None:
            extra.append(f"rate {summary.rate:.1%}")
        if summary.noise is not None:
            extra.append(f"noise ±{fmt_num(summary.noise)}")
        verdicts = gates.get(name, [])
        if verdicts:
            gate_cells = "".join(
                f'<div class="{"ok" if gate.passed else "fail"}" title="{escape(gate.detail)}">'
                f"{'✓' if gate.passed else '✗'} <code>{escape(gate.expr)}</code></div>"
                for gate in verdicts
            )
        else:
            gate_cells = '<span class="muted">–</span>'
        rows.append(
            f'<tr><th scope="row"><code>{escape(name)}</code> <span class="muted" title="{direction}">{arrow}</span></th>'
            f'<td class="num">{summary.n:,}</td><td class="num">{fmt_num(summary.baseline)}</td>'
            f'<td class="num">{fmt_num(summary.candidate)}</td>'
            f'<td class="num delta {summary_tone(summary)}">{fmt_num(summary.delta, signed=True)}{ci}</td>'
            f'<td class="extra">{"<br>".join(extra) or "–"}</td><td class="gatecell">{gate_cells}</td></tr>'
        )
    head = (
        f'<tr><th>Metric</th><th class="num">n</th><th class="num">Baseline<div class="sub">{escape(baseline)}</div></th>'
        f'<th class="num">Candidate<div class="sub">{escape(candidate)}</div></th>'
        '<th class="num">Δ<div class="sub">95% CI</div></th><th>Details</th><th>Gates</th></tr>'
    )
    return (
        f'<section id="metrics{suffix}"><h2>Metrics</h2><div class="card tablecard"><table class="metrics"><thead>{head}'
        f'</thead><tbody>{"".join(rows)}</tbody></table><p class="note muted small">Δ is the mean paired '
        "difference (candidate − baseline) with a bootstrap 95% confidence interval; it is coloured only when "
        "the interval excludes zero.</p></div>"
        f"{plots_section(result, baseline, candidate)}</section>"
    )


def prompt_section(result: ReplayResult, suffix: str = "") -> str:
    old, new = result.baseline.template, result.candidate.template
    title = f"Prompt template: {escape(side_label(result.baseline))} → {escape(side_label(result.candidate))}"
    if old is None and new is None:
        body = '<p class="muted">Neither template is known, so there is no diff to show.</p>'
    elif old is None or new is None:
        missing, known, text = ("baseline", "candidate", new) if old is None else ("candidate", "baseline", old)
        why = ""
        if missing == "baseline" and result.baseline.versions:
            shown = ", ".join(str(version) for version in result.baseline.versions)
            why = f" (the captured records span versions {escape(shown)})"
        body = (
            f'<p class="muted">The {missing} template is not known{why}; the {known} template:</p>'
            f'<pre class="tpl">{escape(template_text(text or ""))}</pre>'
        )
    elif template_text(old) == template_text(new):
        body = (
            '<p class="muted">The templates are identical: differences come from the model\'s variation.</p>'
            f'<details><summary>Show the template</summary><pre class="tpl">{escape(template_text(new))}</pre></details>'
        )
    else:
        body = template_diff(template_text(old), template_text(new))
    return f'<section id="prompt{suffix}"><h2>{title}</h2><div class="card">{body}</div></section>'
