"""`Flow`: adaptive concurrency (AIMD), the rate cap and the circuit breaker of a replay (issue 13)."""

from __future__ import annotations

import threading
import time

from promptops.replay._flow import Flow


def test_a_rate_limit_halves_concurrency_once_per_burst_and_successes_bring_it_back() -> None:
    flow = Flow(16)
    flow.failed(RuntimeError("429"), rate_limit=True, retried=True)
    assert flow.limit == 8 and flow.lowest_limit == 8 and flow.retries == 1 and flow.rate_limited == 1
    flow.failed(RuntimeError("429"), rate_limit=True, retried=True)  # the same burst: no second halving
    assert flow.limit == 8 and flow.rate_limited == 2
    flow.failed(RuntimeError("503"), rate_limit=False, retried=False)  # not a rate limit: no halving
    assert flow.limit == 8 and flow.retries == 2
    for _ in range(200):
        flow.succeeded()
    assert flow.limit == 16  # back to the ceiling, never above


def test_slots_follow_the_limit() -> None:
    flow = Flow(4)
    assert all(flow.acquire() for _ in range(4))
    flow.failed(RuntimeError("429"), rate_limit=True, retried=True)  # limit 2, four in flight
    released = threading.Event()

    def fifth() -> None:
        assert flow.acquire()
        released.set()

    waiter = threading.Thread(target=fifth)
    waiter.start()
    flow.release()
    flow.release()
    assert not released.wait(0.3)  # two in flight, limit two: no slot
    flow.release()
    assert released.wait(5)
    waiter.join()


def test_breaker_opens_after_a_streak_and_a_success_resets_it() -> None:
    flow = Flow(2, breaker_after=5)
    for _ in range(4):
        flow.failed(ConnectionError("refused"), rate_limit=False, retried=True)
    flow.succeeded()
    for _ in range(4):
        flow.failed(ConnectionError("refused"), rate_limit=False, retried=True)
    assert not flow.open
    flow.failed(ConnectionError("refused"), rate_limit=False, retried=False)
    assert flow.open and flow.reason is not None and "5 failed attempts in a row" in flow.reason
    assert "ConnectionError: refused" in flow.reason
    assert not flow.acquire()  # no call starts once open
    started = time.monotonic()
    flow.sleep(30)  # a retry's wait ends at once
    assert time.monotonic() - started < 5


def test_rps_spaces_call_starts() -> None:
    flow = Flow(8, rps=20)
    started = time.monotonic()
    for _ in range(11):
        assert flow.acquire()
        flow.release()
    assert time.monotonic() - started >= 0.45  # ten gaps of 50 ms at least
