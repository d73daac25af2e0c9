"""The call store: every finished call of a replay, kept so that running the same replay again reuses it (issue 13).

A replay of 1,000 records makes thousands of paid model calls; after a Ctrl-C, a crash, or to score the same
outputs with another scorer, nobody should pay for them twice. Each call that finished (with an output, or the
model's own error; never an infrastructure error) is written to the `promptops_replay_calls` table of the
capture store, keyed by what decides its answer:

- the target (`module:function`) and its source text, so an edited function makes its calls again;
- the prompt version's *content* (template, model config, response format), not its number: a version
  registered twice with the same text shares its calls;
- the record's inputs;
- the repeat index: the how-many-th call of this content on these inputs within the run (record by record,
  the baseline's reference and re-runs first, then the candidates in the order given), so re-runs, and records
  with the same inputs, stay distinct samples.

A replay looks its keys up before the first call and makes only the missing ones; `fresh=True` (`--fresh`)
ignores what is stored (and replaces it). Writes go through one background thread in small batches, so a
killed run loses at most the last fraction of a second of calls. Outputs are stored as JSON and reused only
when they come back equal (a string, numbers, lists and dicts of them); other outputs are made again.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import hashlib
import inspect
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from .._usage import Usage

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .._prices import PriceTable
    from ..capture import CaptureStore
    from ..prompts import Prompt
    from ._runner import Call, Job
    from ._target import Target

__all__ = ["CallKeys", "CallStore", "open_call_store"]

logger = logging.getLogger("promptops")

KEY_VERSION: Final = 1  # bumped when what a key covers changes: old rows are then simply not found
_BATCH: Final = 200
_FLUSH_S: Final = 0.1  # a killed run loses at most about this much of its finished calls
_ROLE_ORDER: Final = {"reference": 0, "noise": 1, "candidate": 2}
_tables: list[sa.Table] = []


def calls_table() -> sa.Table:
    """The `promptops_replay_calls` table (SQLAlchemy imported on first use)."""
    if not _tables:
        import sqlalchemy as sa

        _tables.append(
            sa.Table(
                "promptops_replay_calls",
                sa.MetaData(),
                sa.Column("key", sa.String(64), primary_key=True),
                sa.Column("function", sa.String(512), nullable=False),
                sa.Column("prompt_version", sa.Integer),
                sa.Column("output", sa.Text),  # JSON
                sa.Column("error", sa.Text),
                sa.Column("latency_ms", sa.Float, nullable=False),
                sa.Column("trace_id", sa.String(32)),
                sa.Column("input_tokens", sa.Integer),
                sa.Column("output_tokens", sa.Integer),
                sa.Column("model", sa.String(256)),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            )
        )
    return _tables[0]


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _source(target: Target) -> str:
    try:
        return inspect.getsource(target.obj)
    except (OSError, TypeError):  # a Runnable, a builtin, a function defined in a REPL
        return ""


def content_key(prompt: Prompt) -> str:
    """What of a prompt version decides the model's answer: template, model config and response format."""
    return _digest([prompt.template, prompt.model_config, prompt.response_format])


