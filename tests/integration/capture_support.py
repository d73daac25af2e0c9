"""Helpers for the capture integration tests: a throw-away PostgreSQL database, a TCP proxy we can stop."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def psql(sql: str, database: str = "test") -> str:
    return subprocess.run(
        [
            "psql",
            "-h",
            PG_HOST,
            "-p",
            str(PG_PORT),
            "-U",
            PG_USER,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A uniquely named database, dropped afterwards; yields its name."""
    name = f"promptops_test_{uuid.uuid4().hex[:12]}"
    psql(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def count(url: str, **filters: Any) -> int:
    """How many records of the capture store at `url` match the filters (see `CaptureStore.count`)."""
    from promptops.capture import CaptureStore

    store = CaptureStore.open(url)
    try:
        return store.count(**filters)
    finally:
        store.close()


def pg_url(database: str, port: int = PG_PORT) -> str:
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{port}/{database}"


class TcpProxy:
    """Forwards 127.0.0.1:port to an upstream port; `stop()` refuses and cuts connections, `start()` resumes."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.start()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
