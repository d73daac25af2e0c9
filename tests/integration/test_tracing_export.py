"""Spans land in MLflow (issue 3): a real `mlflow server` receiving OTLP at /v1/traces, and a real sqlite store.

Spans are made directly with `promptops.tracing.tracer()` and carry the attributes `@promptops.track` sets, so
these tests cover the export path alone.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import promptops
from promptops import tracing

from .conftest import MlflowServer, free_port


def make_trace(prompt_name: str, version: int, marker: str) -> tuple[str, str]:
    """A tracked call with a nested tracked call, as the decorator records them; returns the two span names."""
    tracer = tracing.tracer()
    assert tracer is not None
    outer, inner = f"outer-{marker}", f"inner-{marker}"
    with tracer.start_as_current_span(
        outer,
        attributes={
            "promptops.prompt.name": prompt_name,
            "promptops.prompt.version": version,
            "promptops.prompt.alias": "production",
            "promptops.prompt.source": "registry",
            "promptops.function": "app.llm:summarize",
            "promptops.replay": False,
            "promptops.inputs": json.dumps({"text": "hello world", "n": 3}),
            "promptops.output": json.dumps("a summary"),
        },
    ):
        with tracer.start_as_current_span(
            inner,
            attributes={
                "promptops.prompt.name": "fallback-only",
                "promptops.prompt.version": 0,  # a fallback= prompt: no registry version to link
                "promptops.prompt.source": "fallback",
                "promptops.function": "app.llm:classify",
                "promptops.inputs": json.dumps({"items": [1, 2]}),
                "promptops.output": json.dumps({"label": "ok", "score": 0.5}),
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "tiny-model",
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 3,
            },
        ):
            pass
    return outer, inner


def check_trace(trace: Any, prompt_name: str, version: int, outer: str, inner: str) -> None:
    spans = {span.name: span for span in trace.data.spans}
    assert set(spans) == {outer, inner}
    root, child = spans[outer], spans[inner]
    assert root.parent_id is None and child.parent_id == root.span_id
    # promptops' own attributes arrive unchanged
    assert root.attributes["promptops.prompt.name"] == prompt_name
    assert root.attributes["promptops.prompt.version"] == version
    assert root.attributes["promptops.prompt.alias"] == "production"
    assert root.attributes["promptops.prompt.source"] == "registry"
    assert root.attributes["promptops.function"] == "app.llm:summarize"
    assert root.attributes["promptops.replay"] is False
    assert child.attributes["gen_ai.request.model"] == "tiny-model"
    # ... and MLflow shows inputs, outputs and span types
    assert root.inputs == {"text": "hello world", "n": 3}
    assert root.outputs == "a summary"
    assert child.inputs == {"items": [1, 2]}
    assert child.outputs == {"label": "ok", "score": 0.5}
    assert root.span_type == "CHAIN"
    assert child.span_type == "LLM"
    # the registry prompt version is linked to the trace (the fallback one is not)
    assert json.loads(trace.info.tags["mlflow.linkedPrompts"]) == [{"name": prompt_name, "version": str(version)}]
    assert trace.info.state == "OK"
    assert trace.info.request_preview and "hello world" in trace.info.request_preview


def wait_for_traces(client: Any, experiment_id: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 30
    while True:
        traces = client.search_traces(locations=[experiment_id])
        if len(traces) >= count or time.monotonic() > deadline:
            return traces
        time.sleep(0.2)


def test_mlflow_server_receives_otlp_with_the_experiment_header(server: MlflowServer, prompt_name: str) -> None:
    from mlflow import MlflowClient

    version = server.register(prompt_name, "Summarize {{ text }}")
    experiment = f"traces-{uuid.uuid4().hex[:8]}"  # does not exist yet: promptops creates it
    promptops.configure(tracking_uri=server.url, experiment_name=experiment, trace_exporter="mlflow")
    outer, inner = make_trace(prompt_name, version, "http")
    assert promptops.flush(30)
    assert tracing.stats()["spans_exported"] >= 2

    client = MlflowClient(tracking_uri=server.url)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    traces = wait_for_traces(client, experiment_id, 1)
    assert len(traces) == 1
    check_trace(client.get_trace(traces[0].info.trace_id), prompt_name, version, outer, inner)


def test_default_experiment_over_http(server: MlflowServer, prompt_name: str) -> None:
    from mlflow import MlflowClient

    promptops.configure(tracking_uri=server.url, trace_exporter="mlflow")
    outer, inner = make_trace(prompt_name, 7, uuid.uuid4().hex[:8])
    assert promptops.flush(30)
    client = MlflowClient(tracking_uri=server.url)
    found = [
        trace
        for trace in client.search_traces(locations=["0"], max_results=500)
        if any(span.name == outer for span in trace.data.spans)
    ]
    assert len(found) == 1
    check_trace(client.get_trace(found[0].info.trace_id), prompt_name, 7, outer, inner)


def test_otlp_exporter_reaches_mlflow_with_standard_variables(
    server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trace_exporter="otlp" is plain OpenTelemetry, configured only by the standard variables.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.url)
    experiment_id = client.create_experiment(f"otlp-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-mlflow-experiment-id={experiment_id}")
    promptops.configure(trace_exporter="otlp")
    tracer = tracing.tracer()
    assert tracer is not None
    with tracer.start_as_current_span(
        "plain-otlp", attributes={"promptops.prompt.name": "p", "promptops.prompt.version": 2}
    ):
        pass
    assert promptops.flush(30)
    traces = wait_for_traces(client, experiment_id, 1)
    assert [span.name for span in traces[0].data.spans] == ["plain-otlp"]
    assert traces[0].data.spans[0].attributes["promptops.prompt.version"] == 2


def test_sqlite_store_in_process(tmp_path: Path, prompt_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'traces.db'}"
    promptops.configure(tracking_uri=uri, experiment_name="promptops-traces", trace_exporter="mlflow")
    outer, inner = make_trace(prompt_name, 3, "sqlite")
    assert promptops.flush(120)  # the first batch imports MLflow and creates the database
    assert tracing.stats()["spans_exported"] >= 2

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert mlflow.get_tracking_uri() == uri
    experiment = mlflow.get_experiment_by_name("promptops-traces")
    assert experiment is not None
    traces = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
    assert len(traces) == 1
    check_trace(mlflow.MlflowClient(uri).get_trace(traces[0].info.trace_id), prompt_name, 3, outer, inner)


def test_sqlite_store_default_experiment_and_batching(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'batch.db'}"
    promptops.configure(tracking_uri=uri, trace_exporter="mlflow")
    for index in range(50):
        make_trace("batched", index + 1, f"b{index}")
    assert promptops.flush(120)
    traces = MlflowClient(uri).search_traces(locations=["0"], max_results=100)
    assert len(traces) == 50
    linked = sorted(json.loads(trace.info.tags["mlflow.linkedPrompts"])[0]["version"] for trace in traces)
    assert linked == sorted(str(index + 1) for index in range(50))


def test_refused_endpoint_never_raises_and_counts_every_span(caplog: pytest.LogCaptureFixture) -> None:
    promptops.configure(tracking_uri=f"http://127.0.0.1:{free_port()}", trace_exporter="mlflow")
    before = tracing.stats()
    tracer = tracing.tracer()
    assert tracer is not None
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="promptops"):
        for index in range(10_000):
            with tracer.start_as_current_span("refused", attributes={"promptops.inputs": json.dumps({"i": index})}):
                pass
        assert time.monotonic() - started < 60  # generous: about 0.1 s here; export never blocks the caller
        assert promptops.flush(30)
    after = tracing.stats()
    failed = after["spans_failed"] - before["spans_failed"]
    dropped = after["spans_dropped"] - before["spans_dropped"]
    assert after["spans_exported"] == before["spans_exported"]
    assert after["export_failures"] > before["export_failures"]
    assert failed + dropped == 10_000  # every span is accounted for: none silently lost
    assert after["spans_queued"] == 0
    messages = [record.getMessage() for record in caplog.records if record.name == "promptops"]
    assert any("could not export" in message and "127.0.0.1" in message for message in messages)
    assert all(record.levelno == logging.WARNING for record in caplog.records if record.name == "promptops")
    assert len(messages) <= 2  # rate-limited: at most one export warning and one drop warning
