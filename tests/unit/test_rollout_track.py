"""`@promptops.track(rollout_key=...)`: calls take their arm from the running rollout, on spans and capture records."""

from __future__ import annotations

import asyncio

import pytest

import promptops
from promptops import Prompt
from promptops.capture import CaptureStore
from promptops.rollout import rollback, rollout_cache, start_rollout
from promptops.rollout._cache import _install  # pyright: ignore[reportPrivateUsage]
from promptops.testing import capture_spans
from tests.conftest import Registry


@pytest.fixture(autouse=True)
def _fresh_rollout_cache():
    _install(None)
    yield
    _install(None)


@pytest.fixture
def name(local_registry: Registry, prompt_name: str) -> str:
    local_registry.register(prompt_name, "v1 {{text}}", alias="production")
    local_registry.register(prompt_name, "v2 {{text}}")
    promptops.configure(tracking_uri=local_registry.uri, trace_exporter="none")
    return prompt_name


def _running(registry: Registry, name: str, share: float, **kwargs):
    state = start_rollout(registry.client, name, candidate=2, share=share, **kwargs)
    rollout_cache().refresh(name)
    return state


def test_rollout_key_argument_is_sticky_and_labelled(registry: Registry, name: str) -> None:
    @promptops.track(prompt=name, rollout_key="user_id")
    def reply(user_id: str, text: str, *, prompt: Prompt) -> Prompt:
        return prompt

    assert reply("u", "x").rollout_arm is None  # no rollout yet
    state = _running(registry, name, 0.3)
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


def test_pins_overrides_and_versions_win(registry: Registry, name: str) -> None:
    _running(registry, name, 1.0)

    @promptops.track(prompt=name)
    def plain(text: str, *, prompt: Prompt) -> Prompt:
        return prompt

    @promptops.track(prompt=name, version=1)
    def pinned(text: str, *, prompt: Prompt) -> Prompt:
        return prompt

    assert plain("x").rollout_arm == "candidate"  # share 1: every unpinned call
    assert pinned("x").rollout_arm is None and pinned("x").version == 1
    with promptops.use_prompt(name, alias="production"):
        assert plain("x").rollout_arm is None
    promptops.configure(tracking_uri=registry.uri, trace_exporter="none", pins={name: "production"})
    assert plain("x").rollout_arm is None


def test_rollout_key_block_async_and_rollback(registry: Registry, name: str) -> None:
    @promptops.track(prompt=name)
    async def areply(text: str, *, prompt: Prompt) -> Prompt:
        return prompt

    @promptops.track(prompt=name)
    def current(text: str) -> Prompt | None:
        return promptops.current_prompt()

    asyncio.run(areply("x"))
    _running(registry, name, 0.5)

    async def arms(key: str) -> set[str | None]:
        with promptops.rollout_key(key):
            return {(await areply("x")).rollout_arm for _ in range(20)}

    for key in ("a", "b", "c", "d", "e"):
        assert len(asyncio.run(arms(key))) == 1  # one arm per key
        with promptops.rollout_key(key):
            assert {current("x").rollout_arm for _ in range(10)} == asyncio.run(arms(key))  # type: ignore[union-attr]

    rollback(registry.client, name)
    rollout_cache().refresh(name)
    assert asyncio.run(areply("x")).rollout_arm is None


def test_a_rollout_key_that_is_not_an_argument_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="no argument 'user'"):

        @promptops.track(prompt=name, rollout_key="user")
        def reply(text: str) -> str:
            return text
