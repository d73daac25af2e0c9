"""Capture stores: SQLite and PostgreSQL through SQLAlchemy Core, with a schema version and migrations.

Tables: `promptops_schema` (one row: the schema version), `promptops_captures` (one row per call; JSON
values as text; since version 3 with the call's token usage) and, since version 2, `promptops_datasets` / `promptops_dataset_records` (named, immutable
datasets; read and written by `promptops.datasets`). `CaptureStore.open(url)` applies the pending migrations in order, once, under a lock that
makes two processes opening the same store at once safe: PostgreSQL's `pg_advisory_xact_lock`, SQLite's
`BEGIN IMMEDIATE`. A store written by a newer promptops (a schema version this one does not know) is refused
with `CaptureSchemaError` rather than written to.

SQLite runs in WAL mode with `synchronous=NORMAL` (a crash of the machine may lose the last transactions,
never corrupt the file) and a busy timeout, so several processes (a forked web server's workers) share one file.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError

from .._errors import PromptopsError
from .._files import create_private_file
from ._record import CaptureRecord, column_text, dumps_value, usage_values

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["SCHEMA_VERSION", "CaptureSchemaError", "CaptureStore", "display_url", "sqlite_path"]

_metadata = sa.MetaData()

schema_table = sa.Table(
    "promptops_schema",
    _metadata,
    sa.Column("version", sa.Integer, nullable=False),
)


def _v1_columns() -> list[sa.Column[Any]]:
    """The captures table's columns as schema version 1 made them (new objects on each call: one table each)."""
    return [
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("function", sa.String(512), nullable=False),
        sa.Column("prompt_name", sa.String(256)),
        sa.Column("prompt_version", sa.Integer),
        sa.Column("prompt_alias", sa.String(256)),
        sa.Column("prompt_source", sa.String(16)),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("replayable", sa.Boolean, nullable=False),
        sa.Column("replay_reason", sa.Text),
        sa.Column("output", sa.Text),
        sa.Column("error_type", sa.String(512)),
        sa.Column("error_message", sa.Text),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("first_item_ms", sa.Float),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("span_id", sa.String(16)),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("app_version", sa.String(256)),
        sa.Column("input_hash", sa.String(64), nullable=False),
        sa.Column("redacted", sa.Boolean, nullable=False),
    ]


def _usage_columns() -> list[sa.Column[Any]]:
    """Version 3: the tokens a call reported, and its model and provider (issue 14: cost per rollout arm)."""
    return [
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("model", sa.String(256)),
        sa.Column("provider", sa.String(64)),
    ]


def _capture_indexes() -> list[sa.Index]:
    return [
        sa.Index("promptops_captures_timestamp", "timestamp"),
        sa.Index("promptops_captures_function", "function", "timestamp"),
        sa.Index("promptops_captures_prompt", "prompt_name", "prompt_version"),
        sa.Index("promptops_captures_input_hash", "input_hash"),
    ]


# Added columns go at the end, where `ALTER TABLE ... ADD COLUMN` puts them in a migrated store.
captures_table = sa.Table("promptops_captures", _metadata, *_v1_columns(), *_usage_columns(), *_capture_indexes())


datasets_table = sa.Table(
    "promptops_datasets",
    _metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("filters", sa.Text, nullable=False),  # JSON object: how the dataset was made (provenance)
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
)

dataset_records_table = sa.Table(
    "promptops_dataset_records",
    _metadata,
    # No foreign key: SQLite enforces none without a pragma; the dataset's row and its records are written
    # and deleted together, in one transaction (promptops.datasets).
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),  # 0-based: records keep their order
    sa.Column("id", sa.Text, nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),  # JSON values as text, as in the captures table
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("expected", sa.Text, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
    # Since version 4: retention asks, per old capture, whether a dataset refers to it (issue 15).
    sa.Index("promptops_dataset_records_id", "id"),
)


def _migrate_v1(connection: Connection) -> None:
    """Version 1: the captures table and its indexes, with version 1's columns (later ones add theirs)."""
    sa.Table(captures_table.name, sa.MetaData(), *_v1_columns(), *_capture_indexes()).create(
        connection, checkfirst=True
    )


