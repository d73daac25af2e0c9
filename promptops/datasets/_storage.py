"""Named datasets in the capture store: `create`, `load`, `list_datasets`, `delete`.

Two tables, added by the store's schema version 2 (`promptops.capture._store`): `promptops_datasets` (one row
per dataset: source, provenance, creation time, count, fingerprint) and `promptops_dataset_records` (its records
in order, JSON values as text). A dataset is written in one transaction, and never changed afterwards: creating a
name that exists fails with a free name to use instead. SQLAlchemy is imported on first use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import json
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._config import get_settings
from ._errors import DatasetError, DatasetExistsError, DatasetNotFoundError
from ._model import Dataset, DatasetInfo, DatasetRecord, check_name, free_name

if TYPE_CHECKING:
    from ..capture import CaptureStore

__all__ = ["create", "delete", "list_datasets", "load", "open_store", "store_url"]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def store_url(store: str | None) -> str:
    """The store URL given, else the `capture` setting; `DatasetError` when it is empty or capture is off."""
    if store is not None:
        if not store.strip():
            raise DatasetError("the capture store URL is empty; pass one such as sqlite:///.promptops/captures.db")
        return store.strip()
    configured = get_settings().capture
    if configured is None:
        raise DatasetError(
            "capture is disabled (the capture setting is none) and datasets live in the capture store; pass "
            "store=URL, or set PROMPTOPS_CAPTURE to the store's URL, e.g. sqlite:///.promptops/captures.db"
        )
    return configured


def _missing_sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL when it does not exist (reading must not create an empty store)."""
    import sqlalchemy.exc

    from ..capture._store import sqlite_path

    try:
        database = sqlite_path(url)
    except sqlalchemy.exc.ArgumentError:
        raise DatasetError(
            f"invalid capture store URL {url!r}; use e.g. sqlite:///.promptops/captures.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    return None if database is None or Path(database).is_file() else database


@contextlib.contextmanager
def open_store(store: str | CaptureStore | None, *, create: bool) -> Generator[CaptureStore | None]:
    """The capture store to use, opened (and migrated) for the block; closed after unless it was given open.

    Args:
        store: A `CaptureStore`, a URL, or `None` for the `capture` setting.
        create: Whether a missing SQLite file may be created; if not, the block gets `None` for one.

    Yields:
        The store, or `None` when it is a SQLite file that does not exist and `create` is false.

    Raises:
        DatasetError: capture is disabled, the URL is invalid, or the store cannot be opened.
        CaptureSchemaError: the store was written by a newer promptops.
    """
    from ..capture import CaptureStore

    if isinstance(store, CaptureStore):
        yield store
        return
    import sqlalchemy.exc

    from ..capture._store import display_url

    url = store_url(store)
    if not create and _missing_sqlite_file(url) is not None:
        yield None
        return
    try:
        opened = CaptureStore.open(url)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise DatasetError(f"cannot open the capture store {display_url(url)}: {_detail(exc)}") from None
    try:
        yield opened
    finally:
        opened.close()


def _detail(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _where(store: CaptureStore | None, url: str | CaptureStore | None) -> str:
    from ..capture._store import display_url

    if store is not None:
        return display_url(store.url)
    return display_url(store_url(url if isinstance(url, str) else None))


def _utc(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def _names(connection: Any) -> list[str]:
    from ..capture._store import datasets_table

    return [row[0] for row in connection.execute(datasets_table.select().with_only_columns(datasets_table.c.name))]


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL (JSON values escape it; plain columns need this).
    return text.replace("\x00", "\ufffd")


def create(name: str, dataset: Dataset, *, store: str | CaptureStore | None = None) -> Dataset:
    """Save `dataset` under `name` in the capture store, in one transaction. Datasets are immutable.

    ```python
    from promptops import datasets

    greetings = datasets.Dataset("greetings", [datasets.DatasetRecord("1", {"name": "Ada"}, output="Hello, Ada!")])
    saved = datasets.create("greetings-v1", greetings)  # in the capture store; "greetings-v1" is now taken
    assert datasets.load("greetings-v1").records == greetings.records
    ```

    Args:
        name: 1-200 letters, digits, `.`, `_` or `-`. Must not exist yet.
        dataset: The records and provenance (from `from_captures`, `read_file`, `pull`, or built by hand).
        store: A capture store URL or `CaptureStore`; default the `capture` setting. Created if missing.

    Returns:
        The saved dataset: `dataset` with this name and the time it was saved.

    Raises:
        DatasetExistsError: a dataset of this name exists (its `suggestion` is a free name).
        DatasetError: the name is invalid, the dataset is empty, or the store cannot be written (then nothing
            was written).
    """
    check_name(name)
    if not dataset.records:
        raise DatasetError(
            f"dataset {name!r} would have no records; widen the selection (a longer --since, fewer filters) or "
            "import a file with records"
        )
    saved = dataclasses.replace(dataset, name=name, created_at=datetime.datetime.now(datetime.timezone.utc))
    import sqlalchemy.exc

    from ..capture._store import dataset_records_table, datasets_table

    with open_store(store, create=True) as opened:
        assert opened is not None
        where = _where(opened, store)
        records = [
            {
                "dataset": name,
                "position": position,
                "id": record.id,
                "inputs": _dumps(record.inputs),
                "output": _dumps(record.output),
                "expected": _dumps(record.expected),
                "metadata": _dumps(record.metadata),
            }
            for position, record in enumerate(saved.records)
        ]
        created_at = saved.created_at
        if opened.dialect == "sqlite":  # SQLite keeps naive UTC text; read back as UTC
            created_at = created_at.replace(tzinfo=None)
        row = {
            "name": name,
            "source": _clean(saved.source),
            "filters": _dumps(saved.filters),
            "created_at": created_at,
            "count": len(records),
            "fingerprint": saved.fingerprint,
        }
        try:
            with opened.transaction() as connection:
                taken = _names(connection)
                if name in taken:
                    raise _exists(name, taken, where)
                connection.execute(datasets_table.insert().values(**row))
                connection.execute(dataset_records_table.insert(), records)
        except sqlalchemy.exc.IntegrityError as exc:
            # Another process created it between our check and our insert (PostgreSQL; SQLite's write lock
            # serialises the two), or the database refused a row for a reason of its own.
            with opened.engine.connect() as connection:
                taken = _names(connection)
            if name in taken:
                raise _exists(name, taken, where) from None
            raise DatasetError(
                f"cannot write dataset {name!r} to the capture store {where}: {_detail(exc)}; nothing was written"
            ) from None
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise DatasetError(
                f"cannot write dataset {name!r} to the capture store {where}: {_detail(exc)}; nothing was written"
            ) from None
    return saved


def _exists(name: str, taken: list[str], where: str) -> DatasetExistsError:
    suggestion = free_name(name, taken)
    return DatasetExistsError(
        f"dataset {name!r} already exists in {where}; datasets are immutable: save this one under a new name, "
        f"e.g. {suggestion!r}",
        name=name,
        suggestion=suggestion,
    )


def _not_found(name: str, where: str, taken: list[str]) -> DatasetNotFoundError:
    close = difflib.get_close_matches(name, taken, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return DatasetNotFoundError(
        f"no dataset named {name!r} in the capture store {where}; {hint}list them with: promptops datasets list"
    )


def _info(row: Any) -> DatasetInfo:
    return DatasetInfo(
        name=row["name"],
        source=row["source"],
        created_at=_utc(row["created_at"]),
        count=int(row["count"]),
        fingerprint=row["fingerprint"],
        filters=json.loads(row["filters"]),
    )


def load(name: str, *, store: str | CaptureStore | None = None) -> Dataset:
    """A saved dataset, records in their order; its content is checked against its fingerprint.

    Args:
        name: The dataset's name (`promptops datasets list`).
        store: A capture store URL or `CaptureStore`; default the `capture` setting.

    Returns:
        The dataset.

    Raises:
        DatasetNotFoundError: there is no such dataset (or no store at all).
        DatasetError: the store cannot be read, or the dataset was altered outside promptops.
    """
    import sqlalchemy as sa
    import sqlalchemy.exc

    from ..capture._store import dataset_records_table, datasets_table

    with open_store(store, create=False) as opened:
        where = _where(opened, store)
        if opened is None:
            raise _not_found(name, where, [])
        try:
            with opened.engine.connect() as connection, connection.begin():  # one snapshot of both tables
                row = (
                    connection.execute(datasets_table.select().where(datasets_table.c.name == name)).mappings().first()
                )
                if row is None:
                    raise _not_found(name, where, _names(connection))
                info = _info(row)
                columns = dataset_records_table.c
                statement = (
                    sa.select(columns.id, columns.inputs, columns.output, columns.expected, columns["metadata"])
                    .where(columns.dataset == name)
                    .order_by(columns.position)
                )
                records = [
                    DatasetRecord(
                        id=record_id,
                        inputs=json.loads(inputs),
                        output=json.loads(output),
                        expected=json.loads(expected),
                        metadata=json.loads(metadata),
                    )
                    for record_id, inputs, output, expected, metadata in connection.execute(statement)
                ]
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise DatasetError(f"cannot read dataset {name!r} from the capture store {where}: {_detail(exc)}") from None
    if len(records) != info.count:
        raise DatasetError(
            f"dataset {name!r} in {where} should hold {info.count} records but holds {len(records)}; it was changed "
            "outside promptops: delete it and create it again"
        )
    return Dataset(
        name=info.name,
        records=tuple(records),
        source=info.source,
        created_at=info.created_at,
        filters=info.filters,
        fingerprint=info.fingerprint,
    )


def list_datasets(*, store: str | CaptureStore | None = None) -> list[DatasetInfo]:
    """The saved datasets, by name, without their records.

    Args:
        store: A capture store URL or `CaptureStore`; default the `capture` setting.

    Returns:
        One `DatasetInfo` per dataset (none when the store does not exist yet).

    Raises:
        DatasetError: the store cannot be read.
    """
    import sqlalchemy.exc

    from ..capture._store import datasets_table

    with open_store(store, create=False) as opened:
        if opened is None:
            return []
        try:
            with opened.engine.connect() as connection:
                rows = connection.execute(datasets_table.select().order_by(datasets_table.c.name)).mappings().all()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise DatasetError(f"cannot list the datasets of {_where(opened, store)}: {_detail(exc)}") from None
        return [_info(row) for row in rows]


def delete(name: str, *, store: str | CaptureStore | None = None) -> int:
    """Delete a saved dataset and its records (in one transaction). The name can then be used again.

    Datasets are never modified; deleting is for cleaning up. A replay result keeps the fingerprint of what it
    ran on, so a new dataset under an old name cannot pass for the old one.

    Args:
        name: The dataset's name.
        store: A capture store URL or `CaptureStore`; default the `capture` setting.

    Returns:
        How many records it held.

    Raises:
        DatasetNotFoundError: there is no such dataset.
        DatasetError: the store cannot be written.
    """
    import sqlalchemy.exc

    from ..capture._store import dataset_records_table, datasets_table

    with open_store(store, create=False) as opened:
        where = _where(opened, store)
        if opened is None:
            raise _not_found(name, where, [])
        try:
            with opened.transaction() as connection:
                count = connection.execute(
                    datasets_table.select()
                    .with_only_columns(datasets_table.c.count)
                    .where(datasets_table.c.name == name)
                ).scalar()
                if count is None:
                    raise _not_found(name, where, _names(connection))
                connection.execute(dataset_records_table.delete().where(dataset_records_table.c.dataset == name))
                connection.execute(datasets_table.delete().where(datasets_table.c.name == name))
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise DatasetError(f"cannot delete dataset {name!r} from {where}: {_detail(exc)}") from None
        return int(count)
