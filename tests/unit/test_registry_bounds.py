"""A hostile or broken registry server cannot hold a fetch past its deadline nor fill memory (issue 11).

The server here is a real HTTP server on 127.0.0.1 that misbehaves on purpose: it drips its answer a byte at a
time (each read returns well within httpx's per-read timeout, so only a total deadline ends the request), or
answers with far more bytes than any prompt version holds. Malformed answers and templates are refused as
`RegistryError`, which the resolver treats as "registry unavailable" (disk copy, then `fallback=`).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptops import Prompt
from promptops.prompts._registry import MAX_RESPONSE_BYTES, RegistryError, RestRegistry, prompt_from_tags

from ..support import Listener, StalledListener

TIMEOUT = 1.0
# Generous for a loaded machine, far below what the hostile server would take (DRIP_SECONDS).
LATE = TIMEOUT + 8.0
DRIP_SECONDS = 60.0


def version_body(template: Any = "Hello {{ name }}") -> bytes:
    tags = [{"key": "mlflow.prompt.is_prompt", "value": "true"}, {"key": "mlflow.prompt.text", "value": template}]
    return json.dumps({"model_version": {"name": "p", "version": "3", "tags": tags}}).encode()


class HostileServer:
    """Answers every request the way `mode` says: drip, drip-headers, huge, huge-chunked, or json:<body>."""

    def __init__(self) -> None:
        self.mode = "drip"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self.requests = 0
        self._listener = Listener(self._start_answer, name="hostile-registry")
        self.port = self._listener.port
        self.url = f"http://127.0.0.1:{self.port}"

    def _start_answer(self, connection: socket.socket) -> None:
        self.connections += 1
        thread = threading.Thread(target=self._answer, args=(connection,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _answer(self, connection: socket.socket) -> None:
        mode = self.mode
        try:
            with connection:
                connection.recv(65536)  # the request (small, one read)
                self.requests += 1
                if mode == "close":  # closes every connection without an answer
                    return
                body = version_body()
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                if mode == "drip":  # headers at once, then the body a byte at a time
                    connection.sendall(head.encode())
                    self._drip(connection, body)
                elif mode == "drip-headers":  # not even the status line at once
                    self._drip(connection, head.encode() + body)
                elif mode == "huge":
                    size = MAX_RESPONSE_BYTES * 4
                    connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                    self._send_zeros(connection, size)
                elif mode == "huge-chunked":  # no length announced: only counting stops it
                    connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    chunk = b"1" * 65536
                    for _ in range(MAX_RESPONSE_BYTES * 4 // len(chunk)):
                        if self._stop.is_set():
                            return
                        connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    connection.sendall(b"0\r\n\r\n")
                elif mode == "idle-close":
                    # Keeps the connection alive after its answer, but has closed it by the time the next request
                    # arrives on it: a server whose idle timeout fired as the client reused the connection.
                    connection.sendall(head.encode() + body)
                    connection.settimeout(5)
                    if connection.recv(65536):
                        self.requests += 1
                elif mode.startswith("json:"):
                    # A keep-alive server, as MLflow's is: closing after one answer without saying so raced the
                    # client's next request on the reused connection (ECONNRESET in a loaded full run).
                    payload = mode.removeprefix("json:").encode()
                    answer = f"HTTP/1.1 200 OK\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload
                    connection.sendall(answer)
                    connection.settimeout(5)
                    while not self._stop.is_set() and connection.recv(65536):  # the next request, or the close
                        connection.sendall(answer)
        except OSError:
            pass  # the client gave up: what we want

    def _drip(self, connection: socket.socket, data: bytes) -> None:
        interval = DRIP_SECONDS / len(data)
        for index in range(len(data)):
            if self._stop.wait(interval):
                return
            connection.sendall(data[index : index + 1])

    def _send_zeros(self, connection: socket.socket, size: int) -> None:
        chunk = b"0" * 65536
        sent = 0
        while sent < size and not self._stop.is_set():
            connection.sendall(chunk)
            sent += len(chunk)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    try:
        yield server
    finally:
        server.close()


def timed_fetch(registry: RestRegistry) -> tuple[BaseException | Prompt, float]:
    started = time.monotonic()
    try:
        outcome: BaseException | Prompt = registry.fetch("p", ("alias", "production"))
    except RegistryError as exc:
        outcome = exc
    return outcome, time.monotonic() - started


@pytest.mark.parametrize("mode", ["drip", "drip-headers"])
def test_a_dripping_answer_ends_at_the_deadline(hostile: HostileServer, mode: str) -> None:
    hostile.mode = mode
    registry = RestRegistry(hostile.url, timeout=TIMEOUT)
    try:
        outcome, elapsed = timed_fetch(registry)
    finally:
        registry.close()
    assert isinstance(outcome, RegistryError), outcome
    assert f"no complete answer within {TIMEOUT:g}s" in str(outcome)
    assert TIMEOUT * 0.9 <= elapsed < LATE, elapsed


@pytest.mark.parametrize("mode", ["huge", "huge-chunked"])
def test_an_oversized_answer_is_refused(hostile: HostileServer, mode: str) -> None:
    hostile.mode = mode
    registry = RestRegistry(hostile.url, timeout=30)  # the size limit, not the clock, must be what stops it
    try:
        outcome, elapsed = timed_fetch(registry)
    finally:
        registry.close()
    assert isinstance(outcome, RegistryError), outcome
    assert "larger than 4 MiB" in str(outcome)
    assert elapsed < 30


def test_the_deadline_leaves_a_good_answer_alone(hostile: HostileServer) -> None:
    hostile.mode = "json:" + version_body().decode()
    registry = RestRegistry(hostile.url, timeout=TIMEOUT)
    try:
        for _ in range(3):  # a reused connection starts a new deadline each time
            outcome, _ = timed_fetch(registry)
            assert isinstance(outcome, Prompt) and outcome.template == "Hello {{ name }}", outcome
    finally:
        registry.close()


@pytest.mark.parametrize(
    "body",
    [
        '{"model_version": {"version": "3", "tags": "not a list"}}',
        '{"model_version": {"version": "3", "tags": [1, 2]}}',
        '{"model_version": "nope"}',
        "[1, 2, 3]",
        '{"model_version": {"version": "3", "tags": ' + "[" * 100_000 + "]" * 100_000 + "}}",
    ],
)
def test_a_malformed_answer_is_a_registry_error(hostile: HostileServer, body: str) -> None:
    hostile.mode = "json:" + body
    registry = RestRegistry(hostile.url, timeout=5)
    try:
        outcome, _ = timed_fetch(registry)
    finally:
        registry.close()
    assert isinstance(outcome, RegistryError), outcome


CHAT = {"mlflow.prompt.is_prompt": "true", "_mlflow_prompt_type": "chat"}


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ({**CHAT, "mlflow.prompt.text": '{"role": "user", "content": "x"}'}, "dict, not text or a list"),
        ({**CHAT, "mlflow.prompt.text": '["just text", 3]'}, "chat message 0 is str"),
        ({**CHAT, "mlflow.prompt.text": '[{"content": "x"}]'}, "chat message 0 has no role"),
        ({**CHAT, "mlflow.prompt.text": '[{"role": "user"}]'}, "chat message 0 has no content"),
        ({**CHAT, "mlflow.prompt.text": "42"}, "int, not text"),
        ({**CHAT, "mlflow.prompt.text": "[" * 100_000}, "malformed prompt tag"),
        (
            {"mlflow.prompt.is_prompt": "true", "mlflow.prompt.text": "hi", "_mlflow_prompt_model_config": "[1]"},
            "model config is list",
        ),
    ],
)
def test_a_malformed_version_is_a_registry_error(tags: dict[str, str], problem: str) -> None:
    with pytest.raises(RegistryError, match="malformed") as info:
        prompt_from_tags("p", "3", tags, alias="production")
    assert problem in str(info.value)


def test_a_malformed_version_number_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="version number"):
        prompt_from_tags("p", "three", {"mlflow.prompt.is_prompt": "true", "mlflow.prompt.text": "x"}, alias=None)


def test_a_malformed_cached_copy_is_refused() -> None:
    good = Prompt(name="p", version=1, template=[{"role": "user", "content": "{{ q }}"}]).to_dict()
    assert Prompt.from_dict(good).template == good["template"]
    for template in ([1, 2], [{"content": "x"}], {"role": "user"}):
        with pytest.raises(ValueError):
            Prompt.from_dict({**good, "template": template})


def test_a_reused_connection_the_server_closed_is_retried_once() -> None:
    # Issue 11: a kept-alive connection the server closed as the next refresh went out cost that refresh (the
    # stale copy was served until the next TTL). The request is sent once more, on a new connection.
    server = HostileServer()
    server.mode = "idle-close"
    registry = RestRegistry(server.url, timeout=LATE)
    try:
        first = registry.fetch("p", ("alias", "production"))
        second = registry.fetch("p", ("alias", "production"))  # over the connection the server closes
        assert (first.version, second.version) == (3, 3)
        assert (server.connections, server.requests) == (2, 3)  # the closed connection's request, then a new one
    finally:
        registry.close()
        server.close()


def test_a_request_failing_on_a_new_connection_is_not_retried() -> None:
    server = HostileServer()
    server.mode = "close"
    registry = RestRegistry(server.url, timeout=LATE)
    try:
        with pytest.raises(RegistryError):
            registry.fetch("p", ("alias", "production"))
        assert (server.connections, server.requests) == (1, 1)
    finally:
        registry.close()
        server.close()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="watches the connect in Linux's /proc/net/tcp")
def test_closing_the_registry_while_it_connects_closes_that_connection_too() -> None:
    # A fetch in flight outlives the registry that started it (`Resolver.close` on reconfigure or shutdown). httpx's
    # close did not reach a connection still connecting: once connected it sent its request, kept the connection,
    # and the socket stayed open until the garbage collector found it (a ResourceWarning in whatever test ran then).
    stalled = StalledListener()
    registry = RestRegistry(stalled.url, timeout=LATE)
    fetched: list[tuple[BaseException | Prompt, float]] = []
    fetch = threading.Thread(target=lambda: fetched.append(timed_fetch(registry)))
    try:
        fetch.start()
        stalled.wait_connecting(LATE)
        registry.close()
        body = version_body()
        seen = stalled.serve(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        fetch.join(LATE)
    finally:
        registry.close()
        stalled.close()
    assert seen == [b""], seen  # closed as soon as it connected: no request sent, no connection kept
    assert fetched and isinstance(fetched[0][0], RegistryError), fetched
    assert "closed" in str(fetched[0][0])
