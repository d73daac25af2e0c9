"""A real `mlflow server` subprocess on 127.0.0.1, and the network misbehaviour the integration tests need.

* `MlflowServer`: one server per session (sqlite store in a tmp dir), started with the venv's `mlflow` script in
  its own process group so that stopping it (mid-test, or at teardown) ends uvicorn too.
* `CountingProxy`: an HTTP reverse proxy in front of the server that counts requests at the HTTP level and can
  hold them (a slow server).
* `Blackhole`: a socket on the server's port that accepts connections and never answers.
* `run_python`: a new process (a cold start of an application) that prints one JSON line.

Tests that take the server down carry the `server_outage` marker and run last, so the suite starts the server
at most twice (once more after a blackhole replaced it).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import promptops

from ..support import Listener

START_TIMEOUT = 60.0  # the server takes about 8-15 s to come up here
SERVER_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    # The job runner starts a swarm of huey consumers we have no use for.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "server_outage: the test stops the shared MLflow server (runs last)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Stable sort: outage tests keep their relative order, after every test that wants the server up.
    items.sort(key=lambda item: item.get_closest_marker("server_outage") is not None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: ours without promptops/MLflow settings, telemetry off."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PROMPTOPS_") and key != "MLFLOW_TRACKING_URI" and not key.startswith("PYTEST_")
    }
    env.update(SERVER_ENV)
    env.update(extra)
    return env


class MlflowServer:
    """A real `mlflow server` subprocess; `start()`/`stop()` may be called from tests, any number of times.

    Its backend store is a sqlite file under `root` unless `backend_store_uri` names another (PostgreSQL).
    """

    def __init__(self, root: Path, backend_store_uri: str | None = None, start_timeout: float = START_TIMEOUT) -> None:
        self.root = root
        self.start_timeout = start_timeout
        self.backend_store_uri = backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        script = Path(sys.executable).with_name("mlflow")
        entry = [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]
        return [
            *entry,
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--default-artifact-root",
            str(self.root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def start(self) -> None:
        if self.running:
            return
        assert not port_open(self.port), f"port {self.port} is taken; cannot start the MLflow server"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.root,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends uvicorn's worker too
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._process.poll() is not None:
                self._reap()
                pytest.fail(f"mlflow server exited at start-up:\n{self.log_tail()}", pytrace=False)
            if self._healthy():
                return
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"mlflow server not healthy within {self.start_timeout:g}s:\n{self.log_tail()}", pytrace=False
                )
            time.sleep(0.2)

    def _healthy(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop the server and every process of its group; return once the port refuses connections."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while self._group_alive(process.pid) and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        self._reap()
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _reap(self) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
            self._process = None

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- writing prompts, as another client of the registry would -----------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.url, registry_uri=self.url)
        return self._client

    def register(self, name: str, template: Any, *, alias: str | None = None, **kwargs: Any) -> int:
        version = int(self.client.register_prompt(name=name, template=template, **kwargs).version)
        if alias:
            self.set_alias(name, alias, version)
        return version

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.client.set_prompt_alias(name, alias, version)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """The session's MLflow server. It may be down when a test gets it: use `server` to have it up."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(mlflow_server: MlflowServer) -> MlflowServer:
    """The session's MLflow server, running (restarted if an earlier test stopped it)."""
    mlflow_server.start()
    return mlflow_server


# -- a counting, holdable reverse proxy ----------------------------------------------------------------------


