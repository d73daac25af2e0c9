"""The `"mlflow"` exporter: promptops' spans as MLflow traces, in the tracking store of `tracking_uri`.

Two paths, both batched (one request or one store transaction per batch of spans, not per trace):

* `http(s)://` tracking server: OTLP/HTTP protobuf POSTed to `{tracking_uri}/v1/traces` with the
  `x-mlflow-experiment-id` header (MLflow's own OTLP receiver, `mlflow/server/otel_api.py`). The experiment
  id is resolved over MLflow's REST API with httpx and a timeout. MLflow is never imported for this path. A batch
  whose request times out is settled with the server (`MlflowHttpExporter._settle`): what it stored counts as
  exported, what it did not is sent again once.
* any other store URI (`sqlite:///...`, a database URL): MLflow is imported *in the export thread* on the
  first batch, and each batch is written with the tracking store's `log_spans(experiment_id, spans)`,
  converted the way MLflow's OTLP receiver converts them (`mlflow.entities.Span.from_otel_proto`).

At export time promptops' span attributes are translated to the ones MLflow's UI reads (the originals stay):

| MLflow attribute | from |
|---|---|
| `mlflow.spanInputs` | `promptops.inputs` (JSON text; stored as the decoded value) |
| `mlflow.spanOutputs` | `promptops.output` (JSON text; stored as the decoded value) |
| `mlflow.spanType` | from `openinference.span.kind` when set (`TOOL`, `RETRIEVER`, `CHAT_MODEL` for a chat model run, ...); else `"LLM"` when the span carries any `gen_ai.*` attribute (the function reported a model call), else `"CHAIN"` |
| `mlflow.chat.messages` | `gen_ai.input.messages` then `gen_ai.output.messages`, as `{role, content}` messages MLflow's trace view renders as a chat |
| `mlflow.traceTag.mlflow.linkedPrompts` (root span) | every `promptops.prompt.name`/`promptops.prompt.version` in the trace; MLflow's store turns it into the trace tag `mlflow.linkedPrompts` the UI shows as linked prompt versions |
| `mlflow.traceTag.promptops.replay.run_id`, `...role` (root span) | a replay's call (issue 12): the replay's MLflow run, and `candidate`/`reference`/`noise`; the trace is also linked to that run (MLflow's `link_traces_to_run`), so the run's *Traces* tab lists it |

Prompts served from a `fallback=` (version 0) are not linked: no registry version produced them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._conventions import chat_prompt_messages, mlflow_chat_messages, mlflow_span_type, with_attributes
from ._counters import ExportFailed, RateLimitedWarning, add
from ._links import LinkSender, Outcome

if TYPE_CHECKING:
    from ._mlflow_bulk import BulkWriter

logger = logging.getLogger("promptops")

INPUTS = "promptops.inputs"
OUTPUT = "promptops.output"
PROMPT_NAME = "promptops.prompt.name"
PROMPT_VERSION = "promptops.prompt.version"
REPLAY_RUN = "promptops.replay.run_id"  # set on a replay's span of each call (replay/_runner.py)
REPLAY_ROLE = "promptops.replay.role"

MLFLOW_INPUTS = "mlflow.spanInputs"
MLFLOW_OUTPUTS = "mlflow.spanOutputs"
MLFLOW_SPAN_TYPE = "mlflow.spanType"
MLFLOW_CHAT_MESSAGES = "mlflow.chat.messages"
MLFLOW_REQUEST_ID = "mlflow.traceRequestId"
LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"
TRACE_TAG_PREFIX = "mlflow.traceTag."  # MLflow's store restores root-span attributes with it as trace tags
EXPERIMENT_HEADER = "x-mlflow-experiment-id"
DEFAULT_EXPERIMENT_ID = "0"
TRACE_ID_PREFIX = "tr-"  # MLflow's trace id is "tr-" and the OpenTelemetry trace id in hex
EXPORT_TIMEOUT = 10.0  # seconds for one export request (OTLP's default)
OTLP_PATH = "/v1/traces"
BATCH_GET_PATH = "/api/3.0/mlflow/traces/batchGet"  # complete traces, spans included, by id
BATCH_GET_TRACES = 100  # trace ids per batchGet request (they go in the query string)
SETTLE_POLL = 0.5  # seconds before asking again whether a timed-out batch was stored (doubling, at most ...)
SETTLE_POLL_MAX = 4.0
_EMPTY_RESOURCE = Resource.get_empty()
MAX_PENDING_TRACES = 10_000  # traces whose root span has not been exported yet, remembered for prompt links
LINK_PROMPTS_PATH = "/api/2.0/mlflow/traces/link-prompts"
LINK_RUN_PATH = "/api/2.0/mlflow/traces/link-to-run"
MAX_RUN_LINKS = 100  # traces MLflow links to a run in one request (MAX_TRACE_LINKS_PER_REQUEST)
CATALOG_URI_VARIABLE = "MLFLOW_MODEL_CATALOG_URI"  # MLflow's; "" keeps it to its bundled price catalog
LINK_CLOSE_WAIT = 5.0  # seconds a shut-down exporter keeps sending queued links (promptops.shutdown() waits first)
LOCK_RETRY_BUDGET = 60.0  # seconds one store write keeps retrying "database is locked" (issue 10)
_MLFLOW_DB_LOGGER = "mlflow.store.db.utils"  # logs a 70-line traceback per locked write, then raises


class _QuietInExport(logging.Filter):
    """Drops MLflow's store error log in promptops' export thread only: the failure is ours to report."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "active", False)


