"""Helpers of the fault suite: records to write, stores to write them to, child processes to kill."""

from __future__ import annotations

import contextlib
import datetime
import json
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from promptops.capture import CaptureRecord, input_hash, uuid7

from ..integration.capture_support import count
from ..integration.conftest import child_env
from ..support import Listener

__all__ = [
    "APP",
    "FaultProxy",
    "app",
    "count",
    "fleet_reports",
    "make_record",
    "make_records",
    "run_child",
    "start_fleet",
]

ROOT = Path(__file__).resolve().parents[2]


APP = """
import os, signal, sys, threading, time
import promptops
from promptops.prompts import Prompt

promptops.configure(
    capture="sqlite:///{db}", trace_exporter="none", tracking_uri="sqlite:///{mlflow}", cache_dir="{cache}",
    cache_ttl=86400.0,
)

@promptops.track(prompt="faults-app", fallback="Summarize {{{{text}}}}")
def summarize(text, *, prompt):
    return prompt.format(text=text)
"""


def app(tmp_path: Path, body: str, db: Path | None = None) -> str:
    """An application capturing into `db` (`tmp_path/captures.db`): the tracked `summarize` of `APP`, then `body`."""
    db = db or tmp_path / "captures.db"
    header = APP.format(db=db, mlflow=tmp_path / "mlflow.db", cache=tmp_path / "cache")
    return header + body


FLEET_APP = """
import json, sys, time
import promptops

# No registry (a refused port): the fallback template serves; only the capture store is shared.
promptops.configure(capture=sys.argv[1], trace_exporter="none", tracking_uri="http://127.0.0.1:9")

@promptops.track(prompt="summarize", fallback="Summarize {{ text }}")
def summarize(text, *, prompt):
    return text.upper()

worker, calls, pause = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
for i in range(calls):
    summarize(f"process {worker} call {i}")
    if pause and i % 100 == 99:
        time.sleep(pause)
finished = promptops.flush(300)
print(json.dumps({"flushed": finished, **promptops.stats()}))
"""


@contextlib.contextmanager
def start_fleet(
    url: str, cwd: Path, processes: int, calls: int, *, pause: float = 0.0
) -> Iterator[list[subprocess.Popen[str]]]:
    """Start `processes` application processes at once, each making `calls` tracked calls captured into `url`.

    Each pauses `pause` seconds every 100 calls (0: a tight loop), flushes, and prints its `flushed` and
    `promptops.stats()` as one JSON line (`fleet_reports` reads them). On leaving, whatever still runs is killed
    and every process is reaped.
    """
    script = cwd / "fleet_app.py"
    script.write_text(FLEET_APP)
    children: list[subprocess.Popen[str]] = []
    try:
        for worker in range(processes):
            children.append(
                subprocess.Popen(
                    [sys.executable, str(script), url, str(worker), str(calls), str(pause)],
                    cwd=cwd,
                    env=child_env(PYTHONPATH=str(ROOT)),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        yield children
    finally:
        for child in children:
            child.kill()
            child.communicate()  # reap it and close its pipes


def fleet_reports(children: list[subprocess.Popen[str]], outputs: list[tuple[str, str]]) -> list[dict[str, int]]:
    """The JSON report of each finished process of `start_fleet`, from its (stdout, stderr); each exited 0."""
    reports: list[dict[str, int]] = []
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def make_record(
    at_ns: int, *, function: str = "faults:summarize", text: str = "some text", prompt_version: int = 2, index: int = 0
) -> CaptureRecord:
    """One record of a call started at `at_ns` (ns since the epoch), as the writer would build it."""
    inputs = {"text": text}
    return CaptureRecord(
        id=uuid7(at_ns),
        timestamp=datetime.datetime.fromtimestamp(at_ns / 1e9, tz=datetime.timezone.utc),
        function=function,
        prompt_name="summarize",
        prompt_version=prompt_version,
        prompt_alias="production",
        prompt_source="cache",
        inputs=inputs,
        replayable=True,
        replay_reason=None,
        output=f"summary {index}",
        error_type=None,
        error_message=None,
        latency_ms=1.5,
        first_item_ms=None,
        trace_id=None,
        span_id=None,
        tags={},
        app_version=None,
        input_hash=input_hash(inputs),
    )


def make_records(count: int, *, function: str = "faults:summarize", text: str = "some text") -> list[CaptureRecord]:
    """`count` distinct records, as the writer would build them."""
    now = time.time_ns()
    return [make_record(now + i, function=function, text=f"{text} {i}", index=i) for i in range(count)]


def run_child(code: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `code` (dedented) in a new interpreter, in `cwd`; its output as text."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=child_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of `upstream`, whose connections can be made to misbehave.

    `mode` applies to every connection, current and new: `"pass"` forwards, `"blackhole"` keeps connections open
    and throws away whatever passes (a stalled network path: nothing arrives, nothing fails), `"drip"` forwards
    a few bytes at a time, slowly, `"down"` closes new connections at once (a server that is not there).
    `reset()` aborts every current connection (TCP RST).
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = Listener(self._connect, name="fault-proxy")
        self.port = self._listener.port

    def reset(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            # A close() alone leaves the connection up while a pump thread is blocked in recv() on it (the call
            # holds the socket): shutdown() wakes it first, so the peer sees the reset now, not a silent path.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._listener.close()
        self.reset()

    def _connect(self, client: socket.socket) -> None:
        if self.mode == "down":
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, upstream]
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.mode == "blackhole":
                    continue
                if self.mode == "drip":
                    for start in range(0, len(data), 64):
                        target.sendall(data[start : start + 64])
                        time.sleep(0.01)
                    continue
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
