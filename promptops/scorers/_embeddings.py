"""Embedding caches for the semantic scorer: in memory for the process, on disk across processes.

Both are keyed by (model id, SHA-256 of the text) and hold the normalised float32 embedding. Encoding a
sentence with MiniLM on a CPU costs milliseconds; reading it back costs microseconds, so re-scoring the same
baseline outputs (every replay of a dataset compares against the same captured outputs) costs nothing after
the first time: in the same process from memory, in the next `promptops replay` from
`<cache_dir>/embeddings.db` (SQLite). A failing disk cache (read-only directory, corrupt file) is logged once
and skipped: scores never depend on it.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vector = npt.NDArray[np.float32]

__all__ = ["DISK_CACHE_FILE", "DISK_CACHE_MAX_ROWS", "MEMORY_CACHE_BYTES", "DiskCache", "MemoryCache", "disk_cache"]

logger = logging.getLogger("promptops.scorers")

MEMORY_CACHE_BYTES: Final = 128 * 1024 * 1024
"""Budget of the in-memory cache: about 87,000 MiniLM embeddings (384 floats)."""
DISK_CACHE_FILE: Final = "embeddings.db"
"""File name of the disk cache, in the `cache_dir` setting's directory."""
DISK_CACHE_MAX_ROWS: Final = 100_000
"""Embeddings kept on disk (about 160 MB with MiniLM); the oldest are dropped past it."""
_SCHEMA_VERSION = 1
_CHUNK = 500  # parameters per `IN (...)` query, well below SQLite's limit on every build


class MemoryCache:
    """A thread-safe LRU of embeddings within a byte budget."""

    def __init__(self, max_bytes: int = MEMORY_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[tuple[str, bytes], Vector] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get_many(self, model: str, digests: Iterable[bytes]) -> dict[bytes, Vector]:
        """The cached embeddings among `digests` (marked as recently used).

        Args:
            model: The model id.
            digests: SHA-256 digests of the texts.

        Returns:
            Digest to embedding, for those found.
        """
        found: dict[bytes, Vector] = {}
        with self._lock:
            for digest in digests:
                vector = self._items.get((model, digest))
                if vector is not None:
                    self._items.move_to_end((model, digest))
                    found[digest] = vector
        return found

    def put_many(self, model: str, vectors: dict[bytes, Vector]) -> None:
        """Add embeddings, evicting the least recently used past the budget.

        Args:
            model: The model id.
            vectors: Digest to embedding.
        """
        with self._lock:
            for digest, vector in vectors.items():
                vector.flags.writeable = False  # shared by every caller from now on
                previous = self._items.pop((model, digest), None)
                if previous is not None:
                    self._bytes -= previous.nbytes
                self._items[(model, digest)] = vector
                self._bytes += vector.nbytes
            while self._bytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)


class DiskCache:
    """Embeddings in a SQLite file, one short connection per operation (nothing to close, fork-safe)."""

    def __init__(self, path: Path, max_rows: int = DISK_CACHE_MAX_ROWS) -> None:
        self.path = path
        self.max_rows = max_rows
        self._ready = False
        self._broken = False
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._setup(connection)
                    self._ready = True
        return connection

    @staticmethod
    def _setup(connection: sqlite3.Connection) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):  # written by another promptops version: it is only a cache
            connection.execute("DROP TABLE IF EXISTS embeddings")
        connection.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer in another process
        connection.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (id INTEGER PRIMARY KEY, model TEXT NOT NULL, "
            "digest BLOB NOT NULL, vector BLOB NOT NULL, UNIQUE (model, digest))"
        )
        connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _failed(self, exc: BaseException) -> None:
        if not self._broken:
            self._broken = True
            logger.warning(
                "the embedding cache %s is unusable (%s); semantic scores are computed without it",
                self.path,
                exc,
            )

    def get_many(self, model: str, digests: Sequence[bytes]) -> dict[bytes, Vector]:
        """The stored embeddings among `digests`; empty when the cache is unusable.

        Args:
            model: The model id.
            digests: SHA-256 digests of the texts.

        Returns:
            Digest to embedding, for those found.
        """
        if self._broken or not digests or not self.path.exists():
            return {}
        import numpy as np

        found: dict[bytes, Vector] = {}
        try:
            with closing(self._connect()) as connection:
                for start in range(0, len(digests), _CHUNK):
                    chunk = digests[start : start + _CHUNK]
                    rows = connection.execute(
                        "SELECT digest, vector FROM embeddings WHERE model = ? AND digest IN "
                        f"({', '.join('?' * len(chunk))})",
                        (model, *chunk),
                    ).fetchall()
                    for digest, blob in rows:
                        found[digest] = np.frombuffer(blob, dtype=np.float32)
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            return {}
        return found

    def put_many(self, model: str, vectors: dict[bytes, Vector]) -> None:
        """Store embeddings (a no-op when the cache is unusable); the oldest rows go past `max_rows`.

        Args:
            model: The model id.
            vectors: Digest to embedding.
        """
        if self._broken or not vectors:
            return
        try:
            if not self.path.exists():  # new, or deleted since: set it up again
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._ready = False
            with closing(self._connect()) as connection:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    connection.executemany(
                        "INSERT OR IGNORE INTO embeddings (model, digest, vector) VALUES (?, ?, ?)",
                        [(model, digest, vector.tobytes()) for digest, vector in vectors.items()],
                    )
                    # Row ids only grow, so the span of ids bounds the row count, read in O(1).
                    low, high = connection.execute("SELECT min(id), max(id) FROM embeddings").fetchone()
                    if high is not None and high - low + 1 > self.max_rows:
                        connection.execute("DELETE FROM embeddings WHERE id <= ?", (high - self.max_rows,))
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)


_disk_caches: dict[Path, DiskCache] = {}
_disk_lock = threading.Lock()


def disk_cache(directory: Path) -> DiskCache:
    """The process's `DiskCache` for a cache directory.

    Args:
        directory: The `cache_dir` setting.

    Returns:
        The cache in `directory / DISK_CACHE_FILE`.
    """
    path = Path(directory) / DISK_CACHE_FILE
    with _disk_lock:
        cache = _disk_caches.get(path)
        if cache is None:
            cache = _disk_caches[path] = DiskCache(path)
        return cache
