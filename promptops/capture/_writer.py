"""The background writer: a bounded queue drained in batches into the capture store by one daemon thread.

Shaped like OpenTelemetry's `BatchProcessor` (`opentelemetry/sdk/_shared_internal/__init__.py`):

* `put()` is all the application's thread ever does: a length check and a `deque.append`, waking the thread
  only when a batch is ready. When the queue is full the record is dropped and counted by reason; the caller
  never waits, never sees an exception.
* The thread wakes on that event or every `DELAY` seconds, and drains up to `BATCH_SIZE` records per
  transaction. Converting the values (serialisation, redaction) happens here for records whose values were
  immutable at the call (see `CallCapture.submit`), straight into rows of the captures table (`_Rows`).
* Store down: the batch is kept and retried with exponential backoff (`BACKOFF_MIN` to `BACKOFF_MAX`);
  meanwhile the queue fills to its bound and further records are dropped as `store_error`. A WARNING says so
  (at most every `WARN_EVERY` seconds); when the store returns, writing resumes and an INFO line says so.
  A store that rejects specific records (a data error) has the batch retried one record at a time and the
  rejected ones dropped as `store_error`.
* A batch is written in as few statements as the store allows (`CaptureStore.write`), so the writer hands the
  GIL over a few times per batch, and the rows of the next batch are built by a second thread (`_Ahead`) while
  the store takes the current one: beside a CPU-bound thread, building (which needs the GIL) and SQLite's
  `INSERT` (which does not) overlap instead of taking turns (issue 10).
* A watchdog thread (`check_progress`) cuts a store call that has not answered for `STALL_TIMEOUT` seconds (a
  connection open but passing no data) and warns; the batch is retried on a new connection.
* `flush()` and `shutdown()` work to one deadline. An `atexit` hook flushes while records get written (`_at_exit`); SIGTERM and
  multiprocessing children are covered by `promptops._lifecycle` (`on_start`). After `os.fork()` the child
  gets an empty queue, its own thread and its own connections; a fork waits for a SQLite batch being written.
* With the `capture_retention` setting, the thread deletes captured calls older than that when it has nothing to
  write: a batch at a time (`promptops.capture._retention`), writes first, every `PRUNE_EVERY` seconds once
  caught up.
* OpenTelemetry instrumentation is suppressed in the writer thread, so an application that auto-instruments
  SQLAlchemy or psycopg does not trace promptops' own writes.

Drop reasons (`promptops.stats()` keys `captures_dropped_<reason>`): `queue_full` (the writer could not keep
up), `store_error` (the store was down long enough for the queue to fill, or rejected the record),
`encode_error` (a record could not be built; an internal error, logged) and `shutdown` (still queued when the
shutdown deadline passed).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from .. import _fork
from .._errors import log_internal_error
from .._instrumentation import suppress_instrumentation
from .._redact import MASK, maybe_secret, redact_with_defaults, redactor_for
from ._record import canonical_text, column_text, dumps_value, usage_values, uuid7

_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # `dumps_value` of a str (the C function)

if TYPE_CHECKING:
    from .._config import Settings
    from ._store import CaptureStore

__all__ = ["DROP_REASONS", "Pending", "Writer", "flush", "shutdown", "stats", "writer_for"]

logger = logging.getLogger("promptops")

BATCH_SIZE = 512  # the thread is woken when this many wait
MAX_BATCH = 2048  # most records per transaction, when more wait (fewer commits: faster catching up)
DELAY = 0.2  # seconds between drains when fewer than BATCH_SIZE records wait
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
WARN_EVERY = 30.0
EXIT_TIMEOUT = 5.0  # seconds an exiting process waits for a store that writes nothing
EXIT_MAX = 120.0  # seconds it waits at most while records are being written
STALL_TIMEOUT = 30.0  # a store call with no answer this long is cut by the watchdog (a batch takes milliseconds)
WATCH_EVERY = 1.0  # seconds between the watchdog's checks
MAX_TOTAL_FACTOR = 10  # a record's inputs (or output) are cut past this many times capture_max_value_chars of JSON
DROP_REASONS = ("queue_full", "store_error", "encode_error", "shutdown")


class Pending(NamedTuple):
    """One finished call waiting in the queue, as `CallCapture.submit` leaves it for the writer.

    The hot path queues a plain tuple in this field order (building the named tuple there costs about
    0.8 µs a call, more than the rest of `submit()`); the writer unpacks it in this order (`_Rows.build`).
    """

    capture: Any  # the CallCapture: function name, argument binding, tags
    settings: Settings
    prompt: Any  # the Prompt the call used, or None
    args: Any  # positional arguments (a tuple), or the bound arguments converted on the hot path: an `Encoded`, or
    # the JSON text of an `EncodedText`
    kwargs: dict[str, Any]
    bound: bool  # `args` exclude the receiver of a method
    output: Any  # the return value, or an `Encoded`/`EncodedText` of it; ignored when `error` is set
    error: tuple[str, str] | None  # (type name, message) of the exception the call raised
    started_ns: int  # perf_counter_ns() at the call's start
    ended_ns: int
    first_ns: int | None  # a stream's first item
    span: tuple[int, int] | None  # the trace and span ids of the call's span, if one was recording
    wall_ns: int  # time_ns() when it was queued (with the latency: the call's start in Unix time)
    usage: Any  # the `promptops._usage.Usage` the call reported, or None


class _Counters:
    """Process-wide counters (monotonic across writers and settings)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.written = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

    def drop(self, reason: str, count: int = 1) -> None:
        with self.lock:
            self.dropped[reason] += count


