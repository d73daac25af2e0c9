"""An httpx client whose requests end at a total deadline, however slowly the server answers.

httpx's timeouts apply to each socket operation: a server that sends one byte of its headers or body every second
keeps a request alive forever (issue 11 measured a refresh stuck for the whole run). Here every connect, read and
write of a request made inside `deadline(seconds)` waits at most until that deadline, and fails with a timeout
once it has passed. The deadline is per thread: each registry fetch runs in its own thread.

A request sent over a kept-alive connection that the server has meanwhile closed (its idle timeout fired as the
request went out) fails without an answer; such a request is sent once more, on a new connection, within the same
deadline. A request that fails on a connection opened for it is not retried: that is the server's answer.

Closing the client closes every connection it opened, including one still connecting: httpx's own close misses
a connection whose connect was under way (that socket then stayed open until the garbage collector found it,
with a `ResourceWarning`), and a fetch in flight may outlive the client that started it (`Resolver.close`).

Imported by `RestRegistry` only, so `import promptops` does not import httpx.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
import time
from collections.abc import Generator, Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["deadline", "deadline_client", "tls_context"]

_local = threading.local()


@contextlib.contextmanager
def deadline(seconds: float) -> Generator[None]:
    """Requests made by this thread inside the block end within `seconds` from now (raising a timeout)."""
    _local.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.at = None


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """`timeout` shortened to what is left before this thread's deadline; `error` once it has passed."""
    at: float | None = getattr(_local, "at", None)
    if at is None:
        return timeout
    remaining = at - time.monotonic()
    if remaining <= 0:  # never 0 for the socket: that would make it non-blocking, not expired
        raise error("the registry request's deadline has passed")
    return remaining if timeout is None else min(timeout, remaining)


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, backend: _Backend) -> None:
        self._stream = stream
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._backend.forget(self)
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        secured = self._stream.start_tls(ssl_context, server_hostname, bounded)  # the same socket, wrapped
        self._backend.forget(self)
        return self._backend.opened(secured)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's sync backend, bounded by the deadline, that knows every connection it opened until it is closed."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()
        self._lock = threading.Lock()
        self._open: set[_Stream] = set()
        self._closed = False

    def opened(self, stream: httpcore.NetworkStream) -> _Stream:
        """`stream` (just connected), tracked until it is closed; closed at once if the client was closed meanwhile."""
        wrapped = _Stream(stream, self)
        with self._lock:
            if not self._closed:
                self._open.add(wrapped)
                return wrapped
        stream.close()
        raise httpcore.ConnectError("the client was closed while connecting")

    def forget(self, stream: _Stream) -> None:
        with self._lock:
            self._open.discard(stream)

    def close(self) -> None:
        """Close every connection still open; one that finishes connecting later is closed as it does."""
        with self._lock:
            self._closed = True
            streams, self._open = list(self._open), set()
        for stream in streams:
            with contextlib.suppress(Exception):  # closing a socket another thread uses: nothing to report
                stream.close()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        _local.connects = getattr(_local, "connects", 0) + 1
        return self.opened(self._backend.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        _local.connects = getattr(_local, "connects", 0) + 1
        return self.opened(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _Transport(httpx.HTTPTransport):
    """httpx's transport (its exception mapping included) over a connection pool with the deadline backend."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(verify=False, trust_env=False)  # builds a pool we replace: the cheap, unverified kind
        # httpx has no parameter for the network backend; `_pool` is the attribute every httpx since 0.18 uses.
        self._backend = _Backend()
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=self._backend)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request`; once more if it went over a reused connection the server had closed (see above)."""
        connects = getattr(_local, "connects", 0)
        try:
            return super().handle_request(request)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            if getattr(_local, "connects", 0) != connects or request.method not in ("GET", "HEAD"):
                raise  # it failed on a new connection (or could change something): no retry
            return super().handle_request(request)

    def close(self) -> None:
        """Close the pool, then any connection the pool no longer knew of (one that was connecting as it closed)."""
        try:
            super().close()
        finally:
            self._backend.close()


def tls_context() -> ssl.SSLContext | None:
    """The TLS context MLflow's settings ask for; `None` for httpcore's default (verifying, certifi's CAs)."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if cert := os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        if os.path.isdir(cert):
            return ssl.create_default_context(capath=cert)
        return ssl.create_default_context(cafile=cert)
    return None


def deadline_client(
    *, headers: dict[str, str], timeout: float, ssl_context: ssl.SSLContext | None, follow_redirects: bool
) -> httpx.Client:
    """An `httpx.Client` whose requests honour `deadline()`; no proxy from the environment, no retries.

    `ssl_context` is used for https URLs only (`None`: httpcore's default, verifying, context).
    """
    return httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(timeout),
        transport=_Transport(ssl_context),
        follow_redirects=follow_redirects,
        trust_env=False,  # a proxy from the environment must not reroute registry reads
    )