_quiet = _QuietInExport()


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text or "database is busy" in text


def retry_when_locked(write: Callable[[], Any], what: str, budget: float = LOCK_RETRY_BUDGET) -> Any:
    """Run one store write, retrying with jittered exponential backoff while SQLite says it is locked.

    Several processes writing one sqlite tracking store collide ("database is locked": SQLite refuses a
    read transaction's upgrade to a write at once, whatever the busy timeout). Before issue 10 each
    collision lost the whole batch (72% of the spans of 4 processes). The write is a whole transaction
    (MLflow rolls it back on failure), so running it again is safe. Other errors fail at once.

    Raises:
        ExportFailed: the write failed for another reason, or stayed locked for `budget` seconds.
    """
    logger_ = logging.getLogger(_MLFLOW_DB_LOGGER)
    if _quiet not in logger_.filters:
        logger_.addFilter(_quiet)
    deadline = time.monotonic() + budget
    delay = 0.01
    _quiet.local.active = True
    try:
        while True:
            try:
                return write()
            except Exception as exc:
                locked = _is_locked(exc)
                if not locked or time.monotonic() + delay > deadline:
                    message = f"{what} failed: {type(exc).__name__}: {_first_line(exc)}"
                    raise ExportFailed(message, locked=locked) from None
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.25)
    finally:
        _quiet.local.active = False


def _prepare_sqlite(store: Any) -> None:
    """Switch a sqlite tracking store to write-ahead logging, once, for several writing processes (issue 10).

    Readers (the UI, `search_traces`) then never block our writes nor ours theirs. The mode is a property of
    the database file; MLflow works the same with it. Best effort: a busy or read-only file stays as it is.

    (Starting our export transactions with `BEGIN IMMEDIATE` was tried and refused: MLflow opens a second
    session inside `log_spans`, which then waits for the first one's write lock until it times out.)
    """
    engine = store.engine
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    except Exception as exc:
        logger.debug("promptops left the tracking store's journal mode as it was: %s", exc)


