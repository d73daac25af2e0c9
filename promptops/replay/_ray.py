"""Replay on a Ray cluster: `executor="ray"` (`promptops replay ... --executor ray [--ray-address ADDR]`; issue 15).

Imported only for that executor (`pip install 'mlflow-promptops[ray]'`). What runs where:

- **The driver** (the process that called `replay.run()`) plans the calls, looks up the stored ones, and sends
  the rest to the cluster in *chunks* of whole records, each a Ray task (`num_cpus=1`; a task's worker process
  runs its chunk on up to `--workers` threads, or asyncio for an async target, like the local executor). It keeps at most a
  few chunks per CPU of the cluster queued, stores every finished call in the call store as it arrives, feeds
  the progress bar, then scores, summarises and gates exactly as the local executor does.
- **One coordinator actor** holds the run's `Flow` (the `--workers` ceiling, the AIMD window, `--rps`, the
  circuit breaker) and its `Budget` (`--max-cost`): every call on every worker asks it for a slot and tells it
  how the call went, so the cluster shares one concurrency limit and one rate limit, as one process would.
  Finished calls go to it, and the driver collects them from it several times a second.
- **Workers** import the target (`load_target`), get the prompt versions the driver resolved (no registry access
  needed), and run each call through the same `_runner.execute` as the local executor: the same retries, the
  same infrastructure-error rules, the same spans.
- **Scoring**: the driver hands each block of 256 consecutive records, once their calls are all in
  (`_scoring`, while the calls go on), to a task on the cluster that scores it for every scorer and sums its
  corpus statistics (corpus BLEU); two blocks per CPU are out at once. The driver keeps per record only the scores the statistics need, and writes each
  record's detail to a spool file (issue 15: the driver's memory stays flat with the number of records).
  A scorer's value for an item depends on that item alone (the `Scorer` contract), and the statistics are
  computed by the driver, so the result is the local executor's.

A worker killed mid-run loses its task's calls in flight. Ray's task retries are off for the call tasks: Ray
would run the task again without the driver knowing, and until the new attempt started the dead one kept its
slots, while its requests left waiting at the coordinator took the slots freed meanwhile; the running tasks then
all waited for a slot, and the new attempt for a CPU they held (a hang seen on 2026-12-06). Instead the driver
gets the task's `WorkerCrashedError`, has the coordinator free what the dead attempt held and refuse what it left
waiting (`lost()`), and submits the chunk again; the new attempt skips the calls already finished. Ctrl-C on the
driver stops new calls, cancels the tasks and keeps the calls that finished, as locally.

The target must be importable on the workers. When `ray.init()` is ours (no Ray connection in the process yet)
and the target's module lives under the current directory, that directory is shipped as the job's
`working_dir` (without `.git`, virtualenvs, `.promptops` and databases; Ray also skips what `.gitignore` lists).
Installed packages and the target's other dependencies must be on the cluster (docs/deploying.md).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import importlib
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

from .._config import get_settings
from .._prices import PriceTable
from ._cost import Budget
from ._flow import Flow
from ._retry import RetryPolicy, error_text
from ._runner import Call, Job, RunOutcome, call_attributes, execute
from ._target import ReplayError, Target, load_target

if TYPE_CHECKING:
    from ..prompts import Prompt

__all__ = ["RayExecutor", "connect"]

T = TypeVar("T")
A = TypeVar("A")

logger = logging.getLogger("promptops.replay")

# Ray's own annotations are partial: typed as Any here rather than silencing the strict checks line by line.
ray: Any = importlib.import_module("ray")
_exceptions = importlib.import_module("ray.exceptions")
_RayError: type[Exception] = _exceptions.RayError
# A task's worker process or node died under it: the chunk is submitted again.
_WorkerLost: tuple[type[Exception], ...] = (
    _exceptions.WorkerCrashedError,
    _exceptions.NodeDiedError,
    _exceptions.OutOfMemoryError,
)

_POLL_S: Final = 0.1  # how often the driver collects finished calls (and checks its tasks)
_TASK_RETRIES: Final = 3  # attempts after the first when a worker process dies under a task (or scoring batch)
_QUEUED_PER_CPU: Final = 2  # chunks queued per CPU of the cluster: enough to keep every CPU busy
_CHUNKS_PER_CPU: Final = 8  # chunks per CPU of the cluster when the run is large (at least two rounds each)
# At most this many calls per chunk (unless --workers asks for more): the chunks queued, their calls and inputs,
# are held by the driver, so their size must not grow with the run (issue 15).
_MAX_CHUNK: Final = 512
_SCORING_PER_CPU: Final = 2  # scoring blocks out at once per CPU of the cluster
_STOP_WAIT_S: Final = 10.0  # on Ctrl-C, how long the tasks get to end by themselves before they are cancelled
_WAIT_STEP_S: Final = 0.5  # a worker sleeping between retries asks the coordinator this often if the run stopped
# Not shipped to the workers with the working directory.
_EXCLUDES: Final = [".git", ".venv", "venv", ".tox", ".promptops", "mlruns", "node_modules", "__pycache__", "*.db"]


# -- the coordinator: one per run, an async actor -------------------------------------------------------------


class _Coordinator:
    """The run's flow control and budget, shared by every worker, and the calls finished but not yet collected.

    Slots and admissions are counted per *owner*, a task attempt `(chunk, attempt)`: when a chunk's worker died,
    `lost()` gives back what the dead attempt held and refuses what it left waiting.
    """

    def __init__(self, ceiling: int, rps: float | None, max_cost: float | None) -> None:
        self.flow = Flow(ceiling, rps=rps)
        self.budget = Budget(max_cost)
        self.slots: collections.Counter[tuple[int, int]] = collections.Counter()
        self.admitted: collections.Counter[tuple[int, int]] = collections.Counter()
        self.attempts: collections.Counter[int] = collections.Counter()
        self.done: dict[int, list[Job]] = {}
        self.outbox: list[tuple[Job, Call]] = []
        self.collected = 0  # outbox entries before this (absolute) position were collected and dropped
        self.stopping = False
        # Calls waiting for a slot, oldest first: woken one per freed slot (Flow.aacquire would poll every 5 ms,
        # and a cluster keeps more calls waiting than one process).
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def _wake(self) -> None:
        """Wake as many waiting calls as there are free slots (all of them once the run stopped)."""
        flow = self.flow
        free = len(self.waiting) if flow.open or self.stopping else max(1, int(flow.limit)) - flow.in_flight
        while free > 0 and self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    async def _slot(self) -> bool:
        """Take a slot of the flow control (after the `--rps` pacing); `False` once the run stopped."""
        flow = self.flow
        while not (flow.open or self.stopping):
            if flow.in_flight < max(1, int(flow.limit)):
                return await flow.aacquire()  # free: taken at once, then paced
            waiter = asyncio.get_running_loop().create_future()
            self.waiting.append(waiter)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), _WAIT_STEP_S)  # and look at the breaker now and then
            if not waiter.done():
                self.waiting.remove(waiter)
        return False

    def _reclaim(self, chunk: int) -> None:
        for owner in [owner for owner in self.slots if owner[0] == chunk]:
            for _ in range(self.slots.pop(owner)):
                self.flow.release()
            self._wake()
        for owner in [owner for owner in self.admitted if owner[0] == chunk]:
            self.budget.abandoned(self.admitted.pop(owner))

    async def begin(self, chunk: int) -> tuple[int, list[Job]]:
        """A task attempt starts on `chunk`: its attempt number and the chunk's calls already finished."""
        self._reclaim(chunk)  # an earlier attempt died (should Ray have run it again itself): free what it held
        self.attempts[chunk] += 1
        return self.attempts[chunk], self.done.get(chunk, [])

    async def lost(self, chunk: int) -> None:
        """The worker running `chunk` died: its slots and admissions are free, its waiting requests refused."""
        self._reclaim(chunk)
        self.attempts[chunk] += 1  # the dead attempt is superseded: a slot its requests still get is given back

    def _apply(self, owner: tuple[int, int], notes: Sequence[str]) -> None:
        """What a worker noted without waiting for an answer: attempts that succeeded, slots given back."""
        for note in notes:
            if note == "succeeded":
                self.flow.succeeded()
            elif self.slots[owner] > 0:  # "release"; ignored for an attempt whose slots were reclaimed
                self.slots[owner] -= 1
                self.flow.release()
        if notes:
            self._wake()

    async def start(self, owner: tuple[int, int], notes: Sequence[str]) -> tuple[bool, bool, str | None]:
        """A call wants to start: wait for a slot, then ask the budget; (slot taken, admitted, why not)."""
        self._apply(owner, notes)
        if self.stopping or self.budget.stopped is not None or not await self._slot():
            return False, False, self.budget.stopped
        if self.stopping or owner[1] != self.attempts[owner[0]]:  # stopped, or the attempt was superseded meanwhile
            self.flow.release()
            self._wake()
            return False, False, self.budget.stopped
        self.slots[owner] += 1
        if not self.budget.admit():
            return True, False, self.budget.stopped
        self.admitted[owner] += 1
        return True, True, None

    async def failed(self, owner: tuple[int, int], notes: Sequence[str], text: str, rate_limit: bool) -> bool:
        """An attempt failed on the provider's side and will be retried; whether the run stopped."""
        self._apply(owner, notes)
        self.flow.failed(text, rate_limit=rate_limit, retried=True)
        if self.flow.open:
            self._wake()
        return self.flow.open or self.stopping

    async def gave_up(self, owner: tuple[int, int], notes: Sequence[str], text: str, rate_limit: bool) -> None:
        """A call failed on the provider's side after its retries (an infrastructure error)."""
        self._apply(owner, notes)
        self.flow.failed(text, rate_limit=rate_limit, retried=False)

    async def is_open(self, owner: tuple[int, int], notes: Sequence[str]) -> bool:
        """Whether calls should stop: the circuit opened, or the driver stopped the run."""
        self._apply(owner, notes)
        return self.flow.open or self.stopping

    async def put(self, owner: tuple[int, int], notes: Sequence[str], job: Job, call: Call) -> None:
        """A call finished: its cost counts, and it is kept until the driver collects it."""
        self._apply(owner, notes)
        if self.admitted[owner] > 0:
            self.admitted[owner] -= 1
            self.budget.finished(call)
        self.done.setdefault(owner[0], []).append(job)
        self.outbox.append((job, call))

    async def end(self, owner: tuple[int, int], notes: Sequence[str]) -> None:
        """A task attempt ends: its last notes."""
        self._apply(owner, notes)

    async def collect(self, position: int, ended: Sequence[int] = ()) -> tuple[list[tuple[Job, Call]], dict[str, Any]]:
        """The finished calls from `position` on (those before it were received: dropped), and the counters.

        `ended`: chunks whose task ended (they will not run again): their finished jobs are forgotten.
        """
        for chunk in ended:
            self.done.pop(chunk, None)
        drop = max(0, min(position - self.collected, len(self.outbox)))
        del self.outbox[:drop]
        self.collected += drop
        flow, budget = self.flow, self.budget
        state = {
            "limit": flow.limit,
            "lowest_limit": flow.lowest_limit,
            "retries": flow.retries,
            "rate_limited": flow.rate_limited,
            "in_flight": flow.in_flight,
            "reason": flow.reason,
            "open": flow.open,
            "spent": budget.spent,
            "stopped": budget.stopped,
        }
        return list(self.outbox), state

    async def stop(self) -> None:
        """The driver stops the run (Ctrl-C): no call starts from now on."""
        self.stopping = True
        self._wake()


