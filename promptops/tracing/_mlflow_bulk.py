"""New traces into an MLflow sqlite tracking store in a few statements per batch (issue 10).

MLflow's `SqlAlchemyStore.log_spans` stores a batch in one transaction, but does ORM work per trace inside it
(a flush to create the trace's row, an UPDATE, a merge per tag): about PER_TRACE_MS of CPU per trace, so four
processes x 10,000 tracked calls into one sqlite file queued for minutes, and what the exit could not wait for
was lost. For the common case, a trace whose root span is in the batch and which the store has never seen,
`BulkWriter.write` inserts the rows `log_spans` would write (trace, tags, metadata, spans), computed with
MLflow's own helpers, with one multi-row statement per table. Everything else goes to `log_spans` as before:
a trace continued from an earlier batch, a remote parent, a store with rollups enabled, a store whose tables
have columns this module does not know (another MLflow version's schema), an MLflow without the helpers.

`tests/unit/test_mlflow_bulk.py` stores the same spans both ways and compares every column of every table.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

__all__ = ["BulkWriter", "Unsupported"]

# The columns of MLflow 3.17's tables. A table with other columns is a schema this module was not checked
# against: its traces go through `log_spans`.
TRACE_INFO_COLUMNS = frozenset(
    {
        "request_id",
        "experiment_id",
        "timestamp_ms",
        "execution_time_ms",
        "status",
        "client_request_id",
        "request_preview",
        "response_preview",
        "db_payload_generation",
        "trace_name",
        "session_id",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_creation_input_tokens_above_1hr",
        "input_cost",
        "output_cost",
        "total_cost",
    }
)
SPAN_COLUMNS = frozenset(
    {
        "trace_id",
        "experiment_id",
        "span_id",
        "parent_span_id",
        "name",
        "type",
        "status",
        "start_time_unix_nano",
        "end_time_unix_nano",
        "duration_ns",
        "content",
        "input_cost",
        "output_cost",
        "total_cost",
        "model_name",
        "model_provider",
    }
)
TAG_COLUMNS = frozenset({"request_id", "key", "value"})


class Unsupported(Exception):
    """This store or MLflow version cannot take the bulk path; `log_spans` takes every batch."""


class BulkWriter:
    """Writes whole new traces into one MLflow `SqlAlchemyStore` (sqlite), as `log_spans` would store them."""

    def __init__(self, store: Any) -> None:
        try:
            from mlflow.store.tracking import sqlalchemy_store as sql
            from mlflow.store.tracking.dbmodels import models
            from mlflow.store.tracking.utils.sql_trace_rollups import rollups_enabled
            from mlflow.tracing.otel.translation import translate_span_when_storing

            self._sql: Any = sql
            self._translate: Any = translate_span_when_storing
            self._rollups: Any = rollups_enabled
            self._trace_info: Any = models.SqlTraceInfo.__table__
            self._tags: Any = models.SqlTraceTag.__table__
            self._metadata: Any = models.SqlTraceMetadata.__table__
            self._spans: Any = models.SqlSpan.__table__
            for name in (
                "_span_aggregation_node",
                "_try_parse_json_string",
                "aggregate_usage_from_span_nodes",
                "aggregate_cost_from_span_nodes",
                "bounded_model_dimension",
                "finite_float_or_none",
                "token_count_or_none",
                "validate_session_id",
                "validate_trace_name",
                "_validate_trace_tag",
                "TraceJSONEncoder",
                "TOKEN_COLUMN_BY_KEY",
                "COST_COLUMN_BY_KEY",
                "SpanAttributeKey",
                "GenAiSemconvKey",
                "SpansLocation",
                "TraceMetadataKey",
                "TraceTagKey",
                "TraceState",
                "MSSQL",
                "MLFLOW_ARTIFACT_LOCATION",
                "SqlTraceInfo",
            ):
                getattr(sql, name)
            for method in ("_get_trace_status_from_root_span", "_update_trace_info_attributes"):
                getattr(store, method)
        except (ImportError, AttributeError) as exc:
            raise Unsupported(f"this MLflow has no {exc}") from None
        if store.db_type != "sqlite":
            raise Unsupported("not a sqlite store")
        for table, known in (
            (self._trace_info, TRACE_INFO_COLUMNS),
            (self._spans, SPAN_COLUMNS),
            (self._tags, TAG_COLUMNS),
            (self._metadata, TAG_COLUMNS),
        ):
            if frozenset(column.name for column in table.columns) != known:
                raise Unsupported(f"MLflow's {table.name} table has columns this version of promptops does not know")
        self.store = store
        self._experiments: dict[str, Any] = {}

    def split(self, spans: Sequence[Any]) -> tuple[dict[str, list[Any]], list[Any]]:
        """The batch's traces whose root span is in it (by trace id), and the other spans (for `log_spans`)."""
        by_trace: defaultdict[str, list[Any]] = defaultdict(list)
        for span in spans:
            by_trace[span.trace_id].append(span)
        rooted: dict[str, list[Any]] = {}
        rest: list[Any] = []
        rollups = self._rollups()
        for trace_id, trace_spans in by_trace.items():
            if not rollups and any(span.parent_id is None for span in trace_spans):
                rooted[trace_id] = trace_spans
            else:
                rest.extend(trace_spans)
        return rooted, rest

    def write(self, experiment_id: str, traces: dict[str, list[Any]]) -> list[Any]:
        """Insert `traces` that the store does not have yet, in one transaction; returns the spans of the others.

        Raises:
            Exception: what the store raised (nothing was written; a locked database is retried by the caller).
        """
        sql = self._sql
        rows = {trace_id: self._rows(experiment_id, trace_id, spans) for trace_id, spans in traces.items()}
        with self.store.ManagedSessionMaker(read_only=False) as session:
            existing = {
                request_id
                for (request_id,) in session.query(sql.SqlTraceInfo.request_id).filter(
                    sql.SqlTraceInfo.request_id.in_(list(rows))
                )
            }
            new = [trace_rows for trace_id, trace_rows in rows.items() if trace_id not in existing]
            for table, index in ((self._trace_info, 0), (self._tags, 1), (self._metadata, 2), (self._spans, 3)):
                values = [row for trace_rows in new for row in trace_rows[index]]
                if values:
                    session.execute(table.insert(), values)
        return [span for trace_id in existing for span in traces[trace_id]]

    def _artifact_location(self, experiment_id: str, trace_id: str) -> str:
        tag = self.store._get_trace_artifact_location_tag(self._experiment(experiment_id), trace_id)
        return str(tag.value)

    def _experiment(self, experiment_id: str) -> Any:
        experiment = self._experiments.get(experiment_id)
        if experiment is None:
            experiment = self._experiments[experiment_id] = self.store.get_experiment(experiment_id)
        return experiment

    def _rows(
        self, experiment_id: str, trace_id: str, spans: list[Any]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """A new trace's rows, as `SqlAlchemyStore._log_spans_once` computes them (same names, same order)."""
        sql = self._sql
        keys = sql.SpanAttributeKey
        location = int(experiment_id)
        usage_nodes: list[Any] = []
        cost_nodes: list[Any] = []
        session_id: Any = None
        user_id: Any = None
        root_span_dict: dict[str, Any] | None = None
        trace_tags: dict[str, str] = {}
        span_rows: list[dict[str, Any]] = []
        for span in spans:
            span_dict = self._translate(span)
            attributes = span_dict.get("attributes", {})
            usage_nodes.append(sql._span_aggregation_node(span.span_id, span.parent_id, attributes, keys.CHAT_USAGE))
            cost_nodes.append(sql._span_aggregation_node(span.span_id, span.parent_id, attributes, keys.LLM_COST))
            span_cost = None
            if attributes:
                if session_id is None and (
                    value := attributes.get(keys.SESSION_ID) or attributes.get(sql.GenAiSemconvKey.CONVERSATION_ID)
                ):
                    session_id = sql.validate_session_id(sql._try_parse_json_string(value))
                if user_id is None and (value := attributes.get("user.id")):
                    user_id = sql._try_parse_json_string(value)
                span_cost = attributes.get(keys.LLM_COST)
            content = json.dumps(span_dict, cls=sql.TraceJSONEncoder, ensure_ascii=self.store.db_type == sql.MSSQL)
            cost: dict[str, Any] = {}
            if span_cost:
                try:
                    cost = json.loads(span_cost)
                except (TypeError, ValueError):
                    pass
            span_rows.append(
                {
                    "trace_id": span.trace_id,
                    "experiment_id": location,
                    "span_id": span.span_id,
                    "parent_span_id": span.parent_id,
                    "name": span.name,
                    "type": span.span_type,
                    "status": span.status.status_code,
                    "start_time_unix_nano": span.start_time_ns,
                    "end_time_unix_nano": span.end_time_ns,
                    "content": content,
                    "input_cost": sql.finite_float_or_none(cost.get("input_cost")),
                    "output_cost": sql.finite_float_or_none(cost.get("output_cost")),
                    "total_cost": sql.finite_float_or_none(cost.get("total_cost")),
                    "model_name": sql.bounded_model_dimension(sql._try_parse_json_string(attributes.get(keys.MODEL))),
                    "model_provider": sql.bounded_model_dimension(
                        sql._try_parse_json_string(attributes.get(keys.MODEL_PROVIDER))
                    ),
                }
            )
            if span.parent_id is None:
                root_span_dict = span_dict
                for key, value in attributes.items():
                    if key.startswith(keys.TRACE_TAG_PREFIX):
                        tag_key, tag_value = key[len(keys.TRACE_TAG_PREFIX) :], str(sql._try_parse_json_string(value))
                        try:
                            tag_key, tag_value = sql._validate_trace_tag(tag_key, tag_value)
                        except Exception:
                            continue
                        if tag_key == sql.TraceTagKey.TRACE_NAME:
                            tag_value = sql.validate_trace_name(tag_value)
                        trace_tags[tag_key] = tag_value

        min_start_ms = min(span.start_time_ns for span in spans) // 1_000_000
        end_times = [span.end_time_ns for span in spans if span.end_time_ns is not None]
        max_end_ms = max(end_times) // 1_000_000 if end_times else None
        status = self.store._get_trace_status_from_root_span(spans) or sql.TraceState.IN_PROGRESS.value
        trace: dict[str, Any] = dict.fromkeys(TRACE_INFO_COLUMNS)
        trace.update(
            request_id=trace_id,
            experiment_id=location,
            timestamp_ms=min_start_ms,
            execution_time_ms=(max_end_ms - min_start_ms) if max_end_ms else None,
            status=status,
            db_payload_generation=1,  # log_spans bumps it from 0 in the same transaction
            trace_name=trace_tags.get(sql.TraceTagKey.TRACE_NAME),
            session_id=session_id or None,  # log_spans sets it only when there is one
        )
        if root_span_dict is not None:
            previews = self.store._update_trace_info_attributes(
                SimpleNamespace(request_preview=None, response_preview=None), root_span_dict
            )
            trace.update({column.key: value for column, value in previews.items()})
        if usage := sql.aggregate_usage_from_span_nodes(usage_nodes):
            for key, column in sql.TOKEN_COLUMN_BY_KEY.items():
                if (value := sql.token_count_or_none(usage.get(key))) is not None:
                    trace[column] = value
        if recorded_cost := sql.aggregate_cost_from_span_nodes(cost_nodes):
            for key, column in sql.COST_COLUMN_BY_KEY.items():
                if (value := sql.finite_float_or_none(recorded_cost.get(key))) is not None:
                    trace[column] = value

        tags = {
            sql.MLFLOW_ARTIFACT_LOCATION: self._artifact_location(experiment_id, trace_id),
            sql.TraceTagKey.SPANS_LOCATION: sql.SpansLocation.TRACKING_STORE.value,
        }
        tags.update({key: value for key, value in trace_tags.items() if key != sql.TraceTagKey.TRACE_NAME})
        tag_rows = [{"request_id": trace_id, "key": key, "value": value} for key, value in tags.items()]
        metadata_rows = (
            [{"request_id": trace_id, "key": sql.TraceMetadataKey.TRACE_USER, "value": user_id}] if user_id else []
        )
        return [trace], tag_rows, metadata_rows, span_rows