def _link_in_one_transaction(store: Any, links: list[tuple[str, list[dict[str, str]]]]) -> None:
    """The rows `SqlAlchemyStore.link_prompts_to_trace` adds, for many traces in one transaction (MLflow's model)."""
    from mlflow.entities.entity_type import EntityAssociationType
    from mlflow.store.tracking.dbmodels.models import SqlEntityAssociation

    wanted = {(trace_id, f"{v['name']}/{v['version']}") for trace_id, versions in links for v in versions}
    model: Any = SqlEntityAssociation
    with store.ManagedSessionMaker(read_only=False) as session:
        existing = set(
            session.query(model.source_id, model.destination_id)
            .filter(
                model.source_type == EntityAssociationType.TRACE,
                model.destination_type == EntityAssociationType.PROMPT_VERSION,
                model.source_id.in_({trace_id for trace_id, _ in wanted}),
            )
            .all()
        )
        rows = [
            {
                "association_id": uuid.uuid4().hex,
                "source_type": EntityAssociationType.TRACE,
                "source_id": trace_id,
                "destination_type": EntityAssociationType.PROMPT_VERSION,
                "destination_id": destination,
            }
            for trace_id, destination in sorted(wanted - {tuple(row) for row in existing})
        ]
        if rows:  # one multi-row statement: ORM objects cost a flush's bookkeeping each (issue 10)
            session.execute(model.__table__.insert(), rows)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def links_done(linked: int, failed: int, reason: str, warn: RateLimitedWarning) -> None:
    """Count a batch's prompt links; warn (rate-limited) about those MLflow refused."""
    if not (linked or failed):
        return
    totals = add(prompt_links=linked, prompt_links_failed=failed)
    if failed:
        warn(
            "promptops could not link %d traces to their prompt versions in MLflow: %s (%d so far; the spans "
            "were stored, only the prompt filter and the prompt's Traces tab miss them)",
            failed,
            reason,
            totals["prompt_links_failed"],
        )