# -- on the workers -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Context:
    """What every task of one run needs, put in the object store once.

    Attributes:
        key: Identifies the run (a worker prepares itself once per run).
        spec: The target, `module:function`.
        prompts: The prompt versions the calls run, resolved by the driver.
        settings: `promptops.configure()` keywords: the driver's tracing, redaction and prices; capture off.
        retry_on: The user's extra retry predicate.
        threads: Threads (or concurrent async calls) per task: the `--workers` ceiling (the coordinator's slots
            bound the calls in flight across the cluster; a task finishing its chunk leaves its slots to others).
        coordinator: The coordinator actor's handle.
        spans: The replay run's experiment and the calls' span attributes, as on the driver (issue 12: replay
            spans go to the replay's experiment, or nowhere without a run, never among the application's).
    """

    key: str
    spec: str
    prompts: tuple[Prompt, ...]
    settings: dict[str, Any]
    retry_on: Callable[[BaseException], bool] | None
    threads: int
    coordinator: Any
    spans: tuple[str | None, dict[str, Any] | None] = (None, None)


class _Link:
    """One task attempt's line to the coordinator.

    What needs no answer (a slot given back, an attempt that succeeded) is noted here and sent with the next
    request that waits for one: a call costs two round trips to the coordinator, `start` and `put`.
    """

    def __init__(self, coordinator: Any, owner: tuple[int, int]) -> None:
        self.coordinator = coordinator
        self.owner = owner
        self.stopped = threading.Event()  # the run stopped (circuit open, Ctrl-C on the driver)
        self._notes: list[str] = []
        self._lock = threading.Lock()
        self.admitted: contextvars.ContextVar[tuple[bool, str | None]] = contextvars.ContextVar(
            "promptops_ray_admitted", default=(False, None)
        )

    def note(self, note: str) -> None:
        with self._lock:
            self._notes.append(note)

    def notes(self) -> list[str]:
        with self._lock:
            notes, self._notes = self._notes, []
        return notes

    def started(self, answer: tuple[bool, bool, str | None]) -> bool:
        """Keep the budget's answer for `_ClusterBudget.admit()` (same thread or task); whether a slot was taken."""
        slot, admitted, stopped = answer
        self.admitted.set((admitted, stopped))
        if not slot:
            self.stopped.set()
        return slot


