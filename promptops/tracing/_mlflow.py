"""The `"mlflow"` exporter: promptops' spans as MLflow traces, in the tracking store of `tracking_uri`.

Two paths, both batched (one request or one store transaction per batch of spans, not per trace):

* `http(s)://` tracking server: OTLP/HTTP protobuf POSTed to `{tracking_uri}/v1/traces` with the
  `x-mlflow-experiment-id` header (MLflow's own OTLP receiver, `mlflow/server/otel_api.py`). The experiment
  id is resolved over MLflow's REST API with httpx and a timeout. MLflow is never imported for this path.
* any other store URI (`sqlite:///...`, a database URL): MLflow is imported *in the export thread* on the
  first batch, and each batch is written with the tracking store's `log_spans(experiment_id, spans)`,
  converted the way MLflow's OTLP receiver converts them (`mlflow.entities.Span.from_otel_proto`).

At export time promptops' span attributes are translated to the ones MLflow's UI reads (the originals stay):

| MLflow attribute | from |
|---|---|
| `mlflow.spanInputs` | `promptops.inputs` (JSON text; stored as the decoded value) |
| `mlflow.spanOutputs` | `promptops.output` (JSON text; stored as the decoded value) |
| `mlflow.spanType` | `"LLM"` when the span carries any `gen_ai.*` attribute (the function reported a model call), else `"CHAIN"` |
| `mlflow.traceTag.mlflow.linkedPrompts` (root span) | every `promptops.prompt.name`/`promptops.prompt.version` in the trace; MLflow's store turns it into the trace tag `mlflow.linkedPrompts` the UI shows as linked prompt versions |

Prompts served from a `fallback=` (version 0) are not linked: no registry version produced them.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._provider import ExportFailed

INPUTS = "promptops.inputs"
OUTPUT = "promptops.output"
PROMPT_NAME = "promptops.prompt.name"
PROMPT_VERSION = "promptops.prompt.version"

MLFLOW_INPUTS = "mlflow.spanInputs"
MLFLOW_OUTPUTS = "mlflow.spanOutputs"
MLFLOW_SPAN_TYPE = "mlflow.spanType"
MLFLOW_REQUEST_ID = "mlflow.traceRequestId"
LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"
TRACE_TAG_PREFIX = "mlflow.traceTag."  # MLflow's store restores root-span attributes with it as trace tags
EXPERIMENT_HEADER = "x-mlflow-experiment-id"
DEFAULT_EXPERIMENT_ID = "0"
EXPORT_TIMEOUT = 10.0  # seconds for one export request (OTLP's default)
_EMPTY_RESOURCE = Resource.get_empty()
MAX_PENDING_TRACES = 10_000  # traces whose root span has not been exported yet, remembered for prompt links


def _loads(text: object) -> Any:
    """A recorded JSON value, decoded; a truncated (hence invalid) one stays text."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


class PromptLinks:
    """Collects the prompt versions used in each trace until its root span is exported (children end first)."""

    def __init__(self) -> None:
        self._pending: OrderedDict[int, list[dict[str, str]]] = OrderedDict()

    def translate(self, span: ReadableSpan) -> dict[str, Any]:
        """MLflow's attributes for `span`, as decoded values (see the module docstring)."""
        attributes: Mapping[str, Any] = span.attributes or {}
        extra: dict[str, Any] = {}
        if INPUTS in attributes:
            extra[MLFLOW_INPUTS] = _loads(attributes[INPUTS])
        if OUTPUT in attributes:
            extra[MLFLOW_OUTPUTS] = _loads(attributes[OUTPUT])
        extra[MLFLOW_SPAN_TYPE] = "LLM" if any(key.startswith("gen_ai.") for key in attributes) else "CHAIN"
        context = span.context
        if context is None:  # pragma: no cover - SDK spans always have one
            return extra
        trace_id = context.trace_id
        name, version = attributes.get(PROMPT_NAME), attributes.get(PROMPT_VERSION)
        if isinstance(name, str) and isinstance(version, int) and not isinstance(version, bool) and version > 0:
            links = self._pending.setdefault(trace_id, [])
            entry = {"name": name, "version": str(version)}
            if entry not in links:
                links.append(entry)
            self._pending.move_to_end(trace_id)
            while len(self._pending) > MAX_PENDING_TRACES:
                self._pending.popitem(last=False)
        if span.parent is None or span.parent.is_remote:
            if linked := self._pending.pop(trace_id, None):
                extra[TRACE_TAG_PREFIX + LINKED_PROMPTS_TAG] = json.dumps(linked)
        return extra