class CallKeys:
    """The store key of every job (see the module documentation), record by record, without holding them all.

    Keys are computed in dataset order as the jobs are made (issue 15: a dict of every job's key held 0.3 KB per
    record for the whole run). A key's repeat index counts the earlier calls of the same content on the same
    inputs, across records: only inputs that occur in more than one record need that count, so a first pass
    finds them (by a 64-bit prefix of each record's digest: a rare false match only makes a count that stays 0),
    and the count is kept for those alone.

    Args:
        target: The target.
        prompts: Every prompt version a job runs, by version.
        inputs: The records' inputs, by position.
        jobs_of: A record's jobs, by position.
    """

    def __init__(
        self,
        target: Target,
        prompts: Mapping[int, Prompt],
        inputs: Sequence[Mapping[str, Any]],
        jobs_of: Callable[[int], Sequence[Job]],
    ) -> None:
        """Keys for these records' jobs; see the class documentation."""
        import numpy as np

        self._head = [KEY_VERSION, target.function_id, hashlib.sha256(_source(target).encode()).hexdigest()]
        self._contents = {version: content_key(prompt) for version, prompt in prompts.items()}
        self._inputs = inputs
        self._jobs_of = jobs_of
        prefixes = np.fromiter((_prefix(_digest(item)) for item in inputs), dtype=np.int64, count=len(inputs))
        prefixes.sort()
        self._shared: set[int] = set(prefixes[1:][prefixes[1:] == prefixes[:-1]].tolist())

    def __iter__(self) -> Iterator[dict[Job, str]]:
        """Each record's keys by job, in dataset order."""
        across: collections.Counter[tuple[str, str]] = collections.Counter()  # inputs in several records
        for index in range(len(self._inputs)):
            digest = _digest(self._inputs[index])
            seen = across if _prefix(digest) in self._shared else collections.Counter[tuple[str, str]]()
            keys: dict[Job, str] = {}
            for job in sorted(self._jobs_of(index), key=lambda job: _ROLE_ORDER.get(job.role, 3)):  # stable
                content = self._contents[job.version]
                # per inputs, not per record: two records with the same inputs are two samples, as two re-runs are
                repeat = seen[digest, content]
                seen[digest, content] += 1
                keys[job] = _digest([*self._head, content, digest, repeat])
            yield keys


def _prefix(digest: str) -> int:
    """A digest's first 64 bits, as a signed integer."""
    return int.from_bytes(bytes.fromhex(digest[:16]), "big", signed=True)


