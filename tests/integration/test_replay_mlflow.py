"""A replay as an MLflow evaluation (issue 12 item 3; issue 13 item 6 for several candidates).

Against a real sqlite tracking store and a real `mlflow server` subprocess: the replay's run is in an experiment
of its own, its *Traces* (MLflow's `run_id` search, what the run page shows) are every call of the replay, tagged
with the run id, linked to the candidate's and baseline's prompt versions, with inputs and outputs; nothing of the
replay reaches the application's experiment; the report logged in the run is the one written to `--report`, and
it names the run. `--no-mlflow` sends nothing to MLflow and captures nothing. Nothing is mocked.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import promptops
from promptops import replay, tracing
from promptops.capture import CaptureStore
from promptops.cli import app
from tests.conftest import Registry
from tests.unit.test_replay import PRODUCTION, TEXTS, App, captured_rows, echo_app, write_dataset

from .conftest import MlflowServer

RECORDS = 4


def run_traces(client: Any, experiment_id: str, run_id: str, expected: int) -> list[Any]:
    """The run's traces as the run page asks for them (MLflow's `run_id` search), once `expected` are there."""
    deadline = time.monotonic() + 60
    while True:
        found = client.search_traces(locations=[experiment_id], run_id=run_id, max_results=500)
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def prompt_traces(client: Any, experiment_id: str, prompt: str) -> list[Any]:
    return client.search_traces(locations=[experiment_id], filter_string=f'prompt = "{prompt}"', max_results=500)


def all_traces(client: Any) -> list[Any]:
    ids = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_traces(locations=ids, max_results=500) if ids else []


def check_replay_run(uri: str, registry: Any, directory: Path, name: str) -> None:
    from mlflow import MlflowClient

    application = echo_app(registry, name, directory)
    production = f"prod-{uuid.uuid4().hex[:8]}"
    capture = f"sqlite:///{directory / 'captures.db'}"
    promptops.configure(tracking_uri=uri, experiment_name=production, trace_exporter="mlflow", capture=capture)
    data = write_dataset(directory / "tickets.jsonl", captured_rows(TEXTS[:RECORDS]))
    report = directory / "report.html"
    result = replay.run(application.target, candidate=application.versions["bad"], dataset=data, report=str(report))
    client = MlflowClient(tracking_uri=uri)
    run_id = result.mlflow_run_id
    assert run_id is not None
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["promptops.replay.verdict"] == "failed"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == f"{production}-replay"

    # Every call's trace is the run's: one per candidate call and baseline re-run, tagged, with inputs and output.
    traces = run_traces(client, experiment.experiment_id, run_id, 2 * RECORDS)
    assert len(traces) == 2 * RECORDS
    roles = sorted(trace.info.tags["promptops.replay.role"] for trace in traces)
    assert roles == ["candidate"] * RECORDS + ["noise"] * RECORDS
    assert {trace.info.tags["promptops.replay.run_id"] for trace in traces} == {run_id}
    by_text: dict[str, dict[str, Any]] = {}
    for trace in traces:
        root = next(span for span in trace.data.spans if span.parent_id is None)
        assert root.name == f"replay {application.target}"
        by_text.setdefault(root.inputs["text"], {})[trace.info.tags["promptops.replay.role"]] = root.outputs
        assert trace.info.request_preview and trace.info.response_preview  # the Request/Response columns
    assert sorted(by_text) == sorted(TEXTS[:RECORDS])
    for text, outputs in by_text.items():
        assert outputs == {"candidate": "TL;DR.", "noise": PRODUCTION.replace("{{ text }}", text)}
    # Linked to the candidate's and the baseline's prompt versions (the version's Traces tab in this experiment).
    candidate = prompt_traces(client, experiment.experiment_id, f"{name}/{application.versions['bad']}")
    baseline = prompt_traces(client, experiment.experiment_id, f"{name}/1")
    assert len(candidate) == RECORDS and len(baseline) == RECORDS
    linked = run.data.tags["mlflow.linkedPrompts"]
    assert f'"version": "{application.versions["bad"]}"' in linked and '"version": "1"' in linked

    # Never among the application's traces: its experiment holds none of them (here: none at all).
    kept = client.get_experiment_by_name(production)
    assert kept is None or client.search_traces(locations=[kept.experiment_id], max_results=10) == []

    # The report is rendered once, after the run exists: the run's copy is the file, and both name the run.
    logged = Path(client.download_artifacts(run_id, "replay_report.html", str(directory / "artifacts")))
    html = report.read_text()
    assert logged.read_text() == html
    assert f"<code>{run_id}</code>" in html and "not logged" not in html
    # Against a server the report links each call's trace to its view in MLflow's UI (checked in Chromium).
    links = re.findall(r'<a href="([^"]*)" target="_blank"', html)
    if uri.startswith("http"):
        view = f"{uri}/#/experiments/{experiment.experiment_id}/traces?selectedEvaluationId="
        assert sorted(links) == sorted(f"{view}tr-{record.trace_id}" for record in result.records)
    else:
        assert links == []  # a sqlite store has no UI to link to
    assert CaptureStore.open(capture).count() == 0  # replay calls are never captured


def test_sqlite_store_replay_is_an_mlflow_evaluation(tmp_path: Path, prompt_name: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    check_replay_run(uri, Registry(uri), tmp_path, prompt_name)


def test_mlflow_server_replay_is_an_mlflow_evaluation(server: MlflowServer, tmp_path: Path, prompt_name: str) -> None:
    check_replay_run(server.url, server, tmp_path, prompt_name)


def test_several_candidates_each_get_their_metrics_and_records(tmp_path: Path, prompt_name: str) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    application = echo_app(Registry(uri), prompt_name, tmp_path)
    promptops.configure(tracking_uri=uri, trace_exporter="mlflow", capture=None)
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(TEXTS[:RECORDS]))
    same, bad = application.versions["same"], application.versions["bad"]
    result = replay.run(application.target, candidate=[same, bad], dataset=data, experiment="several")
    assert result.mlflow_run_id is not None and not result.passed
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result.mlflow_run_id)
    assert client.get_experiment(run.info.experiment_id).name == "several"
    metrics = run.data.metrics
    for candidate in result.candidates:
        assert metrics[f"{candidate.label}/rougeL.delta"] == pytest.approx(candidate.metrics["rougeL"].delta)
    assert metrics[f"{same}/rougeL.delta"] == 0 and metrics[f"{bad}/rougeL.delta"] < -0.5
    assert metrics[f"{same}/gates.failed"] == 0 and metrics[f"{bad}/gates.failed"] >= 1
    assert run.data.params["candidates"] == f"{same},{bad}"
    assert run.data.tags[f"promptops.replay.passed.{same}"] == "true"
    assert run.data.tags[f"promptops.replay.passed.{bad}"] == "false"

    matrix = client.load_table(run.info.experiment_id, "replay_candidates.json", run_ids=[run.info.run_id])
    rouge = matrix[matrix["metric"] == "rougeL"]
    deltas = {str(label): delta for label, delta in zip(rouge["candidate"], rouge["delta"], strict=True)}
    assert deltas == {str(c.label): pytest.approx(c.metrics["rougeL"].delta) for c in result.candidates}
    records = client.load_table(run.info.experiment_id, "replay_records.json", run_ids=[run.info.run_id])
    labels = [str(label) for label in records["candidate"]]
    assert sorted(labels) == sorted([str(same)] * RECORDS + [str(bad)] * RECORDS)
    outputs = {output for label, output in zip(labels, records["candidate_output"], strict=True) if label == str(bad)}
    assert outputs == {"TL;DR."}
    # Every candidate's calls are the run's traces: 2 candidates + 1 baseline re-run per record.
    assert len(run_traces(client, run.info.experiment_id, run.info.run_id, 3 * RECORDS)) == 3 * RECORDS


@pytest.fixture
def app_on_mlflow(tmp_path: Path, prompt_name: str) -> App:
    """The echo app, and promptops configured as an application would be: traces to MLflow, calls captured."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    application = echo_app(Registry(uri), prompt_name, tmp_path)
    promptops.configure(tracking_uri=uri, experiment_name="app", trace_exporter="mlflow", capture=CAPTURES)
    return application


