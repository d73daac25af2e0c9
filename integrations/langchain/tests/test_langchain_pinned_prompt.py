"""`pinned_prompt()` against a real MLflow sqlite registry: resolution order, caches, outage, conversion."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_support import Registry, closed_port

import promptops
from promptops import Prompt, PromptFormatError
from promptops.prompts._disk import DiskCache
from promptops_langchain import PinnedPrompt, pinned_prompt
from promptops_langchain._prompt import to_langchain_template


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll until `predicate()` is true; a bounded wait, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_text_prompt_becomes_a_prompt_template(local_registry: Registry, prompt_name: str) -> None:
    local_registry.register(prompt_name, 'Summarize {{ text }} as JSON like {"summary": "..."}.', alias="production")
    prompt = pinned_prompt(prompt_name)
    template = to_langchain_template(prompt.resolve())
    assert isinstance(template, PromptTemplate)
    assert template.template == 'Summarize {text} as JSON like {{"summary": "..."}}.'  # literal braces doubled
    value = prompt.invoke({"text": "the report"})
    assert isinstance(value, StringPromptValue)
    assert value.to_string() == 'Summarize the report as JSON like {"summary": "..."}.'
    assert prompt.promptops_prompt == prompt_name
    assert prompt.get_input_jsonschema()["required"] == ["text"]


def test_dotted_variables_which_langchain_f_strings_reject(local_registry: Registry, prompt_name: str) -> None:
    local_registry.register(prompt_name, "Dear {{user.name}}, about {{ topic }}: {{ user.name }}!", alias="production")
    prompt = pinned_prompt(prompt_name)
    template = to_langchain_template(prompt.resolve())
    assert isinstance(template, PromptTemplate)
    assert template.template == "Dear {user_dot_name}, about {topic}: {user_dot_name}!"
    assert prompt.invoke({"user.name": "Ann", "topic": "tea"}).to_string() == "Dear Ann, about tea: Ann!"
    with pytest.raises(PromptFormatError, match=r"needs variable\(s\) user.name"):
        prompt.invoke({"topic": "tea"})
    assert "required" not in prompt.get_input_jsonschema()


def test_chat_prompt_becomes_a_chat_prompt_template(local_registry: Registry, prompt_name: str) -> None:
    local_registry.register(
        prompt_name,
        [
            {"role": "system", "content": "You summarize {{ style }}."},
            {"role": "placeholder", "content": "{{ history }}"},
            {"role": "user", "content": "{{ text }}"},
        ],
        alias="production",
    )
    prompt = pinned_prompt(prompt_name)
    assert isinstance(to_langchain_template(prompt.resolve()), ChatPromptTemplate)
    value = prompt.invoke({"style": "tersely", "history": [AIMessage("earlier")], "text": "the report"})
    assert isinstance(value, ChatPromptValue)
    assert [(message.type, message.content) for message in value.to_messages()] == [
        ("system", "You summarize tersely."),
        ("ai", "earlier"),
        ("human", "the report"),
    ]


def test_jinja_template_keeps_its_control_flow(local_registry: Registry, prompt_name: str) -> None:
    local_registry.register(prompt_name, "{% if short %}Briefly: {% endif %}{{ text }}", alias="production")
    prompt = pinned_prompt(prompt_name)
    assert prompt.invoke({"short": True, "text": "x"}).to_string() == "Briefly: x"
    assert prompt.invoke({"short": False, "text": "x"}).to_string() == "x"


def test_resolution_order_and_alias_moves_in_a_long_lived_chain(local_registry: Registry, prompt_name: str) -> None:
    one = local_registry.register(prompt_name, "one {{ text }}", alias="production")
    two = local_registry.register(prompt_name, "two {{ text }}", alias="staging")
    three = local_registry.register(prompt_name, "three {{ text }}")
    promptops.configure(cache_ttl=0.2)
    chain = pinned_prompt(prompt_name) | ParrotFakeChatModel() | StrOutputParser()
    assert chain.invoke({"text": "t"}) == "one t"
    with promptops.use_prompt(prompt_name, version=three):
        assert chain.invoke({"text": "t"}) == "three t"
        assert asyncio.run(chain.ainvoke({"text": "t"})) == "three t"
    assert chain.invoke("t") == "one t"  # pyright: ignore[reportArgumentType]  # a single variable: the bare value
    assert pinned_prompt(prompt_name, alias="staging").invoke({"text": "t"}).to_string() == "two t"
    assert pinned_prompt(prompt_name, version=three).resolve().version == three
    local_registry.set_alias(prompt_name, "production", two)
    wait_for(lambda: chain.invoke({"text": "t"}) == "two t")  # the same chain object follows the alias
    promptops.configure(pins={prompt_name: one})
    assert chain.invoke({"text": "t"}) == "one t"


def test_dead_registry_serves_the_disk_copy(prompt_name: str, caplog: pytest.LogCaptureFixture) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    # The last-known-good copy a previous process left for this registry.
    DiskCache(Path(".promptops"), uri).save(
        Prompt(name=prompt_name, version=7, template="from disk: {{ text }}"), ("alias", "production")
    )
    promptops.configure(tracking_uri=uri, registry_timeout=1.0)
    chain = pinned_prompt(prompt_name, fallback="fallback: {{ text }}") | ParrotFakeChatModel() | StrOutputParser()
    with caplog.at_level(logging.WARNING, logger="promptops"):
        assert chain.invoke({"text": "t"}) == "from disk: t"
    assert "last-known-good" in caplog.text
    resolved = pinned_prompt(prompt_name).resolve()
    assert (resolved.version, resolved.source) == (7, "disk")


def test_fallback_then_a_clear_error(prompt_name: str) -> None:
    promptops.configure(tracking_uri=f"http://127.0.0.1:{closed_port()}", registry_timeout=1.0)
    with_fallback = pinned_prompt(prompt_name, fallback=[{"role": "user", "content": "Hi {{ name }}"}])
    assert with_fallback.invoke({"name": "Ann"}).to_messages() == [HumanMessage("Hi Ann")]
    assert with_fallback.resolve().source == "fallback"
    with pytest.raises(promptops.PromptUnavailableError, match=prompt_name):
        pinned_prompt(prompt_name).invoke({"name": "Ann"})
    # Without a copy there is no schema to read: any dict.
    assert pinned_prompt(prompt_name).get_input_jsonschema()["type"] == "object"


def test_missing_variables_and_bad_arguments(local_registry: Registry, prompt_name: str) -> None:
    local_registry.register(prompt_name, "{{ a }} and {{ b }}", alias="production")
    prompt = pinned_prompt(prompt_name)
    with pytest.raises(PromptFormatError, match=r"needs variable\(s\) b") as caught:
        prompt.invoke({"a": 1})
    assert isinstance(caught.value, KeyError)  # what LangChain's own templates raise
    with pytest.raises(TypeError, match="takes a dict"):
        prompt.invoke("only one value")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="not both"):
        pinned_prompt(prompt_name, version=1, alias="staging")
    with pytest.raises(ValueError, match="from 1"):
        pinned_prompt(prompt_name, version=0)
    with pytest.raises(ValueError, match="registry name"):
        pinned_prompt("")
    assert isinstance(prompt, PinnedPrompt) and prompt.promptops_selector is None
    assert pinned_prompt(prompt_name, alias="@staging").promptops_selector == ("alias", "staging")