counters = _Counters()


def _first_line(exc: BaseException) -> str:
    """A short description of a store failure, without SQL or parameters (`hide_parameters` is on too)."""
    original = getattr(exc, "orig", None)
    try:
        text = str(original if original is not None else exc)
    except Exception:
        text = ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    kind = type(original if original is not None else exc).__name__
    return f"{kind}: {line[:300]}" if line else kind


class Writer:
    """One store's queue and writer thread. Get the one for the current settings with `writer_for()`."""

    def __init__(self, url: str, queue_size: int) -> None:
        """Start the thread; the store is opened by it, on the first batch."""
        self.url = url
        self.queue_size = queue_size
        self.retention: float | None = None  # the capture_retention setting, in seconds (writer_for sets it)
        self.alive = True
        self._rows = _Rows(url.startswith("sqlite"))
        self._init_state()
        self._store: CaptureStore | None = None
        self._start()

    def _init_state(self) -> None:
        self._queue: deque[tuple[Any, ...]] = deque()
        self._held = 0  # records taken from the queue and not yet written: they count against the bound
        self._busy = False
        self._ahead = _Ahead(self._rows)  # builds the next batch's rows while the thread writes the current one
        self._failing = False
        self._stopping = False
        self._abandon = False
        self._lock = threading.Lock()
        # Held while the store is written: a fork waits for it, so no child inherits a connection in the middle
        # of a transaction (SQLite's in-process lock table then says "locked" in the child for good; issue 10).
        self.writing = threading.Lock()
        self.fork_done = threading.Event()  # cleared while a fork waits for `writing`
        self.fork_done.set()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._retry = threading.Event()
        self._last_warning = 0.0
        self._failures_since_warning = 0
        self._store_call_since = 0.0  # monotonic start of the store call in progress (0: none); the watchdog's
        self._cut = 0.0  # the store call the watchdog last cut (by its start), so it is cut once
        self._next_prune = 0.0  # monotonic time of the next retention batch (capture_retention)
        # Set once the thread has imported what it uses: a fork waits for it, since a child whose parent forked
        # in the middle of an import finds that module locked for good (issue 10).
        self.ready = threading.Event()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="promptops-capture-writer", daemon=True)
        _fork.begin()  # here, not in the thread: a fork right after this start waits for its imports too
        try:
            self._thread.start()
        except BaseException:
            _fork.end()
            raise

    # -- the application's side ------------------------------------------------------------------------------

    def put(self, item: tuple[Any, ...]) -> None:
        """Queue one pending record; drop and count it when the queue is full. Never blocks."""
        queue = self._queue
        if len(queue) + self._held >= self.queue_size:
            counters.drop("store_error" if self._failing else "queue_full")
            return
        queue.append(item)
        if len(queue) >= BATCH_SIZE and not self._wake.is_set():
            self._wake.set()

    @property
    def queued(self) -> int:
        """Records waiting to be written (queued and in the batch being written)."""
        return len(self._queue) + self._held

    def flush(self, timeout: float) -> bool:
        """Wait until every record queued so far is written (or dropped), at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        self._retry.set()
        with self._idle:
            while self._queue or self._busy:
                if not self._thread.is_alive():
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
                self._wake.set()
        return True

    def shutdown(self, timeout: float) -> bool:
        """Flush, stop the thread and close the store's connections; records left at the deadline are dropped."""
        deadline = time.monotonic() + timeout
        self.alive = False
        finished = self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._retry.set()
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        self._ahead.stop()
        if self._thread.is_alive():
            # Stuck on the store: the batch it holds is dropped now, at the deadline, so the counts are final
            # when shutdown() returns; the thread touches no counter when the store call comes back.
            self._abandon = True
            finished = False
            if self._held:
                counters.drop("shutdown", self._held)
        left = len(self._queue)
        if left:
            self._queue.clear()
            counters.drop("shutdown", left)
        if not self._thread.is_alive() and self._store is not None:
            try:
                self._store.close()
            except Exception as exc:
                logger.warning("closing the capture store failed: %s", _first_line(exc))
            self._store = None
        return finished

    def prune_soon(self) -> None:
        """Apply `capture_retention` the next time the thread has nothing to write (a new setting, a test)."""
        self._next_prune = 0.0

    def after_fork(self) -> None:
        """In a forked child: an empty queue, new locks, a new thread, the parent's connections forgotten."""
        self._init_state()
        if self._store is not None:
            try:
                self._store.after_fork()
            except Exception:
                self._store = None
        if self.alive:
            self._start()

    # -- the writer thread -------------------------------------------------------------------------------------

    def _run(self) -> None:
        suppress_instrumentation()
        self._import_everything()
        while True:
            try:
                if not self._drain():
                    if self._stopping:
                        return
                    if self._prune_if_due():
                        continue  # more to delete: write what came meanwhile, then the next batch
                    self._wake.wait(DELAY)
                    self._wake.clear()
            except Exception:  # a bug of ours; keep the thread alive for the next batch
                log_internal_error("capture writer")
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()
                time.sleep(BACKOFF_MIN)

    def _import_everything(self) -> None:
        """Import up front what writing needs (the store, SQLAlchemy, the database driver), then say so."""
        try:
            from .. import _serialize  # the one module `build()` needs that `import promptops` leaves out

            del _serialize
            import sqlalchemy as sa

            from ._store import CaptureStore

            del CaptureStore  # imported for its side effect: the module is loaded
            sa.make_url(self.url).get_dialect().import_dbapi()
        except Exception:  # a bad URL or a missing driver: reported when the store is opened
            pass
        finally:
            self.ready.set()
            _fork.end()

    def _drain(self) -> bool:
        """Write one batch; `False` when there was nothing to write (the thread may sleep).

        The rows of the next batch are built by `_Ahead` while this one is written: SQLite runs the `INSERT`
        without the GIL, so beside a CPU-bound thread the two overlap instead of taking turns (issue 10).
        """
        queue = self._queue
        ahead = self._ahead
        with self._idle:
            if not queue and not ahead.held:
                self._busy = False
                self._idle.notify_all()
                return False
            self._busy = True
        try:
            if ahead.held:
                rows = ahead.result()
            else:
                items = self._take()
                self._held = len(items)
                rows = self._rows.build_all(items)
                del items
            following = self._take()
            self._held = len(rows) + len(following)
            if following:
                ahead.build(following)
                del following
            self._write(rows)
        finally:
            self._held = ahead.held
            with self._idle:
                self._busy = ahead.held > 0
                self._idle.notify_all()
        return True

    def _take(self) -> list[tuple[Any, ...]]:
        """Up to `MAX_BATCH` records from the queue (the thread set `_busy` first, so `flush()` waits for them)."""
        items: list[tuple[Any, ...]] = []
        pop = self._queue.popleft
        try:
            for _ in range(MAX_BATCH):
                items.append(pop())
        except IndexError:
            pass
        return items

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        backoff = BACKOFF_MIN
        while rows:
            if self._abandon:
                return  # counted as dropped by shutdown()
            try:
                with self._store_call():
                    store = self._store or self._open()
                    store.write_rows(rows)
            except Exception as exc:
                from ._store import CaptureSchemaError

                if isinstance(exc, CaptureSchemaError):
                    self._failed(exc, len(rows), backoff)
                elif _record_specific(exc) and self._store is not None:
                    self._write_one_by_one(self._store, rows)
                    return
                else:
                    if not _environmental(exc):  # a bug of ours, not the store being down
                        log_internal_error("capture store write", exc)
                    self._failed(exc, len(rows), backoff)
                    self._discard_store()
                if self._stopping and self._abandon:
                    return  # counted as dropped by shutdown()
                self._retry.wait(backoff)
                self._retry.clear()
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if self._abandon:
                return  # shutdown() already counted this batch as dropped
            with counters.lock:
                counters.written += len(rows)
            if self._failing:
                self._failing = False
                logger.info("the capture store %s is reachable again; writing resumed", self._display())
            return

    def _prune_if_due(self) -> bool:
        """Apply `capture_retention` when due: one batch of old captures deleted. `True` when more are left."""
        retention = self.retention
        if retention is None or time.monotonic() < self._next_prune:
            return False
        from ._retention import PRUNE_BATCH, PRUNE_EVERY, prune_batch

        deleted = 0
        try:
            with self._store_call():
                deleted = prune_batch(self._store or self._open(), datetime.timedelta(seconds=retention))
        except Exception as exc:  # the store is down (the next write says so) or a bug of ours; retried later
            if not _environmental(exc):
                log_internal_error("capture retention", exc)
        more = deleted >= PRUNE_BATCH
        self._next_prune = 0.0 if more else time.monotonic() + PRUNE_EVERY
        return more

    def _write_one_by_one(self, store: CaptureStore, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            if self._abandon:
                return  # counted as dropped by shutdown()
            try:
                with self._store_call():
                    store.write_rows([row])
            except Exception as exc:
                counters.drop("store_error")
                self._warn(f"the capture store {self._display()} rejected a record ({_first_line(exc)}); dropped")
            else:
                with counters.lock:
                    counters.written += 1

    @contextlib.contextmanager
    def _store_call(self) -> Generator[None]:
        """A store call: under `writing`, which a fork waiting for it gets first, and watched by the watchdog.

        The thread takes `writing` again as soon as it lets it go (the next batch's rows are built meanwhile), so a
        fork waiting on the lock could wait out `FORK_WAIT` and fork in the middle of a write after all.
        """
        self.fork_done.wait(FORK_WAIT)
        with self.writing:
            self._store_call_since = time.monotonic()
            try:
                yield
            finally:
                self._store_call_since = 0.0

    def check_progress(self, now: float) -> None:
        """The watchdog's check (its own thread): cut a store call that has made no progress for `STALL_TIMEOUT`.

        A connection that stays open but passes no data (a stalled proxy, a half-dead network path) would hold
        the writer forever, and the writer could not even say so (issue 10). Cutting the connection makes the
        write fail; the writer keeps the batch, reconnects and retries it, as after any store failure.
        """
        since = self._store_call_since
        if not since or now - since < STALL_TIMEOUT or self._cut == since:
            return
        self._cut = since
        store = self._store
        cut = store.interrupt() if store is not None else False
        logger.warning(
            "the capture store %s has not answered for %.0fs; %s. %d records wait in the queue (bound "
            "%d); they are written when the store answers again. The application is unaffected",
            self._display(),
            now - since,
            "its connection was cut and the batch will be retried" if cut else "the writer is still waiting for it",
            self.queued,
            self.queue_size,
        )

    def _open(self) -> CaptureStore:
        from ._store import CaptureStore

        self._store = CaptureStore.open(self.url)
        return self._store

    def _discard_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:
                pass

    def _display(self) -> str:
        from ._store import display_url

        return display_url(self.url)

    def _failed(self, exc: BaseException, holding: int, backoff: float) -> None:
        self._failing = True
        self._warn(
            f"the capture store {self._display()} is unavailable ({_first_line(exc)}); {holding + len(self._queue)} "
            f"records wait in the queue (bound {self.queue_size}, then new ones are dropped and counted), retrying "
            f"in {backoff:.1f}s. The application is unaffected"
        )

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        self._failures_since_warning += 1
        if now - self._last_warning >= WARN_EVERY or self._last_warning == 0.0:
            repeated = self._failures_since_warning - 1
            suffix = f" ({repeated} similar failures since the last warning)" if repeated > 0 else ""
            self._last_warning = now
            self._failures_since_warning = 0
            logger.warning("%s%s", message, suffix)


def _environmental(exc: BaseException) -> bool:
    """A failure of the store or its surroundings (unreachable, refused, full disk), not of promptops."""
    from sqlalchemy.exc import SQLAlchemyError

    from ._store import CaptureSchemaError

    return isinstance(exc, (SQLAlchemyError, OSError, CaptureSchemaError))


def _record_specific(exc: BaseException) -> bool:
    """A failure caused by the data of some record (retrying the same batch can never succeed)."""
    from sqlalchemy import exc as sa_exc

    return isinstance(exc, (sa_exc.DataError, sa_exc.IntegrityError)) and not getattr(
        exc, "connection_invalidated", False
    )


_CARD_MIN = 10**12  # as in _serialize: smaller ints cannot be card numbers


def _plain_scalar(value: Any, max_chars: int) -> tuple[bool, Any]:
    """`(True, converted)` for a value `encode` would return as is, or `(False, None)`.

    That is a short ASCII string (redacted by the default patterns), a small int, a finite float, a bool or
    `None`, under the default redaction rules only. The writer's shortcut for the common record (a few short string arguments, a string output): the same
    result as `encode(value, redactor=<default rules>)`, at a third of the cost.
    """
    kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
    if kind is str:
        if len(value) > max_chars or not value.isascii():
            return False, None
        return True, redact_with_defaults(value) if maybe_secret(value) else value
    if kind is int:
        return (True, value) if -_CARD_MIN < value < _CARD_MIN else (False, None)
    if kind is bool or value is None:
        return True, value
    if kind is float and value - value == 0.0:
        return True, value
    return False, None


def _plain_inputs(bound: dict[str, Any], redactor: Any, max_chars: int) -> tuple[dict[str, Any], bool] | None:
    """The shortcut of `_plain_scalar` for a dict of arguments: `(data, redacted)`, or `None` to go the long way."""
    if len(bound) > 16:
        return None
    decisions = redactor.key_decisions
    data: dict[str, Any] = {}
    redacted = False
    for name, value in bound.items():
        if type(name) is not str or len(name) > 128 or not name.isascii():
            return None
        masked, shown = decisions.get(name) or redactor.key(name)
        if masked:
            data[shown] = MASK
            redacted = True
            continue
        ok, converted = _plain_scalar(value, max_chars)
        if not ok:
            return None
        if converted is not value or shown is not name:
            redacted = True
        data[shown] = converted
    return data, redacted


class _Ahead:
    """A thread of the writer's own that builds the rows of the next batch while the writer thread writes one.

    Started on the first batch handed over (a writer that keeps up with its calls never needs it). Row building
    is Python holding the GIL; SQLite's `INSERT` and the wait for the GIL after it are not: done in turn, beside a
    CPU-bound thread, the writer got the GIL a third of the time and left it unused for the rest (issue 10).
    """

    def __init__(self, rows: _Rows) -> None:
        self._rows = rows
        self.held = 0  # records handed over whose rows the writer thread has not taken back yet
        self._items: list[tuple[Any, ...]] = []
        self._built: list[tuple[Any, ...]] = []
        self._failure: BaseException | None = None
        self._job = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def build(self, items: list[tuple[Any, ...]]) -> None:
        """Build the rows of `items` in the background; `result()` returns them. Writer thread only."""
        self.held = len(items)
        self._done.clear()
        if self._stopping:  # a writer stuck past its shutdown came back: no thread to start again
            self._built = self._rows.build_all(items)
            self._done.set()
            return
        self._items = items
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="promptops-capture-rows", daemon=True)
            self._thread.start()
        self._job.set()

    def result(self) -> list[tuple[Any, ...]]:
        """The rows `build()` was asked for, once built. Writer thread only."""
        self._done.wait()
        rows, self._built = self._built, []
        failure, self._failure = self._failure, None
        self.held = 0
        if failure is not None:
            raise failure
        return rows

    def stop(self) -> None:
        """End the thread once it has built what it was given."""
        self._stopping = True
        self._job.set()

    def _run(self) -> None:
        suppress_instrumentation()
        while True:
            self._job.wait()
            self._job.clear()
            if self._stopping and not self._items:
                return
            items, self._items = self._items, []
            try:
                self._built = self._rows.build_all(items)
            except BaseException as exc:  # a bug of ours: raised in the writer thread, which logs it
                self._failure = exc
            del items
            self._done.set()
            if self._stopping:
                return


