"""PostgreSQL behind a misbehaving network (issue 10, item 3): stalled, reset and slow connections.

A fault proxy on 127.0.0.1 sits between the writer and PostgreSQL. Before the watchdog, a connection that
stayed open but passed no data held the writer forever (1 of 10,001 records written, no warning). After each
fault the network comes back, and every record submitted before, during and after it must be in the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

import promptops
from promptops.capture import CallCapture, _writer
from promptops.prompts import Prompt

from ..integration.capture_support import PG_PORT, pg_url, postgres_database
from .support import FaultProxy, count

PROMPT = Prompt(name="summarize", version=2, template="{{text}}", alias="production", source="cache")


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FaultProxy, str]]:
    # A write takes milliseconds; the default (30 s) would make these tests slow, not different.
    monkeypatch.setattr(_writer, "STALL_TIMEOUT", 3.0)
    monkeypatch.setattr(_writer, "WATCH_EVERY", 0.2)
    with postgres_database() as database:
        proxy = FaultProxy(PG_PORT)
        try:
            yield proxy, pg_url(database, proxy.port)
        finally:
            promptops.shutdown(timeout=10)
            proxy.close()


def submit(cc: CallCapture, tag: str, n: int) -> None:
    for i in range(n):
        cc.submit_inputs(PROMPT, {"text": f"{tag} {i}"}, output="o", started_ns=0, ended_ns=1)


def wait_for(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)


def test_a_stalled_connection_is_cut_and_nothing_is_lost(
    proxied: tuple[FaultProxy, str], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, url = proxied
    promptops.configure(capture=url, trace_exporter="none")
    cc = CallCapture.named("faults:stall")
    dropped = promptops.stats()["captures_dropped"]
    submit(cc, "before", 200)
    assert promptops.flush(timeout=60)

    proxy.mode = "blackhole"  # the connection stays open; nothing gets through, nothing fails
    with caplog.at_level(logging.WARNING, logger="promptops"):
        submit(cc, "during", 300)
        wait_for(lambda: "has not answered" in caplog.text)
        assert "has not answered" in caplog.text  # said by the watchdog: the writer itself is stuck
        assert "its connection was cut" in caplog.text
    proxy.mode = "pass"
    submit(cc, "after", 300)
    assert promptops.flush(timeout=120)
    assert count(url, function="faults:stall") == 800
    assert promptops.stats()["captures_dropped"] == dropped


def test_reset_connections_lose_nothing(proxied: tuple[FaultProxy, str]) -> None:
    proxy, url = proxied
    promptops.configure(capture=url, trace_exporter="none")
    cc = CallCapture.named("faults:reset")
    submit(cc, "before", 200)
    assert promptops.flush(timeout=60)
    proxy.reset()  # the pooled connection dies while idle
    submit(cc, "idle", 300)
    assert promptops.flush(timeout=60)
    submit(cc, "busy", 3000)
    proxy.reset()  # most likely in the middle of a write
    submit(cc, "after", 300)
    assert promptops.flush(timeout=120)
    assert count(url, function="faults:reset") == 3800


def test_a_slow_drip_delays_but_loses_nothing(proxied: tuple[FaultProxy, str]) -> None:
    proxy, url = proxied
    promptops.configure(capture=url, trace_exporter="none")
    cc = CallCapture.named("faults:drip")
    submit(cc, "before", 100)
    assert promptops.flush(timeout=60)
    proxy.mode = "drip"
    submit(cc, "during", 500)
    time.sleep(4)
    proxy.mode = "pass"
    assert promptops.flush(timeout=120)
    assert count(url, function="faults:drip") == 600