def _migrate_v2(connection: Connection) -> None:
    """Version 2: the dataset tables (a version 1 store gains them in place; its captures are untouched)."""
    datasets_table.create(connection, checkfirst=True)
    dataset_records_table.create(connection, checkfirst=True)


def _migrate_v3(connection: Connection) -> None:
    """Version 3: the usage columns on the captures table; existing calls read back with no usage.

    Nullable without a default: a catalogue change on both backends, however many rows the table holds.
    """
    present = {column["name"] for column in sa.inspect(connection).get_columns(captures_table.name)}
    for column in _usage_columns():
        if column.name not in present:
            kind = column.type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(f"ALTER TABLE {captures_table.name} ADD COLUMN {column.name} {kind}")


def _migrate_v4(connection: Connection) -> None:
    """Version 4: an index on the capture ids dataset records were made from (what retention looks up)."""
    for index in dataset_records_table.indexes:
        index.create(connection, checkfirst=True)


# Ordered: MIGRATIONS[i] takes the schema from version i to i + 1. Append only; never edit a shipped one.
MIGRATIONS: Sequence[Callable[[Connection], None]] = (_migrate_v1, _migrate_v2, _migrate_v3, _migrate_v4)
SCHEMA_VERSION = len(MIGRATIONS)
STATEMENT_TIMEOUT = 60.0  # seconds a PostgreSQL statement of a capture write may run
_FETCH_CHUNK = 500  # ids per `IN (...)`: well under SQLite's 32,766 bound parameters
_ADVISORY_LOCK = 0x70726F6D70746F70  # "promptop": serialises migrations across PostgreSQL clients


class CaptureSchemaError(PromptopsError):
    """The capture store's schema is newer than this promptops understands (upgrade promptops to use it)."""


def display_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid URL>"


