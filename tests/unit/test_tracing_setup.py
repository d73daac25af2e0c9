"""Where spans go (issue 3): the application's provider if it set one, else promptops' private exporter.

Real OpenTelemetry SDK throughout. The global tracer provider can be set once per process, so tests that set
it run in a new interpreter.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import promptops
from promptops import tracing

from ..support import StalledListener

STATS_KEYS = {
    "spans_exported",
    "spans_dropped",
    "spans_failed",
    "export_failures",
    "export_retries",
    "prompt_links",
    "prompt_links_failed",
    "spans_queued",
    "spans_exporting",
    "prompt_links_queued",
}


def run_child(code: str, timeout: float = 120) -> dict[str, object]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PROMPTOPS_", "OTEL_", "PYTEST_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes the handshake) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_stats_keys_exist_before_and_after_the_first_span() -> None:
    assert STATS_KEYS <= set(tracing.stats())
    assert STATS_KEYS <= set(promptops.stats())
    promptops.configure(trace_exporter="console")
    assert tracing.tracer() is not None
    assert STATS_KEYS <= set(promptops.stats())
    assert all(isinstance(value, int) for value in tracing.stats().values())


def test_none_means_no_tracer() -> None:
    promptops.configure(trace_exporter="none")
    assert tracing.tracer() is None
    assert tracing.tracer() is None  # the cached answer too


def test_tracer_is_cached_per_settings_and_rebuilt_on_configure() -> None:
    promptops.configure(trace_exporter="console")
    first = tracing.tracer()
    assert first is not None and tracing.tracer() is first
    promptops.configure(trace_exporter="none")
    assert tracing.tracer() is None
    promptops.configure(trace_exporter="console")
    assert tracing.tracer() is not None


def test_console_prints_the_span(capsys: pytest.CaptureFixture[str]) -> None:
    promptops.configure(trace_exporter="console")
    tracer = tracing.tracer()
    assert tracer is not None
    with tracer.start_as_current_span("console-span", attributes={"promptops.prompt.name": "summarize"}):
        pass
    assert tracing.flush(10)
    out = capsys.readouterr().out
    assert '"name": "console-span"' in out
    assert '"promptops.prompt.name": "summarize"' in out
    assert '"service.name": "promptops-app"' in out


def test_service_name_from_otel_service_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    promptops.configure(trace_exporter="console")
    tracer = tracing.tracer()
    assert tracer is not None
    tracer.start_span("named").end()
    assert tracing.flush(10)
    assert '"service.name": "checkout"' in capsys.readouterr().out


APP_PROVIDER = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import promptops
from promptops import tracing

memory = InMemorySpanExporter()
app_provider = TracerProvider()
app_provider.add_span_processor(SimpleSpanProcessor(memory))
result = {}
if MODE == "before":
    trace.set_tracer_provider(app_provider)
    promptops.configure(trace_exporter=EXPORTER)
else:  # promptops decides first (nothing set), then the application sets its provider
    promptops.configure(trace_exporter=EXPORTER)
    result["before"] = repr(type(tracing.tracer()).__name__)
    trace.set_tracer_provider(app_provider)
tracer = tracing.tracer()
app_tracer = trace.get_tracer("app")
with app_tracer.start_as_current_span("app-request"):
    with tracer.start_as_current_span("tracked-call", attributes={"promptops.prompt.name": "p"}):
        pass
promptops.configure(trace_exporter="otlp")  # a settings change must not take the spans away either
with tracing.tracer().start_as_current_span("after-configure"):
    pass
promptops.flush(5)
spans = {span.name: span for span in memory.get_finished_spans()}
call = spans["tracked-call"]
result.update(
    names=sorted(spans),
    scope=[call.instrumentation_scope.name, call.instrumentation_scope.version],
    version=promptops.__version__,
    parent_is_app=call.parent.span_id == spans["app-request"].context.span_id,
    same_provider=trace.get_tracer_provider() is app_provider,
    private_built=__import__("promptops.tracing._provider").tracing._provider._private is not None,
    queued=promptops.stats()["spans_queued"],
)
print(json.dumps(result))
"""


@pytest.mark.parametrize("exporter", ["mlflow", "none"])
def test_application_provider_is_used_and_never_replaced(exporter: str) -> None:
    result = run_child(f"MODE = 'before'\nEXPORTER = {exporter!r}\n" + APP_PROVIDER)
    assert result["names"] == ["after-configure", "app-request", "tracked-call"]
    assert result["scope"] == ["promptops", result["version"]]
    assert result["parent_is_app"] is True
    assert result["same_provider"] is True
    assert result["private_built"] is False


