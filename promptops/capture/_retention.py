"""Retention: delete captured calls older than a cut-off, except those a saved dataset was made from (issue 15).

`promptops captures prune --older-than 30d` calls `prune()` once; the `capture_retention` setting has each
capture writer call `prune_batch()` in its thread, between batches of writes, every `PRUNE_EVERY` seconds.

A dataset holds its own copy of each record (`promptops_dataset_records`), whose `id` is the id of the captured
call it was made from. Captured calls with such an id are kept whatever their age, and the dataset tables are
never touched here: deleting captures never changes a dataset. Feedback given on a deleted call
(`promptops_feedback`, by its capture id or trace id) is deleted with it.

Rows go in batches of `PRUNE_BATCH`, one short transaction each, so a writer (this process's or another's)
waits for at most one batch: a first prune of a year of traffic does not hold the store's write lock for
minutes. On PostgreSQL a batch skips rows another transaction holds (`FOR UPDATE SKIP LOCKED`): two processes
pruning at once do not wait on each other or deadlock.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ._store import CaptureStore

__all__ = ["PRUNE_BATCH", "PRUNE_EVERY", "PruneResult", "prune", "prune_batch"]

PRUNE_BATCH = 2000  # rows per transaction (a few ms on SQLite; a writer waits for at most one batch)
PRUNE_EVERY = 600.0  # seconds between a writer's background prunes, once it has caught up
_CHUNK = 500  # ids per `IN (...)`: well under SQLite's bound parameters


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """What `prune()` did.

    Attributes:
        cutoff: Calls started before this instant were old enough to delete.
        deleted: How many were deleted (with `dry_run`: how many would be).
        kept: How many of the old ones were kept because a saved dataset was made from them.
    """

    cutoff: datetime.datetime
    deleted: int
    kept: int


def _cutoff(older_than: datetime.timedelta | datetime.datetime) -> datetime.datetime:
    if isinstance(older_than, datetime.timedelta):
        return datetime.datetime.now(datetime.timezone.utc) - older_than
    if older_than.tzinfo is None:
        return older_than.replace(tzinfo=datetime.timezone.utc)
    return older_than.astimezone(datetime.timezone.utc)


def _old(cutoff: datetime.datetime, *, referenced: bool) -> Any:
    """The condition on captures older than `cutoff` that a dataset does (or does not) refer to.

    `[NOT] EXISTS` on `promptops_dataset_records.id` (indexed since schema version 4), not `[NOT] IN`: PostgreSQL
    cannot turn `NOT IN (subquery)` into an anti-join (a NULL would change its meaning), and hashes or rescans
    every dataset record for each batch; `NOT EXISTS` is an anti-join on the index on both backends.
    """
    import sqlalchemy as sa

    from ._store import captures_table, dataset_records_table

    referred = sa.exists().where(dataset_records_table.c.id == captures_table.c.id)
    return sa.and_(captures_table.c.timestamp < cutoff, referred if referenced else ~referred)


def _feedback_table() -> Any:
    """`promptops_feedback` as far as retention needs it (`promptops.rollout` owns the table and creates it)."""
    import sqlalchemy as sa

    return sa.table("promptops_feedback", sa.column("target", sa.String))


def _delete_batch(connection: Connection, dialect: str, cutoff: datetime.datetime, batch: int) -> int:
    """Delete up to `batch` old captures and the feedback given on them; how many captures were deleted.

    Feedback is keyed by a call's capture id or its trace id (`promptops.feedback`). Rows on a deleted capture's
    id go with it; rows on its trace id go unless another stored capture has that trace (a tracked call inside
    another shares the trace, and a dataset may keep one of them).
    """
    import sqlalchemy as sa

    from ._store import STATEMENT_TIMEOUT, captures_table

    chosen = sa.select(captures_table.c.id, captures_table.c.trace_id).where(_old(cutoff, referenced=False))
    chosen = chosen.limit(batch)
    if dialect == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT * 1000)}")
        chosen = chosen.with_for_update(skip_locked=True)
    rows = connection.execute(chosen).all()
    if not rows:
        return 0
    ids = [row[0] for row in rows]
    traces = sorted({row[1] for row in rows if row[1] is not None})
    deleted = 0
    for start in range(0, len(ids), _CHUNK):
        result = connection.execute(
            sa.delete(captures_table).where(captures_table.c.id.in_(ids[start : start + _CHUNK]))
        )
        deleted += int(result.rowcount or 0)
    if sa.inspect(connection).has_table("promptops_feedback"):
        feedback = _feedback_table()
        for start in range(0, len(ids), _CHUNK):
            connection.execute(sa.delete(feedback).where(feedback.c.target.in_(ids[start : start + _CHUNK])))
        for start in range(0, len(traces), _CHUNK):
            chunk = traces[start : start + _CHUNK]
            kept = sa.exists().where(captures_table.c.trace_id == feedback.c.target)
            connection.execute(sa.delete(feedback).where(feedback.c.target.in_(chunk), ~kept))
    return deleted


def _count(store: CaptureStore, cutoff: datetime.datetime, *, referenced: bool) -> int:
    import sqlalchemy as sa

    from ._store import captures_table

    statement = sa.select(sa.func.count()).select_from(captures_table).where(_old(cutoff, referenced=referenced))
    with store.engine.connect() as connection:
        return int(connection.execute(statement).scalar() or 0)


def prune_batch(
    store: CaptureStore, older_than: datetime.timedelta | datetime.datetime, batch: int = PRUNE_BATCH
) -> int:
    """Delete at most `batch` captured calls older than `older_than` that no dataset refers to, in one transaction.

    Args:
        store: The capture store.
        older_than: An age (calls started that long ago or earlier) or an instant (naive: UTC).
        batch: Most rows deleted.

    Returns:
        How many were deleted: fewer than `batch` means none are left to delete.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be written; nothing was deleted.
    """
    cutoff = _cutoff(older_than)
    with store.transaction() as connection:
        return _delete_batch(connection, store.dialect, cutoff, batch)


def prune(
    store: CaptureStore,
    older_than: datetime.timedelta | datetime.datetime,
    *,
    dry_run: bool = False,
    batch: int = PRUNE_BATCH,
) -> PruneResult:
    """Delete every captured call older than `older_than`, except those a saved dataset was made from.

    Safe while applications write to the store: the rows go in batches of `batch`, one transaction each. Calls
    captured during the prune are younger than the cut-off, which is fixed when it starts.

    Args:
        store: The capture store.
        older_than: An age (`timedelta(days=30)`: calls started 30 days ago or earlier) or an instant.
        dry_run: Count what would be deleted, delete nothing.
        batch: Rows per transaction.

    Returns:
        The cut-off, how many calls were deleted (or would be) and how many old ones datasets keep.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be read or written (batches already done stay done).
    """
    cutoff = _cutoff(older_than)
    deleted = 0
    if dry_run:
        deleted = _count(store, cutoff, referenced=False)
    else:
        while True:
            done = prune_batch(store, cutoff, batch)
            deleted += done
            if done < batch:
                break
    return PruneResult(cutoff=cutoff, deleted=deleted, kept=_count(store, cutoff, referenced=True))