def sqlite_path(url: str) -> str | None:
    """The database file of a SQLite URL; `None` for other backends and in-memory databases.

    Raises:
        sqlalchemy.exc.ArgumentError: `url` is not a valid URL.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def _set_wal(cursor: Any) -> None:
    """Switch the connection's database to WAL, retrying while it is locked.

    On a new file that other processes open at the same moment, SQLite can answer "database is locked" at once:
    the switch needs an exclusive lock, and the busy handler does not always apply to it.
    """
    import sqlite3
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_events(engine: Engine) -> None:
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transactions into our own hands (the sqlite3 module's implicit BEGIN never covers DDL), per
        # SQLAlchemy's "Serializable isolation / Savepoints / Transactional DDL" recipe for pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout=30000")
            _set_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    def _begin(connection: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that upgrades later can fail with
        # SQLITE_BUSY at once, whatever the busy timeout, when another process writes meanwhile.
        immediate = connection.get_execution_options().get("promptops_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    event.listen(engine, "connect", _connect)  # pyright: ignore[reportUnknownMemberType]
    event.listen(engine, "begin", _begin)  # pyright: ignore[reportUnknownMemberType]


def _row(record: CaptureRecord, sqlite: bool) -> tuple[Any, ...]:
    """The record as a row of `captures_table`, columns in order, as the driver takes them."""
    timestamp: Any = record.timestamp
    if sqlite:  # the text SQLAlchemy's SQLite DateTime stores and parses back (naive UTC)
        timestamp = f"{timestamp:%Y-%m-%d %H:%M:%S}.{timestamp.microsecond:06d}"
    error_type = record.error_type
    return (
        record.id,
        timestamp,
        column_text(record.function),
        column_text(record.prompt_name),
        record.prompt_version,
        column_text(record.prompt_alias),
        column_text(record.prompt_source),
        dumps_value(record.inputs),
        record.replayable,
        column_text(record.replay_reason),
        None if error_type is not None and record.output is None else dumps_value(record.output),
        column_text(error_type),
        column_text(record.error_message),
        record.latency_ms,
        record.first_item_ms,
        record.trace_id,
        record.span_id,
        dumps_value(record.tags),
        column_text(record.app_version),
        record.input_hash,
        record.redacted,
        *usage_values(record.input_tokens, record.output_tokens, record.model, record.provider),
    )


class CaptureStore:
    """A capture store: where records are written and read back. Open one with `CaptureStore.open(url)`.

    Thread-safe (SQLAlchemy's connection pool); after `os.fork()` call `after_fork()` in the child.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        """Use `CaptureStore.open(url)`; this does not migrate."""
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(engine.dialect.paramstyle)
        columns = len(captures_table.columns)
        self._insert_head = (
            f"INSERT INTO {captures_table.name} ({', '.join(column.name for column in captures_table.columns)}) VALUES "
            if marker is not None and self.dialect == "sqlite"
            else None
        )
        self._values = f"({', '.join([marker or '?'] * columns)})"
        # SQLite rows per statement: as many as it takes parameters for (32,766 by default since SQLite 3.32,
        # 999 before), read on the first write.
        self._rows_per_statement = 0
        self._statements: dict[int, str] = {}
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()  # PostgreSQL driver connections (interrupt())
        if self.dialect == "postgresql":
            event.listen(engine, "connect", self._connected)  # pyright: ignore[reportUnknownMemberType]

    # -- opening -----------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> CaptureStore:
        """Connect to a store, creating it or applying pending migrations (idempotent, safe concurrently).

        Args:
            url: A SQLAlchemy URL: `sqlite:///path/captures.db` (the directory is created) or
                `postgresql+psycopg://user@host/db`.

        Returns:
            The store, at `SCHEMA_VERSION`.

        Raises:
            CaptureSchemaError: the store was written by a newer promptops.
            sqlalchemy.exc.SQLAlchemyError: the store cannot be reached or created.
        """
        parsed = sa.make_url(url)
        options: dict[str, Any] = {"hide_parameters": True}  # error messages must not carry captured values
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file:"):
                # Created here with the `file_mode` setting (0600), its directory 0700: SQLite gives the -wal
                # and -shm files the database file's permission (issue 11).
                create_private_file(Path(os.path.abspath(database)))
            options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        elif parsed.get_backend_name() == "postgresql":
            options["pool_pre_ping"] = True
            options["connect_args"] = {
                "connect_timeout": 5,
                "application_name": "promptops-capture",
                # A peer that vanished without closing (a dropped NAT entry, a dead host) is noticed in about
                # 25 s instead of the kernel's two hours (issue 10). A connection that stays up but passes no
                # data is the writer's watchdog's to cut (`interrupt()`).
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
            }
        engine = sa.create_engine(parsed, **options)
        if engine.dialect.name == "sqlite":
            _sqlite_events(engine)
        store = cls(engine, url)
        try:
            store.migrate()
        except BaseException:
            engine.dispose()
            raise
        return store

    def migrate(self) -> int:
        """Apply pending migrations under the store's lock; a no-op when the schema is current.

        Returns:
            How many migrations were applied.

        Raises:
            CaptureSchemaError: the schema version is newer than `SCHEMA_VERSION`.
        """
        with self._write() as connection:
            if self.dialect == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK)))
            schema_table.create(connection, checkfirst=True)
            versions = [row[0] for row in connection.execute(sa.select(schema_table.c.version))]
            current = max(versions) if versions else 0
            if current > SCHEMA_VERSION:
                raise CaptureSchemaError(
                    f"the capture store {display_url(self.url)} has schema version {current}, newer than this "
                    f"promptops supports ({SCHEMA_VERSION}); upgrade promptops to write to it, or point "
                    "capture= at another store"
                )
            for version in range(current, SCHEMA_VERSION):
                MIGRATIONS[version](connection)
            if current != SCHEMA_VERSION or len(versions) != 1:
                connection.execute(schema_table.delete())
                connection.execute(schema_table.insert().values(version=SCHEMA_VERSION))
            return SCHEMA_VERSION - current

    def schema_version(self) -> int:
        """The schema version recorded in the store (0 for an empty database)."""
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table(schema_table.name):
                return 0
            return connection.execute(sa.select(sa.func.max(schema_table.c.version))).scalar() or 0

    @contextlib.contextmanager
    def _write(self) -> Generator[Connection]:
        """A connection in a write transaction (SQLite: `BEGIN IMMEDIATE`), committed on success."""
        with self.engine.connect() as connection:
            connection = connection.execution_options(promptops_write=True)
            with connection.begin():
                yield connection

    def _connected(self, driver: Any, _record: Any) -> None:
        self._connections.add(driver)

    def interrupt(self) -> bool:
        """Cut every PostgreSQL connection of this store, from another thread: a call waiting on one fails at once.

        For the capture writer's watchdog (a connection that stays open but passes no data would otherwise hold
        the writer forever, in a write or in the pool's ping). The sockets are shut down, not closed: their
        descriptors stay the driver's, which closes them when the failed connections are discarded. SQLite
        writes are bounded by the busy timeout and are left alone.

        Returns:
            Whether a connection was cut.
        """
        cut = False
        for driver in list(self._connections):
            try:
                descriptor = os.dup(driver.pgconn.socket)
            except Exception:  # closed meanwhile
                continue
            with socket.socket(fileno=descriptor) as connection, contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
                cut = True
        return cut

    @contextlib.contextmanager
    def transaction(self) -> Generator[Connection]:
        """A connection in one write transaction: committed when the block ends, rolled back if it raises.

        On SQLite the write lock is taken up front (`BEGIN IMMEDIATE`), so concurrent writers wait for each
        other (up to the busy timeout) instead of failing half-way.

        Yields:
            The SQLAlchemy connection.
        """
        with self._write() as connection:
            yield connection

    # -- writing -----------------------------------------------------------------------------------------------

    def write(self, records: Iterable[CaptureRecord]) -> int:
        """Insert records in one transaction, in as few driver calls as the backend allows.

        PostgreSQL: one `COPY`. SQLite: multi-row `INSERT` statements of as many rows as its parameter limit
        takes (2 statements for 2,048 records). Not one statement per row (an `executemany`): the driver
        releases and re-takes the GIL around each statement, and beside a CPU-bound thread every re-take can
        wait out a switch interval (5 ms): 2,048 records took seconds and the writer fell behind (issue 10;
        `benchmarks/bench_capture.py` compares them). Straight to the driver: SQLAlchemy's per-row parameter
        processing costs more than SQLite's insert itself.

        Args:
            records: The records.

        Returns:
            How many were written.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the store refused them or cannot be reached; nothing was written.
        """
        sqlite = self.dialect == "sqlite"
        return self.write_rows([_row(record, sqlite) for record in records])

    def write_rows(self, rows: list[tuple[Any, ...]]) -> int:
        """`write()` for rows already in column order: the capture writer's form (it builds no `CaptureRecord`).

        Args:
            rows: One tuple per record, in the columns' order, values as the driver takes them; the timestamp may be
                UTC text (`YYYY-MM-DD HH:MM:SS.ffffff`, with `+00` for other stores than SQLite).

        Returns:
            How many were written.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the store refused them or cannot be reached; nothing was written.
        """
        if not rows:
            return 0
        if self.dialect == "postgresql":
            try:
                with self._write() as connection:
                    # Bounded: a lock held by another session or an overloaded server fails the batch (retried).
                    connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT * 1000)}")
                    self._copy(connection, rows)
            except IntegrityError as exc:
                if not _duplicate_id(exc):
                    raise
                self._write_missing(rows)
            return len(rows)
        with self._write() as connection:
            if self._insert_head is not None:
                per_statement = self._rows_per_statement or self._sqlite_rows_per_statement(connection)
                for start in range(0, len(rows), per_statement):
                    chunk = rows[start : start + per_statement]
                    parameters = tuple(value for row in chunk for value in row)
                    connection.exec_driver_sql(self._statement(len(chunk)), parameters)
            else:
                names = [column.name for column in captures_table.columns]
                connection.execute(captures_table.insert(), [dict(zip(names, _dated(row))) for row in rows])
        return len(rows)

    def _write_missing(self, rows: list[tuple[Any, ...]]) -> None:
        """PostgreSQL: the rows again, skipping ids the store already has (after a COPY refused a duplicate id).

        That happens when a COPY committed but its reply was lost with the connection: the writer retries the
        batch, whose records are already stored. They were delivered, not rejected (issue 10: they used to be
        counted as `store_error`, one by one).
        """
        from sqlalchemy.dialects.postgresql import insert

        names = [column.name for column in captures_table.columns]
        statement = insert(captures_table).on_conflict_do_nothing(index_elements=["id"])
        with self._write() as connection:
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT * 1000)}")
            connection.execute(statement, [dict(zip(names, _dated(row), strict=True)) for row in rows])

    def _copy(self, connection: Connection, rows: list[tuple[Any, ...]]) -> None:
        """PostgreSQL: the rows in one `COPY ... FROM STDIN` (psycopg buffers them; a few GIL hand-offs)."""
        statement = (
            f"COPY {captures_table.name} ({', '.join(column.name for column in captures_table.columns)}) FROM STDIN"
        )
        driver: Any = connection.connection.driver_connection
        error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        try:
            with driver.cursor() as cursor, cursor.copy(statement) as copy:
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
        except error as exc:
            # The driver's own error, as SQLAlchemy would have wrapped it (DataError for a rejected value,
            # OperationalError for a lost connection), so the writer tells them apart.
            raise DBAPIError.instance(
                statement, None, exc, error, hide_parameters=True, dialect=self.engine.dialect
            ) from exc

    def _statement(self, rows: int) -> str:
        """The `INSERT` of `rows` rows (cached: the driver's statement cache then reuses its preparation)."""
        statement = self._statements.get(rows)
        if statement is None:
            statement = self._statements[rows] = f"{self._insert_head}{', '.join([self._values] * rows)}"
        return statement

    def _sqlite_rows_per_statement(self, connection: Connection) -> int:
        import sqlite3

        try:
            driver: Any = connection.connection.driver_connection
            limit = int(driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        except Exception:  # an older sqlite3 module (getlimit is 3.11+): the limit every SQLite version allows
            limit = 999
        self._rows_per_statement = max(limit // len(captures_table.columns), 1)
        return self._rows_per_statement

    # -- reading -----------------------------------------------------------------------------------------------

    @staticmethod
    def _filters(
        function: str | None,
        prompt: str | None,
        version: int | None,
        since: datetime.datetime | None,
        until: datetime.datetime | None,
    ) -> list[Any]:
        columns = captures_table.c
        conditions: list[Any] = []
        if function is not None:
            conditions.append(columns.function == function)
        if prompt is not None:
            conditions.append(columns.prompt_name == prompt)
        if version is not None:
            conditions.append(columns.prompt_version == version)
        if since is not None:
            conditions.append(columns.timestamp >= _utc(since))
        if until is not None:
            conditions.append(columns.timestamp < _utc(until))
        return conditions

    def count(
        self,
        *,
        function: str | None = None,
        prompt: str | None = None,
        version: int | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
    ) -> int:
        """How many records match (the filters are those of `query`)."""
        statement = sa.select(sa.func.count()).select_from(captures_table)
        statement = statement.where(*self._filters(function, prompt, version, since, until))
        with self.engine.connect() as connection:
            return int(connection.execute(statement).scalar() or 0)

    def query(
        self,
        function: str | None = None,
        prompt: str | None = None,
        version: int | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        limit: int | None = None,
        *,
        latest: int | None = None,
    ) -> Iterator[CaptureRecord]:
        """Records matching every filter given, oldest first.

        Args:
            function: `module:qualname` of the tracked function.
            prompt: Prompt name.
            version: Prompt version.
            since: Calls started at or after this instant (naive datetimes are taken as UTC).
            until: Calls started before this instant.
            limit: At most this many records (the oldest).
            latest: Only the `latest` most recent records (still yielded oldest first); the database orders
                and cuts, so the rest are never read.

        Yields:
            The records, in id (time) order.
        """
        conditions = self._filters(function, prompt, version, since, until)
        if latest is not None:
            newest = sa.select(captures_table).where(*conditions).order_by(captures_table.c.id.desc()).limit(latest)
            with self.engine.connect() as connection:
                rows = list(connection.execute(newest).mappings())
            for row in reversed(rows):
                yield _record(row)
            return
        statement = sa.select(captures_table).where(*conditions).order_by(captures_table.c.id)
        if limit is not None:
            statement = statement.limit(limit)
        with self.engine.connect() as connection:
            result = connection.execution_options(yield_per=1000).execute(statement)
            for row in result.mappings():
                yield _record(row)

    def ids(
        self,
        *,
        function: str | None = None,
        prompt: str | None = None,
        version: int | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        dedupe: bool = False,
        latest: int | None = None,
    ) -> list[str]:
        """The ids of the matching records, oldest first, without reading the records (filters as for `query`).

        Args:
            function: `module:qualname` of the tracked function.
            prompt: Prompt name.
            version: Prompt version.
            since: Calls started at or after this instant.
            until: Calls started before this instant.
            dedupe: Only the first (oldest) record per distinct inputs (`input_hash`).
            latest: Only the `latest` most recent of those.

        Returns:
            Record ids in id (time) order: pass a selection of them to `fetch`.
        """
        conditions = self._filters(function, prompt, version, since, until)
        if dedupe:
            firsts = (
                sa.select(sa.func.min(captures_table.c.id).label("id"))
                .where(*conditions)
                .group_by(captures_table.c.input_hash)
                .subquery()
            )
            column, statement = firsts.c.id, sa.select(firsts.c.id)
        else:
            column, statement = captures_table.c.id, sa.select(captures_table.c.id).where(*conditions)
        with self.engine.connect() as connection:
            if latest is None:
                return [str(found) for found in connection.execute(statement.order_by(column)).scalars()]
            newest = connection.execute(statement.order_by(column.desc()).limit(latest)).scalars()
            return [str(found) for found in reversed(list(newest))]

    def fetch(self, ids: Sequence[str]) -> list[CaptureRecord]:
        """The records with these ids, in the order given; ids not in the store are left out."""
        found: dict[str, CaptureRecord] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(ids), _FETCH_CHUNK):
                statement = sa.select(captures_table).where(captures_table.c.id.in_(ids[start : start + _FETCH_CHUNK]))
                for row in connection.execute(statement).mappings():
                    record = _record(row)
                    found[record.id] = record
        return [found[record_id] for record_id in ids if record_id in found]

    def get(self, record_id: str) -> CaptureRecord | None:
        """The record with this id, or `None`."""
        statement = sa.select(captures_table).where(captures_table.c.id == record_id)
        with self.engine.connect() as connection:
            row = connection.execute(statement).mappings().first()
        return _record(row) if row is not None else None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def after_fork(self) -> None:
        """In a forked child: forget the parent's pooled connections without closing them (they are its)."""
        self.engine.dispose(close=False)

    def close(self) -> None:
        """Close pooled connections; the store reconnects if used again."""
        self.engine.dispose()


def _dated(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row with its timestamp as a `datetime`, for a store reached through SQLAlchemy's own types."""
    timestamp = row[1]
    if type(timestamp) is not str:
        return row
    moment = datetime.datetime.fromisoformat(timestamp)
    return (row[0], moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc), *row[2:])


def _duplicate_id(exc: IntegrityError) -> bool:
    """Whether PostgreSQL refused a row because a record with its id is already stored (the primary key)."""
    error: Any = exc.orig
    constraint = getattr(getattr(error, "diag", None), "constraint_name", None)
    return getattr(error, "sqlstate", None) == "23505" and constraint == f"{captures_table.name}_pkey"


def _utc(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def _record(row: Any) -> CaptureRecord:
    timestamp: datetime.datetime = row["timestamp"]
    output_text = row["output"]
    return CaptureRecord(
        id=row["id"],
        timestamp=_utc(timestamp),
        function=row["function"],
        prompt_name=row["prompt_name"],
        prompt_version=row["prompt_version"],
        prompt_alias=row["prompt_alias"],
        prompt_source=row["prompt_source"],
        inputs=json.loads(row["inputs"]),
        replayable=bool(row["replayable"]),
        replay_reason=row["replay_reason"],
        output=json.loads(output_text) if output_text is not None else None,
        error_type=row["error_type"],
        error_message=row["error_message"],
        latency_ms=row["latency_ms"],
        first_item_ms=row["first_item_ms"],
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        tags=json.loads(row["tags"]),
        app_version=row["app_version"],
        input_hash=row["input_hash"],
        redacted=bool(row["redacted"]),
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        model=row["model"],
        provider=row["provider"],
    )