CAPTURES = "sqlite:///captures.db"  # in the test's own directory


def check_nothing_sent(before: dict[str, int]) -> None:
    """Nothing of the replay reached MLflow (no trace, no run, no replay experiment), nothing was captured."""
    from mlflow import MlflowClient

    assert promptops.flush(30)
    after = tracing.stats()
    assert after["spans_exported"] == before["spans_exported"] and after["spans_queued"] == 0
    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    assert all_traces(client) == []
    assert [e.name for e in client.search_experiments()] in (["Default"], [])  # no run, no replay experiment
    assert client.search_runs(["0"]) == []
    assert CaptureStore.open(CAPTURES).count() == 0


def test_no_mlflow_sends_nothing_and_captures_nothing(app_on_mlflow: App, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(TEXTS[:RECORDS]))
    before = tracing.stats()
    result = CliRunner().invoke(
        app, ["replay", app_on_mlflow.target, "--candidate", str(app_on_mlflow.versions["same"]), "--dataset", data,
              "--no-mlflow", "--report", "report.html"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "not logged" in (tmp_path / "report.html").read_text()
    check_nothing_sent(before)


def test_the_pytest_fixture_sends_nothing_and_captures_nothing(
    app_on_mlflow: App, promptops_replay: Any, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(TEXTS[:RECORDS]))
    before = tracing.stats()
    result = promptops_replay(app_on_mlflow.target, candidate=app_on_mlflow.versions["same"], dataset=data)
    assert result.passed and result.mlflow_run_id is None and len(result.records) == RECORDS
    check_nothing_sent(before)