def _storable(call: Call) -> str | None:
    """The output as JSON when it comes back equal (and of the same types); `None` when it would not."""
    try:
        text = json.dumps(call.output, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return text if _same(json.loads(text), call.output) else None


def _same(loaded: Any, original: Any) -> bool:
    if type(loaded) is not type(original):
        return False
    if isinstance(original, dict):
        items: dict[Any, Any] = original  # pyright: ignore[reportUnknownVariableType]
        return loaded.keys() == items.keys() and all(_same(loaded[key], value) for key, value in items.items())
    if isinstance(original, list):
        values: list[Any] = original  # pyright: ignore[reportUnknownVariableType]
        return len(loaded) == len(values) and all(map(_same, loaded, values))
    return bool(loaded == original)


class CallStore:
    """Finished calls of replays in a capture store: looked up before a run, written while it runs.

    Args:
        store: The capture store (its database holds the table, created on first use).
        function: The target's `module:qualname`.

    Attributes:
        written: Calls stored so far.
        failed: Why storing stopped (the store refused a write), if it did; the replay goes on without it.
    """

    def __init__(self, store: CaptureStore, function: str) -> None:
        """Use a capture store; see the class documentation."""
        self.store = store
        self.function = function
        calls_table().create(store.engine, checkfirst=True)
        self._queue: queue.Queue[tuple[str, Job, Call] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failed: str | None = None

    def load(self, keys: Mapping[Job, str], prices: PriceTable) -> dict[Job, Call]:
        """The stored calls among these keys, by job, priced by today's table; `{}` when the store cannot be read."""
        try:
            return self._load(keys, prices)
        except Exception as exc:  # the replay goes on and makes every call
            logger.warning("promptops replay: cannot read the stored calls, making every call again: %s", exc)
            return {}

    def count(self, keys: Iterable[str]) -> int | None:
        """How many of these (distinct) keys are stored; `None` when the store cannot be read."""
        import sqlalchemy as sa

        table = calls_table()
        found = 0
        try:
            with self.store.engine.connect() as connection:
                batches = iter(keys)
                while wanted := list(itertools.islice(batches, 500)):  # within every backend's parameter limit
                    found += connection.execute(
                        sa.select(sa.func.count())
                        .select_from(table)
                        .where(table.c.function == self.function, table.c.key.in_(wanted))
                    ).scalar_one()
        except Exception as exc:  # the replay goes on and makes every call
            logger.warning("promptops replay: cannot read the stored calls, making every call again: %s", exc)
            return None
        return found

    def _load(self, keys: Mapping[Job, str], prices: PriceTable) -> dict[Job, Call]:
        import sqlalchemy as sa

        from ._runner import Call

        table = calls_table()
        by_key: dict[str, list[Job]] = {}
        for job, key in keys.items():
            by_key.setdefault(key, []).append(job)
        found: dict[Job, Call] = {}
        wanted = list(by_key)
        with self.store.engine.connect() as connection:
            for start in range(0, len(wanted), 500):  # within every backend's parameter limit
                rows = connection.execute(
                    sa.select(table).where(
                        table.c.function == self.function, table.c.key.in_(wanted[start : start + 500])
                    )
                )
                for row in rows:
                    usage, cost = None, None
                    if row.input_tokens is not None or row.output_tokens is not None:
                        usage = Usage(row.input_tokens or 0, row.output_tokens or 0, row.model, 1)
                        cost = prices.cost(usage.model, usage.input_tokens, usage.output_tokens)
                    output = json.loads(row.output) if row.output is not None else None
                    for job in by_key[row.key]:
                        found[job] = Call(output, row.error, row.latency_ms, row.trace_id, usage=usage, cost=cost)
                        found[job].reused = True
        return found

    def put(self, key: str, job: Job, call: Call) -> None:
        """Store a finished call (in the background); infrastructure errors and unstorable outputs are skipped."""
        if call.infra or call.reused or self.failed is not None:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="promptops-replay-calls", daemon=True)
            self._thread.start()
        self._queue.put((key, job, call))

    def close(self) -> None:
        """Write what is queued and stop the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _work(self) -> None:
        from .._instrumentation import suppress_instrumentation

        suppress_instrumentation()  # the store's queries stay out of the application's traces
        done = False
        while not done:
            batch: list[tuple[str, Job, Call]] = []
            item = self._queue.get()
            if item is None:
                break
            batch.append(item)
            deadline = time.monotonic() + _FLUSH_S  # from the first call waiting, not an idle gap: calls keep coming
            try:
                while len(batch) < _BATCH:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    if item is None:
                        done = True
                        break
                    batch.append(item)
            except queue.Empty:
                pass
            self._write(batch)

    def _write(self, batch: Iterable[tuple[str, Job, Call]]) -> None:
        rows: list[dict[str, Any]] = []
        now = datetime.datetime.now(datetime.timezone.utc)
        for key, job, call in batch:
            output = _storable(call) if call.output is not None else None
            if call.output is not None and output is None:
                continue  # made again next time rather than reused as something else
            usage = call.usage
            rows.append(
                {
                    "key": key,
                    "function": self.function,
                    "prompt_version": job.version,
                    "output": output,
                    "error": call.error,
                    "latency_ms": call.latency_ms,
                    "trace_id": call.trace_id,
                    "input_tokens": usage.input_tokens if usage is not None else None,
                    "output_tokens": usage.output_tokens if usage is not None else None,
                    "model": usage.model if usage is not None else None,
                    "created_at": now,
                }
            )
        if not rows:
            return
        try:
            self._upsert(rows)
            self.written += len(rows)
        except Exception as exc:  # the replay goes on; its calls are just not reusable
            self.failed = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            logger.warning("promptops replay: cannot store finished calls for reuse: %s", self.failed)

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        table = calls_table()
        dialect = self.store.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={name: statement.excluded[name] for name in rows[0] if name != "key"},
        )
        with self.store.transaction() as connection:
            connection.execute(statement, rows)


@contextlib.contextmanager
def open_call_store(store: Any, function: str) -> Generator[CallStore | None]:
    """The call store of a replay for the block: in the capture store given (a `CaptureStore`, a URL), or `capture`'s.

    `None` (every call made, none stored) when capture is off or the store cannot be opened, which is logged,
    not raised: reuse saves money, it is not what the replay is for.
    """
    from .._config import get_settings
    from ..capture import CaptureStore
    from ..capture._store import display_url

    url = store if isinstance(store, str) and store.strip() else get_settings().capture
    opened: CaptureStore | None = None
    try:
        if isinstance(store, CaptureStore):
            calls = CallStore(store, function)
        elif url is None:
            calls = None
        else:
            opened = CaptureStore.open(url)
            calls = CallStore(opened, function)
    except Exception as exc:
        where = display_url(url) if url is not None else "the capture store"
        logger.warning("promptops replay: cannot open %s to reuse calls, making every call: %s", where, exc)
        if opened is not None:
            opened.close()
        opened = calls = None
    try:
        yield calls
    finally:
        if calls is not None:
            calls.close()
        if opened is not None:
            opened.close()
