"""The MLflow server goes away mid-run: refused (process stopped) or blackholed (a socket that never answers).

Each test runs once per kind of outage. The registry is prepared while the server is up (prompts registered,
and an earlier process that resolved them, leaving its last-known-good copies on disk); `go_down()` then takes
the server away. These tests run last (`server_outage`), so the shared server is restarted at most once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import promptops
from promptops import Prompt
from tests.integration.conftest import Blackhole, MlflowServer, resolve_in_new_process

pytestmark = pytest.mark.server_outage

BUDGET = 1.0  # registry_timeout for every process here
BUDGET_BOUND = 5.0  # generous: proves a call does not wait out MLflow's 120 s x 5 retries


class Outage:
    def __init__(self, kind: str, server: MlflowServer, root: Path) -> None:
        self.kind = kind
        self.server = server
        self.url = server.url
        self.root = root
        self.blackhole: Blackhole | None = None
        server.start()
        self.name = f"outage-{kind}-{int(time.time() * 1000)}"
        server.register(self.name, "one {{ x }}", alias="production")
        # An earlier run of the application resolved the prompt and left its last-known-good copy here.
        self.warm_cache = root / "warm-cache"
        warmed = resolve_in_new_process(self.url, self.name, cache_dir=self.warm_cache, timeout=BUDGET)
        assert (warmed["source"], warmed["version"]) == ("registry", 1), warmed

    def go_down(self) -> None:
        """Take the server away (idempotent): stop it, and for a blackhole put a silent socket on its port."""
        self.server.stop()
        if self.kind == "blackholed" and self.blackhole is None:
            self.blackhole = Blackhole(self.server.port)

    def close(self) -> None:
        if self.blackhole is not None:
            self.blackhole.close()

    def check_reason(self, message: str) -> None:
        """The error names why the registry failed, matching the kind of outage."""
        if self.kind == "refused":
            assert "ConnectError" in message or "refused" in message.lower(), message
        else:
            assert "no answer within" in message or "timed out" in message, message
            assert self.blackhole is not None and self.blackhole.accepted > 0  # we did reach the silent socket


@pytest.fixture(scope="class", params=["refused", "blackholed"])
def outage(
    request: pytest.FixtureRequest, mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outage]:
    kind: str = request.param
    prepared = Outage(kind, mlflow_server, tmp_path_factory.mktemp(f"outage-{kind}"))
    try:
        yield prepared
    finally:
        prepared.close()  # the server stays down; the next test that wants it restarts it


def tracked(name: str, **kwargs: object) -> Callable[[], Prompt]:
    @promptops.track(prompt=name, **kwargs)  # type: ignore[call-overload]
    def call(*, prompt: Prompt) -> Prompt:
        return prompt

    return call  # type: ignore[no-any-return]


def timed(call: Callable[[], Prompt]) -> tuple[Prompt, float]:
    started = time.monotonic()
    prompt = call()
    return prompt, time.monotonic() - started


class TestOutage:
    def test_memory_cache_serves_when_the_server_goes_away_mid_run(self, outage: Outage, tmp_path: Path) -> None:
        promptops.configure(
            tracking_uri=outage.url, cache_ttl=0.3, registry_timeout=BUDGET, cache_dir=tmp_path / "cache"
        )
        call, pinned = tracked(outage.name), tracked(outage.name, version=1)
        # Warm the memory cache while the server is up. A first fetch can outlast the 1 s budget on a loaded
        # machine (issue 10: the call then got it a moment later, as "cache"); wait for the fetches instead of
        # racing them. The disk cache started empty, so a copy in memory can only have come from the registry.
        with contextlib.suppress(promptops.PromptUnavailableError):
            promptops.preload([outage.name, f"{outage.name}/1"])
        assert promptops.flush(timeout=60)
        assert promptops.stats()["registry_fetches"] >= 2
        assert (call().source, call().version, pinned().source, pinned().version) == ("cache", 1, "cache", 1)

        outage.go_down()
        time.sleep(0.35)  # past the TTL: every call below is due for a refresh (not a timing assertion)
        for _ in range(3):
            prompt, elapsed = timed(call)
            assert (prompt.version, prompt.template, prompt.source) == (1, "one {{ x }}", "cache")
            assert elapsed < BUDGET_BOUND
            assert pinned().source == "cache"
            promptops.flush(timeout=10)  # let the failing refresh finish before the next round

        never_seen = f"{outage.name}-never-seen"
        used, elapsed = timed(tracked(never_seen, fallback="fallback {{ x }}"))
        assert (used.source, used.template) == ("fallback", "fallback {{ x }}")
        assert elapsed < BUDGET_BOUND
        started = time.monotonic()
        with pytest.raises(promptops.PromptUnavailableError) as caught:
            tracked(f"{never_seen}-2")()
        assert time.monotonic() - started < BUDGET_BOUND
        assert not isinstance(caught.value, promptops.PromptNotFoundError)
        assert f"{never_seen}-2" in str(caught.value) and outage.url in str(caught.value)
        outage.check_reason(str(caught.value))

    def test_a_new_process_uses_the_disk_copy(self, outage: Outage) -> None:
        outage.go_down()
        result = resolve_in_new_process(outage.url, outage.name, cache_dir=outage.warm_cache, timeout=BUDGET)
        assert (result["source"], result["version"], result["template"]) == ("disk", 1, "one {{ x }}"), result
        assert result["elapsed"] < BUDGET_BOUND
        assert "using last-known-good copy" in result["stderr"]  # a warning, not an error

    def test_a_new_process_with_nothing_on_disk_uses_the_fallback(self, outage: Outage, tmp_path: Path) -> None:
        outage.go_down()
        result = resolve_in_new_process(
            outage.url, outage.name, cache_dir=tmp_path / "empty", fallback="fb {{ x }}", timeout=BUDGET
        )
        assert (result["source"], result["version"], result["template"]) == ("fallback", 0, "fb {{ x }}"), result
        assert result["elapsed"] < BUDGET_BOUND

    def test_a_cold_process_raises_unavailable_within_the_budget(self, outage: Outage, tmp_path: Path) -> None:
        outage.go_down()
        result = resolve_in_new_process(outage.url, outage.name, cache_dir=tmp_path / "empty", timeout=BUDGET)
        assert result.get("error_type") == "PromptUnavailableError", result
        assert outage.name in result["error"] and outage.url in result["error"]
        assert "fallback=" in result["error"]  # and says what to do
        assert result["elapsed"] < BUDGET_BOUND
        outage.check_reason(result["error"])

    def test_preload_in_a_cold_process_raises(self, outage: Outage, tmp_path: Path) -> None:
        outage.go_down()
        result = resolve_in_new_process(
            outage.url, outage.name, cache_dir=tmp_path / "empty", preload=True, timeout=BUDGET
        )
        assert result.get("error_type") == "PromptUnavailableError", result
        assert outage.name in result["error"] and outage.url in result["error"]
        assert result["elapsed"] < BUDGET_BOUND

    def test_preload_succeeds_from_the_disk_copy(self, outage: Outage) -> None:
        outage.go_down()
        result = resolve_in_new_process(
            outage.url, outage.name, cache_dir=outage.warm_cache, preload=True, timeout=BUDGET
        )
        assert (result["source"], result["version"]) == ("disk", 1), result
        assert result["elapsed"] < BUDGET_BOUND