def _loads(text: object) -> Any:
    """A recorded JSON value, decoded; a truncated (hence invalid) one stays text."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


class PromptLinks:
    """Which registered prompt versions each trace used, for the trace tag and for MLflow's prompt links.

    Two outputs per exported batch:

    * the `mlflow.linkedPrompts` trace tag, written on the root span (children end, hence are exported, first;
      the versions seen in a trace are remembered until its root arrives);
    * `take()`: the (trace, versions) pairs first seen in this batch, which the exporter links through MLflow's
      own API once the batch is stored (issue 12): that is what `search_traces(filter_string='prompt =
      "NAME/V"')` and the prompt version's *Traces* tab read. Linking per batch rather than at the root also
      links traces whose root is not ours (an application's span, a remote parent).
    """

    def __init__(self) -> None:
        self._pending: OrderedDict[int, list[dict[str, str]]] = OrderedDict()
        self._new: dict[int, list[dict[str, str]]] = {}
        self._linked: OrderedDict[tuple[int, str, str], None] = OrderedDict()
        self._runs: dict[str, list[str]] = {}  # a replay's run id -> its traces whose root arrived since take_runs()

    def translate(self, span: ReadableSpan) -> dict[str, Any]:
        """MLflow's attributes for `span`, as decoded values (see the module docstring)."""
        attributes: Mapping[str, Any] = span.attributes or {}
        extra: dict[str, Any] = {}
        if INPUTS in attributes:
            extra[MLFLOW_INPUTS] = _loads(attributes[INPUTS])
        if OUTPUT in attributes:
            extra[MLFLOW_OUTPUTS] = _loads(attributes[OUTPUT])
        extra[MLFLOW_SPAN_TYPE] = mlflow_span_type(attributes)
        if chat := chat_prompt_messages(attributes):  # a chat prompt's messages (GenAI conventions, issue 12)
            extra.update(chat)
            attributes = {**attributes, **chat}
        if (messages := mlflow_chat_messages(attributes)) is not None:
            extra[MLFLOW_CHAT_MESSAGES] = messages  # MLflow's trace view shows them as a conversation
        context = span.context
        if context is None:  # pragma: no cover - SDK spans always have one
            return extra
        trace_id = context.trace_id
        name, version = attributes.get(PROMPT_NAME), attributes.get(PROMPT_VERSION)
        if isinstance(name, str) and isinstance(version, int) and not isinstance(version, bool) and version > 0:
            entry = {"name": name, "version": str(version)}
            links = self._pending.setdefault(trace_id, [])
            if entry not in links:
                links.append(entry)
            self._pending.move_to_end(trace_id)
            while len(self._pending) > MAX_PENDING_TRACES:
                self._pending.popitem(last=False)
            key = (trace_id, name, entry["version"])
            if key not in self._linked:
                self._linked[key] = None
                while len(self._linked) > MAX_PENDING_TRACES:
                    self._linked.popitem(last=False)
                self._new.setdefault(trace_id, []).append(entry)
        if span.parent is None or span.parent.is_remote:
            if linked := self._pending.pop(trace_id, None):
                extra[TRACE_TAG_PREFIX + LINKED_PROMPTS_TAG] = json.dumps(linked)
            if isinstance(run_id := attributes.get(REPLAY_RUN), str) and run_id:
                extra[TRACE_TAG_PREFIX + REPLAY_RUN] = run_id
                extra[TRACE_TAG_PREFIX + REPLAY_ROLE] = str(attributes.get(REPLAY_ROLE, ""))
                self._runs.setdefault(run_id, []).append(mlflow_trace_id(trace_id))
        return extra

    def take(self) -> list[tuple[str, list[dict[str, str]]]]:
        """The MLflow trace ids and prompt versions to link since the last call (then forgotten)."""
        new, self._new = self._new, {}
        return [(mlflow_trace_id(trace_id), versions) for trace_id, versions in new.items()]

    def take_runs(self) -> list[tuple[str, list[str]]]:
        """The replays' runs and the MLflow ids of their traces to link since the last call, in chunks MLflow takes."""
        runs, self._runs = self._runs, {}
        return [
            (run_id, trace_ids[start : start + MAX_RUN_LINKS])
            for run_id, trace_ids in runs.items()
            for start in range(0, len(trace_ids), MAX_RUN_LINKS)
        ]


def _runs_done(failed: int, reason: str, warn: RateLimitedWarning) -> None:
    if failed:
        warn(
            "promptops could not link %d replay traces to their MLflow run: %s (the spans were stored; only the "
            "run's Traces tab misses them)",
            failed,
            reason,
        )


def mlflow_trace_id(trace_id: int) -> str:
    """MLflow's id of the trace with OpenTelemetry id `trace_id` (`mlflow.tracing.utils`, without importing it)."""
    return f"{TRACE_ID_PREFIX}{trace_id:032x}"


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

    deep_queue = True  # the provider gives it a queue for bursts (`_provider.MLFLOW_QUEUE_SIZE`)

    def __init__(self, uri: str, experiment_name: str | None, *, timeout: float = EXPORT_TIMEOUT) -> None:
        self.uri = uri
        self.experiment_name = experiment_name
        self.timeout = timeout
        self._base = _base_url(uri)
        self._client: Any = None  # httpx.Client, made in the export thread
        self._experiment_id: str | None = None
        self._links = PromptLinks()
        self._warn = RateLimitedWarning()
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()  # the link threads and the export thread share one client
        self._closed = False  # after shutdown() no client is made: a late link thread's would never be closed
        self._sender = LinkSender(self._send_link, self._links_done)
        self._behind: Callable[[], bool] | None = None
        _forget_in_child(weakref.ref(self))

    def _links_done(self, linked: int, failed: int, reason: str) -> None:
        links_done(linked, failed, reason, self._warn)

    def reset_after_fork(self) -> None:
        """A forked child must not share the parent's connections, nor wait for the parent's links."""
        self._client = None
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._sender = LinkSender(self._send_link, self._links_done)
        if self._behind is not None:
            self._sender.behind = self._behind

    def _http(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            return self._client if self._client is not None else self._new_client()

    def _new_client(self) -> Any:
        if self._closed:
            raise ExportFailed("promptops tracing was shut down")
        if self._client is None:
            # The registry reads' client (no deadline set here, so httpx's timeouts as usual): its close also closes
            # a connection a link thread is still making, which httpx's own close misses (left to the GC).
            from ..prompts._http import deadline_client, tls_context

            secure = urlsplit(self.uri).scheme == "https"
            self._client = deadline_client(
                headers={"User-Agent": "promptops", **_auth_headers(self.uri)},
                timeout=self.timeout,
                ssl_context=tls_context() if secure else None,
                follow_redirects=secure,
            )
        return self._client

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._http().request(method, self._base + path, **kwargs)
        except httpx.TimeoutException:
            raise ExportFailed(
                f"{method} {self._base}{path} timed out after {self.timeout:g}s", timed_out=True
            ) from None
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
        """POST one batch as one OTLP request; a request that timed out is settled (`_settle`)."""
        with self._lock:
            experiment_id = self.experiment_id()
            request = self.encode(spans)
            links, runs = self._links.take(), self._links.take_runs()
            with self._sender.exporting():  # the spans first: links wait for the batch to be stored
                try:
                    self._post_spans(request.SerializeToString(), experiment_id)
                except ExportFailed as exc:
                    if not exc.timed_out:
                        raise
                    missing, reason = self._settle(request, experiment_id, exc)
                    if missing:  # link the traces that were stored; count the spans that were not as failed
                        lost = {trace_id for trace_id, _ in missing}
                        self._sender.submit([(trace_id, v) for trace_id, v in links if trace_id not in lost])
                        raise ExportFailed(reason, failed=len(missing)) from None
        # Stored: link its traces from the link threads (`_links`), not here. A server links a few dozen traces a
        # second one request each; waiting for them here held every later batch back (issue 10).
        self._sender.submit(links)
        self._link_runs(runs)  # up to 100 traces a request: cheap enough to send here
        return SpanExportResult.SUCCESS

    def _post_spans(self, body: bytes, experiment_id: str) -> None:
        response = self._request(
            "POST",
            OTLP_PATH,
            content=body,
            headers={"Content-Type": "application/x-protobuf", EXPERIMENT_HEADER: experiment_id},
        )
        if not 200 <= response.status_code < 300:
            raise ExportFailed(f"HTTP {response.status_code} from {self._base}{OTLP_PATH}: {response.text[:200]}")

    def _settle(self, request: Any, experiment_id: str, error: ExportFailed) -> tuple[set[tuple[str, int]], str]:
        """A batch whose request timed out: find out what the server stored, send again only what it did not.

        A busy server often stores a batch after the client stopped waiting (issue 10: at 100 calls a second every
        span arrived, yet most batches counted as failed). So the exporter asks the server which of the batch's
        spans it holds (`GET /api/3.0/mlflow/traces/batchGet`), for up to `timeout` more seconds while the server
        finishes, and sends again the spans it does not hold, once. Sending again is safe even if the first request
        is still being stored: MLflow's `log_spans` upserts spans by (trace, span id) and does not count a re-sent
        span twice in a trace's token usage (3.17's `SqlAlchemyStore._log_spans_once`). Only what is known not
        stored is sent again; a server that cannot say (unreachable, or older than `batchGet`) gets nothing more.

        Returns:
            The (MLflow trace id, span id) of the spans not delivered (none: the whole batch is stored), and why.
        """
        missing = _span_keys(request)
        deadline = time.monotonic() + self.timeout
        for attempt in range(2):  # the request that timed out, then the one sending the rest again
            try:
                missing -= self._stored(missing, deadline if attempt == 0 else 0.0)
            except ExportFailed as exc:  # cannot tell: nothing is sent again, the rest counts as failed
                return missing, f"{error}; could not tell what the server stored: {exc}"
            if not missing:
                return missing, ""
            if attempt:
                break
            add(export_retries=1)
            try:
                self._post_spans(_only(request, missing).SerializeToString(), experiment_id)
                return set(), ""
            except ExportFailed as exc:
                error = exc
                if not exc.timed_out:  # refused: not stored
                    break
        return missing, f"{error} (sent twice)"

    def _stored(self, keys: set[tuple[str, int]], until: float) -> set[tuple[str, int]]:
        """Which of `keys` (MLflow trace id, span id) the server holds; asked again until all or `until` (monotonic)."""
        held: set[tuple[str, int]] = set()
        delay = SETTLE_POLL
        while True:
            trace_ids = sorted({trace_id for trace_id, _ in keys - held})
            for start in range(0, len(trace_ids), BATCH_GET_TRACES):
                chunk = trace_ids[start : start + BATCH_GET_TRACES]
                response = self._request("GET", BATCH_GET_PATH, params=[("trace_ids", trace_id) for trace_id in chunk])
                if response.status_code != 200:
                    raise ExportFailed(f"HTTP {response.status_code} from {BATCH_GET_PATH}: {response.text[:200]}")
                for trace in response.json().get("traces", []):
                    trace_id = trace.get("trace_info", {}).get("trace_id")
                    for span in trace.get("spans", []):
                        held.add((trace_id, int.from_bytes(base64.b64decode(span.get("span_id", "")), "big")))
            held &= keys
            if held == keys or time.monotonic() + delay > until:
                return held
            time.sleep(delay)
            delay = min(delay * 2, SETTLE_POLL_MAX)

    def _link_runs(self, runs: list[tuple[str, list[str]]]) -> None:
        """`POST /api/2.0/mlflow/traces/link-to-run`, up to `MAX_RUN_LINKS` traces a request."""
        failed, reason = 0, ""
        for run_id, trace_ids in runs:
            try:
                response = self._request("POST", LINK_RUN_PATH, json={"trace_ids": trace_ids, "run_id": run_id})
            except ExportFailed as exc:
                failed, reason = failed + len(trace_ids), str(exc)
                continue
            if response.status_code != 200:
                failed, reason = failed + len(trace_ids), f"HTTP {response.status_code}: {response.text[:200]}"
        _runs_done(failed, reason, self._warn)

    def _send_link(self, trace_id: str, versions: list[dict[str, str]]) -> Outcome:
        """One `POST /api/2.0/mlflow/traces/link-prompts` (MLflow's REST API takes one trace a call)."""
        try:
            response = self._request(
                "POST", LINK_PROMPTS_PATH, json={"trace_id": trace_id, "prompt_versions": versions}
            )
        except ExportFailed as exc:  # refused, reset, timed out: the server may be back soon
            return "retry", str(exc)
        if response.status_code == 200:
            return "linked", ""
        reason = f"HTTP {response.status_code}: {response.text[:200]}"
        return ("retry" if response.status_code == 429 or response.status_code >= 500 else "failed"), reason

    def set_backlog(self, behind: Callable[[], bool]) -> None:
        """Tell the link threads how to see that span export falls behind (they then hold their requests)."""
        self._sender.behind = behind
        self._behind = behind

    def links_pending(self) -> int:
        """Traces waiting for their prompt link (queued or being sent)."""
        return self._sender.pending()

    def wait_for_links(self, timeout: float) -> bool:
        """Wait until every link queued so far was sent or given up; `False` if some are pending at `timeout`."""
        return self._sender.wait(timeout)

    def encode(self, spans: Sequence[ReadableSpan]) -> Any:
        """The OTLP `ExportTraceServiceRequest` for `spans`, with MLflow's attributes added."""
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        by_ids: dict[tuple[int, int], dict[str, Any]] = {}
        for span in spans:
            if (context := span.context) is not None:
                by_ids[(context.trace_id, context.span_id)] = self._links.translate(span)
        request = encode_spans(spans)
        for scope_spans in _proto_spans(request):
            for proto in scope_spans.spans:
                key = (int.from_bytes(proto.trace_id, "big"), int.from_bytes(proto.span_id, "big"))
                for name, value in by_ids.get(key, {}).items():
                    attribute = proto.attributes.add()
                    attribute.key = name
                    _set_any_value(attribute.value, value)
        return request

    def shutdown(self) -> None:
        """Send the links still queued (a few seconds at most), then close the connections."""
        self._sender.close(LINK_CLOSE_WAIT)
        with self._client_lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _proto_spans(request: Any) -> Iterator[Any]:
    """The `ScopeSpans` messages of an OTLP request."""
    for resource_spans in request.resource_spans:
        yield from resource_spans.scope_spans


def _key(span: Any) -> tuple[str, int]:
    """An OTLP span's (MLflow trace id, span id)."""
    return mlflow_trace_id(int.from_bytes(span.trace_id, "big")), int.from_bytes(span.span_id, "big")


def _span_keys(request: Any) -> set[tuple[str, int]]:
    """(MLflow trace id, span id) of every span in an OTLP request."""
    return {_key(span) for scope_spans in _proto_spans(request) for span in scope_spans.spans}


def _only(request: Any, keys: set[tuple[str, int]]) -> Any:
    """A copy of an OTLP request with only the spans `keys` names."""
    copy = type(request)()
    copy.CopyFrom(request)
    for scope_spans in _proto_spans(copy):
        spans = scope_spans.spans
        for index in reversed(range(len(spans))):
            if _key(spans[index]) not in keys:
                del spans[index]
    return copy


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

    local = True  # an exiting process waits for a running export (see `_provider._at_exit`)
    deep_queue = True  # the provider gives it a queue for bursts (`_provider.MLFLOW_QUEUE_SIZE`)

    def __init__(self, uri: str, experiment_name: str | None) -> None:
        self.uri = uri
        self.experiment_name = experiment_name
        self._store: Any = None
        self._bulk: BulkWriter | None = None
        self._bulk_decided = False  # on the first batch: MLflow is imported then
        self._experiment_id: str | None = None
        self._links = PromptLinks()
        self._warn = RateLimitedWarning()
        self._lock = threading.Lock()
        _forget_in_child(weakref.ref(self))

    def reset_after_fork(self) -> None:
        """A forked child must not share the parent's database connections."""
        self._store = None
        self._bulk, self._bulk_decided = None, False
        self._lock = threading.Lock()

    def _tracking_store(self) -> Any:
        store: Any = self._store
        if store is None:
            # MLflow is imported here, in the export thread, on the first batch: never in the application's.
            from mlflow.tracking._tracking_service import utils

            get_store: Any = getattr(utils, "_get_store")  # private in MLflow and untyped
            store = retry_when_locked(lambda: get_store(self.uri), "opening the MLflow tracking store")
            if self.uri.startswith("sqlite:"):
                _prepare_sqlite(store)
            self._store = store
        return store

    def experiment_id(self) -> str:
        """The experiment traces go to: `experiment_name`'s (created if missing), else the Default one."""
        if self._experiment_id is None:
            store = self._tracking_store()
            name = self.experiment_name
            if name is None:
                self._experiment_id = DEFAULT_EXPERIMENT_ID
                return DEFAULT_EXPERIMENT_ID

            def resolve() -> str:
                experiment = store.get_experiment_by_name(name)
                if experiment is not None:
                    return str(experiment.experiment_id)
                try:
                    return str(store.create_experiment(name))
                except Exception:  # created meanwhile by another process
                    experiment = store.get_experiment_by_name(name)
                    if experiment is None:
                        raise
                    return str(experiment.experiment_id)

            self._experiment_id = retry_when_locked(resolve, f"resolving experiment {name!r}")
        assert self._experiment_id is not None
        return self._experiment_id

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write one batch: its new whole traces in bulk (`_mlflow_bulk`), anything else in one `log_spans` call."""
        with self._lock:
            experiment_id = self.experiment_id()
            converted = [self.convert(span) for span in spans]
            links, runs = self._links.take(), self._links.take_runs()
            store = self._store
            rest = converted
            if (bulk := self._bulk_writer()) is not None:
                rooted, rest = bulk.split(converted)
                if rooted:
                    try:
                        rest += retry_when_locked(lambda: bulk.write(experiment_id, rooted), "storing new traces")
                    except ExportFailed as exc:
                        if exc.locked:
                            raise
                        # Not a lock: another writer created one of these traces meanwhile (a remote child's
                        # process), or a row MLflow refuses. log_spans knows how to merge; let it decide.
                        rest += [span for trace_spans in rooted.values() for span in trace_spans]
            if rest:
                try:
                    retry_when_locked(lambda: store.log_spans(experiment_id, rest), "log_spans")
                except ExportFailed as exc:
                    raise ExportFailed(str(exc), locked=exc.locked, failed=len(rest)) from None
            self._link_all(links)
            self._link_runs(runs)
        return SpanExportResult.SUCCESS

    def _link_runs(self, runs: list[tuple[str, list[str]]]) -> None:
        """The store's `link_traces_to_run`, one transaction per `MAX_RUN_LINKS` traces."""
        store = self._store
        failed, reason = 0, ""
        for run_id, trace_ids in runs:
            try:
                retry_when_locked(lambda: store.link_traces_to_run(trace_ids, run_id), "link_traces_to_run")
            except ExportFailed as exc:
                failed, reason = failed + len(trace_ids), str(exc)
        _runs_done(failed, reason, self._warn)

    def _bulk_writer(self) -> BulkWriter | None:
        if not self._bulk_decided:
            from ._mlflow_bulk import BulkWriter, Unsupported

            self._bulk_decided = True
            try:
                self._bulk = BulkWriter(self._store)
            except Unsupported as exc:
                logger.debug("promptops stores spans with MLflow's log_spans only: %s", exc)
        return self._bulk

    def _link_all(self, links: list[tuple[str, list[dict[str, str]]]]) -> None:
        """Link the batch's traces to their prompt versions: one transaction for the batch where the store allows.

        What MLflow's `link_prompts_to_trace` writes (rows of its `entity_associations` table, through its own
        ORM model), for the whole batch at once: per trace, as that method does it, a sqlite store shared by 4
        processes spent its time on 512 commits per batch and kept up with barely 25 traces a second (issue
        10). A store without that model (another backend) gets `link_prompts_to_trace` per trace.
        """
        if not links:
            return
        store = self._store
        try:
            if hasattr(store, "ManagedSessionMaker"):
                retry_when_locked(lambda: _link_in_one_transaction(store, links), "linking prompts to traces")
                links_done(len(links), 0, "", self._warn)
                return
        except ExportFailed as exc:
            links_done(0, len(links), str(exc), self._warn)
            return
        from mlflow.entities.model_registry import PromptVersion

        linked = failed = 0
        reason = ""
        for trace_id, versions in links:
            prompt_versions = [PromptVersion(v["name"], int(v["version"]), template="") for v in versions]
            try:
                retry_when_locked(
                    lambda: store.link_prompts_to_trace(trace_id=trace_id, prompt_versions=prompt_versions),
                    "link_prompts_to_trace",
                )
                linked += 1
            except ExportFailed as exc:
                failed, reason = failed + 1, str(exc)
        links_done(linked, failed, reason, self._warn)

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
        # No resource: the store turns each resource attribute into a trace tag, one database merge per trace each
        # (about 0.6 ms of background CPU per trace per attribute into sqlite, issue 3).
        return Span(with_attributes(span, attributes, _EMPTY_RESOURCE))

    def shutdown(self) -> None:
        """Nothing to release: the store's engine is MLflow's, shared with the rest of the process."""


def make_mlflow_exporter(uri: str, experiment_name: str | None) -> tuple[SpanExporter, str]:
    """The MLflow exporter for `uri`, and how warnings name it."""
    if urlsplit(uri).scheme in ("http", "https"):
        return MlflowHttpExporter(uri, experiment_name), f"the MLflow server {_base_url(uri)}"
    parts = urlsplit(uri)
    shown = urlunsplit(parts._replace(netloc=parts.hostname or "")) if parts.password else uri
    keep_price_catalog_local()
    return MlflowStoreExporter(uri, experiment_name), f"the MLflow tracking store {shown}"


def keep_price_catalog_local() -> None:
    """Keep MLflow to its bundled model price catalog, unless the user chose a catalog (`MLFLOW_MODEL_CATALOG_URI`).

    MLflow 3.17 prices a span that carries a model name, a provider and token usage while storing it, and for that
    downloads the provider's catalog from github.com (`mlflow.utils.providers`), once a day per provider, with
    three retries and a 5 s timeout each. With promptops' local-store exporter that happens in promptops' export
    thread: traffic the user did not ask for, and where outbound traffic is blocked, an export stalled for up to
    half a minute while the queue fills. An empty value is MLflow's own switch for its bundled catalog (the costs
    are still computed, from the prices MLflow ships with). It is a process-wide setting: it applies to the
    application's own MLflow use too, and is set only when the application has not set it (see docs/tracing.md).
    The tracking-server exporter sets nothing: there the server prices spans, with its own environment.
    """
    if CATALOG_URI_VARIABLE not in os.environ:
        os.environ[CATALOG_URI_VARIABLE] = ""
        logger.debug("promptops set %s='' (MLflow's bundled model prices, no download)", CATALOG_URI_VARIABLE)
