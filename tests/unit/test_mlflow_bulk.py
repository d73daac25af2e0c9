"""New traces written in bulk into a sqlite tracking store are the rows MLflow's own `log_spans` writes (issue 10).

Every test stores the same spans twice, into two real sqlite stores: once through MLflow's `log_spans`, once
through promptops' path, and compares every column of every table MLflow writes for a trace, then the trace
MLflow reads back.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from promptops.tracing._mlflow import MlflowStoreExporter
from promptops.tracing._mlflow_bulk import BulkWriter

TABLES = {
    "trace_info": "request_id",
    "trace_tags": "request_id, key",
    "trace_request_metadata": "request_id, key",
    "spans": "trace_id, span_id",
    "entity_associations": "source_id, destination_id",
}


def make_spans() -> list[ReadableSpan]:
    """Traces of every shape promptops makes: plain, nested, failed, with usage and a model, with user/session."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("promptops")
    prompt = {"promptops.prompt.name": "summarize", "promptops.prompt.version": 3, "promptops.function": "f"}
    for index in range(5):
        with tracer.start_as_current_span(
            "summarize",
            attributes={
                **prompt,
                "promptops.inputs": json.dumps({"text": f"call {index}"}),
                "promptops.output": '"ok"',
            },
        ):
            pass
    with tracer.start_as_current_span("outer", attributes={"promptops.inputs": '{"q": "ünïcode"}'}):
        # Usage and a model on different spans: on one span MLflow would price the call, fetching its model
        # catalog from github.com (no traffic leaves 127.0.0.1 in tests).
        with tracer.start_as_current_span(
            "inner",
            attributes={
                **prompt,
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 5,
                "promptops.output": '{"answer": [1, 2]}',
            },
        ):
            pass
        with tracer.start_as_current_span(
            "model", attributes={"gen_ai.request.model": "gpt-4o-mini", "gen_ai.provider.name": "openai"}
        ):
            pass
    with tracer.start_as_current_span("failed", attributes={"user.id": "u-1", "session.id": "s-1"}) as span:
        span.set_status(Status(StatusCode.ERROR, "boom"))
        span.record_exception(ValueError("boom"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def stored(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as connection:
        return {
            table: connection.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            for table, order in TABLES.items()
        }


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty tracking store, copied for each test's stores (MLflow's migrations take seconds)."""
    path = tmp_path_factory.mktemp("store") / "empty.db"
    MlflowStoreExporter(f"sqlite:///{path}", None).experiment_id()
    return path


def exporter(path: Path) -> MlflowStoreExporter:
    made = MlflowStoreExporter(f"sqlite:///{path}", None)
    made.experiment_id()
    return made


def export_in(path: Path, batches: Sequence[Sequence[ReadableSpan]], *, bulk: bool) -> MlflowStoreExporter:
    made = exporter(path)
    if not bulk:
        made._bulk_decided = True  # pyright: ignore[reportPrivateUsage] - MLflow's log_spans only: the reference
    for batch in batches:
        made.export(batch)
    return made


def without_association_ids(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows, less each prompt link's random id and creation time (its first and last columns)."""
    return {
        table: [row[1:-1] if table == "entity_associations" else row for row in found] for table, found in rows.items()
    }


@pytest.fixture(autouse=True)
def _stores(tmp_path: Path, empty_store: Path) -> None:
    for name in ("reference.db", "bulk.db"):
        shutil.copyfile(empty_store, tmp_path / name)


def test_new_traces_in_bulk_are_the_rows_log_spans_writes(tmp_path: Path) -> None:
    spans = make_spans()
    reference = export_in(tmp_path / "reference.db", [spans], bulk=False)
    bulk = exporter(tmp_path / "bulk.db")
    writer = bulk._bulk_writer()  # pyright: ignore[reportPrivateUsage]
    assert isinstance(writer, BulkWriter)
    converted = [bulk.convert(span) for span in spans]
    rooted, rest = writer.split(converted)
    assert rest == [] and len(rooted) == 7  # every trace's root is in the batch
    assert writer.write("0", rooted) == []  # all new: nothing left for log_spans
    bulk._link_all(bulk._links.take())  # pyright: ignore[reportPrivateUsage]

    expected = without_association_ids(stored(tmp_path / "reference.db"))
    found = without_association_ids(stored(tmp_path / "bulk.db"))
    assert len(expected["trace_info"]) == 7 and len(expected["spans"]) == 9
    for table in TABLES:
        assert found[table] == expected[table], table
    # And as MLflow reads them back.
    ids = [row[0] for row in expected["trace_info"]]
    for trace_id in ids:
        assert bulk._store.get_trace(trace_id).to_dict() == reference._store.get_trace(trace_id).to_dict()  # pyright: ignore[reportPrivateUsage]


def test_a_trace_continued_from_an_earlier_batch_goes_through_log_spans(tmp_path: Path) -> None:
    spans = make_spans()
    inner = next(span for span in spans if span.name == "inner")
    outer = next(span for span in spans if span.name == "outer")
    others = [span for span in spans if span not in (inner, outer)]
    # The child is exported alone first (no root: log_spans creates the trace), then its root with new traces.
    batches = [[inner], [*others, outer]]
    export_in(tmp_path / "reference.db", batches, bulk=False)
    export_in(tmp_path / "bulk.db", batches, bulk=True)
    assert without_association_ids(stored(tmp_path / "bulk.db")) == without_association_ids(
        stored(tmp_path / "reference.db")
    )