class _ClusterFlow(Flow):
    """The worker's side of the coordinator's `Flow`: a call's slot, its attempts' outcomes and waits go there."""

    def __init__(self, link: _Link, threads: int) -> None:
        super().__init__(threads)  # `ceiling` sizes the task's thread pool; the limit is the coordinator's
        self._link = link
        self._opened = link.stopped

    def acquire(self) -> bool:
        """Wait for one of the cluster's slots (and ask the budget in the same round trip)."""
        link = self._link
        return link.started(ray.get(link.coordinator.start.remote(link.owner, link.notes())))

    async def aacquire(self) -> bool:
        """`acquire()` for async targets."""
        link = self._link
        return link.started(await link.coordinator.start.remote(link.owner, link.notes()))

    def release(self) -> None:
        """Give the slot back (sent with the next request)."""
        self._link.note("release")

    def succeeded(self) -> None:
        """An attempt succeeded (sent with the next request)."""
        self._link.note("succeeded")

    def failed(self, exc: BaseException | str, *, rate_limit: bool, retried: bool) -> None:
        """Tell the coordinator; a retried attempt learns whether the run stopped meanwhile."""
        link = self._link
        text = exc if isinstance(exc, str) else error_text(exc)
        if retried:
            if ray.get(link.coordinator.failed.remote(link.owner, link.notes(), text, rate_limit)):
                link.stopped.set()
        else:
            ray.get(link.coordinator.gave_up.remote(link.owner, link.notes(), text, rate_limit))

    def _stopped(self) -> bool:
        link = self._link
        if ray.get(link.coordinator.is_open.remote(link.owner, link.notes())):
            link.stopped.set()
        return link.stopped.is_set()

    def sleep(self, seconds: float) -> None:
        """Wait between retries; wakes early when the run stopped."""
        remaining = seconds
        while remaining > 0 and not self._link.stopped.is_set():
            step = min(remaining, _WAIT_STEP_S)
            self._link.stopped.wait(step)
            remaining -= step
            self._stopped()

    async def asleep(self, seconds: float) -> None:
        """`sleep()` for async targets."""
        link = self._link
        remaining = seconds
        while remaining > 0 and not link.stopped.is_set():
            step = min(remaining, _WAIT_STEP_S)
            await asyncio.sleep(step)
            remaining -= step
            if await link.coordinator.is_open.remote(link.owner, link.notes()):
                link.stopped.set()


