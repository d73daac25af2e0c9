"""Refresh under load and a slow server, counted at the HTTP level by a proxy in front of a real `mlflow server`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import promptops
from promptops import Prompt
from tests.conftest import reset_promptops
from tests.integration.conftest import CountingProxy, MlflowServer

ALIAS_PATH = "/api/2.0/mlflow/registered-models/alias"
ROLLOUT_PATH = "/api/2.0/mlflow/registered-models/get"  # a prompt's tags: its rollout state
BUDGET_BOUND = 5.0  # generous: proves a call does not wait out MLflow's 120 s x 5 retries


def tracked(name: str, **kwargs: object) -> Callable[[], Prompt]:
    @promptops.track(prompt=name, **kwargs)  # type: ignore[call-overload]
    def call(*, prompt: Prompt) -> Prompt:
        return prompt

    return call  # type: ignore[no-any-return]


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, *, flush: bool = True) -> None:
    """Poll until `predicate()` holds; a bounded wait, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        if flush:
            promptops.flush(timeout=1)
        time.sleep(0.05)


def timed(call: Callable[[], Prompt]) -> tuple[Prompt, float]:
    started = time.monotonic()
    prompt = call()
    return prompt, time.monotonic() - started


def test_100_threads_on_an_expired_alias_make_one_round_trip(
    server: MlflowServer, proxy: CountingProxy, prompt_name: str
) -> None:
    server.register(prompt_name, "one", alias="production")
    server.register(prompt_name, "two")
    # A budget longer than the hold below, so the held refresh completes once released.
    # Spans would go to the same server through the proxy; this test counts prompt reads only.
    promptops.configure(tracking_uri=proxy.url, cache_ttl=0.3, registry_timeout=30, trace_exporter="none")
    call = tracked(prompt_name)
    assert call().source == "registry"
    assert proxy.count(ALIAS_PATH) == 1
    server.set_alias(prompt_name, "production", 2)
    time.sleep(0.35)  # past the TTL: the entry is now due for a refresh (not a timing assertion)

    # Hold the refresh at the proxy until every caller has returned, so no caller can come "after" it: all
    # 100 find the entry expired, get the stale copy at once, and must share one refresh.
    proxy.reset()
    proxy.hold(30)
    barrier = threading.Barrier(100)
    results: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            prompt = call()
            results.append((prompt.version, prompt.source))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert results == [(1, "cache")] * 100  # the stale copy, served without waiting for the held refresh
    wait_for(lambda: proxy.count(ALIAS_PATH) >= 1, flush=False)  # the refresh reached the proxy, held there
    proxy.release()
    assert promptops.flush(timeout=10)
    assert proxy.count(ALIAS_PATH) == 1
    # Besides the alias, each prompt's rollout state is read once per TTL (issue 14), shared by all 100 callers.
    others = [request for request in proxy.requests if not request[1].startswith(ALIAS_PATH)]
    assert all(method == "GET" for method, _ in proxy.requests)
    assert [path.split("?")[0] for _, path in others] in ([], [ROLLOUT_PATH]), proxy.requests
    assert promptops.stats()["registry_fetches"] == 2  # the first resolution and the one refresh
    assert call().version == 2  # and the refresh brought the moved alias


def test_100_threads_on_a_cold_alias_share_one_round_trip(
    server: MlflowServer, proxy: CountingProxy, prompt_name: str
) -> None:
    server.register(prompt_name, "one", alias="production")
    promptops.configure(tracking_uri=proxy.url, trace_exporter="none")  # count prompt reads only
    call = tracked(prompt_name)
    barrier = threading.Barrier(100)
    results: list[str] = []

    def worker() -> None:
        barrier.wait(timeout=30)
        results.append(call().template)  # type: ignore[arg-type]

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == ["one"] * 100
    assert proxy.count(ALIAS_PATH) == 1
    assert promptops.stats()["registry_fetches"] == 1


def test_slow_server_serves_cache_and_disk_within_the_budget_then_recovers(
    server: MlflowServer, proxy: CountingProxy, prompt_name: str
) -> None:
    server.register(prompt_name, "one", alias="production")
    server.register(prompt_name, "two")
    settings = {"tracking_uri": proxy.url, "cache_ttl": 0.3, "registry_timeout": 0.5, "trace_exporter": "none"}
    promptops.configure(**settings)  # type: ignore[arg-type]
    call = tracked(prompt_name)
    assert call().source == "registry"  # and saved to disk

    proxy.hold(3)  # every answer now comes 3 s late: longer than the 0.5 s budget
    time.sleep(0.35)  # past the TTL (not a timing assertion)
    stale, elapsed = timed(call)
    assert (stale.version, stale.source) == (1, "cache")
    assert elapsed < BUDGET_BOUND
    assert promptops.flush(timeout=10)  # the refresh gave up after its own timeout
    assert call().source == "cache"

    # A restart while the server is slow: nothing in memory, the disk copy after one budget.
    reset_promptops()
    promptops.configure(**settings)  # type: ignore[arg-type]
    call = tracked(prompt_name)
    from_disk, elapsed = timed(call)
    assert (from_disk.version, from_disk.source) == (1, "disk")
    assert elapsed < BUDGET_BOUND
    assert call().source == "disk"  # remembered in memory: later callers don't wait again
    other, elapsed = timed(tracked(f"{prompt_name}-never-seen", fallback="fb"))
    assert (other.source, other.template) == ("fallback", "fb")
    assert elapsed < BUDGET_BOUND

    # The delay goes away and the alias has moved meanwhile: picked up by a background refresh.
    server.set_alias(prompt_name, "production", 2)
    proxy.release()
    wait_for(lambda: call().version == 2)
    recovered = call()
    assert (recovered.template, recovered.source) == ("two", "cache")