class _Rows:
    """Turns queued calls into rows of the captures table: column order and values as `_store._row` gives them.

    Straight from the queued tuple to a tuple of strings and numbers: no `CaptureRecord`, no `datetime`, no parse
    and re-dump of JSON the hot path already wrote. The writer does this for every record with a third of the GIL
    beside a CPU-bound thread, so its cost per record sets how many calls a second a busy process can capture
    (issue 10). What depends only on the function, the prompt and the settings is computed once per run of them.
    Rows hold no object the collector tracks, so a batch waiting to be written costs young collections nothing.
    """

    __slots__ = ("_constants", "_key", "_second", "_stamp", "_zone")

    def __init__(self, sqlite: bool) -> None:
        # SQLite stores the text SQLAlchemy's DateTime reads back (naive UTC); PostgreSQL is told the zone.
        self._zone = "" if sqlite else "+00"
        self._key: tuple[Any, Any, Any] = (None, None, None)
        self._constants: tuple[Any, ...] = ()
        self._second = -1
        self._stamp = ""

    def _context(self, capture: Any, settings: Settings, prompt: Any) -> tuple[Any, ...]:
        key = self._key
        if key[0] is capture and key[1] is settings and key[2] is prompt:
            return self._constants
        redactor = redactor_for(settings)
        max_chars = settings.capture_max_value_chars
        self._constants = (
            column_text(capture.function),
            column_text(getattr(prompt, "name", None)),
            getattr(prompt, "version", None),
            column_text(getattr(prompt, "alias", None)),
            column_text(getattr(prompt, "source", None)),
            dumps_value(_record_tags(capture.tags, prompt)),
            column_text(settings.app_version),
            redactor,
            redactor.plain,
            max_chars,
            max_chars * MAX_TOTAL_FACTOR,
        )
        self._key = (capture, settings, prompt)
        return self._constants

    def timestamp(self, unix_ns: int) -> str:
        """`YYYY-MM-DD HH:MM:SS.ffffff` in UTC (with `+00` for PostgreSQL); the text of a second is kept."""
        second, rest = divmod(unix_ns, 1_000_000_000)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{rest // 1000:06d}{self._zone}"

    def build_all(self, items: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows of a batch of queued calls; a call whose row cannot be built is dropped and counted."""
        # Imported here, not with the module: `import promptops` does without the serialiser and orjson (issue 16).
        from .._json import plain_decoder, plain_encoder
        from .._serialize import Encoded, EncodedText, encode

        # The hot path's plain-data text (`EncodedText`) is parsed and written canonically by orjson: 0.6 µs a record
        # against 3.7 µs with the standard library, for the same text (plain data: `_json.plain_encoder`).
        plain = (plain_decoder(), plain_encoder(sort_keys=True))
        build = self.build
        rows: list[tuple[Any, ...]] = []
        for item in items:
            try:
                rows.append(build(item, Encoded, EncodedText, encode, plain))
            except Exception:
                counters.drop("encode_error")
                log_internal_error("capture record")
        return rows

    def build(
        self,
        item: tuple[Any, ...],
        Encoded: Any,
        EncodedText: Any,
        encode: Any,
        plain_json: tuple[Callable[[str], Any], Callable[[Any], str]],
    ) -> tuple[Any, ...]:
        """One queued call as a row: bind, serialise and redact what the hot path left for later."""
        (capture, settings, prompt, args, kwargs, bound, output, error, started_ns, ended_ns, first_ns, span,
         wall_ns, usage) = item  # fmt: skip
        (function, prompt_name, prompt_version, prompt_alias, prompt_source, tags, app_version, redactor, plain,
         max_chars, total) = self._context(capture, settings, prompt)  # fmt: skip
        replayable, reason = True, None
        kind: type[Any] = type(args)  # pyright: ignore[reportUnknownVariableType]
        if kind is str:  # plain data, converted on the hot path: its JSON text (`EncodedText.text`) is what is stored
            inputs_text = args
            data: Any = plain_json[0](inputs_text)
            redacted = False
            canonical = plain_json[1](data)
        else:
            if kind is Encoded:
                inputs: Any = args
            else:
                arguments = capture.bind(args, kwargs, bound)
                shortcut = _plain_inputs(arguments, redactor, max_chars) if plain else None
                inputs = (
                    Encoded(shortcut[0], True, None, shortcut[1])
                    if shortcut is not None
                    else encode(arguments, max_chars=max_chars, redactor=redactor, max_total_chars=total)
                )
            data = inputs.data
            replayable, reason, redacted = inputs.replayable, inputs.reason, inputs.redacted
            inputs_text = dumps_value(data)
            # Flat data with sorted keys (one argument, say) dumps to its canonical text already.
            canonical = inputs_text if _canonical_already(data) else None
        if type(data) is not dict:  # a binder result is always a dict; be safe anyway
            data = {"value": data}
            inputs_text, canonical = dumps_value(data), None
        if canonical is None:
            canonical = canonical_text(data)
        output_text: str | None
        error_type: str | None = None
        error_message: str | None = None
        if error is None:
            kind = type(output)  # pyright: ignore[reportUnknownVariableType]
            if kind is EncodedText:
                output_text = output.text
            elif kind is Encoded:
                output_text, redacted = dumps_value(output.data), redacted or output.redacted
            else:
                ok, converted = _plain_scalar(output, max_chars) if plain else (False, None)
                if ok:
                    redacted = redacted or converted is not output
                else:
                    out = encode(output, max_chars=max_chars, redactor=redactor, max_total_chars=total)
                    converted, redacted = out.data, redacted or out.redacted
                output_text = _encode_str(converted) if type(converted) is str else dumps_value(converted)
        else:
            output_text = None
            error_type, raw_message = error
            message: str = redactor.redact_text(raw_message)
            if len(message) > max_chars:
                message = message[:max_chars] + f"…[truncated {len(message) - max_chars} chars]"
            redacted = redacted or message != raw_message
            error_message = column_text(message)
            error_type = column_text(error_type)
        latency_ns = ended_ns - started_ns
        if latency_ns < 0:
            latency_ns = 0
        start_wall_ns = wall_ns - latency_ns
        trace_id, span_id = _ids(span)
        return (
            uuid7(start_wall_ns),
            self.timestamp(start_wall_ns),
            function,
            prompt_name,
            prompt_version,
            prompt_alias,
            prompt_source,
            inputs_text,
            replayable,
            column_text(reason),
            output_text,
            error_type,
            error_message,
            latency_ns / 1e6,
            (first_ns - started_ns) / 1e6 if first_ns is not None else None,
            trace_id,
            span_id,
            tags,
            app_version,
            hashlib.sha256(canonical.encode()).hexdigest(),
            redacted,
            *(
                _NO_USAGE
                if usage is None
                else usage_values(usage.input_tokens, usage.output_tokens, usage.model, usage.provider)
            ),
        )


_NO_USAGE = (None, None, None, None)


def _canonical_already(data: Any) -> bool:
    """Whether `data`'s compact JSON is its canonical JSON: a dict of scalars whose keys are in order."""
    if type(data) is not dict:
        return False
    previous = ""
    mapping = cast("dict[Any, Any]", data)
    for name, value in mapping.items():
        if type(name) is not str or name < previous or type(value) in _CONTAINERS:
            return False
        previous = name
    return True


_CONTAINERS = frozenset({dict, list, tuple})


def _record_tags(tags: dict[str, str], prompt: Any) -> dict[str, str]:
    """The record's tags: the decorator's, plus the rollout and arm when a running rollout chose the prompt (issue 14)."""
    arm = getattr(prompt, "rollout_arm", None)
    if arm is None:
        return tags
    return {**tags, "promptops.rollout.id": str(prompt.rollout_id), "promptops.rollout.arm": str(arm)}


def _ids(span: Any) -> tuple[str | None, str | None]:
    """Hex trace and span ids from the queued `(trace_id, span_id)`, or an OpenTelemetry `Span` or `SpanContext`."""
    if span is None:
        return None, None
    if type(span) is tuple:
        return f"{span[0]:032x}", f"{span[1]:016x}"
    try:
        context = span.get_span_context() if hasattr(span, "get_span_context") else span
        if not getattr(context, "is_valid", False):
            return None, None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"
    except Exception:
        return None, None


# -- the process's writers ------------------------------------------------------------------------------------

_lock = threading.Lock()
_writers: dict[str, Writer] = {}
# Called (in the starting thread) whenever a writer starts, and in a forked child that has writers: how
# promptops arranges its flush on the exit paths atexit misses (SIGTERM, multiprocessing children; see
# `promptops._lifecycle`, which registers here: the capture package does not import upwards).
on_start: list[Callable[[], None]] = []
# Seconds a fork waits for a SQLite batch being written to finish (see Writer.writing): the one fork bound, at least
# as long as a write can take (SQLite's busy timeout is 30 s). A child that inherits a SQLite connection
# mid-transaction can never write to that file (SQLite's per-process lock table says it is locked); a PostgreSQL
# child opens new connections and is unaffected, so forks do not wait for those.
FORK_WAIT = _fork.FORK_WAIT


def writer_for(settings: Settings) -> Writer:
    """The running writer for `settings.capture` (started on first use; a new one after `shutdown()`)."""
    url = settings.capture
    if url is None:
        raise ValueError("capture is disabled")
    with _lock:
        writer = _writers.get(url)
        if writer is None or not writer.alive:
            writer = _writers[url] = Writer(url, settings.capture_queue_size)
            started = True
        else:
            writer.queue_size = settings.capture_queue_size
            started = False
        if writer.retention != settings.capture_retention:
            writer.retention = settings.capture_retention
            writer.prune_soon()
    if started:
        _run_start_hooks()
    return writer


_watchdog: threading.Thread | None = None


def _watch() -> None:
    """The watchdog thread: every `WATCH_EVERY` seconds, each writer's store call in progress is checked."""
    while True:
        time.sleep(WATCH_EVERY)
        try:
            now = time.monotonic()
            for writer in list(_writers.values()):
                writer.check_progress(now)
        except Exception:  # a bug of ours: keep watching
            log_internal_error("capture watchdog")


def _start_watchdog() -> None:
    global _watchdog
    if _watchdog is None or not _watchdog.is_alive():
        _watchdog = threading.Thread(target=_watch, name="promptops-capture-watchdog", daemon=True)
        _watchdog.start()


def _run_start_hooks() -> None:
    _start_watchdog()
    for hook in on_start:
        try:
            hook()
        except Exception:
            log_internal_error("capture start hook")


def flush(timeout: float = 5.0) -> bool:
    """Write every record captured so far, waiting at most `timeout` seconds in all.

    Returns:
        `True` if every writer drained in time.
    """
    deadline = time.monotonic() + timeout
    finished = True
    for writer in list(_writers.values()):
        finished = writer.flush(max(deadline - time.monotonic(), 0.0)) and finished
    return finished


def shutdown(timeout: float = 5.0) -> bool:
    """Flush and stop every writer, on one deadline; the next captured call starts a new one.

    Returns:
        `True` if everything was written in time.
    """
    deadline = time.monotonic() + timeout
    with _lock:
        writers = list(_writers.values())
        _writers.clear()
    finished = True
    for writer in writers:
        finished = writer.shutdown(max(deadline - time.monotonic(), 0.0)) and finished
    return finished


def stats() -> dict[str, int]:
    """Capture counters of this process (monotonic except `captures_queued`).

    Returns:
        `captures_written`, `captures_dropped` (all reasons), `captures_dropped_<reason>` for each of
        `DROP_REASONS`, and `captures_queued` (waiting now).
    """
    with counters.lock:
        dropped = dict(counters.dropped)
        written = counters.written
    result = {"captures_written": written, "captures_dropped": sum(dropped.values())}
    result.update({f"captures_dropped_{reason}": count for reason, count in dropped.items()})
    result["captures_queued"] = sum(writer.queued for writer in list(_writers.values()))
    return result


_held_at_fork: list[Writer] = []


def _before_fork() -> None:
    """Wait (at most `FORK_WAIT`) for SQLite batches being written.

    A writer thread still importing is waited for by `promptops._fork`, as every start-up the child must not
    inherit half done (`_start` begins that work).
    """
    deadline = time.monotonic() + FORK_WAIT
    for writer in list(_writers.values()):
        if writer.url.startswith("sqlite"):
            writer.fork_done.clear()
            _held_at_fork.append(writer)
            if not writer.writing.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                _held_at_fork.pop().fork_done.set()


def _after_fork_in_parent() -> None:
    while _held_at_fork:
        writer = _held_at_fork.pop()
        writer.writing.release()
        writer.fork_done.set()


def _after_fork_in_child() -> None:
    global _lock, _watchdog
    _watchdog = None  # not running in the child: started again with its writers
    _held_at_fork.clear()  # the child's writers get new locks
    _lock = threading.Lock()
    counters.lock = threading.Lock()
    for writer in list(_writers.values()):
        writer.after_fork()
    if _writers:
        _run_start_hooks()


def _at_exit() -> None:
    """Write what is queued while the store takes it (up to `EXIT_MAX`), then say what is lost, if anything.

    `EXIT_TIMEOUT` seconds without a record written (and no writer still starting) end the wait: a dead store
    costs the exit that much. A store that is merely slow, or a writer still importing its driver on a loaded
    machine, gets the time it needs: a fixed 5 s lost records of a healthy store under load (issue 10).
    """
    try:
        started = time.monotonic()
        while True:
            before = counters.written
            if flush(EXIT_TIMEOUT) or time.monotonic() - started >= EXIT_MAX:
                break
            starting = any(not writer.ready.is_set() for writer in list(_writers.values()))
            if counters.written == before and not starting:
                break
        _report_left()
    except Exception:  # pragma: no cover - never fail an interpreter's exit
        pass


def _report_left() -> None:
    """One WARNING naming what the exit could not write (the records are lost with the process)."""
    for writer in list(_writers.values()):
        if left := writer.queued:
            logger.warning(
                "%d captured calls could not be written to the capture store %s before this process exited and "
                "are lost%s",
                left,
                writer._display(),  # pyright: ignore[reportPrivateUsage]
                " (the store is failing: see the warnings above)" if writer._failing else "",  # pyright: ignore[reportPrivateUsage]
            )


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
