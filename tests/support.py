"""Helpers shared by the unit, integration and fault suites."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "Listener",
    "RayCluster",
    "StalledListener",
    "cli_command",
    "free_port",
    "kill_marked",
    "linked_trace_ids",
    "write_as_older_schema",
]


class Listener:
    """A TCP listener on 127.0.0.1 that hands every accepted connection to `handle`, in its own thread.

    `port=0` takes a free port (`self.port` says which). `handle` runs in the accepting thread: it keeps the
    connection or starts a thread for it, and closing it is its business. `close()` stops accepting.
    """

    def __init__(self, handle: Callable[[socket.socket], None], port: int = 0, *, name: str = "listener") -> None:
        self._handle = handle
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(128)
        self._sock.settimeout(0.2)  # how soon close() is noticed
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=name, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._handle(connection)

    def close(self) -> None:
        """Stop accepting and release the port."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


class StalledListener:
    """A TCP listener on 127.0.0.1 whose accept queue is full, so a client's connect to it stays under way.

    The kernel drops the client's SYN while the queue is full and the client sends it again about a second later:
    long enough to do something to the client in the middle of its connect (`connecting()` says when it is there).
    `serve(answer)` then empties the queue and reports what that client did with its connection (Linux only: the
    connect is watched in `/proc/net/tcp`).
    """

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._fillers = [socket.socket() for _ in range(3)]  # more than a backlog of 0 holds
        for filler in self._fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
        self._filler_ports = {int(filler.getsockname()[1]) for filler in self._fillers}

    def connecting(self) -> bool:
        """Whether a client's connection to this listener is in SYN_SENT, waiting for the queue."""
        remote = f"0100007F:{self.port:04X}"
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[2] == remote and fields[3] == "02" and local_port not in self._filler_ports:
                return True
        return False

    def wait_connecting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.connecting() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.connecting(), "no client started connecting"

    def serve(self, answer: bytes, timeout: float = 10.0) -> list[bytes | str]:
        """Let the waiting client in: what it sent first (`b""`: it closed the connection), then, if it sent a
        request, whether it closed the connection after `answer` (`b"closed after the answer"`) or kept it."""
        for filler in self._fillers:
            filler.close()
        self._sock.settimeout(timeout)
        while True:
            connection, (_, peer) = self._sock.accept()
            with connection:
                if peer in self._filler_ports:
                    continue
                connection.settimeout(5)
                try:
                    first = connection.recv(65536)
                except TimeoutError:
                    return ["open: neither a request nor a close"]
                if not first:
                    return [first]
                connection.sendall(answer)
                try:
                    return [first, connection.recv(65536) or b"closed after the answer"]
                except TimeoutError:
                    return [first, "kept open after the answer"]

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._sock.close()


def write_as_older_schema(engine: Any, records: Iterable[Any]) -> None:
    """Write capture records into a captures table an older promptops made, into the columns it has.

    What that promptops' writer did (`CaptureStore.write` names the current schema's columns, so it cannot).
    """
    import sqlalchemy as sa

    from promptops.capture import _store

    table = sa.Table(_store.captures_table.name, sa.MetaData(), autoload_with=engine)
    names = [column.name for column in _store.captures_table.columns]
    rows = [dict(zip(names, _store._row(record, sqlite=False), strict=True)) for record in records]  # pyright: ignore[reportPrivateUsage]
    with engine.begin() as connection:
        connection.execute(table.insert(), [{key: row[key] for key in table.columns.keys()} for row in rows])


def kill_marked(name: str, value: str) -> int:
    """SIGKILL every process whose environment has `name=value`; how many there were (Linux `/proc`).

    A subprocess killed by its timeout leaves its own children running (an `mlflow server` in a session of its
    own, with its uvicorn workers): they inherited the environment, so a marker set there finds them all.
    """
    marker = f"{name}={value}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if marker in environment:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def cli_command(*arguments: str) -> list[str]:
    """The `promptops` CLI with `arguments`, run by this interpreter, that a SIGINT interrupts as Ctrl-C would.

    Python turns SIGINT into `KeyboardInterrupt` only when it starts with SIGINT at its default: a test runner
    started with SIGINT ignored (a shell's background job, `( pytest & )`) passes that on to its children, which
    would then ignore the test's SIGINT. The child puts Python's own handler back first, as a terminal's would be.
    """
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from promptops.cli import main; sys.exit(main())"
    )
    return [sys.executable, "-c", code, *arguments]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def linked_trace_ids(uri: str, experiment_id: str, prompt: str) -> set[str]:
    """Every trace id MLflow's own filter `prompt = "NAME/V"` finds, page by page (no spans fetched)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found: set[str] = set()
    token: str | None = None
    while True:
        page = client.search_traces(
            locations=[experiment_id],
            filter_string=f'prompt = "{prompt}"',
            max_results=500,
            page_token=token,
            include_spans=False,
        )
        found.update(trace.info.trace_id for trace in page)
        token = page.token
        if not token:
            return found


class RayCluster:
    """A Ray head node on 127.0.0.1 with `cpus` CPUs, in a process group of its own, its session files in `temp_dir`.

    Stopped by killing that group (never `ray stop`, which stops every cluster of the machine). Ray is told the
    machine is no cluster node (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`), so it keeps to 127.0.0.1; a driver
    process needs the same in its environment before it imports Ray.
    """

    def __init__(self, temp_dir: Path, *, cpus: int) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        ray = str(Path(sys.executable).with_name("ray"))
        command = [
            ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
            "--num-cpus", str(cpus), "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp_dir),
            "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
        ]  # fmt: skip
        temp_dir.mkdir(parents=True, exist_ok=True)
        self.log = (temp_dir / "ray-start.log").open("w")
        self.process = subprocess.Popen(
            command,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped by killing that group, and only that
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (temp_dir / "ray-start.log").read_text()
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise AssertionError("the Ray head did not start within 120 s")

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
            if sig is signal.SIGTERM:
                time.sleep(1)  # what the head started goes down with it; SIGKILL whatever is left of the group
        self.log.close()