class _ClusterBudget(Budget):
    """The worker's side of the coordinator's `Budget`: asked in the slot's round trip, told in the `put`."""

    def __init__(self, link: _Link) -> None:
        super().__init__(None)
        self._link = link

    def admit(self) -> bool:
        """The coordinator's answer when this call took its slot."""
        admitted, stopped = self._link.admitted.get()
        if not admitted:
            self.stopped = stopped or "the run was stopped"
        return admitted

    def finished(self, call: Call) -> None:
        """Counted by the coordinator when the call is put."""
        del call


class _Rows(Sequence[dict[str, Any]]):
    """The inputs of one chunk's records, by record index (the runner reads `inputs[job.index]`)."""

    def __init__(self, rows: Mapping[int, dict[str, Any]]) -> None:
        self._rows = rows

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | Sequence[dict[str, Any]]:
        if isinstance(index, slice):
            raise TypeError("a chunk's inputs are read one record at a time")
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)


_prepared: dict[str, tuple[Target, PriceTable]] = {}
_prepare_lock = threading.Lock()


def _prepare(context: _Context) -> tuple[Target, PriceTable]:
    """Configure promptops as the driver is, pin the prompt versions and import the target: once per run."""
    with _prepare_lock:
        state = _prepared.get(context.key)
        if state is None:
            from .. import configure, prompts

            _prepared.clear()  # an earlier run's state in this worker process is done with
            configure(**context.settings)
            resolver = prompts.resolver()
            for prompt in context.prompts:
                resolver.pin(prompt)
            state = _prepared[context.key] = (load_target(context.spec), PriceTable(get_settings().prices))
        return state


