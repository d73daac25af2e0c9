"""Running a replay: call the target on every record with the candidate and the baseline, in parallel.

Every call runs under `use_prompt(name, version=...)` with `replay_active` set, so its span says
`promptops.replay=true` and capture skips it. Sync targets run in a thread pool, async ones under an asyncio
semaphore; `workers` bounds both, and `Flow` adapts the calls in flight below it when the provider limits the
rate (issue 13). A provider's transient failure is retried (`RetryPolicy`); one that still fails is an
*infrastructure error* (`Call.infra`), kept apart from the model's errors. A call that raises anything else is an
error result for its record, not a failure of the run. Ctrl-C stops submitting work: the records whose calls all
finished are kept and the run is marked interrupted.

Per record there is one candidate call and, for the baseline, a *reference* output (the captured output, or a
first run of the baseline version) plus `repeats` re-runs of the baseline: how far the baseline drifts from its
own reference run to run is the noise floor the candidate is judged against.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

from .. import tracing
from .._prices import PriceTable
from .._span import INPUTS, OUTPUT, value_attribute
from .._usage import Usage, usage_of, usage_sink
from ..prompts import replay_active, use_prompt
from ._cost import Budget
from ._flow import Flow
from ._retry import RetryPolicy, error_text, is_infrastructure, is_rate_limit
from ._target import Target

__all__ = ["Call", "Job", "RunOutcome", "call_attributes", "execute"]

_call_attributes: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "promptops_replay_call_attributes", default=None
)


@contextlib.contextmanager
def call_attributes(attributes: Mapping[str, Any] | None) -> Generator[None]:
    """Inside the block, `execute()` adds `attributes` to each call's `replay` span (the MLflow run's id, issue 12)."""
    token = _call_attributes.set(attributes)
    try:
        yield
    finally:
        _call_attributes.reset(token)


@dataclasses.dataclass(slots=True)
class Call:
    """The outcome of one call of the target.

    Attributes:
        output: The return value (`None` when it raised).
        error: `Type: message` when it raised.
        latency_ms: Wall time.
        trace_id: The trace the call's spans belong to, when tracing is on.
        infra: The error is the provider's (still failing after retries, or refused credentials), not the model's.
        usage: The tokens the call reported (`record_usage()`, the LangChain handler, or the response object it
            returned); `None` when it reported none.
        cost: What those tokens cost in USD by the price table; `None` without usage or a price for the model.
        reused: Stored by an earlier run of the same replay and reused, not made again (`_calls`).
    """

    output: Any
    error: str | None
    latency_ms: float
    trace_id: str | None = None
    infra: bool = False
    usage: Usage | None = None
    cost: float | None = None
    reused: bool = False

    @property
    def tokens(self) -> int | None:
        """Input plus output tokens, when the call reported usage."""
        return None if self.usage is None else self.usage.input_tokens + self.usage.output_tokens


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One call: record `index` on prompt `version` as `role` (`candidate`, `reference`, `noise`).

    `arm` is the candidate's position when several candidates are compared; `repeat` tells a record's baseline
    re-runs apart (equal jobs would be one call: `--repeats 3` made one re-run, not three).
    """

    index: int
    role: str
    version: int
    arm: int = 0
    repeat: int = 0


@dataclasses.dataclass(slots=True)
class RunOutcome:
    """Whether the run was interrupted; the flow control's and the budget's counters.

    The finished calls went to `on_call` one by one: they are not kept here (issue 15).
    """

    interrupted: bool
    flow: Flow
    budget: Budget


class _Attempts:
    """One job's bookkeeping while it runs, shared by the sync and async paths: timing, usage, the outcome."""

    __slots__ = ("caller", "output", "started", "trace_id", "usage")

    def __init__(self, caller: _Caller, trace_id: str | None, usage: Usage) -> None:
        self.caller = caller
        self.trace_id = trace_id
        self.usage = usage
        self.output: Any = None
        self.started = time.perf_counter()

    def attempt(self) -> None:
        """An attempt starts: latency is the answered attempt's, not the backoff's."""
        self.started = time.perf_counter()

    def _priced(self, call: Call) -> Call:
        usage = self.usage if self.usage.reports else usage_of(call.output)
        if usage is not None:
            call.usage = usage
            call.cost = self.caller.prices.cost(usage.model, usage.input_tokens, usage.output_tokens)
        return call

    def failed(self, exc: Exception) -> Call:
        caller = self.caller
        latency_ms = (time.perf_counter() - self.started) * 1000
        infra = caller.policy.retryable(exc) or is_infrastructure(exc)
        if infra:
            caller.flow.failed(exc, rate_limit=is_rate_limit(exc), retried=False)
        return self._priced(Call(None, error_text(exc), latency_ms, self.trace_id, infra=infra))

    def succeeded(self) -> Call:
        latency_ms = (time.perf_counter() - self.started) * 1000
        self.caller.flow.succeeded()
        return self._priced(Call(self.output, None, latency_ms, self.trace_id))