class CountingProxy:
    """Forwards HTTP requests to `upstream_port`, recording each (method, path); `hold()` makes it slow."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()
        self._hold_for = 0.0
        self._slow: dict[str, float] = {}  # path prefix -> seconds every such request is delayed
        self._late: dict[str, float] = {}  # path prefix -> seconds every such answer is held, the request forwarded
        self._lost: dict[str, list[float]] = {}  # path prefix -> holds: requests held, then dropped, not forwarded
        self._closing = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects

            def do_GET(self) -> None:
                proxy.forward(self)

            def do_POST(self) -> None:
                proxy.forward(self)

            def do_PATCH(self) -> None:
                proxy.forward(self)

            def do_DELETE(self) -> None:
                proxy.forward(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a held request: not a failure of the proxy

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)
        self._thread.start()

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((handler.command, handler.path))
        if not self._open.is_set():
            self._open.wait(self._hold_for)
        for prefix, seconds in self._slow.items():
            if handler.path.startswith(prefix):
                time.sleep(seconds)
        with self._lock:
            lost = next(
                (holds.pop(0) for prefix, holds in self._lost.items() if handler.path.startswith(prefix) and holds),
                None,
            )
        if lost is not None:
            time.sleep(lost)
            handler.close_connection = True
            return
        if self._closing:
            handler.close_connection = True
            return
        try:
            response, payload = self.ask_upstream(handler)
            for prefix, seconds in self._late.items():
                if handler.path.startswith(prefix):
                    time.sleep(seconds)
            handler.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            handler.close_connection = True  # upstream down or client gone: drop the connection

    def ask_upstream(self, handler: BaseHTTPRequestHandler) -> tuple[http.client.HTTPResponse, bytes]:
        """Send the handler's request to the server; its response and whole body."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {key: value for key, value in handler.headers.items() if key.lower() not in ("host", "connection")}
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            return response, response.read()
        finally:
            upstream.close()

    def count(self, path_prefix: str) -> int:
        with self._lock:
            return sum(1 for _, path in self.requests if path.startswith(path_prefix))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def hold(self, seconds: float) -> None:
        """Delay every request by up to `seconds` (until `release()`), before forwarding it."""
        self._hold_for = seconds
        self._open.clear()

    def slow(self, path_prefix: str, seconds: float) -> None:
        """Delay every request whose path starts with `path_prefix` by `seconds` (a slower server for those)."""
        self._slow[path_prefix] = seconds

    def answer_late(self, path_prefix: str, seconds: float) -> None:
        """Forward every request whose path starts with `path_prefix` at once, then hold its answer `seconds`."""
        self._late[path_prefix] = seconds

    def lose(self, path_prefix: str, seconds: float) -> None:
        """Hold the next request whose path starts with `path_prefix` `seconds`, then drop it unsent (again: one more)."""
        with self._lock:
            self._lost.setdefault(path_prefix, []).append(seconds)

    def release(self) -> None:
        """Stop delaying; requests being held are forwarded now."""
        self._hold_for = 0.0
        self._open.set()

    def close(self) -> None:
        self._closing = True
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def proxy(server: MlflowServer) -> Iterator[CountingProxy]:
    """A counting proxy in front of the running server; promptops is pointed at `proxy.url` by the test."""
    counting = CountingProxy(server.port)
    try:
        yield counting
    finally:
        promptops.shutdown(timeout=5)  # close promptops' connections to the proxy first
        counting.close()


# -- a server that accepts and never answers ---------------------------------------------------------------


class Blackhole:
    """Listens on `port`, accepts every connection and never sends a byte."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted = 0
        self._connections: list[socket.socket] = []
        self._listener = Listener(self._keep, port, name="blackhole")

    def _keep(self, connection: socket.socket) -> None:
        self._connections.append(connection)
        self.accepted += 1

    def close(self) -> None:
        self._listener.close()
        for connection in self._connections:
            connection.close()


# -- a new process ------------------------------------------------------------------------------------------


def run_python(code: str, *args: str, cwd: Path, timeout: float = 90) -> dict[str, Any]:
    """Run `code` in a new interpreter (an application starting cold); it prints its result as JSON last."""
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    assert completed.returncode == 0 and lines, (
        f"child exited {completed.returncode}\nstdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    )
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = completed.stderr
    return result


_RESOLVE = """
import json, sys, time

import promptops

args = json.loads(sys.argv[1])
promptops.configure(tracking_uri=args["uri"], cache_dir=args["cache_dir"], registry_timeout=args["timeout"])
result = {}
started = time.monotonic()
try:
    if args["preload"]:
        prompt = promptops.preload([args["name"]])[args["name"]]
    else:
        @promptops.track(prompt=args["name"], fallback=args["fallback"])
        def call(*, prompt):
            return prompt

        prompt = call()
    result.update(source=prompt.source, version=prompt.version, template=prompt.template)
except promptops.PromptUnavailableError as exc:
    result.update(error_type=type(exc).__name__, error=str(exc))
result["elapsed"] = time.monotonic() - started
result["mlflow_imported"] = "mlflow" in sys.modules
print(json.dumps(result))
"""


def resolve_in_new_process(
    uri: str,
    name: str,
    *,
    cache_dir: Path,
    fallback: str | None = None,
    preload: bool = False,
    timeout: float = 1.0,
) -> dict[str, Any]:
    """Resolve `name` (default alias) in a new process: `source`/`version`/`template`, or `error_type`/`error`.

    Also reports `elapsed` (seconds inside the resolving call) and whether the process imported mlflow.
    """
    args = {
        "uri": uri,
        "name": name,
        "cache_dir": str(cache_dir),
        "fallback": fallback,
        "preload": preload,
        "timeout": timeout,
    }
    return run_python(_RESOLVE, json.dumps(args), cwd=cache_dir.parent)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A capture store URL: a SQLite file, then a throw-away PostgreSQL database (dropped afterwards)."""
    from .capture_support import pg_url, postgres_database

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'captures.db'}"
    else:
        with postgres_database() as database:
            yield pg_url(database)
            promptops.shutdown(timeout=10)  # close our connections before the database is dropped
