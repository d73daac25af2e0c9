"""The capture store going away under load: the application is unaffected, drops are counted, writing resumes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

import promptops
from promptops.capture import CallCapture, CaptureStore
from promptops.prompts import Prompt

from .capture_support import PG_PORT, TcpProxy, pg_url, postgres_database
from .conftest import free_port

PROMPT = Prompt(name="summarize", version=2, template="{{text}}", source="cache")
BOUND = 2000


def before_outage(text: str, *, prompt: Prompt) -> str: ...
def during_outage(text: str, *, prompt: Prompt) -> str: ...
def after_outage(text: str, *, prompt: Prompt) -> str: ...


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(PG_PORT)
    yield proxy
    proxy.stop()


def submit_many(cc: CallCapture, n: int) -> float:
    """Submit n calls; return the slowest submit in seconds (each must return at once, store or not)."""
    slowest = 0.0
    for i in range(n):
        start = time.perf_counter()
        cc.submit(PROMPT, (f"call {i}",), {"prompt": PROMPT}, bound=False, output="o", started_ns=0, ended_ns=1)
        slowest = max(slowest, time.perf_counter() - start)
    return slowest


def test_postgres_going_away_and_coming_back(proxy: TcpProxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="promptops")
    with postgres_database() as database:
        url = pg_url(database, port=proxy.port)
        promptops.configure(capture=url, trace_exporter="none", capture_queue_size=BOUND)
        before, during, after = CallCapture(before_outage), CallCapture(during_outage), CallCapture(after_outage)

        submit_many(before, 100)
        assert promptops.flush(timeout=30)
        start_stats = promptops.stats()

        proxy.stop()  # connections cut, new ones refused
        submit_many(during, 300)
        assert not promptops.flush(timeout=1)  # the writer tried, and knows the store is down
        slowest = submit_many(during, 10_000)
        assert slowest < 0.5  # generous: a submit is microseconds; this only proves it never waits on the store
        down = promptops.stats()
        assert down["captures_queued"] <= BOUND  # the queue stays within its bound
        dropped = down["captures_dropped_store_error"] - start_stats["captures_dropped_store_error"]
        assert dropped >= 10_300 - BOUND
        assert down["captures_dropped"] - start_stats["captures_dropped"] == dropped
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unavailable" in r.getMessage()]
        assert len(warnings) == 1  # rate-limited, however many retries
        assert "127.0.0.1" in warnings[0].getMessage() and "application is unaffected" in warnings[0].getMessage()

        proxy.start()
        assert promptops.flush(timeout=60)  # the backlog that waited in the queue is written
        submit_many(after, 100)  # and calls made after the store returned land too
        assert promptops.flush(timeout=60)
        end = promptops.stats()
        assert end["captures_queued"] == 0
        assert any("reachable again" in r.getMessage() for r in caplog.records)

        store = CaptureStore.open(pg_url(database))
        try:
            assert store.count(function=before.function) == 100
            assert store.count(function=after.function) == 100  # later records land
            kept = store.count(function=during.function)
            assert kept == 10_300 - dropped  # what waited in the queue was written once the store returned
        finally:
            store.close()
        promptops.shutdown(timeout=10)


def test_nothing_listening_at_all() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    promptops.configure(capture=url, trace_exporter="none", capture_queue_size=500)
    cc = CallCapture(before_outage)
    start = promptops.stats()
    submit_many(cc, 100)
    assert not promptops.flush(timeout=1)
    assert submit_many(cc, 5000) < 0.5
    stats = promptops.stats()
    assert stats["captures_dropped_store_error"] - start["captures_dropped_store_error"] >= 5100 - 500
    assert stats["captures_written"] == start["captures_written"]
    assert stats["captures_queued"] <= 500
    assert not promptops.shutdown(timeout=1)  # what still waits at the deadline is dropped, and counted
    assert promptops.stats()["captures_dropped_shutdown"] > start["captures_dropped_shutdown"]