def _run_chunk(context: _Context, chunk: int, jobs: list[Job], rows: dict[int, dict[str, Any]]) -> int:
    """A task: make one chunk's calls not already finished by an earlier attempt; the number made."""
    from .. import flush, tracing

    target, prices = _prepare(context)
    coordinator = context.coordinator
    attempt, done = ray.get(coordinator.begin.remote(chunk))
    link = _Link(coordinator, (chunk, attempt))
    finished = set(done)
    todo = [job for job in jobs if job not in finished]

    def report(job: Job, call: Call) -> None:
        ray.get(coordinator.put.remote(link.owner, link.notes(), job, call))

    experiment, attributes = context.spans
    # Routed as on the driver; the block drains the replay's spans before it ends (the worker may stop any time).
    with tracing.for_replay(experiment, to_mlflow=experiment is not None), call_attributes(attributes):
        execute(
            target,
            _Rows(rows),
            todo,
            flow=_ClusterFlow(link, context.threads),
            policy=RetryPolicy(context.retry_on),
            budget=_ClusterBudget(link),
            prices=prices,
            on_call=report,
        )
    ray.get(coordinator.end.remote(link.owner, link.notes()))
    if tracing.tracer() is not None:
        flush(timeout=30.0)  # spans that do not go through the replay's routing (OTLP, the console)
    return len(todo)


# -- the driver -----------------------------------------------------------------------------------------------


def _chunks(jobs: Iterable[Job], size: int) -> Iterator[list[Job]]:
    """The jobs in chunks of whole records (a record's jobs are adjacent), about `size` jobs each."""
    chunk: list[Job] = []
    for job in jobs:
        if len(chunk) >= size and job.index != chunk[-1].index:
            yield chunk
            chunk = []
        chunk.append(job)
    if chunk:
        yield chunk


def _worker_settings() -> dict[str, Any]:
    """The driver's settings the workers' spans follow; capture is off there (replay calls are never captured)."""
    settings = get_settings()
    return {
        "tracking_uri": settings.tracking_uri,
        "trace_exporter": settings.trace_exporter,
        "experiment_name": settings.experiment_name,
        "record_values": settings.record_values,
        "max_value_chars": settings.max_value_chars,
        "redact": list(settings.redact),
        "prices": dict(settings.prices),
        "capture": None,
    }


