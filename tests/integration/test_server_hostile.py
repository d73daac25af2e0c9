"""A real `mlflow server` behind a proxy that drips its answers, and malformed prompt versions on it (issue 11).

Before: a refresh whose answer was dripped a byte at a time was reused by every later refresh, so the alias stayed
on its old version for as long as the drip lasted (17 s measured in the issue, unbounded in principle), without a
warning; `promptops prompts show` against such a server took 66 s. Now each request ends at `registry_timeout`,
the failure is logged, and the next refresh picks up the alias move. A malformed version is "unavailable": the
caller gets `fallback=` (or the disk copy) instead of an exception from inside `format()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from typer.testing import CliRunner

import promptops
from promptops import Prompt
from promptops.cli import app
from tests.integration.conftest import CountingProxy, MlflowServer

DRIP_SECONDS = 60.0  # how long one dripped answer lasts: far beyond any bound asserted below


class DripProxy(CountingProxy):
    """The counting proxy; while `dripping`, it sends each answer back one byte at a time."""

    def __init__(self, upstream_port: int) -> None:
        self.dripping = False
        self.dripped = 0  # answers whose drip started
        self._stop = threading.Event()
        super().__init__(upstream_port)

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        if not self.dripping:
            super().forward(handler)
            return
        response, payload = self.ask_upstream(handler)
        head = f"HTTP/1.1 {response.status} {response.reason}\r\nContent-Type: application/json\r\n"
        data = (head + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload
        handler.close_connection = True
        self.dripped += 1
        interval = DRIP_SECONDS / len(data)
        for index in range(len(data)):
            if self._stop.wait(interval):
                return
            handler.wfile.write(data[index : index + 1])
            handler.wfile.flush()

    def close(self) -> None:
        self._stop.set()
        super().close()


@pytest.fixture
def drip_proxy(server: MlflowServer) -> Iterator[DripProxy]:
    proxy = DripProxy(server.port)
    try:
        yield proxy
    finally:
        promptops.shutdown(timeout=5)
        proxy.close()


def tracked(name: str, **kwargs: object) -> Callable[[], Prompt]:
    @promptops.track(prompt=name, **kwargs)  # type: ignore[call-overload]
    def call(*, prompt: Prompt) -> Prompt:
        return prompt

    return call  # type: ignore[no-any-return]


def wait_for(predicate: Callable[[], bool], timeout: float) -> float:
    """Poll until `predicate()` holds; returns the seconds it took (a bounded wait, not a timing assertion)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not reached"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_dripped_refresh_is_abandoned_and_the_alias_move_picked_up(
    server: MlflowServer, drip_proxy: DripProxy, prompt_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    server.register(prompt_name, "one", alias="production")
    promptops.configure(tracking_uri=drip_proxy.url, cache_ttl=0.5, registry_timeout=1.0)
    call = tracked(prompt_name)
    assert call().version == 1
    server.register(prompt_name, "two")
    server.register(prompt_name, "three")
    drip_proxy.dripping = True
    server.set_alias(prompt_name, "production", 3)
    caplog.set_level(logging.WARNING, logger="promptops")
    wait_for(lambda: call().version == 1 and drip_proxy.dripped >= 1, timeout=30)  # a refresh is being dripped
    drip_proxy.dripping = False
    # Before, version 1 was served until that drip ended (DRIP_SECONDS); now the drip is cut at 1 s.
    wait_for(lambda: call().version == 3, timeout=DRIP_SECONDS / 3)
    warnings = [record.getMessage() for record in caplog.records if "cannot refresh" in record.getMessage()]
    assert warnings and "no complete answer within 1s" in warnings[0], warnings


def test_prompts_show_against_a_dripping_server_ends_within_its_timeout(
    server: MlflowServer, drip_proxy: DripProxy, prompt_name: str
) -> None:
    server.register(prompt_name, "one", alias="production")
    drip_proxy.dripping = True
    started = time.monotonic()
    result = CliRunner().invoke(app, ["--tracking-uri", drip_proxy.url, "prompts", "show", prompt_name])
    elapsed = time.monotonic() - started
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "no complete answer within 5 s" in lines[0], result.stderr
    assert elapsed < 5 + 15, elapsed  # MLflow's import happens before the clock starts; the drip lasts 60 s


@pytest.mark.parametrize(
    "text",
    ['{"role": "user", "content": "hi"}', '["just text", 3]', '[{"content": "no role"}]'],
    ids=["a dict", "not messages", "no role"],
)
def test_a_malformed_chat_version_falls_back(server: MlflowServer, prompt_name: str, text: str) -> None:
    server.register(prompt_name, [{"role": "user", "content": "{{ q }}"}], alias="production")
    server.client.set_prompt_version_tag(prompt_name, "1", "mlflow.prompt.text", text)
    promptops.configure(tracking_uri=server.url)
    fallback = [{"role": "user", "content": "fallback {{ q }}"}]

    @promptops.track(prompt=prompt_name, fallback=fallback)
    def ask(q: str, *, prompt: Prompt) -> Any:
        return prompt.source, prompt.format(q=q)

    assert ask("why") == ("fallback", [{"role": "user", "content": "fallback why"}])
