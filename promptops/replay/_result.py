"""What a replay produces: per-record results, per-metric summaries, gate verdicts, and the whole result.

Plain dataclasses: the runner fills them, `_stats` computes `MetricSummary`, `_gates` computes `GateResult`,
and the report, JSON, JUnit and MLflow writers only read them.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .._usage import UsageTotals

__all__ = [
    "CandidateResult",
    "GateResult",
    "MetricSummary",
    "RecordResult",
    "ReplayResult",
    "UsageTotals",
    "VersionInfo",
    "open_output",
    "redaction",
]


@dataclasses.dataclass(slots=True)
class VersionInfo:
    """One side of the comparison.

    Attributes:
        label: What the user asked for: `"5"`, `"@staging"`, `"captured"` or `"production"`.
        version: The registry version it resolved to (`None` for `captured` when records span versions).
        template: The prompt template text (chat messages as JSON text), for the report's diff.
        versions: For `captured`: the prompt versions the records were captured with.
    """

    label: str
    version: int | None = None
    template: str | None = None
    versions: list[int] = dataclasses.field(default_factory=list[int])


@dataclasses.dataclass(slots=True)
class RecordResult:
    """One dataset record, replayed.

    Attributes:
        id: The dataset record's id (the capture id for records from captures).
        inputs: The inputs the target was called with (as stored: JSON data).
        baseline_output: The reference output: the captured one, or the baseline version's first run.
        candidate_output: What the candidate version returned (`None` when it raised).
        expected: The record's expected output, if it has one.
        scores: Candidate value per metric (`None`: not applicable to this record).
        baseline_scores: The baseline's value per metric (its re-runs against the reference, averaged; or the
            reference against itself when there are no re-runs).
        deltas: `scores - baseline_scores` per metric, where both exist.
        reasons: A scorer's explanation per metric, when it gave one.
        error: `Type: message` when the candidate call raised.
        baseline_error: `Type: message` when the baseline (capture or run) raised.
        latency_ms: The candidate call's wall time.
        baseline_latency_ms: The baseline's (re-run, else captured) wall time.
        trace_id: The candidate call's trace id (replay spans carry `promptops.replay=true`).
        baseline_trace_id: The captured call's trace id, if any.
    """

    id: str
    inputs: dict[str, Any]
    baseline_output: Any = None
    candidate_output: Any = None
    expected: Any = None
    scores: dict[str, float | None] = dataclasses.field(default_factory=dict[str, float | None])
    baseline_scores: dict[str, float | None] = dataclasses.field(default_factory=dict[str, float | None])
    deltas: dict[str, float | None] = dataclasses.field(default_factory=dict[str, float | None])
    reasons: dict[str, str] = dataclasses.field(default_factory=dict[str, str])
    error: str | None = None
    baseline_error: str | None = None
    latency_ms: float | None = None
    baseline_latency_ms: float | None = None
    trace_id: str | None = None
    baseline_trace_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data (the `records` entries of `ReplayResult.to_json()`)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class MetricSummary:
    """One metric over the records, paired baseline against candidate.

    Attributes:
        name: The metric (`rougeL`, `semantic`, `latency`, `rougeL@expected`, ...).
        higher_is_better: Direction of the metric (latency and errors: lower is better).
        n: Records with both a baseline and a candidate value.
        baseline: Mean baseline value.
        candidate: Mean candidate value.
        delta: Mean paired difference, candidate minus baseline.
        ci_low: Lower end of the bootstrap 95% confidence interval of `delta`.
        ci_high: Upper end.
        p50: Median candidate value.
        p95: 95th percentile of candidate values.
        baseline_p50: Median baseline value.
        baseline_p95: 95th percentile of baseline values.
        ratio: `candidate / baseline` (means); `None` when the baseline mean is 0.
        p95_ratio: `p95 / baseline_p95`; `None` when the baseline p95 is 0.
        rate: Fraction of records whose candidate value is non-zero (meaningful for 0/1 metrics: errors,
            exact_match).
        corpus_baseline: A corpus-level figure for the baseline when the scorer has one (corpus BLEU).
        corpus_candidate: The same for the candidate.
        noise: Standard deviation of the baseline's per-record values across its re-runs (the noise floor),
            averaged over records; `None` without re-runs.
    """

    name: str
    higher_is_better: bool
    n: int
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p50: float | None = None
    p95: float | None = None
    baseline_p50: float | None = None
    baseline_p95: float | None = None
    ratio: float | None = None
    p95_ratio: float | None = None
    rate: float | None = None
    corpus_baseline: float | None = None
    corpus_candidate: float | None = None
    noise: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data (the `metrics` entries of `ReplayResult.to_json()`)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class GateResult:
    """One gate's verdict.

    Attributes:
        expr: The gate as written (`semantic.mean >= 0.85`, `rougeL noninferior 0.03`).
        passed: Whether it held.
        value: The statistic it tested (for non-inferiority: the lower 95% bound of the delta after Holm).
        detail: One line explaining the verdict, e.g. `0.81 < 0.85` or `delta -0.012, 95% CI [-0.03, 0.004],
            Holm-adjusted p = 0.002 < 0.05`.
    """

    expr: str
    passed: bool
    value: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data (the `gates` entries of `ReplayResult.to_json()`)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class CandidateResult:
    """One candidate of a replay that compares several (`candidate=[4, 5]`, `--candidate` given twice).

    Attributes:
        label: The version number or alias as given.
        version: The registry version it resolved to.
        template: Its template text.
        passed: Every gate held for it (and the run completed).
        metrics: Its summary per metric, against the shared baseline.
        gates: Its gates' verdicts (the non-inferiority gates of all candidates form one Holm family).
        records: Its per-record results (see `ReplayResult.records`).
    """

    label: str
    version: int
    template: str | None
    passed: bool
    metrics: dict[str, MetricSummary]
    gates: list[GateResult]
    records: Sequence[RecordResult]


@dataclasses.dataclass(slots=True)
class ReplayResult:
    """The outcome of `promptops.replay.run()`.

    Attributes:
        target: The replayed target (`module:function`).
        prompt_name: The registry prompt the candidate overrides.
        candidate: The candidate version.
        baseline: The baseline (`captured`, `production`, or a version).
        dataset: The dataset's name (or a description of the capture query).
        scorers: Scorer names, in the order given.
        gates: Each gate's verdict.
        metrics: Summary per metric.
        records: Per-record results, in dataset order. After `replay.run()` they are read from a temporary file
            as they are used (issue 15: a large replay does not hold them all in memory): each read gives a
            fresh copy, and `list(result.records)` loads them all.
        passed: Every gate of every candidate held, and the run was not interrupted or stopped.
        skipped: Records not replayed, counted by reason (`non_replayable`, ...).
        repeats: How many times the baseline was re-run per record to measure the noise floor.
        workers: Parallel calls.
        interrupted: The run was stopped (Ctrl-C) before every record finished; results cover what finished.
        started_at: When the run started (UTC).
        duration_s: Wall time of the run.
        mlflow_run_id: The MLflow run the result was logged to, if any.
        dataset_fingerprint: The dataset's content hash (`Dataset.fingerprint`): the same figure means the same
            records, so two results can be compared.
        calls: Calls behind the result (each counted once, however many times it was retried), including those
            reused from an earlier run.
        reused: Calls stored by an earlier run of the same replay and reused instead of made again (`fresh=True`
            makes every call).
        infrastructure_errors: Calls that still failed on the provider's side after their retries (rate limits,
            overloads, 5xx, timeouts, refused connections or credentials); their records are left out of the
            metrics (`skipped["infrastructure_error"]`).
        retries: Attempts retried after a transient failure.
        rate_limited: Attempts the provider answered with a rate limit.
        lowest_concurrency: The fewest calls the adaptive concurrency allowed in flight (`workers` when no rate
            limit was met).
        could_not_measure: Why the run measured nothing reliable (too many infrastructure errors, or the circuit
            breaker opened); `None` otherwise. A run that could not measure has not passed.
        usage: Tokens and cost per side (`candidate`, `baseline`: its reference and re-runs), over the calls the
            result covers; empty when no call reported usage.
        spent: USD spent on the calls made by this run (calls reused from an earlier run are free); `None` when
            no call could be priced.
        candidates: Every candidate, in the order given; `candidate`, `gates`, `metrics` and `records` are the
            first one's.
        best: The label of the passing candidate with the best mean on the first scorer (against `expected`
            when the records have it); `None` when none passed.
        stopped: Why the run stopped before making every call (the `max_cost` limit); a stopped run has not
            passed, and its results cover the records that finished.
    """

    target: str
    prompt_name: str
    candidate: VersionInfo
    baseline: VersionInfo
    dataset: str
    scorers: list[str]
    gates: list[GateResult]
    metrics: dict[str, MetricSummary]
    records: Sequence[RecordResult]
    passed: bool
    skipped: dict[str, int] = dataclasses.field(default_factory=dict[str, int])
    repeats: int = 1
    workers: int = 1
    interrupted: bool = False
    started_at: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
    )
    duration_s: float = 0.0
    mlflow_run_id: str | None = None
    dataset_fingerprint: str | None = None
    calls: int = 0
    reused: int = 0
    infrastructure_errors: int = 0
    retries: int = 0
    rate_limited: int = 0
    lowest_concurrency: int | None = None
    could_not_measure: str | None = None
    usage: dict[str, UsageTotals] = dataclasses.field(default_factory=dict[str, UsageTotals])
    spent: float | None = None
    stopped: str | None = None
    candidates: list[CandidateResult] = dataclasses.field(default_factory=list[CandidateResult])
    best: str | None = None

    # -- outputs -------------------------------------------------------------------------------------------------

    def redacted(self) -> ReplayResult:
        """A copy whose records went through the redaction spans and captures get: what every report shows.

        Inputs, outputs and expected outputs, error messages and scorers' reasons (issue 11: a candidate's fresh
        output, or a dataset imported from a file, was never redacted). Scores and metrics are unchanged: they
        were computed on the real values. The outputs `replay.run()` writes redact one record at a time as they
        write it (`redaction()`), rather than copying every record first (issue 15).
        """
        shown = redaction()

        # Every candidate's records (issue 13): the first one's are `records`, redacted once for both.
        candidates = [dataclasses.replace(c, records=list(map(shown, c.records))) for c in self.candidates]
        first = self.candidates[0].records if self.candidates else None
        records = candidates[0].records if first is self.records and candidates else list(map(shown, self.records))
        return dataclasses.replace(self, records=records, candidates=candidates)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The result as the stable JSON document (`schema_version` 2), redacted; also written to `path` if given."""
        from ._json import result_to_json, write_json

        document = result_to_json(self, shown=redaction())
        if path is not None:
            with open_output(path) as out:
                write_json(document, out)
        return document

    def to_html(
        self, path: str | os.PathLike[str] | None = None, *, trace_url: Callable[[str], str] | None = None
    ) -> str:
        """The self-contained HTML report, redacted; also written to `path` if given.

        `trace_url` maps a trace id to a link (the replay's own traces in the MLflow UI, when the run was logged
        to a tracking server); without it trace ids are text.
        """
        from ._report import iter_html

        html = "".join(iter_html(self, shown=redaction(), trace_url=trace_url))
        if path is not None:
            with open_output(path) as out:
                out.write(html)
        return html

    def to_junit(self, path: str | os.PathLike[str] | None = None) -> str:
        """JUnit XML, one test case per gate; also written to `path` if given.

        It holds no record's content (only how many there were and how many raised), so nothing needs redacting.
        """
        from ._junit import result_to_junit

        xml = result_to_junit(self)
        if path is not None:
            with open_output(path) as out:
                out.write(xml)
        return xml

    def summary(self) -> str:
        """A plain-text summary: the verdict, each gate's detail, and each metric's baseline, candidate and delta."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"promptops replay {verdict}: {self.target} prompt {self.prompt_name!r} candidate {self.candidate.label}"
            f" vs baseline {self.baseline.label}, {len(self.records)} records of {self.dataset}"
            + (f", skipped {self.skipped}" if self.skipped else "")
            + (" (interrupted)" if self.interrupted else "")
        ]
        if self.could_not_measure is not None:
            lines.append(f"  could not measure: {self.could_not_measure}")
        if self.stopped is not None:
            lines.append(f"  {self.stopped}")
        lines += [f"  {'pass' if gate.passed else 'FAIL'}  {gate.expr}: {gate.detail}" for gate in self.gates]
        for name, metric in self.metrics.items():
            lines.append(
                f"  {name}: baseline {_number(metric.baseline)}, candidate {_number(metric.candidate)}, "
                f"delta {_number(metric.delta)} [95% CI {_number(metric.ci_low)}, {_number(metric.ci_high)}]"
            )
        return "\n".join(lines)

    def assert_passed(self) -> None:
        """Raise `AssertionError` with `summary()` unless every gate passed (for a regression test)."""
        if not self.passed:
            raise AssertionError(self.summary())


def redaction() -> Callable[[RecordResult], RecordResult]:
    """A record as every report shows it: through the redaction spans and captures get (issue 11).

    One record at a time, so an output can redact each record as it writes it instead of copying them all first
    (issue 15: the copies were a large share of a 20,000-record replay's memory).

    Returns:
        A function from a record to a redacted copy (inputs, outputs, expected output, error messages and
        scorers' reasons; scores unchanged). The settings' redactor is read once, here.
    """
    import sys

    from .._config import get_settings
    from .._redact import redactor_for
    from .._serialize import to_jsonable

    redactor = redactor_for(get_settings())

    def value(data: Any) -> Any:
        return to_jsonable(data, max_chars=sys.maxsize, redactor=redactor)  # never truncated: a full record

    def text(message: str | None) -> str | None:
        return None if message is None else redactor.redact_text(message)

    def shown(record: RecordResult) -> RecordResult:
        return dataclasses.replace(
            record,
            inputs=value(record.inputs),
            baseline_output=value(record.baseline_output),
            candidate_output=value(record.candidate_output),
            expected=value(record.expected),
            reasons={name: redactor.redact_text(reason) for name, reason in record.reasons.items()},
            error=text(record.error),
            baseline_error=text(record.baseline_error),
        )

    return shown


def open_output(path: str | os.PathLike[str]) -> TextIO:
    """A report file opened for writing as UTF-8, its directory created if needed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.open("w", encoding="utf-8")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