class RayExecutor:
    """Runs a replay's calls and scoring batches as tasks on the Ray cluster this process is connected to.

    Args:
        prompts: Every prompt version a call runs, by version.
    """

    def __init__(
        self, prompts: Mapping[int, Prompt], spans: tuple[str | None, Mapping[str, Any] | None] = (None, None)
    ) -> None:
        """Use the Ray connection of this process; see `connect()`."""
        self.prompts = tuple(prompts.values())
        self.spans = (spans[0], dict(spans[1]) if spans[1] is not None else None)
        self.parallelism = _SCORING_PER_CPU * _cpus()
        self._tasks: dict[Callable[..., Any], Any] = {}
        self._refs: dict[concurrent.futures.Future[Any], Any] = {}  # each future's object, alive until it is done

    def execute(
        self,
        target: Target,
        inputs: Sequence[dict[str, Any]],
        jobs: Iterable[Job],
        *,
        count: int,
        flow: Flow,
        policy: RetryPolicy,
        budget: Budget,
        prices: PriceTable,
        on_call: Callable[[Job, Call], None],
    ) -> RunOutcome:
        """Make the calls on the cluster; see the module documentation. `flow` and `budget` end with its counters.

        `jobs` are taken a chunk at a time as chunks are queued; `count` (how many there are) sizes the chunks.
        """
        del prices  # the workers price with the driver's table, sent with the settings
        cpus = _cpus()
        threads = flow.ceiling  # per task: the coordinator's slots bound the calls in flight, not the threads
        coordinator = (
            ray.remote(_Coordinator)
            .options(num_cpus=0, max_concurrency=max(1000, 4 * flow.ceiling))
            .remote(flow.ceiling, flow.rps, budget.limit)
        )
        context = _Context(
            key=uuid.uuid4().hex,
            spec=target.spec,
            prompts=self.prompts,
            settings=_worker_settings(),
            retry_on=policy.retry_on,
            threads=threads,
            coordinator=coordinator,
            spans=self.spans,
        )
        run = _Run(coordinator, ray.put(context), inputs, flow, budget, on_call)
        try:
            size = max(2 * threads, min(_MAX_CHUNK, math.ceil(count / (cpus * _CHUNKS_PER_CPU))))
            interrupted = run.all(_chunks(jobs, size), queued=cpus * _QUEUED_PER_CPU)
        finally:
            ray.kill(coordinator)
        return RunOutcome(interrupted, flow, budget)

    def submit(self, function: Callable[[A], T], argument: A) -> concurrent.futures.Future[T]:
        """`function(argument)` as a task on the cluster (retried when its worker dies): its future."""
        task = self._tasks.get(function)
        if task is None:
            task = self._tasks[function] = ray.remote(function).options(num_cpus=1, max_retries=_TASK_RETRIES)
        ref = task.remote(argument)
        future: concurrent.futures.Future[T] = ref.future()
        self._refs[future] = ref
        future.add_done_callback(lambda done: self._refs.pop(done, None))
        return future


class _Run:
    """The driver's loop of one run: queue chunks, collect finished calls, stop on Ctrl-C."""

    def __init__(
        self,
        coordinator: Any,
        context: Any,
        inputs: Sequence[dict[str, Any]],
        flow: Flow,
        budget: Budget,
        on_call: Callable[[Job, Call], None],
    ) -> None:
        self.coordinator = coordinator
        self.context = context
        self.inputs = inputs
        self.flow = flow
        self.budget = budget
        self.on_call = on_call
        # Received, by record (a job delivered twice is passed on once): kept while the record's chunk may still
        # deliver calls, dropped once its task ended and its calls were collected.
        self.seen: dict[int, set[Job]] = {}
        self.ended: list[int] = []  # records of chunks whose task ended, until their calls are collected
        self.ended_chunks: list[int] = []  # the same chunks, until the coordinator was told
        self.position = 0
        # No retries by Ray: the driver submits a chunk again itself once the coordinator freed what it held.
        self.task = ray.remote(_run_chunk).options(num_cpus=1, max_retries=0)
        self.pending: dict[Any, tuple[int, list[Job]]] = {}  # task -> its chunk's number and calls
        self.lost: collections.Counter[int] = collections.Counter()  # chunk -> attempts lost with their worker

    def all(self, chunks: Iterator[list[Job]], *, queued: int) -> bool:
        """Run every chunk; whether Ctrl-C interrupted the run."""
        pending = self.pending
        numbered = enumerate(chunks)
        try:
            while True:
                while len(pending) < queued and not self.flow.open and self.budget.stopped is None:
                    item = next(numbered, None)
                    if item is None:
                        break
                    self.submit(*item)
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=_POLL_S)
                for ref in ready:
                    self.finished(ref)
                self.collect()
            self.collect()
        except (KeyboardInterrupt, ReplayError) as exc:
            self.stop()
            with contextlib.suppress(Exception):
                self.collect()
            if isinstance(exc, ReplayError):
                raise
            return True
        return False

    def submit(self, number: int, chunk: list[Job]) -> None:
        rows = {job.index: self.inputs[job.index] for job in chunk}
        self.pending[self.task.remote(self.context, number, chunk, rows)] = (number, chunk)

    def finished(self, ref: Any) -> None:
        """A task ended. A chunk whose worker died runs again (up to `_TASK_RETRIES` times); other errors end the run."""
        number, chunk = self.pending.pop(ref)
        try:
            ray.get(ref)
            self.ended.extend(dict.fromkeys(job.index for job in chunk))
            self.ended_chunks.append(number)
        except _WorkerLost as exc:
            self.lost[number] += 1
            if self.lost[number] > _TASK_RETRIES:
                raise _failed(exc, f" after {_TASK_RETRIES + 1} attempts") from None
            logger.warning(
                "promptops replay: a Ray worker died under a task (attempt %d of %d): its unfinished calls run again (%s)",
                self.lost[number], _TASK_RETRIES + 1, _first_line(exc),
            )  # fmt: skip
            ray.get(self.coordinator.lost.remote(number))
            if not self.flow.open and self.budget.stopped is None:
                self.submit(number, chunk)
        except _RayError as exc:
            raise _failed(exc, "") from None

    def stop(self) -> None:
        """No call starts from now on; the tasks end once their calls in flight return, or are cancelled."""
        left: list[Any] = list(self.pending)
        with contextlib.suppress(Exception):
            ray.get(self.coordinator.stop.remote(), timeout=10)
            # Stopped, the tasks start no call and end once their calls in flight return: let them, and
            # cancel only what is left. Force-cancelling a task as it completes can trip an internal check
            # of Ray's (2.60: "Tried to complete task that was not pending") that aborts the driver.
            if left:
                left = ray.wait(left, num_returns=len(left), timeout=_STOP_WAIT_S)[1]
        for ref in left:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)

    def collect(self) -> None:
        """Take the calls finished since the last collection; bring the driver's counters up to date."""
        ended, self.ended = self.ended, []  # their tasks put every call before they ended: collected below
        chunks, self.ended_chunks = self.ended_chunks, []
        entries, state = ray.get(self.coordinator.collect.remote(self.position, chunks))
        self._counters(state)
        for job, call in entries:
            self.position += 1
            seen = self.seen.setdefault(job.index, set())
            if job in seen:
                continue
            seen.add(job)
            self.on_call(job, call)
        for index in ended:
            self.seen.pop(index, None)

    def _counters(self, state: dict[str, Any]) -> None:
        flow, budget = self.flow, self.budget
        flow.limit, flow.lowest_limit = state["limit"], state["lowest_limit"]
        flow.retries, flow.rate_limited, flow.in_flight = state["retries"], state["rate_limited"], state["in_flight"]
        if state["open"] and not flow.open:
            flow.reason = state["reason"]
            flow.opened.set()
        budget.spent, budget.stopped = state["spent"], state["stopped"]


