"""A replay as an MLflow evaluation run: its calls' traces, params, metrics, per-record table, report and verdict.

The run is created before the first call (`ReplayRun.start`), so every call's trace can name it: the replay's
spans carry `promptops.replay.run_id`, which the `mlflow` exporter turns into the trace tag of that name and a link
from the trace to the run (the run's *Traces* tab). Run and traces go to the replay's own experiment
(`replay_experiment()`: `<experiment_name>-replay`, or `promptops-replay`), never among the application's traces:
MLflow 3.17's experiment *Traces* view lists every trace of its experiment, with no default filter a tag could
use (docs/tracing.md, "In the MLflow UI"). When the run is finished (`ReplayRun.finish`) it gets the params, the
metrics (per candidate, prefixed by its label, when there are several), the per-record table, the comparison
matrix, the HTML report (rendered once, naming the run) and the verdict, and it is linked to the candidate and
baseline prompt versions.

The run is created through an `MlflowClient` in the configured tracking store: the application's own active
run, if any, is left alone. Logging is a convenience on top of the result: when the store cannot be reached the
replay still runs and its verdict stands, with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .._config import get_settings
from .._mlflow_env import mlflow_environment

if TYPE_CHECKING:
    from mlflow.entities import RunTag

    from ._result import CandidateResult, MetricSummary, RecordResult, ReplayResult

__all__ = ["RECORDS_ARTIFACT", "REPORT_ARTIFACT", "RUN_ATTRIBUTE", "ReplayRun", "metric_key", "replay_experiment"]

logger = logging.getLogger("promptops.replay")

RUN_ATTRIBUTE = "promptops.replay.run_id"
"""The attribute of a replay's span of each call naming its MLflow run (`tracing/_mlflow.py` reads it)."""

REPORT_ARTIFACT = "replay_report.html"
"""The run's artifact holding the HTML report."""
RECORDS_ARTIFACT = "replay_records.json"
"""The run's table of records: a row per record and candidate."""
LINKED_PROMPTS = "mlflow.linkedPrompts"  # MLflow's run tag of the prompt versions a run used
_UNSAFE = re.compile(r"[^\w\-. /:]")
_STATS = ("baseline", "candidate", "delta", "ci_low", "ci_high", "p50", "p95", "ratio", "p95_ratio")


def metric_key(metric: str, stat: str, *, candidate: str | None = None) -> str:
    """An MLflow-safe metric key: `rougeL.delta`, `rougeL_at_expected.candidate` (MLflow refuses `@`).

    With `candidate` (a replay of several), the key is grouped under its label: `5/rougeL.delta`,
    `staging/rougeL.delta` (the MLflow UI charts each `/` prefix as a section).
    """
    key = f"{metric.replace('@', '_at_')}.{stat}"
    return _UNSAFE.sub("_", key if candidate is None else f"{candidate}/{key}")


def replay_experiment(name: str | None = None) -> str:
    """The experiment a replay's run and traces go to: `name` if given, else `<experiment_name>-replay`.

    (`promptops-replay` when the `experiment_name` setting is unset: the application's traces are then in
    MLflow's Default experiment.)
    """
    if name:
        return name
    base = get_settings().experiment_name
    return f"{base}-replay" if base else "promptops-replay"


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _timeout() -> int:
    return max(5, math.ceil(get_settings().registry_timeout))


