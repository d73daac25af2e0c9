"""`@promptops.track(rollout_key=...)`: calls take their arm from the running rollout, on spans and capture records."""

from __future__ import annotations

import asyncio
import time

import pytest

import promptops
from promptops import Prompt
from promptops.capture import CaptureStore
from promptops.rollout import rollback, rollout_cache, start_rollout
from promptops.testing import capture_spans
from tests.conftest import Registry


def _running(registry: Registry, rollout_prompt: str, share: float, **kwargs):
    state = start_rollout(registry.client, rollout_prompt, candidate=2, share=share, **kwargs)
    rollout_cache().refresh(rollout_prompt)
    return state


def test_rollout_key_argument_is_sticky_and_labelled(registry: Registry, rollout_prompt: str) -> None:
    @promptops.track(prompt=rollout_prompt, rollout_key="user_id")
    def reply(user_id: str, text: str, *, prompt: Prompt) -> Prompt:
        return prompt

    assert reply("u", "x").rollout_arm is None  # no rollout yet
    state = _running(registry, rollout_prompt, 0.3)
    with capture_spans() as spans:
        arms = {f"u{i}": reply(f"u{i}", "x").rollout_arm for i in range(400)}
    assert set(arms.values()) == {"baseline", "candidate"}
    assert 0.2 <= sum(arm == "candidate" for arm in arms.values()) / 400 <= 0.4
    assert all(reply(user_id=key, text="y").rollout_arm == arm for key, arm in list(arms.items())[:100])
    assert all(reply(key, "z").version == (2 if arm == "candidate" else 1) for key, arm in list(arms.items())[:100])

    finished = spans.finished()
    attributes = [dict(span.attributes or {}) for span in finished]
    assert {a["promptops.rollout.arm"] for a in attributes} == {"baseline", "candidate"}
    assert {a["promptops.rollout.id"] for a in attributes} == {state.id}
    assert all(
        a["promptops.prompt.version"] == (2 if a["promptops.rollout.arm"] == "candidate" else 1) for a in attributes
    )

    assert promptops.flush(timeout=60)
    url = promptops.get_settings().capture
    assert url is not None
    records = [r for r in CaptureStore.open(url).query() if r.tags.get("promptops.rollout.id") == state.id]
    assert len(records) == 400 + 200
    assert all(r.tags["promptops.rollout.arm"] == arms[r.inputs["user_id"]] for r in records)


def test_pins_overrides_and_versions_win(registry: Registry, rollout_prompt: str) -> None:
    _running(registry, rollout_prompt, 1.0)

    @promptops.track(prompt=rollout_prompt)
    def plain(text: str, *, prompt: Prompt) -> Prompt:
        return prompt

    @promptops.track(prompt=rollout_prompt, version=1)
    def pinned(text: str, *, prompt: Prompt) -> Prompt:
        return prompt

    assert plain("x").rollout_arm == "candidate"  # share 1: every unpinned call
    assert pinned("x").rollout_arm is None and pinned("x").version == 1
    with promptops.use_prompt(rollout_prompt, alias="production"):
        assert plain("x").rollout_arm is None
    promptops.configure(tracking_uri=registry.uri, trace_exporter="none", pins={rollout_prompt: "production"})
    assert plain("x").rollout_arm is None


def test_rollout_key_block_async_and_rollback(registry: Registry, rollout_prompt: str) -> None:
    @promptops.track(prompt=rollout_prompt)
    async def areply(text: str, *, prompt: Prompt) -> Prompt:
        return prompt

    @promptops.track(prompt=rollout_prompt)
    def current(text: str) -> Prompt | None:
        return promptops.current_prompt()

    asyncio.run(areply("x"))
    _running(registry, rollout_prompt, 0.5)

    async def arms(key: str) -> set[str | None]:
        with promptops.rollout_key(key):
            return {(await areply("x")).rollout_arm for _ in range(20)}

    for key in ("a", "b", "c", "d", "e"):
        assert len(asyncio.run(arms(key))) == 1  # one arm per key
        with promptops.rollout_key(key):
            assert {current("x").rollout_arm for _ in range(10)} == asyncio.run(arms(key))  # type: ignore[union-attr]

    rollback(registry.client, rollout_prompt)
    rollout_cache().refresh(rollout_prompt)
    assert asyncio.run(areply("x")).rollout_arm is None


def test_calls_without_a_rollout_still_see_one_start_and_end_within_the_ttl(
    registry: Registry, rollout_prompt: str
) -> None:
    """The no-rollout fast path (issue 16) skips the rollout check only while the state it saw is fresh."""
    promptops.configure(tracking_uri=registry.uri, trace_exporter="none", capture=None, cache_ttl=1.0)

    @promptops.track(prompt=rollout_prompt, rollout_key="user")
    def reply(user: str, *, prompt: Prompt) -> Prompt:
        return prompt

    def arms_until(wanted: set[str | None], seconds: float) -> tuple[float, set[str | None]]:
        started = time.monotonic()
        while True:
            arms = {reply(f"u{index}").rollout_arm for index in range(40)}
            if arms == wanted or time.monotonic() - started > seconds:
                return time.monotonic() - started, arms
            time.sleep(0.02)

    assert {reply(f"u{index}").rollout_arm for index in range(40)} == {None}
    time.sleep(1.0)  # the first registry read has answered "no rollout": calls take the fast path
    assert {reply(f"u{index}").rollout_arm for index in range(40)} == {None}
    # Started by another process: nothing here refreshes the rollout cache; calls must pick it up themselves.
    start_rollout(registry.client, rollout_prompt, candidate=2, share=0.5)
    waited, arms = arms_until({"baseline", "candidate"}, 10.0)
    assert arms == {"baseline", "candidate"}
    assert waited < 3.0  # within the TTL (1 s), the registry read and the candidate's fetch, with room for load
    rollback(registry.client, rollout_prompt)
    waited, arms = arms_until({None}, 10.0)
    assert arms == {None} and waited < 3.0


def test_a_state_read_in_process_applies_to_the_next_call(registry: Registry, rollout_prompt: str) -> None:
    """`refresh()` (the CLI, tests) replaces the state a decorator's fast path holds: the very next call sees it."""

    @promptops.track(prompt=rollout_prompt)
    def reply(text: str, *, prompt: Prompt) -> Prompt:
        return prompt

    for _ in range(3):
        assert reply("x").rollout_arm is None
    rollout_cache().refresh(rollout_prompt)  # "no rollout", read again: a new state object, still quiet
    assert reply("x").rollout_arm is None
    _running(registry, rollout_prompt, 1.0)
    assert reply("x").rollout_arm == "candidate"


def test_a_rollout_key_that_is_not_an_argument_is_refused(rollout_prompt: str) -> None:
    with pytest.raises(ValueError, match="no argument 'user'"):

        @promptops.track(prompt=rollout_prompt, rollout_key="user")
        def reply(text: str) -> str:
            return text
