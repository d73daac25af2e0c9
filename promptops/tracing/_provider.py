"""The private tracer provider and its bounded batch processor.

Imported on the first span only (it imports the OpenTelemetry SDK).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Tracer

from .. import _config, tracing  # pyright: ignore[reportPrivateUsage]
from .._config import Settings, get_settings
from .._errors import log_internal_error
from .._version import __version__
from ..prompts import replay_active
from . import _counters
from ._counters import ExportFailed, RateLimitedWarning, add, count, snapshot

logger = logging.getLogger("promptops")

SCOPE = "promptops"
DEFAULT_SERVICE_NAME = "promptops-app"
ATEXIT_TIMEOUT = 3.0  # seconds an exiting application waits for an export that makes no progress
ATEXIT_MAX = 120.0  # seconds it waits at most while spans are still being stored (issue 10: none lost at exit)
REPLAY_WAIT = 60.0  # seconds a replay's span waits for room in a full export queue (the application's never waits)
MLFLOW_QUEUE_SIZE = 20_000  # spans waiting for an MLflow store or tracking server, at most; OTel's default is 2,048


# -- exporter wrapper and processor -----------------------------------------------------------------------


class CountingExporter(SpanExporter):
    """Counts what the wrapped exporter delivers and fails; turns its exceptions into counted warnings."""

    def __init__(self, exporter: SpanExporter, description: str) -> None:
        self.exporter = exporter
        self.description = description
        self._warn = RateLimitedWarning()
        self.flush_warning = RateLimitedWarning()  # a flush that ended with spans pending and the export failing
        self.failing = False  # the last export failed: a replay stops waiting for room (see _admit_when_room)
        self.in_flight = 0  # spans of the batch being exported now (one export at a time: the SDK's worker)
        # A local store finishes or fails by itself (bounded lock retries): worth waiting for at exit; a network
        # endpoint may hang until its timeout, so the exit waits for it only while it makes progress.
        self.local = bool(getattr(exporter, "local", False))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export one batch through the wrapped exporter; never raises."""
        self.in_flight = len(spans)
        _counters.last_error = ""
        try:
            return self._export(spans)
        finally:
            self.in_flight = 0

    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._deliver(spans)
        self.failing = result is not SpanExportResult.SUCCESS
        return result

    def _deliver(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except ExportFailed as exc:
            failed = len(spans) if exc.failed is None else min(exc.failed, len(spans))
            if delivered := len(spans) - failed:  # part of the batch was stored before the failure
                count("spans_exported", delivered)
            return self._failed(failed, str(exc))
        except Exception as exc:
            log_internal_error("tracing.export", exc)
            return self._failed(len(spans), f"{type(exc).__name__}: {exc}")
        if result is SpanExportResult.SUCCESS:
            count("spans_exported", len(spans))
            return result
        return self._failed(len(spans), _counters.last_error or "the exporter reported a failure")

    def _failed(self, spans: int, reason: str) -> SpanExportResult:
        total = add(spans_failed=spans, export_failures=1)["spans_failed"]
        self._warn(
            "promptops could not export %d spans to %s: %s (%d spans lost so far; the application is unaffected)",
            spans,
            self.description,
            reason,
            total,
        )
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        try:
            self.exporter.shutdown()
        except Exception as exc:  # pragma: no cover - an exporter's own shutdown bug
            log_internal_error("tracing.exporter_shutdown", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.exporter.force_flush(timeout_millis)

    def links_pending(self) -> int:
        """Traces the wrapped exporter still has to link to their prompt versions (the `mlflow` server exporter)."""
        pending: Callable[[], int] | None = getattr(self.exporter, "links_pending", None)
        return pending() if pending is not None else 0

    def wait_for_links(self, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) until the wrapped exporter sent the prompt links queued so far."""
        wait: Callable[[float], bool] | None = getattr(self.exporter, "wait_for_links", None)
        return wait(timeout) if wait is not None else True


def _run_bounded(target: Callable[[], Any], timeout: float, name: str) -> bool:
    """Run `target` in a daemon thread; `True` if it returned within `timeout` seconds."""
    done = threading.Event()
    _start(target, done, name)
    return done.wait(max(timeout, 0.0))


class BoundedBatchSpanProcessor(BatchSpanProcessor):
    """OpenTelemetry's `BatchSpanProcessor`, plus what promptops needs of it.

    * Spans dropped because the queue is full (or because they ended after shutdown) are counted and reported
      in a rate-limited WARNING: in SDK 1.45 `BatchProcessor.emit` only logs them.
    * `force_flush()` and `shutdown()` return by their deadline even when the exporter hangs on a dead or
      blackholed endpoint: the SDK exports in the caller's thread and ignores the flush timeout
      (opentelemetry-python #4568), so the work runs in a helper thread we wait for.

    Fork safety is the SDK's: `os.register_at_fork` plus a pid check start a new worker in the child.
    """

    def __init__(self, exporter: SpanExporter, description: str, max_queue_size: int | None = None) -> None:
        super().__init__(exporter, max_queue_size=max_queue_size)
        self.description = description
        self._warn_dropped = RateLimitedWarning()
        self._flushing: threading.Event | None = None
        self._flush_lock = threading.Lock()
        self._emit_lock = threading.Lock()
        # Exact drop counting: the SDK's queue is a `deque(maxlen=...)` that silently pushes out its oldest span
        # when full, and nothing outside it can tell atomically whether that happened. We give the SDK an
        # unbounded deque and enforce the bound ourselves, under a lock, in `on_end` (the only producer; the
        # worker only takes spans out). Other SDK versions keep the SDK's emit and an approximate count.
        batch: Any = self._batch_processor
        self._exact = all(
            hasattr(batch, name)
            for name in (
                "_queue",
                "_max_queue_size",
                "_max_export_batch_size",
                "_worker_awaken",
                "_pid",
                "_bsp_reset_once",
                "_at_fork_reinit",
                "_shutdown",
            )
        )
        if self._exact:
            batch._queue = collections.deque()
        alive = weakref.ref(self)

        def after_in_child() -> None:
            # A flush thread running in the parent at fork time does not exist in the child.
            if (processor := alive()) is not None:
                processor._flushing = None
                processor._flush_lock = threading.Lock()
                processor._emit_lock = threading.Lock()

        os.register_at_fork(after_in_child=after_in_child)

    def on_end(self, span: ReadableSpan) -> None:
        """Queue an ended span for export, counting it if it has to be dropped. Never blocks."""
        context = span.context
        if not (context and context.trace_flags.sampled):
            return
        batch: Any = self._batch_processor  # the SDK's BatchProcessor: its queue and flags are private
        if batch._shutdown:
            self._dropped(shutdown=True)  # the SDK would log an INFO line per span
            return
        if not self._exact:  # pragma: no cover - an SDK without the internals we rely on
            if len(batch._queue) >= batch._max_queue_size:
                self._dropped(shutdown=False)
            batch.emit(span)
            return
        if batch._pid != os.getpid():  # forked: the SDK's own check, from its emit()
            batch._bsp_reset_once.do_once(batch._at_fork_reinit)
        queue = batch._queue
        with self._emit_lock:
            full = len(queue) >= batch._max_queue_size
            if not full:
                queue.appendleft(span)
        if full and replay_active.get():
            full = not self._admit_when_room(batch, span)
        if full:
            self._dropped(shutdown=False)
        elif len(queue) >= batch._max_export_batch_size and not batch._worker_awaken.is_set():
            batch._worker_awaken.set()

    def _admit_when_room(self, batch: Any, span: ReadableSpan) -> bool:
        """A replay's span: wait (at most `REPLAY_WAIT`) for room in the queue rather than drop it.

        A replay is a batch job of promptops', not the application's call: it may wait for the exporter. A 20,000-
        record replay into a sqlite store made spans faster than the store took them and dropped half (issue 10).
        It waits for a working exporter only: once an export failed, its spans are dropped and counted.
        """
        deadline = time.monotonic() + REPLAY_WAIT
        queue = batch._queue
        exporter = batch._exporter
        # A failing exporter (endpoint down) will not make room soon: drop and count, as for the application.
        while time.monotonic() < deadline and not batch._shutdown and not getattr(exporter, "failing", False):
            batch._worker_awaken.set()
            time.sleep(0.005)
            with self._emit_lock:
                if len(queue) < batch._max_queue_size:
                    queue.appendleft(span)
                    return True
        return False

    def _dropped(self, *, shutdown: bool) -> None:
        total = add(spans_dropped=1)["spans_dropped"]
        reason = (
            "promptops tracing was shut down"
            if shutdown
            else f"the export queue of {self.queue_capacity} spans is full: {self.description} cannot keep up "
            "or is unreachable"
        )
        self._warn_dropped(
            "promptops dropped spans: %s (%d dropped so far; OTEL_BSP_MAX_QUEUE_SIZE sets the queue)", reason, total
        )

    @property
    def queue_capacity(self) -> int:
        """How many ended spans may wait for export."""
        batch: Any = self._batch_processor
        return int(batch._max_queue_size)

    def behind(self) -> bool:
        """Whether half an export batch of spans or more is waiting: the next export is due soon."""
        batch: Any = self._batch_processor
        return len(batch._queue) * 2 >= batch._max_export_batch_size

    @property
    def queued(self) -> int:
        """How many ended spans wait for export now."""
        batch: Any = self._batch_processor
        return len(batch._queue)

    def force_flush(self, timeout_millis: int | None = 30000) -> bool:
        """Export everything queued; wait at most `timeout_millis` (a hung export goes on in the background)."""
        with self._flush_lock:
            flushing = self._flushing
            if flushing is None or flushing.is_set():
                # One flush thread at a time: against a hung endpoint, repeated flushes must not pile up threads.
                flushing = self._flushing = threading.Event()
                _start(self._flush_now, flushing, "tracing.flush")
        return flushing.wait(max((timeout_millis or 0) / 1000, 0.0))

    def _flush_now(self) -> None:
        super().force_flush()

    def shutdown(self, timeout: float = 30.0) -> bool:  # pyright: ignore[reportIncompatibleMethodOverride]
        """Flush what the deadline allows, then stop the worker and the exporter; never waits past it."""
        deadline = time.monotonic() + timeout
        flushed = self.force_flush(int(timeout * 1000))
        remaining = max(deadline - time.monotonic(), 0.0)
        stopped = _run_bounded(
            lambda: self._batch_processor.shutdown(int(remaining * 1000)), remaining, "tracing.shutdown"
        )
        return flushed and stopped


def _start(target: Callable[[], Any], done: threading.Event, name: str) -> None:
    """Run `target` in a daemon thread that sets `done` when it returns or fails (failures are logged)."""

    def run() -> None:
        try:
            target()
        except Exception as exc:
            log_internal_error(name, exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"promptops-{name}", daemon=True).start()


# -- the set-up ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What `tracer()` returns for one settings object, and what it was decided from."""

    settings: Settings | None
    global_provider: object  # opentelemetry.trace._TRACER_PROVIDER when this was decided
    tracer: Tracer | None
    private: Private | None  # our own provider, if spans go to it


@dataclass(frozen=True)
class Private:
    """promptops' own provider and processor, for one exporter configuration."""

    key: tuple[str, str, str | None]
    provider: TracerProvider
    processor: BoundedBatchSpanProcessor
    tracer: Tracer


_lock = threading.RLock()
_private: Private | None = None
_retired: list[weakref.ref[BoundedBatchSpanProcessor]] = []
_atexit_registered = False


def refresh() -> Tracer | None:
    """Decide where spans go for the current settings and global provider; cache and return the tracer."""
    try:
        with _lock:
            settings = get_settings()
            # The real getter: it also loads a provider named by OTEL_PYTHON_TRACER_PROVIDER.
            provider = trace_api.get_tracer_provider()
            tracing._trace_api = trace_api  # pyright: ignore[reportPrivateUsage]
            seen = trace_api._TRACER_PROVIDER  # pyright: ignore[reportPrivateUsage]
            app_tracer = None
            if (override := tracing._override) is not None:  # pyright: ignore[reportPrivateUsage]
                setup = Setup(settings, seen, override[0], None)
            elif not isinstance(provider, trace_api.ProxyTracerProvider):
                # The application's own set-up wins, whatever trace_exporter says.
                _retire_private()
                chosen = app_tracer = provider.get_tracer(SCOPE, __version__)
                setup = Setup(settings, seen, chosen, None)
            elif settings.trace_exporter == "none":
                _retire_private()
                setup = Setup(settings, seen, None, None)
            else:
                private = _private_for(settings)
                setup = Setup(settings, seen, private.tracer, private)
            tracing._app_tracer = app_tracer  # pyright: ignore[reportPrivateUsage]
            if settings is _config.current:
                tracing._setup = setup  # pyright: ignore[reportPrivateUsage]
            return setup.tracer
    except Exception as exc:
        log_internal_error("tracing.setup", exc)
        return None


def _key(settings: Settings) -> tuple[str, str, str | None]:
    return (settings.trace_exporter, settings.tracking_uri, settings.experiment_name)


def _private_for(settings: Settings) -> Private:
    global _private, _atexit_registered
    key = _key(settings)
    if _private is not None and _private.key == key:
        return _private
    _retire_private()
    provider, processor = _new_provider(*_make_exporter(settings))
    _private = Private(key, provider, processor, provider.get_tracer(SCOPE, __version__))
    if not _atexit_registered:
        atexit.register(_at_exit)
        _atexit_registered = True
    return _private


def _new_provider(exporter: SpanExporter, description: str) -> tuple[TracerProvider, BoundedBatchSpanProcessor]:
    """A private tracer provider exporting through `exporter` with a bounded, counting batch processor."""
    counting = CountingExporter(exporter, description)
    # MLflow takes milliseconds a trace (its per-trace database work), in a local store and behind a tracking server
    # alike: a burst outruns it, so the `mlflow` exporters get a deeper queue unless OTEL_BSP_MAX_QUEUE_SIZE says
    # otherwise (issue 10: at 200 calls a second, a server storing about 130 spans a second dropped 1,392 of 6,001
    # spans from the default queue of 2,048 in 30 s; the memory is in performance.md).
    deep = getattr(exporter, "deep_queue", False) and "OTEL_BSP_MAX_QUEUE_SIZE" not in os.environ
    processor = BoundedBatchSpanProcessor(counting, description, MLFLOW_QUEUE_SIZE if deep else None)
    if (set_backlog := getattr(exporter, "set_backlog", None)) is not None:
        # The prompt-link threads of the mlflow server exporter hold their requests while spans wait (issue 10).
        set_backlog(processor.behind)
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME})
    # shutdown_on_exit=False: the SDK's own atexit hook would wait up to 30 s for a dead endpoint; ours is short.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider, processor


def _make_exporter(settings: Settings) -> tuple[SpanExporter, str]:
    kind = settings.trace_exporter
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        from ._conventions import OpenInferenceExporter

        # sys.stdout as it is now: the SDK's default argument is the one of import time.
        return OpenInferenceExporter(ConsoleSpanExporter(out=sys.stdout)), "the console"
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from ._counters import quiet_retries

        quiet_retries("opentelemetry.exporter.otlp.proto.http.trace_exporter")  # retries counted, not logged
        from ._conventions import OpenInferenceExporter

        exporter = OTLPSpanExporter()
        # OpenInference attributes (Phoenix's input, output, span kind, prompt template) added in the export thread.
        return OpenInferenceExporter(exporter), f"the OTLP endpoint {getattr(exporter, '_endpoint', '?')}"
    from ._mlflow import make_mlflow_exporter

    return make_mlflow_exporter(settings.tracking_uri, settings.experiment_name)


@contextlib.contextmanager
def replay_routing(experiment_name: str | None, *, to_mlflow: bool) -> Generator[bool]:
    """See `promptops.tracing.for_replay`."""
    refresh()
    setup = tracing._setup  # pyright: ignore[reportPrivateUsage]
    settings = get_settings()
    ours = (
        tracing._override is None  # pyright: ignore[reportPrivateUsage]
        and setup is not None
        and setup.private is not None
        and settings.trace_exporter == "mlflow"
    )
    if not ours:  # a test's provider, the application's own, OTLP or the console: theirs to route
        yield False
        return
    if not to_mlflow:  # --no-mlflow: nothing of the replay goes to MLflow
        with tracing.use_provider(None):
            yield False
        return
    from ._mlflow import make_mlflow_exporter

    provider, processor = _new_provider(*make_mlflow_exporter(settings.tracking_uri, experiment_name))
    with _lock:
        _retired.append(weakref.ref(processor))  # flush(), stats() and the exit see it while it works
    try:
        with tracing.use_provider(provider):
            yield True
    finally:
        _drain(processor)


def _drain(processor: BoundedBatchSpanProcessor) -> None:
    """Export everything a replay queued while the exporter makes progress (at most `ATEXIT_MAX`), then stop it.

    The replay's run is finished after this, so its traces are in the store when the run says it is done.
    """
    started = time.monotonic()
    exporter: Any = processor._batch_processor._exporter  # pyright: ignore[reportPrivateUsage]
    while True:
        before = (snapshot()["spans_exported"] + snapshot()["spans_failed"], -processor.queued)
        if processor.force_flush(int(ATEXIT_TIMEOUT * 1000)) or time.monotonic() - started >= ATEXIT_MAX:
            break
        after = (snapshot()["spans_exported"] + snapshot()["spans_failed"], -processor.queued)
        if after == before and not getattr(exporter, "in_flight", 0):
            break
    processor.shutdown(ATEXIT_TIMEOUT)


def _retire_private() -> None:
    """Stop routing spans to our provider; it finishes exporting in the background, bounded."""
    global _private
    old, _private = _private, None
    if old is not None:
        _retired.append(weakref.ref(old.processor))
        _run_bounded(lambda: old.processor.shutdown(5.0), 0.0, "tracing.retire")


def _processors() -> list[BoundedBatchSpanProcessor]:
    with _lock:
        current = [_private.processor] if _private is not None else []
        alive = [processor for ref in _retired if (processor := ref()) is not None]
        _retired[:] = [weakref.ref(processor) for processor in alive if not processor._batch_processor._shutdown]  # pyright: ignore[reportPrivateUsage]
    return current + alive


def flush(timeout: float) -> bool:
    """See `promptops.tracing.flush`."""
    started = time.monotonic()
    deadline = started + timeout
    finished = True
    for processor in _processors():
        remaining = max(deadline - time.monotonic(), 0.0)
        finished = processor.force_flush(int(remaining * 1000)) and finished
    finished = _wait_for_links(deadline) and finished
    if not finished and (error := _counters.last_error) and (exporters := _exporters()):
        # Say now what is known (issue 17): the export in flight has failed attempts and is retrying; its final
        # outcome is counted later (`spans_failed`), when the exporter gives up or gets through.
        counts = stats()
        exporters[0].flush_warning(
            "promptops.flush() returned after %.1f s with %d spans not yet exported to %s: %s. The exporter keeps "
            "retrying in the background; promptops.stats() counts the outcome",
            time.monotonic() - started,
            counts["spans_queued"] + counts["spans_exporting"],
            ", ".join(exporter.description for exporter in exporters),
            error,
        )
    return finished


def shutdown(timeout: float) -> bool:
    """See `promptops.tracing.shutdown`."""
    global _private
    deadline = time.monotonic() + timeout
    with _lock:
        processors = _processors()
        _private = None
        _retired.clear()
        tracing._setup = None  # pyright: ignore[reportPrivateUsage]
    finished = True
    for processor in processors:
        remaining = max(deadline - time.monotonic(), 0.0)
        # Spans first, then the prompt links they queued, then stop: the exporter's own shutdown waits briefly.
        finished = processor.force_flush(int(remaining * 1000)) and finished
    finished = _wait_for_links(deadline, processors) and finished
    for processor in processors:
        remaining = max(deadline - time.monotonic(), 0.0)
        finished = processor.shutdown(remaining) and finished
    return finished


def _wait_for_links(deadline: float, processors: list[BoundedBatchSpanProcessor] | None = None) -> bool:
    """Wait until the exporters sent the prompt links queued so far (the `mlflow` exporter into a server)."""
    finished = True
    for exporter in _exporters(processors):
        finished = exporter.wait_for_links(max(deadline - time.monotonic(), 0.0)) and finished
    return finished


def stats() -> dict[str, int]:
    """See `promptops.tracing.stats`."""
    result = snapshot()
    result["spans_queued"] = sum(processor.queued for processor in _processors())
    exporters = _exporters()
    result["spans_exporting"] = sum(exporter.in_flight for exporter in exporters)
    result["prompt_links_queued"] = sum(exporter.links_pending() for exporter in exporters)
    return result


def _progress() -> tuple[int, int, int]:
    counts = snapshot()
    return (
        counts["spans_exported"] + counts["spans_failed"],
        -sum(p.queued for p in _processors()),
        counts["prompt_links"] + counts["prompt_links_failed"],
    )


def _local_export_running() -> bool:
    return any(exporter.local and exporter.in_flight for exporter in _exporters())


def _exporters(processors: list[BoundedBatchSpanProcessor] | None = None) -> list[CountingExporter]:
    exporters: list[CountingExporter] = []
    for processor in _processors() if processors is None else processors:
        exporter: Any = processor._batch_processor._exporter  # pyright: ignore[reportPrivateUsage]
        if isinstance(exporter, CountingExporter):
            exporters.append(exporter)
    return exporters


def _at_exit() -> None:
    """Export what is queued while the exporter makes progress (bounded), then say what was lost, if anything.

    A dead endpoint costs the exit `ATEXIT_TIMEOUT`; a slow but working store (a sqlite tracking store
    shared by several processes takes seconds for a few thousand spans, and the first batch imports MLflow)
    gets the time it needs, up to `ATEXIT_MAX`. Before issue 10 the exit waited 2 s whatever happened and
    said nothing of what it left.
    """
    try:
        started = time.monotonic()
        told = False
        while True:
            before = _progress()
            if flush(ATEXIT_TIMEOUT) or time.monotonic() - started >= ATEXIT_MAX:
                break
            if _progress() == before and not _local_export_running():
                break
            if not told:
                told = True
                counts = stats()
                logger.warning(
                    "promptops is still exporting %d spans (and linking %d traces to their prompt versions) to %s "
                    "before this process exits (at most %.0f s more; interrupt to abandon them)",
                    counts["spans_queued"] + counts["spans_exporting"],
                    counts["prompt_links_queued"],
                    ", ".join(exporter.description for exporter in _exporters()) or "the exporter",
                    ATEXIT_MAX - (time.monotonic() - started),
                )
    except KeyboardInterrupt:  # the user chose to abandon what is left: say what that was
        pass
    except Exception:  # pragma: no cover - interpreter teardown
        pass
    try:
        report_losses()
    except Exception:  # pragma: no cover - interpreter teardown
        pass


def report_losses() -> None:
    """One WARNING with the process's final span counts if any span was dropped, failed or is still queued."""
    counts = stats()
    in_flight = counts["spans_exporting"]
    lost = counts["spans_dropped"] + counts["spans_failed"] + counts["spans_queued"] + in_flight
    if lost:
        logger.warning(
            "promptops tracing: %d spans lost in this process (%d dropped with the export queue full or after "
            "shutdown, %d in batches the exporter could not deliver, %d still queued and %d being exported at "
            "exit); %d exported",
            lost,
            counts["spans_dropped"],
            counts["spans_failed"],
            counts["spans_queued"],
            in_flight,
            counts["spans_exported"],
        )
    if unlinked := counts["prompt_links_queued"]:
        logger.warning(
            "promptops tracing: %d traces were stored but not linked to their prompt versions before exit (the "
            "prompt filter and the prompt's Traces tab miss them)",
            unlinked,
        )