def test_application_provider_set_after_first_call_is_picked_up() -> None:
    result = run_child("MODE = 'after'\nEXPORTER = 'none'\n" + APP_PROVIDER)
    assert result["before"] == repr("NoneType")  # trace_exporter="none": no tracer until the app set one
    assert result["names"] == ["after-configure", "app-request", "tracked-call"]
    assert result["same_provider"] is True


def test_application_provider_replaces_our_private_one() -> None:
    result = run_child("MODE = 'after'\nEXPORTER = 'console'\n" + APP_PROVIDER)
    assert result["before"] == repr("Tracer")
    assert result["names"] == ["after-configure", "app-request", "tracked-call"]
    assert result["private_built"] is False


def test_queue_full_drops_are_counted_and_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{free_port()}/v1/traces")  # refused
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    promptops.configure(trace_exporter="otlp")
    before = tracing.stats()
    tracer = tracing.tracer()
    assert tracer is not None
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="promptops"):
        for index in range(500):
            with tracer.start_as_current_span(f"s{index}"):
                pass
    assert time.monotonic() - started < 10  # generous: a refused endpoint never slows span creation
    after = tracing.stats()
    dropped = after["spans_dropped"] - before["spans_dropped"]
    assert dropped >= 500 - 8 - 4 * 10  # at most the queue and a few batches got out before it filled up
    assert after["spans_queued"] <= 8  # memory stays bounded
    warnings = [record for record in caplog.records if "dropped spans" in record.getMessage()]
    assert len(warnings) == 1  # rate-limited: one line, not one per span
    assert warnings[0].levelno == logging.WARNING
    assert "queue of 8 spans is full" in warnings[0].getMessage()


@pytest.mark.parametrize("exporter", ["otlp", "mlflow"])
def test_flush_and_shutdown_keep_their_deadline_against_a_blackhole(
    exporter: str, blackhole: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{blackhole}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "60")
    promptops.configure(trace_exporter=exporter, tracking_uri=f"http://127.0.0.1:{blackhole}")
    tracer = tracing.tracer()
    assert tracer is not None
    for index in range(20):
        tracer.start_span(f"s{index}").end()
    started = time.monotonic()
    assert tracing.flush(0.5) is False  # the export hangs: flush says so, on time
    assert tracing.flush(0.2) is False  # and a second flush does not queue behind the first
    assert promptops.flush(0.3) is False
    assert promptops.shutdown(0.5) is False
    assert time.monotonic() - started < 5  # generous bound on 1.5 s of deadlines
    # promptops keeps working after shutdown: the next span gets a new exporter.
    promptops.configure(trace_exporter="none")
    assert tracing.tracer() is None


def test_spans_ended_after_shutdown_are_counted_as_dropped() -> None:
    promptops.configure(trace_exporter="console")
    tracer = tracing.tracer()
    assert tracer is not None
    span = tracer.start_span("late")
    assert tracing.shutdown(5)
    before = tracing.stats()["spans_dropped"]
    span.end()
    assert tracing.stats()["spans_dropped"] == before + 1