class ReplayRun:
    """The MLflow run of one replay, from before its first call until its verdict.

    Attributes:
        run_id: The run's id.
        experiment_id: The replay experiment's id.
        experiment_name: Its name.
    """

    def __init__(self, client: Any, run_id: str, experiment_id: str, experiment_name: str) -> None:
        """Wrap a created run (use `start()`)."""
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.experiment_name = experiment_name

    @classmethod
    def start(
        cls, *, target: str, prompt_name: str, candidates: list[str], baseline: str, experiment_name: str
    ) -> ReplayRun | None:
        """Create the run (status RUNNING); `None`, with a warning, when MLflow cannot be reached."""
        try:
            with mlflow_environment(_timeout()):
                from mlflow import MlflowClient

                client = MlflowClient(tracking_uri=get_settings().tracking_uri)
                experiment = client.get_experiment_by_name(experiment_name)
                experiment_id = (
                    experiment.experiment_id if experiment is not None else client.create_experiment(experiment_name)
                )
                run = client.create_run(
                    experiment_id,
                    run_name=f"replay {prompt_name} {' '.join(candidates)} vs {baseline}",
                    tags={
                        "promptops.replay": "true",
                        "promptops.prompt.name": prompt_name,
                        "promptops.replay.target": target,
                    },
                )
        except Exception as exc:  # the replay's verdict stands without the run
            logger.warning("promptops replay: could not log the run to MLflow (%s: %s)", type(exc).__name__, exc)
            return None
        return cls(client, run.info.run_id, str(experiment_id), experiment_name)

    def trace_url(self, result: ReplayResult) -> Callable[[str], str] | None:
        """Links from the report to this run's traces in the MLflow UI, when the tracking store is a server.

        Only the replay's own calls link (the candidates' and a re-run baseline's): a captured baseline's trace is
        in the application's experiment.
        """
        uri = get_settings().tracking_uri
        if not uri.lower().startswith(("http://", "https://")):
            return None
        base = uri.rstrip("/")
        ours = {r.trace_id for c in result.candidates for r in c.records} | {r.trace_id for r in result.records}
        if result.baseline.label != "captured":
            ours |= {r.baseline_trace_id for r in result.records}

        def url(trace_id: str) -> str:
            if trace_id not in ours:
                return ""  # shown as text
            return f"{base}/#/experiments/{self.experiment_id}/traces?selectedEvaluationId=tr-{trace_id}"

        return url

    def finish(self, result: ReplayResult, report: Path | None) -> bool:
        """Log the result and the report file, link the prompt versions, end the run; `False` (warned) on failure.

        The run's records table is redacted as the reports are (issue 11), a record at a time (issue 15); the
        report, a file already written, is logged as `replay_report.html`.
        """
        try:
            with mlflow_environment(_timeout()):
                self._log(result, report)
                self.client.set_terminated(self.run_id, status="KILLED" if result.interrupted else "FINISHED")
            return True
        except Exception as exc:
            logger.warning(
                "promptops replay: could not log the result to MLflow run %s (%s: %s)",
                self.run_id,
                type(exc).__name__,
                exc,
            )
            self.abandon()
            return False

    def abandon(self) -> None:
        """Mark the run FAILED (the replay raised before it had a result); never raises."""
        try:
            with mlflow_environment(_timeout()):
                self.client.set_terminated(self.run_id, status="FAILED")
        except Exception as exc:
            logger.debug("promptops replay: could not mark run %s failed: %s", self.run_id, exc)

    def _log(self, result: ReplayResult, report: Path | None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        from ._result import redaction

        client, run_id = self.client, self.run_id
        several = len(result.candidates) > 1
        params: dict[str, Any] = {
            "target": result.target,
            "prompt_name": result.prompt_name,
            "candidate": result.candidate.label,
            "candidate_version": result.candidate.version,
            "baseline": result.baseline.label,
            "baseline_version": result.baseline.version,
            "dataset": result.dataset,
            "dataset_fingerprint": result.dataset_fingerprint,
            "scorers": ",".join(result.scorers),
            "gates": " | ".join(gate.expr for gate in result.gates)[:6000],
            "repeats": result.repeats,
            "workers": result.workers,
            "records": len(result.records),
        }
        if several:
            params["candidates"] = ",".join(candidate.label for candidate in result.candidates)
            params["candidate_versions"] = ",".join(str(candidate.version) for candidate in result.candidates)
            params["best"] = result.best
        now = int(result.started_at.timestamp() * 1000)
        metrics = [Metric(key, value, now, 0) for key, value in _metric_values(result.metrics, None)]
        metrics += [
            Metric("gates_passed", float(sum(g.passed for g in result.gates)), now, 0),
            Metric("gates_failed", float(sum(not g.passed for g in result.gates)), now, 0),
        ]
        if several:
            for candidate in result.candidates:
                metrics += [Metric(k, v, now, 0) for k, v in _metric_values(candidate.metrics, candidate.label)]
                failed = float(sum(not gate.passed for gate in candidate.gates))
                metrics.append(Metric(metric_key("gates", "failed", candidate=candidate.label), failed, now, 0))
        tags = [
            _linked_prompts(result),
            RunTag("promptops.replay.passed", str(result.passed).lower()),
            RunTag("promptops.replay.verdict", "passed" if result.passed else "failed"),
        ]
        if several:
            tags += [
                RunTag(f"promptops.replay.passed.{_UNSAFE.sub('_', c.label)}", str(c.passed).lower())
                for c in result.candidates
            ]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics a batch
            client.log_batch(
                run_id,
                metrics=metrics[start : start + 1000],
                params=[Param(key, str(value)[:6000]) for key, value in params.items() if value is not None]
                if start == 0
                else [],
                tags=tags if start == 0 else [],
            )
        candidates = result.candidates or []
        if result.records or any(candidate.records for candidate in candidates):
            _log_records_table(client, run_id, result, redaction())
        if several:
            client.log_table(run_id, data=_matrix_table(candidates), artifact_file="replay_candidates.json")
        if report is not None:
            _log_report(client, run_id, report)


def _log_report(client: Any, run_id: str, report: Path) -> None:
    """The report file as the run's `replay_report.html` (copied under that name when the file has another)."""
    if report.name == REPORT_ARTIFACT:
        client.log_artifact(run_id, str(report))
        return
    with tempfile.TemporaryDirectory(prefix="promptops-report-") as directory:
        staged = Path(directory) / REPORT_ARTIFACT
        shutil.copyfile(report, staged)
        client.log_artifact(run_id, str(staged))


def _linked_prompts(result: ReplayResult) -> RunTag:
    """The run's `mlflow.linkedPrompts` tag: the candidate and baseline versions (MLflow's run page lists them).

    Written as MLflow's `link_prompt_version_to_run` writes it, in the same batch as the other tags: that method
    reads the run from the process's global tracking store, not the client's (MLflow 3.17), and found no run
    when the replay's store is a server.
    """
    from mlflow.entities import RunTag

    versions = {candidate.version for candidate in result.candidates} or {result.candidate.version}
    versions |= set(result.baseline.versions)
    if result.baseline.version is not None:
        versions.add(result.baseline.version)
    shown = sorted(version for version in versions if version is not None and version > 0)
    return RunTag(LINKED_PROMPTS, json.dumps([{"name": result.prompt_name, "version": str(v)} for v in shown]))


def _metric_values(summaries: dict[str, MetricSummary], candidate: str | None) -> list[tuple[str, float]]:
    values: list[tuple[str, float]] = []
    for name, summary in summaries.items():
        for stat in _STATS:
            value = getattr(summary, stat)
            if isinstance(value, (int, float)) and math.isfinite(value):
                values.append((metric_key(name, stat, candidate=candidate), float(value)))
    return values


def _log_records_table(
    client: Any, run_id: str, result: ReplayResult, shown: Callable[[RecordResult], RecordResult]
) -> None:
    """The run's `replay_records.json` table, written a row at a time, each record redacted as it is written.

    The file is what `MlflowClient.log_table()` writes (MLflow 3.17: pandas' `split` layout, `{"columns": [...],
    "data": [[...], ...]}`), and it is registered as a table the same way (the run's `mlflow.loggedArtifacts` tag),
    so `load_table()` and the UI read it as before. `log_table()` itself builds a DataFrame and then the whole text
    in memory: about 4.4 KB per record at its peak (issue 15).
    """
    from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

    with tempfile.TemporaryDirectory(prefix="promptops-table-") as directory:
        path = Path(directory) / RECORDS_ARTIFACT
        with path.open("w", encoding="utf-8") as out:
            _write_records_table(result, shown, out)
        client.log_artifact(run_id, str(path))
    logged = json.loads(client.get_run(run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
    entry = {"path": RECORDS_ARTIFACT, "type": "table"}
    if entry not in logged:
        client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps([*logged, entry]))


def _write_records_table(result: ReplayResult, shown: Callable[[RecordResult], RecordResult], out: TextIO) -> None:
    """One row per record and candidate (a `candidate` column tells them apart), each record as `shown`."""
    from ._json import jsonable

    arms: list[tuple[str, Sequence[RecordResult]]] = [(c.label, c.records) for c in result.candidates] or [
        (result.candidate.label, result.records)
    ]
    names = list(dict.fromkeys(name for c in result.candidates for name in c.metrics)) or list(result.metrics)
    columns = ["candidate", "id", "inputs", "baseline_output", "candidate_output", "error", "trace_id"]
    for name in names:
        columns += [name, f"{name}.delta"]
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    out.write('{"columns":' + encode(columns) + ',"data":[')
    first = True
    for label, records in arms:
        for r in map(shown, records):
            row = [label, r.id, _cell(r.inputs), _cell(r.baseline_output), _cell(r.candidate_output), r.error]
            row.append(r.trace_id)
            for name in names:
                row += [r.scores.get(name), r.deltas.get(name)]
            out.write(("" if first else ",") + encode(jsonable(row)))
            first = False
    out.write("]}")


def _matrix_table(candidates: list[CandidateResult]) -> dict[str, list[Any]]:
    """The comparison matrix: a row per metric and candidate, its mean, the baseline's, the delta and its CI."""
    columns: dict[str, list[Any]] = {
        key: []
        for key in ("metric", "candidate", "version", "passed", "baseline", "mean", "delta", "ci_low", "ci_high")
    }
    for candidate in candidates:
        for name, summary in candidate.metrics.items():
            for key, value in (
                ("metric", name),
                ("candidate", candidate.label),
                ("version", candidate.version),
                ("passed", candidate.passed),
                ("baseline", summary.baseline),
                ("mean", summary.candidate),
                ("delta", summary.delta),
                ("ci_low", summary.ci_low),
                ("ci_high", summary.ci_high),
            ):
                columns[key].append(value)
    return columns
