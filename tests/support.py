"""Helpers shared by the unit, integration and fault suites."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Listener", "write_as_older_schema"]


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