FORK = """
import json, os, sys
import promptops
from promptops import tracing

promptops.configure(trace_exporter="console")
tracer = tracing.tracer()
tracer.start_span("in-parent").end()
assert tracing.flush(10)
pid = os.fork()
if pid == 0:
    tracing.tracer().start_span("in-child").end()
    ok = tracing.flush(10)
    sys.stdout.flush()
    os._exit(0 if ok and tracing.stats()["spans_exported"] >= 2 else 3)
_, status = os.waitpid(pid, 0)
print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status)}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_exports_its_spans() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PROMPTOPS_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"child_exit": 0}
    assert done.stdout.count('"name": "in-parent"') == 1
    assert done.stdout.count('"name": "in-child"') == 1


def test_import_promptops_does_not_import_the_sdk_until_a_span_is_wanted() -> None:
    result = run_child(
        """
        import json, sys
        import promptops
        promptops.stats(); promptops.flush(1)
        before = "opentelemetry.sdk.trace" in sys.modules
        promptops.configure(trace_exporter="mlflow", tracking_uri="http://127.0.0.1:9")
        promptops.tracing.tracer()
        heavy = sorted(name for name in ("mlflow", "httpx") if name in sys.modules)
        promptops.shutdown(1)
        print(json.dumps({"before": before, "after": "opentelemetry.sdk.trace" in sys.modules, "heavy": heavy}))
        """
    )
    assert result == {"before": False, "after": True, "heavy": []}


def test_otlp_retry_noise_is_counted_not_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 17: against a dead endpoint OpenTelemetry logged "Transient error ... retrying in 1.02s" per retry.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{free_port()}/v1/traces")  # refused
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    promptops.configure(trace_exporter="otlp")
    before = tracing.stats()["export_retries"]
    tracer = tracing.tracer()
    assert tracer is not None
    with caplog.at_level(logging.DEBUG):
        tracer.start_span("s").end()
        deadline = time.monotonic() + 20  # a bounded wait for the first retry, not a timing assertion
        while tracing.stats()["export_retries"] == before:
            assert time.monotonic() < deadline, "no retry counted"
            tracing.flush(0.5)
    assert not [record for record in caplog.records if "Transient error" in record.getMessage()]


def test_flush_against_a_dead_endpoint_says_at_once_what_it_knows(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 17: flush(timeout=2) against a refused endpoint returned with every counter at 0 (the batch was in
    # the exporter, retrying) and OpenTelemetry's own lines went to stderr; the counts came 10 s later.
    port = free_port()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}/v1/traces")  # refused
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "6")
    promptops.configure(trace_exporter="otlp")
    before = tracing.stats()
    tracer = tracing.tracer()
    assert tracer is not None
    with caplog.at_level(logging.DEBUG):
        tracer.start_span("s").end()
        assert promptops.flush(timeout=2) is False
        during = tracing.stats()
        deadline = time.monotonic() + 60  # the exporter gives up after its 6 s; a bounded wait, not a timing claim
        while tracing.stats()["spans_failed"] == before["spans_failed"]:
            assert time.monotonic() < deadline, "the batch never failed"
            time.sleep(0.1)
    after = tracing.stats()
    # Right after the flush: the span is known to be pending, and the failed attempts are known.
    assert during["spans_exporting"] == 1
    assert during["spans_failed"] == before["spans_failed"]
    assert during["export_retries"] > before["export_retries"]
    # Once the exporter gave up: counted, and nothing pending.
    assert after["spans_failed"] - before["spans_failed"] == 1
    assert after["export_failures"] - before["export_failures"] == 1
    assert after["spans_exporting"] == 0
    messages = [record.getMessage() for record in caplog.records]
    assert not [message for message in messages if "Transient error" in message or "Failed to export" in message]
    ours = [record for record in caplog.records if record.name == "promptops"]
    assert [record.levelno for record in ours] == [logging.WARNING, logging.WARNING]
    flushed, lost = (record.getMessage() for record in ours)
    assert "promptops.flush() returned after" in flushed
    assert f"1 spans not yet exported to the OTLP endpoint http://127.0.0.1:{port}/v1/traces" in flushed
    assert "Connection refused" in flushed  # the error of the attempts so far
    assert "could not export 1 spans" in lost and "Connection refused" in lost


@pytest.fixture
def slow_collector() -> Iterator[str]:
    """An OTLP/HTTP endpoint on 127.0.0.1 that takes 50 ms a batch: slower than a loop makes spans."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(0.05)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def otlp_tracer_with_a_small_queue(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> Any:
    """promptops' tracer exporting over OTLP to `endpoint` through a queue of 8 spans, batches of 4."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    promptops.configure(trace_exporter="otlp")
    tracer = tracing.tracer()
    assert tracer is not None
    return tracer


def replay_spans(tracer: Any, count: int) -> None:
    """End `count` spans as a replay's calls would (`replay_active` set)."""
    from promptops.prompts import replay_active

    token = replay_active.set(True)
    try:
        for index in range(count):
            tracer.start_span(f"replayed {index}").end()
    finally:
        replay_active.reset(token)


