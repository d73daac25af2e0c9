"""Log a replay to MLflow: one run with params, metrics, the per-record table, the HTML report and pass/fail tags.

The run goes to the configured tracking store, in the `experiment_name` setting's experiment (else MLflow's
default one), through an `MlflowClient`: the application's own active run, if any, is left alone. Logging is a
convenience on top of the result: when the store cannot be reached the replay still succeeds, with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import TYPE_CHECKING, Any

from .._config import get_settings
from .._mlflow_env import mlflow_environment

if TYPE_CHECKING:
    from ._result import ReplayResult

__all__ = ["log_result", "metric_key"]

logger = logging.getLogger("promptops.replay")

_UNSAFE = re.compile(r"[^\w\-. /:]")


def metric_key(metric: str, stat: str) -> str:
    """An MLflow-safe metric key: `rougeL.delta`, `rougeL_at_expected.candidate` (MLflow refuses `@`)."""
    return _UNSAFE.sub("_", f"{metric.replace('@', '_at_')}.{stat}")


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def log_result(result: ReplayResult, html: str | None) -> str | None:
    """Log `result` as an MLflow run; returns its id, or `None` (with a warning) when MLflow cannot be reached."""
    timeout = max(5, math.ceil(get_settings().registry_timeout))
    try:
        with mlflow_environment(timeout):
            return _log(result.redacted(), html)  # the tables show what the reports show (issue 11)
    except Exception as exc:  # the replay's verdict stands without the run
        logger.warning("promptops replay: could not log the run to MLflow (%s: %s)", type(exc).__name__, exc)
        return None


def _log(result: ReplayResult, html: str | None) -> str:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    settings = get_settings()
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment_id = "0"
    if settings.experiment_name:
        experiment = client.get_experiment_by_name(settings.experiment_name)
        experiment_id = (
            experiment.experiment_id if experiment is not None else client.create_experiment(settings.experiment_name)
        )
    verdict = "passed" if result.passed else "failed"
    run = client.create_run(
        experiment_id,
        run_name=f"replay {result.prompt_name} {result.candidate.label} vs {result.baseline.label}",
        tags={
            "promptops.replay": "true",
            "promptops.replay.verdict": verdict,
            "promptops.prompt.name": result.prompt_name,
            "promptops.replay.target": result.target,
        },
    )
    run_id = run.info.run_id
    try:
        params = {
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
        now = int(result.started_at.timestamp() * 1000)
        metrics: list[Any] = []
        for name, summary in result.metrics.items():
            for stat in ("baseline", "candidate", "delta", "ci_low", "ci_high", "p50", "p95", "ratio", "p95_ratio"):
                value = getattr(summary, stat)
                if isinstance(value, (int, float)) and value == value and abs(value) != float("inf"):
                    metrics.append(Metric(metric_key(name, stat), float(value), now, 0))
        metrics.append(Metric("gates_passed", float(sum(g.passed for g in result.gates)), now, 0))
        metrics.append(Metric("gates_failed", float(sum(not g.passed for g in result.gates)), now, 0))
        client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(key, str(value)[:6000]) for key, value in params.items() if value is not None],
            tags=[RunTag("promptops.replay.passed", str(result.passed).lower())],
        )
        if result.records:
            columns: dict[str, list[Any]] = {
                "id": [r.id for r in result.records],
                "inputs": [_cell(r.inputs) for r in result.records],
                "baseline_output": [_cell(r.baseline_output) for r in result.records],
                "candidate_output": [_cell(r.candidate_output) for r in result.records],
                "error": [r.error for r in result.records],
                "trace_id": [r.trace_id for r in result.records],
            }
            for name in result.metrics:
                columns[f"{name}"] = [r.scores.get(name) for r in result.records]
                columns[f"{name}.delta"] = [r.deltas.get(name) for r in result.records]
            client.log_table(run_id, data=columns, artifact_file="replay_records.json")
        if html is not None:
            client.log_text(run_id, html, "replay_report.html")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id