class _Caller:
    """Runs one job: the override, the replay flag, a `promptops.replay` span, the retries, the timing, the usage."""

    def __init__(
        self,
        target: Target,
        inputs: Sequence[dict[str, Any]],
        flow: Flow,
        policy: RetryPolicy,
        budget: Budget,
        prices: PriceTable,
    ) -> None:
        self.target = target
        self.inputs = inputs
        self.flow = flow
        self.policy = policy
        self.budget = budget
        self.prices = prices
        self._sync = _SyncIO(target, flow)
        self._async = _AsyncIO(target, flow)
        self.span_attributes = dict(_call_attributes.get() or {})  # read here, in the thread that runs the replay

    @contextlib.contextmanager
    def _context(self, job: Job) -> Generator[_Attempts]:
        """The replay flag, the version override, a usage sink and a `replay <target>` span around one job."""
        usage = Usage()
        token, usage_token = replay_active.set(True), usage_sink.set(usage)
        try:
            with use_prompt(self.target.prompt_name, version=job.version):
                tracer = tracing.tracer()
                if tracer is None:
                    yield _Attempts(self, None, usage)
                    return
                with tracer.start_as_current_span(
                    f"replay {self.target.spec}",
                    attributes={
                        **self.span_attributes,
                        "promptops.replay": True,
                        "promptops.replay.role": job.role,
                        "promptops.prompt.name": self.target.prompt_name,
                        "promptops.prompt.version": job.version,
                    },
                    record_exception=False,
                    set_status_on_exception=False,
                ) as span:
                    # The call's inputs and output on the trace's root: MLflow's request and response (issue 12).
                    if (inputs := value_attribute(self.inputs[job.index])) is not None:
                        span.set_attribute(INPUTS, inputs)
                    state = _Attempts(self, format(span.get_span_context().trace_id, "032x"), usage)
                    yield state
                    if state.output is not None and (output := value_attribute(state.output)) is not None:
                        span.set_attribute(OUTPUT, output)
        finally:
            usage_sink.reset(usage_token)
            replay_active.reset(token)

    def _finish(self, call: Call) -> Call:
        self.budget.finished(call)
        return call

    async def _run(self, job: Job, io: _SyncIO | _AsyncIO) -> Call | None:
        """The one body of a job, sync or async: a slot, the budget, the context, the attempts and their retries.

        Written once for both paths (issue 13: the retry loop was written twice): `io` makes the call, takes the
        slot and sleeps, awaiting for an async target; for a sync one nothing here ever suspends, and `call()`
        runs this coroutine to its end in one step.
        """
        if not await io.acquire():
            return None
        try:
            if not self.budget.admit():
                return None
            inputs = self.inputs[job.index]
            with self._context(job) as state:
                attempt = 1
                while True:
                    state.attempt()
                    try:
                        state.output = await io.call(inputs)
                    except Exception as exc:
                        wait = self.policy.wait(exc, attempt, self.flow.opened)
                        if wait is None:
                            return self._finish(state.failed(exc))
                        self.flow.failed(exc, rate_limit=is_rate_limit(exc), retried=True)
                        await io.sleep(wait)
                        attempt += 1
                        continue
                    return self._finish(state.succeeded())
        finally:
            self.flow.release()

    def call(self, job: Job) -> Call | None:
        """The call's outcome; `None` when it was not started (the circuit breaker opened, or the cost limit)."""
        body = self._run(job, self._sync)
        try:
            body.send(None)
        except StopIteration as done:
            return done.value
        body.close()  # pragma: no cover - _SyncIO never suspends
        raise RuntimeError("a sync replay call suspended")  # pragma: no cover

    async def acall(self, job: Job) -> Call | None:
        """`call()` for an async target."""
        return await self._run(job, self._async)


class _IO:
    """What `_Caller._run` awaits: take a slot, call the target, sleep between attempts."""

    __slots__ = ("flow", "target")

    def __init__(self, target: Target, flow: Flow) -> None:
        self.target = target
        self.flow = flow


class _SyncIO(_IO):
    """For a sync target: plain blocking calls (these coroutines never suspend)."""

    __slots__ = ()

    async def acquire(self) -> bool:
        return self.flow.acquire()

    async def call(self, inputs: dict[str, Any]) -> Any:
        return self.target.call(inputs)

    async def sleep(self, seconds: float) -> None:
        self.flow.sleep(seconds)