def test_a_replay_waits_for_room_in_the_export_queue_instead_of_dropping(
    slow_collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 10: a 20,000-record replay made spans faster than a sqlite store took them and dropped half. Replay
    # is promptops' batch job: its spans wait for room. The application's spans never wait: they are dropped.
    tracer = otlp_tracer_with_a_small_queue(monkeypatch, slow_collector)
    before = tracing.stats()
    replay_spans(tracer, 100)
    assert promptops.flush(60)
    replayed = tracing.stats()
    assert replayed["spans_dropped"] == before["spans_dropped"]
    assert replayed["spans_exported"] - before["spans_exported"] == 100
    for index in range(100):  # the application's own calls: never held up, dropped and counted
        tracer.start_span(f"application {index}").end()
    assert tracing.stats()["spans_dropped"] > replayed["spans_dropped"]


def test_a_replay_does_not_wait_for_a_failing_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    # The replay's wait for room is for a slow exporter, not a dead one: once an export failed, its spans are
    # dropped and counted at once (else every call of a replay against a dead endpoint would wait the full bound).
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    tracer = otlp_tracer_with_a_small_queue(monkeypatch, f"http://127.0.0.1:{free_port()}/v1/traces")  # refused
    from promptops.tracing import _provider

    monkeypatch.setattr(_provider, "REPLAY_WAIT", 1.0)  # a wait per span, if it happened, shows within the bound
    before = tracing.stats()
    started = time.monotonic()
    replay_spans(tracer, 100)
    assert time.monotonic() - started < 45  # generous; 100 spans each waiting out the (1 s) bound take 100 s
    assert tracing.stats()["spans_dropped"] - before["spans_dropped"] >= 50


def test_the_server_exporter_opens_no_connection_after_shutdown() -> None:
    # A link thread still running at shutdown (past its close wait) made a new httpx client nobody closed: its
    # socket's ResourceWarning, raised at garbage collection inside a later test, failed CI.
    from promptops.tracing._counters import ExportFailed
    from promptops.tracing._mlflow import MlflowHttpExporter

    exporter = MlflowHttpExporter("http://127.0.0.1:9", None)
    exporter._http()  # pyright: ignore[reportPrivateUsage] - made on first use, as in the export thread
    exporter.shutdown()
    with pytest.raises(ExportFailed, match="shut down"):
        exporter._http()  # pyright: ignore[reportPrivateUsage]
    assert exporter._client is None  # pyright: ignore[reportPrivateUsage]


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="watches the connect in Linux's /proc/net/tcp")
def test_the_server_exporter_closes_a_connection_still_connecting_at_shutdown() -> None:
    # A link thread past its close wait may be connecting as shutdown() closes the client: httpx's close did not
    # reach that connection, which then sent its request and stayed open until the garbage collector found it.
    from promptops.tracing._counters import ExportFailed
    from promptops.tracing._mlflow import MlflowHttpExporter

    stalled = StalledListener()
    exporter = MlflowHttpExporter(stalled.url, None, timeout=30)
    outcome: list[object] = []

    def link() -> None:  # what a link thread does
        try:
            outcome.append(exporter._request("GET", "/health"))  # pyright: ignore[reportPrivateUsage]
        except ExportFailed as exc:
            outcome.append(exc)

    thread = threading.Thread(target=link)
    try:
        thread.start()
        stalled.wait_connecting(30)
        exporter.shutdown()
        seen = stalled.serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        thread.join(30)
    finally:
        exporter.shutdown()
        stalled.close()
    assert seen == [b""], seen  # closed as soon as it connected: no request sent, no connection kept
    assert outcome and isinstance(outcome[0], ExportFailed), outcome


@pytest.mark.parametrize(
    ("exporter", "uri", "capacity"),
    [
        ("mlflow", "http://127.0.0.1:9", 20_000),  # a tracking server: a burst outruns it too (issue 10)
        ("mlflow", "sqlite:///unused.db", 20_000),
        ("otlp", "http://127.0.0.1:9", 2_048),  # OpenTelemetry's default
    ],
)
def test_the_mlflow_exporters_queue_a_burst(
    exporter: str, uri: str, capacity: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTEL_BSP_MAX_QUEUE_SIZE", raising=False)
    promptops.configure(trace_exporter=exporter, tracking_uri=uri)
    assert tracing.tracer() is not None
    setup = tracing._setup  # pyright: ignore[reportPrivateUsage]
    assert setup is not None and setup.private is not None
    assert setup.private.processor.queue_capacity == capacity
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "1000")  # the standard variable still decides
    promptops.configure(trace_exporter=exporter, tracking_uri=uri, experiment_name="other")
    assert tracing.tracer() is not None
    setup = tracing._setup  # pyright: ignore[reportPrivateUsage]
    assert setup is not None and setup.private is not None
    assert setup.private.processor.queue_capacity == 1000
