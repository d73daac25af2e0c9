"""`promptops.feedback()`: a user outcome (thumbs, a score, a label) recorded against one call.

Feedback goes into its own table, `promptops_feedback`, in the capture store's database (the capture writer's
tables and code are untouched), keyed by the call's capture id or trace id; when MLflow is the trace
backend it is also logged as an MLflow assessment (feedback) on the trace, so it shows in MLflow's UI. The
caller never waits: both writes happen on a background thread, and their failures are logged, not raised.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import queue
import re
import threading
from typing import TYPE_CHECKING, Any

from .._config import Settings, get_settings
from .._instrumentation import suppress_instrumentation

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["feedback", "feedback_values", "flush_feedback"]

logger = logging.getLogger("promptops")
_tables: list[sa.Table] = []


def feedback_table() -> sa.Table:
    """The `promptops_feedback` table (SQLAlchemy imported on first use: `import promptops` stays light)."""
    if not _tables:
        import sqlalchemy as sa

        _tables.append(
            sa.Table(
                "promptops_feedback",
                sa.MetaData(),
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("target", sa.String(64), nullable=False, index=True),  # capture id or trace id
                sa.Column("name", sa.String(200), nullable=False),
                sa.Column("value", sa.Float, nullable=False),
                sa.Column("comment", sa.Text),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            )
        )
    return _tables[0]


_EXPORT_WAIT = 10.0  # seconds the worker waits for the span exporter before retrying an assessment
_TRACE_ID = re.compile(r"^(tr-)?[0-9a-f]{32}$")
_NAME = re.compile(r"^[\w.-]{1,200}$")

_queue: queue.Queue[tuple[Settings, str, str, float, str | None] | None] = queue.Queue(maxsize=10_000)
_worker: threading.Thread | None = None
_lock = threading.Lock()
_pending = 0
_idle = threading.Condition(_lock)


def feedback(trace_or_capture_id: str, name: str, value: float | bool, comment: str | None = None) -> None:
    """Record a user outcome for one tracked call: a thumbs up (`1`/`0`, or `True`/`False`), a score, a rating.

    The rollout guard compares the arms on it (`feedback.NAME.mean noninferior 0.05`). Returns at once; the
    value is written on a background thread to the capture store and, when MLflow is the trace backend, as
    an MLflow assessment on the trace (once the trace is exported). `promptops.flush()` waits for it.

    ```{.python test="skip" reason="needs the trace id of a call the application made"}
    promptops.feedback(trace_id, "thumbs", 1, comment="spot on")
    ```

    Args:
        trace_or_capture_id: The call's trace id (32 hex digits, as on its span and capture record; MLflow's
            `tr-...` form is accepted) or its capture record id.
        name: What is measured (`thumbs`, `rating`): letters, digits, `_`, `.`, `-`.
        value: A number (`True`/`False` count as 1/0).
        comment: Free text kept with it.

    Raises:
        ValueError: the id, name or value is malformed (a programming error, reported at once).
    """
    target = str(trace_or_capture_id).strip().lower()
    if not target or len(target) > 64:
        raise ValueError(f"feedback(): {trace_or_capture_id!r} is not a trace id or capture id")
    if not isinstance(name, str) or not _NAME.match(name):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"feedback(): name {name!r} must be letters, digits, '_', '.' or '-'")
    if not isinstance(value, (int, float)) or not math.isfinite(float(value)):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"feedback(): value {value!r} must be a finite number (or True/False)")
    if target.startswith("tr-"):
        target = target[3:]
    global _pending
    with _lock:
        _pending += 1
    try:
        _queue.put_nowait((get_settings(), target, name, float(value), comment))
    except queue.Full:
        with _lock:
            _pending -= 1
        logger.warning("feedback queue full; dropped feedback %r for %s", name, target)
        return
    _ensure_worker()


def _ensure_worker() -> None:
    global _worker
    with _lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, name="promptops-feedback", daemon=True)
            _worker.start()


def _work() -> None:
    global _pending
    suppress_instrumentation()  # this thread is ours: its store and MLflow calls stay out of the app's traces
    while True:
        item = _queue.get()
        if item is None:
            return
        try:
            _write(*item)
        except Exception as exc:
            logger.warning("cannot record feedback %r for %s: %s", item[2], item[1], exc)
        finally:
            with _lock:
                _pending -= 1
                _idle.notify_all()


_engines: dict[str, sa.Engine] = {}


def _engine(url: str) -> sa.Engine:
    engine = _engines.get(url)
    if engine is None:
        from ..capture import CaptureStore

        engine = CaptureStore.open(url).engine  # creates the file and WAL settings as the capture store does
        feedback_table().create(engine, checkfirst=True)
        _engines[url] = engine
    return engine


def _write(settings: Settings, target: str, name: str, value: float, comment: str | None) -> None:
    import sqlalchemy as sa

    trace_id = target if _TRACE_ID.match(target) else None
    table = feedback_table()
    if settings.capture is not None:
        engine = _engine(settings.capture)
        with engine.begin() as connection:
            connection.execute(
                table.insert().values(
                    target=target,
                    name=name,
                    value=value,
                    comment=comment,
                    created_at=datetime.datetime.now(datetime.UTC),
                )
            )
            if trace_id is None:  # a capture id: find the call's trace for MLflow
                from ..capture._store import captures_table

                found = connection.execute(
                    sa.select(captures_table.c.trace_id).where(captures_table.c.id == target)
                ).scalar()
                trace_id = str(found) if found else None
    if settings.trace_exporter == "mlflow" and trace_id is not None:
        _log_assessment(settings, trace_id, name, value, comment)


def _log_assessment(settings: Settings, trace_id: str, name: str, value: float, comment: str | None) -> None:
    # TracingClient with an explicit URI: mlflow.log_feedback() would need the process-wide URI changed.
    from mlflow.entities import AssessmentSource, Feedback
    from mlflow.tracing.client import TracingClient

    assessment = Feedback(
        name=name,
        value=value,
        rationale=comment,
        source=AssessmentSource(source_type="HUMAN", source_id="promptops.feedback"),
    )
    client = TracingClient(settings.tracking_uri)
    try:
        client.log_assessment(f"tr-{trace_id}", assessment)
    except Exception as exc:
        if getattr(exc, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
            raise
        # Feedback given right after the call: its trace may still wait in the span batch. Export, then retry.
        from .. import tracing

        tracing.flush(_EXPORT_WAIT)
        client.log_assessment(f"tr-{trace_id}", assessment)


def flush_feedback(timeout: float = 5.0) -> bool:
    """Wait until every feedback given so far is written; `False` if the deadline passed first.

    `promptops.flush()` waits for feedback too; this waits for nothing else.
    """
    with _lock:
        return _idle.wait_for(lambda: _pending == 0, timeout=timeout)


def _after_fork_in_child() -> None:
    # The parent's worker did not come along, and its lock may have been held at the fork: a child flushing at
    # exit (promptops.flush() waits for feedback) would wait forever. The parent's queued feedback stays the
    # parent's to write; pooled store connections are not shared with it.
    global _lock, _idle, _pending, _worker, _queue
    _lock = threading.Lock()
    _idle = threading.Condition(_lock)
    _pending = 0
    _worker = None
    _queue = queue.Queue(maxsize=10_000)
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def feedback_values(store: Any) -> dict[str, dict[str, float]]:
    """Feedback in a capture store: by name, the latest value per capture id or trace id."""
    import sqlalchemy as sa

    table = feedback_table()
    engine: sa.Engine = store.engine
    if not sa.inspect(engine).has_table(table.name):
        return {}
    values: dict[str, dict[str, float]] = {}
    with engine.connect() as connection:
        rows = connection.execute(sa.select(table.c.target, table.c.name, table.c.value).order_by(table.c.id))
        for target, name, value in rows:
            values.setdefault(str(name), {})[str(target)] = float(value)
    return values