def _auth_headers(uri: str) -> dict[str, str]:
    """MLflow's credential conventions: `MLFLOW_TRACKING_TOKEN`, or username/password (env or the URI)."""
    parts = urlsplit(uri)
    headers: dict[str, str] = {}
    username = os.environ.get("MLFLOW_TRACKING_USERNAME", parts.username or "")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD", parts.password or "")
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    elif username or password:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    return headers


def _base_url(uri: str) -> str:
    parts = urlsplit(uri)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)).rstrip("/")


def _forget_in_child(exporter: weakref.ref[Any]) -> None:
    def after_in_child() -> None:
        if (alive := exporter()) is not None:
            alive.reset_after_fork()

    os.register_at_fork(after_in_child=after_in_child)


class MlflowHttpExporter(SpanExporter):
    """OTLP/HTTP protobuf to an MLflow tracking server's `/v1/traces`, into one experiment."""

    def __init__(self, uri: str, experiment_name: str | None, *, timeout: float = EXPORT_TIMEOUT) -> None:
        self.uri = uri
        self.experiment_name = experiment_name
        self.timeout = timeout
        self._base = _base_url(uri)
        self._client: Any = None  # httpx.Client, made in the export thread
        self._experiment_id: str | None = None
        self._links = PromptLinks()
        self._lock = threading.Lock()
        _forget_in_child(weakref.ref(self))

    def reset_after_fork(self) -> None:
        """A forked child must not share the parent's connections."""
        self._client = None
        self._lock = threading.Lock()

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            secure = urlsplit(self.uri).scheme == "https"
            verify: bool | str = secure
            if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
                verify = False
            elif secure and (cert := os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")):
                verify = cert
            self._client = httpx.Client(
                headers={"User-Agent": "promptops", **_auth_headers(self.uri)},
                timeout=httpx.Timeout(self.timeout),
                verify=verify,
                follow_redirects=secure,
                trust_env=False,
            )
        return self._client

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._http().request(method, self._base + path, **kwargs)
        except httpx.TimeoutException:
            raise ExportFailed(f"{method} {self._base}{path} timed out after {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise ExportFailed(f"{method} {self._base}{path} failed: {type(exc).__name__}: {exc}") from None

    def experiment_id(self) -> str:
        """The experiment traces go to: `experiment_name`'s (created if missing), else the Default one."""
        if self._experiment_id is None:
            name = self.experiment_name
            if name is None:
                self._experiment_id = DEFAULT_EXPERIMENT_ID
            else:
                response = self._request(
                    "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}
                )
                if response.status_code == 404:
                    response = self._request("POST", "/api/2.0/mlflow/experiments/create", json={"name": name})
                    if response.status_code == 400 and "RESOURCE_ALREADY_EXISTS" in response.text:
                        response = self._request(
                            "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}
                        )
                if response.status_code != 200:
                    raise ExportFailed(
                        f"cannot resolve experiment {name!r}: HTTP {response.status_code} {response.text[:200]}"
                    )
                body = response.json()
                self._experiment_id = str(body.get("experiment_id") or body["experiment"]["experiment_id"])
        return self._experiment_id

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """POST one batch as one OTLP request."""
        with self._lock:
            experiment_id = self.experiment_id()
            body = self.encode(spans)
            response = self._request(
                "POST",
                "/v1/traces",
                content=body,
                headers={"Content-Type": "application/x-protobuf", EXPERIMENT_HEADER: experiment_id},
            )
        if not 200 <= response.status_code < 300:
            raise ExportFailed(f"HTTP {response.status_code} from {self._base}/v1/traces: {response.text[:200]}")
        return SpanExportResult.SUCCESS

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The OTLP protobuf request for `spans`, with MLflow's attributes added."""
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        by_ids: dict[tuple[int, int], dict[str, Any]] = {}
        for span in spans:
            if (context := span.context) is not None:
                by_ids[(context.trace_id, context.span_id)] = self._links.translate(span)
        request = encode_spans(spans)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for proto in scope_spans.spans:
                    key = (int.from_bytes(proto.trace_id, "big"), int.from_bytes(proto.span_id, "big"))
                    for name, value in by_ids.get(key, {}).items():
                        attribute = proto.attributes.add()
                        attribute.key = name
                        _set_any_value(attribute.value, value)
        return request.SerializeToString()

    def shutdown(self) -> None:
        """Close the connections."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _set_any_value(target: Any, value: Any) -> None:
    """Fill an OTLP `AnyValue` from a decoded JSON value (objects become key-value lists, as MLflow decodes)."""
    if value is None:
        return
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if -(2**63) <= value < 2**63:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, Mapping):
        items: Mapping[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
        entries = target.kvlist_value.values
        if not items:
            target.kvlist_value.SetInParent()
        for key, item in items.items():
            entry = entries.add()
            entry.key = str(key)
            _set_any_value(entry.value, item)
    elif isinstance(value, (list, tuple)):
        sequence: list[Any] = list(value)  # pyright: ignore[reportUnknownArgumentType]
        values = target.array_value.values
        if not sequence:
            target.array_value.SetInParent()
        for element in sequence:
            _set_any_value(values.add(), element)
    else:
        target.string_value = str(value)


class MlflowStoreExporter(SpanExporter):
    """Writes batches through a local MLflow tracking store's `log_spans` (sqlite, a database URL)."""

    def __init__(self, uri: str, experiment_name: str | None) -> None:
        self.uri = uri
        self.experiment_name = experiment_name
        self._store: Any = None
        self._experiment_id: str | None = None
        self._links = PromptLinks()
        self._lock = threading.Lock()
        _forget_in_child(weakref.ref(self))

    def reset_after_fork(self) -> None:
        """A forked child must not share the parent's database connections."""
        self._store = None
        self._lock = threading.Lock()

    def _tracking_store(self) -> Any:
        store: Any = self._store
        if store is None:
            # MLflow is imported here, in the export thread, on the first batch: never in the application's.
            from mlflow.tracking._tracking_service import utils

            get_store: Any = getattr(utils, "_get_store")  # private in MLflow and untyped
            try:
                store = self._store = get_store(self.uri)
            except Exception as exc:
                raise ExportFailed(f"cannot open the MLflow tracking store: {type(exc).__name__}: {exc}") from None
        return store

    def experiment_id(self) -> str:
        """The experiment traces go to: `experiment_name`'s (created if missing), else the Default one."""
        if self._experiment_id is None:
            store = self._tracking_store()
            name = self.experiment_name
            if name is None:
                self._experiment_id = DEFAULT_EXPERIMENT_ID
                return DEFAULT_EXPERIMENT_ID
            try:
                experiment = store.get_experiment_by_name(name)
                if experiment is None:
                    try:
                        self._experiment_id = str(store.create_experiment(name))
                    except Exception:  # created meanwhile by another process
                        experiment = store.get_experiment_by_name(name)
                        if experiment is None:
                            raise
                if experiment is not None:
                    self._experiment_id = str(experiment.experiment_id)
            except ExportFailed:
                raise
            except Exception as exc:
                raise ExportFailed(f"cannot resolve experiment {name!r}: {type(exc).__name__}: {exc}") from None
        assert self._experiment_id is not None
        return self._experiment_id

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write one batch in one `log_spans` call."""
        with self._lock:
            experiment_id = self.experiment_id()
            converted = [self.convert(span) for span in spans]
            try:
                self._store.log_spans(experiment_id, converted)
            except Exception as exc:
                raise ExportFailed(f"log_spans failed: {type(exc).__name__}: {exc}") from None
        return SpanExportResult.SUCCESS

    def convert(self, span: ReadableSpan) -> Any:
        """An `mlflow.entities.Span`, as MLflow's OTLP receiver makes it (attribute values as JSON text)."""
        from mlflow.entities import Span
        from mlflow.tracing.utils import dump_span_attribute_value, generate_mlflow_trace_id_from_otel_trace_id

        context = span.context
        assert context is not None
        attributes: dict[str, Any] = {
            key: dump_span_attribute_value(value) for key, value in (span.attributes or {}).items()
        }
        for key, value in self._links.translate(span).items():
            attributes[key] = dump_span_attribute_value(value)
        attributes[MLFLOW_REQUEST_ID] = dump_span_attribute_value(
            generate_mlflow_trace_id_from_otel_trace_id(context.trace_id)
        )
        otel = ReadableSpan(
            name=span.name,
            context=context,
            parent=span.parent,
            # No resource: the store turns each resource attribute into a trace tag, one database merge per
            # trace each (about 0.6 ms of background CPU per trace per attribute into sqlite, issue 3).
            resource=_EMPTY_RESOURCE,
            attributes=attributes,
            events=span.events,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        return Span(otel)

    def shutdown(self) -> None:
        """Nothing to release: the store's engine is MLflow's, shared with the rest of the process."""


def make_mlflow_exporter(uri: str, experiment_name: str | None) -> tuple[SpanExporter, str]:
    """The MLflow exporter for `uri`, and how warnings name it."""
    if urlsplit(uri).scheme in ("http", "https"):
        return MlflowHttpExporter(uri, experiment_name), f"the MLflow server {_base_url(uri)}"
    parts = urlsplit(uri)
    shown = urlunsplit(parts._replace(netloc=parts.hostname or "")) if parts.password else uri
    return MlflowStoreExporter(uri, experiment_name), f"the MLflow tracking store {shown}"