class _AsyncIO(_IO):
    """For an async target: the same, without blocking the loop."""

    __slots__ = ()

    async def acquire(self) -> bool:
        return await self.flow.aacquire()

    async def call(self, inputs: dict[str, Any]) -> Any:
        return await self.target.acall(inputs)

    async def sleep(self, seconds: float) -> None:
        await self.flow.asleep(seconds)


def execute(
    target: Target,
    inputs: Sequence[dict[str, Any]],
    jobs: Iterable[Job],
    *,
    count: int | None = None,
    flow: Flow,
    policy: RetryPolicy,
    budget: Budget,
    prices: PriceTable,
    on_call: Callable[[Job, Call], None],
) -> RunOutcome:
    """Run every job, at most `flow.ceiling` at a time; Ctrl-C (or the circuit breaker) keeps what finished.

    Args:
        target: What to call.
        inputs: Stored inputs, by record index.
        jobs: The calls to make, taken one at a time as there is room (a record's jobs should be adjacent, so an
            interrupted run leaves whole records).
        count: How many jobs there are (unused here: the Ray executor sizes its chunks with it).
        flow: Concurrency, rate cap and circuit breaker of the run.
        policy: Which failures are retried, and how.
        budget: The cost limit (`--max-cost`): no call starts once the estimate would pass it.
        prices: Prices each call's reported usage.
        on_call: Called with each finished call (from the calling thread): progress, the call store, scoring.

    Returns:
        Whether the run was interrupted, and its counters.
    """
    del count
    caller = _Caller(target, inputs, flow, policy, budget, prices)
    if target.is_async:
        interrupted = _execute_async(caller, jobs, on_call)
    else:
        interrupted = _execute_threads(caller, jobs, on_call)
    return RunOutcome(interrupted, flow, budget)


def _execute_threads(caller: _Caller, jobs: Iterable[Job], on_call: Callable[[Job, Call], None]) -> bool:
    workers = caller.flow.ceiling
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="promptops-replay")
    pending: set[concurrent.futures.Future[Call | None]] = set()
    job_of: dict[concurrent.futures.Future[Call | None], Job] = {}
    queue = iter(jobs)
    try:
        # Keep a bounded window in flight: Ctrl-C then leaves little queued work, and memory stays flat.
        for job in queue:
            if caller.flow.open or caller.budget.stopped is not None:
                break
            future = executor.submit(caller.call, job)
            job_of[future] = job
            pending.add(future)
            if len(pending) >= workers * 2:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                _collect(done, job_of, on_call)
        while pending:
            done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            _collect(done, job_of, on_call)
    except KeyboardInterrupt:
        for future in pending:
            future.cancel()
        _collect({future for future in pending if future.done() and not future.cancelled()}, job_of, on_call)
        executor.shutdown(wait=False, cancel_futures=True)
        return True
    executor.shutdown(wait=True)
    return False


def _collect(
    done: set[concurrent.futures.Future[Call | None]],
    job_of: dict[concurrent.futures.Future[Call | None], Job],
    on_call: Callable[[Job, Call], None],
) -> None:
    for future in done:
        job = job_of.pop(future)
        call = future.result()  # _Caller never raises an Exception
        if call is None:  # not started: the circuit breaker opened, or the cost limit was reached
            continue
        on_call(job, call)


def _execute_async(caller: _Caller, jobs: Iterable[Job], on_call: Callable[[Job, Call], None]) -> bool:
    async def main() -> None:
        queue = iter(jobs)

        async def worker() -> None:
            # `--workers` of these take the jobs in turn (a coroutine per job, all at once, grew with the run:
            # issue 15); the flow's slots bound the calls in flight below that
            for job in queue:
                if caller.flow.open or caller.budget.stopped is not None:
                    return
                call = await caller.acall(job)
                if call is not None:
                    on_call(job, call)

        await asyncio.gather(*(worker() for _ in range(caller.flow.ceiling)))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        try:
            asyncio.run(main())
        except KeyboardInterrupt:  # asyncio.run cancelled the tasks; `on_call` had what finished
            return True
        return False
    # Called from inside an event loop (a notebook, an async test): run ours on a thread of its own.
    outcome: list[BaseException] = []

    def in_thread() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # handed back to the caller below
            outcome.append(exc)

    thread = threading.Thread(target=in_thread, name="promptops-replay-loop")
    thread.start()
    thread.join()
    if outcome:
        raise outcome[0]
    return False