def _cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _failed(exc: BaseException, attempts: str) -> ReplayError:
    return ReplayError(f"a replay task failed on the Ray cluster{attempts}: {_first_line(exc)}")


def _runtime_env(target: Target) -> dict[str, Any] | None:
    """Ship the current directory when the target's module comes from it (not inside a Ray job: it has its own)."""
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        return None
    import sys

    module = sys.modules.get(target.spec.partition(":")[0])
    path = getattr(module, "__file__", None)
    cwd = os.getcwd()
    if not isinstance(path, str) or not os.path.abspath(path).startswith(cwd + os.sep):
        return None
    return {"working_dir": cwd, "excludes": list(_EXCLUDES)}


def _check_reachable(address: str | None) -> None:
    """A `host:port` that nothing answers at is refused at once (Ray itself retries it for about two minutes)."""
    if address is None or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ReplayError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one (ray start --head) or fix "
            "--ray-address (the head's host:port, ray://host:10001 or auto)"
        ) from None


@contextlib.contextmanager
def connect(
    address: str | None,
    target: Target,
    prompts: Mapping[int, Prompt],
    spans: tuple[str | None, Mapping[str, Any] | None] = (None, None),
) -> Generator[RayExecutor]:
    """A `RayExecutor` on the cluster at `address` (or the connection this process already has), for the block.

    Raises:
        ReplayError: the cluster cannot be reached.
    """
    ours = not ray.is_initialized()
    if ours:
        _check_reachable(address)
        try:
            ray.init(
                address=address,
                runtime_env=_runtime_env(target),
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=False,
            )
        except Exception as exc:
            detail = _first_line(exc)
            where = address or os.environ.get("RAY_ADDRESS") or "a new local Ray instance"
            raise ReplayError(
                f"cannot start the replay on Ray ({where}): {detail}; check --ray-address (the head's host:port, "
                "ray://host:10001 or auto)"
            ) from None
    try:
        yield RayExecutor(prompts, spans)
    finally:
        if ours:
            ray.shutdown()
