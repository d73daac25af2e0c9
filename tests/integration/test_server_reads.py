"""promptops against a real `mlflow server`: reads over REST, alias moves, missing prompts, preload."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

import promptops
from promptops import Prompt, prompts
from promptops.prompts._registry import RestRegistry
from tests.integration.conftest import MlflowServer, resolve_in_new_process


def tracked(name: str, **kwargs: object) -> Callable[[], Prompt]:
    @promptops.track(prompt=name, **kwargs)  # type: ignore[call-overload]
    def call(*, prompt: Prompt) -> Prompt:
        return prompt

    return call  # type: ignore[no-any-return]


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll until `predicate()` holds; a bounded wait, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        promptops.flush(timeout=1)
        time.sleep(0.05)


def test_reads_text_and_chat_prompts_over_rest(server: MlflowServer, prompt_name: str) -> None:
    text_name, chat_name = f"{prompt_name}-text", f"{prompt_name}-chat"
    server.register(text_name, "Summarize: {{ text }}", alias="production", commit_message="first")
    server.register(text_name, "Summarize briefly: {{ text }}", alias="staging", tags={"team": "search"})
    chat = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Answer {{ question }} about {{topic}}"},
    ]
    server.register(
        chat_name,
        chat,
        alias="production",
        model_config={"model_name": "gpt-x", "temperature": 0.2, "max_tokens": 64},
    )
    promptops.configure(tracking_uri=server.url)

    first = tracked(text_name)()
    assert isinstance(prompts.resolver()._get_registry(), RestRegistry)  # pyright: ignore[reportPrivateUsage]
    assert (first.name, first.version, first.alias, first.source) == (text_name, 1, "production", "registry")
    assert first.template == "Summarize: {{ text }}"
    assert first.commit_message == "first"
    assert first.format(text="abc") == "Summarize: abc"
    second = tracked(text_name)()
    assert (second.version, second.source) == (1, "cache")

    staging = tracked(text_name, alias="staging")()
    assert (staging.version, staging.alias, staging.source) == (2, "staging", "registry")
    assert staging.tags == {"team": "search"}
    assert tracked(text_name, alias="staging")().source == "cache"

    pinned = tracked(text_name, version=2)()
    assert (pinned.version, pinned.alias, pinned.source, pinned.template) == (
        2,
        None,
        "registry",
        "Summarize briefly: {{ text }}",
    )
    assert tracked(text_name, version=1)().template == "Summarize: {{ text }}"

    chat_prompt = tracked(chat_name)()
    assert chat_prompt.source == "registry"
    assert chat_prompt.template == chat
    assert chat_prompt.variables == {"question", "topic"}
    assert chat_prompt.model_config == {"model_name": "gpt-x", "temperature": 0.2, "max_tokens": 64}
    assert chat_prompt.format(question="why", topic="sky") == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Answer why about sky"},
    ]
    assert tracked(chat_name)().source == "cache"


def test_pins_and_overrides_against_the_server(server: MlflowServer, prompt_name: str) -> None:
    server.register(prompt_name, "one", alias="production")
    server.register(prompt_name, "two", alias="canary")
    promptops.configure(tracking_uri=server.url, pins={prompt_name: "canary"})
    call = tracked(prompt_name)
    assert call().template == "two"
    with promptops.use_prompt(prompt_name, version=1):
        assert call().template == "one"


def test_a_new_process_reads_over_rest_without_importing_mlflow(
    server: MlflowServer, prompt_name: str, tmp_path: Path
) -> None:
    server.register(prompt_name, "hello {{ name }}", alias="production")
    result = resolve_in_new_process(server.url, prompt_name, cache_dir=tmp_path / "cache")
    assert (result["source"], result["version"], result["template"]) == ("registry", 1, "hello {{ name }}")
    assert result["mlflow_imported"] is False


def test_alias_moved_by_another_client_is_picked_up_after_the_ttl(server: MlflowServer, prompt_name: str) -> None:
    server.register(prompt_name, "one", alias="production")
    server.register(prompt_name, "two")
    promptops.configure(tracking_uri=server.url, cache_ttl=0.3)
    call = tracked(prompt_name)
    first = call()
    assert (first.version, first.source) == (1, "registry")
    assert call().source == "cache"

    server.set_alias(prompt_name, "production", 2)
    wait_for(lambda: call().version == 2)
    moved = call()
    assert (moved.template, moved.alias, moved.source) == ("two", "production", "cache")

    server.set_alias(prompt_name, "production", 1)  # and back: a rollback is picked up the same way
    wait_for(lambda: call().version == 1)


def test_missing_prompt_raises_not_found_naming_it(server: MlflowServer, prompt_name: str) -> None:
    promptops.configure(tracking_uri=server.url)
    with pytest.raises(promptops.PromptNotFoundError) as caught:
        tracked(prompt_name)()
    assert isinstance(caught.value, promptops.PromptUnavailableError)
    assert prompt_name in str(caught.value)
    assert server.url in str(caught.value)
    assert (caught.value.name, caught.value.uri) == (prompt_name, server.url)

    used = tracked(prompt_name, fallback="fallback {{ x }}")()
    assert (used.source, used.version, used.template) == ("fallback", 0, "fallback {{ x }}")


def test_missing_alias_and_version_raise_not_found(server: MlflowServer, prompt_name: str) -> None:
    server.register(prompt_name, "one", alias="production")
    promptops.configure(tracking_uri=server.url)
    with pytest.raises(promptops.PromptNotFoundError, match=prompt_name) as caught:
        tracked(prompt_name, alias="nope")()
    assert "nope" in str(caught.value)
    with pytest.raises(promptops.PromptNotFoundError, match=prompt_name):
        tracked(prompt_name, version=7)()
    assert tracked(prompt_name, alias="nope", fallback="fb")().source == "fallback"
    assert tracked(prompt_name)().template == "one"  # the prompt itself is fine


def test_preload_against_the_live_server(server: MlflowServer, prompt_name: str) -> None:
    server.register(prompt_name, "one", alias="production")
    server.register(prompt_name, "two", alias="staging")
    promptops.configure(tracking_uri=server.url)
    loaded = promptops.preload([prompt_name, f"{prompt_name}@staging", f"{prompt_name}/1"])
    # Fetched concurrently: a copy whose fetch finished before preload() looked at it reads "cache".
    assert {reference: (prompt.version, prompt.template) for reference, prompt in loaded.items()} == {
        prompt_name: (1, "one"),
        f"{prompt_name}@staging": (2, "two"),
        f"{prompt_name}/1": (1, "one"),
    }
    assert {prompt.source for prompt in loaded.values()} <= {"registry", "cache"}
    fetches = promptops.stats()["registry_fetches"]
    assert fetches == 3
    assert tracked(prompt_name)().source == "cache"  # the decorated function then finds them in memory
    assert tracked(prompt_name, alias="staging")().source == "cache"
    assert promptops.stats()["registry_fetches"] == fetches


def test_preload_names_each_missing_prompt(server: MlflowServer, prompt_name: str) -> None:
    server.register(prompt_name, "one", alias="production")
    promptops.configure(tracking_uri=server.url)
    with pytest.raises(promptops.PromptUnavailableError) as caught:
        promptops.preload([prompt_name, f"{prompt_name}-a", f"{prompt_name}-b"])
    assert f"{prompt_name}-a" in str(caught.value)
    assert f"{prompt_name}-b" in str(caught.value)
