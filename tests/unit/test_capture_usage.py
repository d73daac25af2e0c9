"""Token usage kept with capture records (issue 14): `record_usage()` in a tracked call, or its returned response.

Streams too: what a tracked generator reports while it runs. The real `openai` and `anthropic` SDKs and
LangChain's `ChatOpenAI` talk to `promptops.provider_server` on
127.0.0.1, whose token counters are what the records must hold. Older stores gain the usage columns in place.
"""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import sqlalchemy as sa
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI

import promptops
from promptops import Prompt
from promptops.capture import CaptureRecord, CaptureStore
from promptops.capture import _store as capture_store
from promptops.provider_server import ProviderServer
from promptops.testing import capture_spans
from tests.conftest import Registry
from tests.support import write_as_older_schema
from tests.unit.test_datasets import make_capture


@pytest.fixture
def name(local_registry: Registry, prompt_name: str) -> str:
    local_registry.register(prompt_name, "Summarize: {{text}}", alias="production")
    return prompt_name


@pytest.fixture
def provider() -> ProviderServer:
    with ProviderServer() as server:
        yield server  # type: ignore[misc]


def records() -> list[CaptureRecord]:
    assert promptops.flush(timeout=30)
    url = promptops.get_settings().capture
    assert url is not None
    store = CaptureStore.open(url)
    try:
        return list(store.query())
    finally:
        store.close()


def usage(record: CaptureRecord) -> tuple[int | None, int | None, str | None, str | None]:
    return record.input_tokens, record.output_tokens, record.model, record.provider


@pytest.mark.parametrize("traced", [False, True], ids=["capture only", "traced and captured"])
def test_record_usage_is_kept_with_the_record_summed_over_model_calls(name: str, traced: bool) -> None:
    @promptops.track(prompt=name)
    def summarize(text: str, *, prompt: Prompt) -> str:
        promptops.record_usage(input_tokens=12, output_tokens=3, model="gpt-4o-mini", provider="openai")
        promptops.record_usage(input_tokens=30, output_tokens=7, response_model="gpt-4o-mini-2024-07-18")
        return text

    if traced:
        with capture_spans() as spans:
            summarize("hello")
        (span,) = spans.finished()
        assert span.attributes is not None and span.attributes["gen_ai.usage.input_tokens"] == 30  # as before
    else:
        promptops.configure(trace_exporter="none")
        summarize("hello")
    (record,) = records()
    assert usage(record) == (42, 10, "gpt-4o-mini-2024-07-18", "openai")


def test_a_call_that_reports_nothing_has_no_usage_and_a_failed_call_keeps_what_it_spent(name: str) -> None:
    promptops.configure(trace_exporter="none")

    @promptops.track(prompt=name)
    def quiet(text: str, *, prompt: Prompt) -> dict[str, str]:
        return {"text": text}  # not a provider response

    @promptops.track(prompt=name)
    def parse(text: str, *, prompt: Prompt) -> str:
        promptops.record_usage(input_tokens=5, output_tokens=2, model="claude-3-5-haiku")
        raise ValueError("the answer did not parse")

    quiet("a")
    with pytest.raises(ValueError, match="did not parse"):
        parse("b")
    by_function = {record.function.rsplit(".", 1)[-1]: record for record in records()}
    assert usage(by_function["quiet"]) == (None, None, None, None)
    assert usage(by_function["parse"]) == (5, 2, "claude-3-5-haiku", None)
    assert by_function["parse"].error_type == "ValueError"


def test_a_nested_tracked_call_counts_for_itself_and_for_the_enclosing_call(name: str) -> None:
    promptops.configure(trace_exporter="none")

    @promptops.track(prompt=name)
    def inner(text: str, *, prompt: Prompt) -> str:
        promptops.record_usage(input_tokens=10, output_tokens=1, model="gpt-4o")
        return text

    @promptops.track(prompt=name)
    def outer(text: str, *, prompt: Prompt) -> str:
        promptops.record_usage(input_tokens=100, output_tokens=20, model="gpt-4o-mini")
        return inner(text) + inner(text)

    outer("x")
    by_function = {record.function.rsplit(".", 1)[-1]: record for record in records()}
    assert [usage(record) for record in records() if record.function.endswith("inner")] == [(10, 1, "gpt-4o", None)] * 2
    assert usage(by_function["outer"]) == (120, 22, "gpt-4o", None)


def test_an_async_call_keeps_its_usage_per_task(name: str) -> None:
    promptops.configure(trace_exporter="none")

    @promptops.track(prompt=name)
    async def answer(n: int, *, prompt: Prompt) -> str:
        await asyncio.sleep(0.01 * (3 - n))  # the tasks interleave
        promptops.record_usage(input_tokens=n, output_tokens=10 * n, model=f"model-{n}")
        await asyncio.sleep(0.001)
        return str(n)

    async def main() -> None:
        await asyncio.gather(*(answer(n) for n in (1, 2, 3)))

    asyncio.run(main())
    assert sorted(usage(record) for record in records()) == [(n, 10 * n, f"model-{n}", None) for n in (1, 2, 3)]


def test_returned_provider_responses_carry_their_usage(name: str, provider: ProviderServer) -> None:
    """The real SDKs' response objects, returned by the tracked function, fill the record without record_usage()."""
    promptops.configure(trace_exporter="none")

    @promptops.track(prompt=name)
    def with_openai(text: str, *, prompt: Prompt) -> openai.types.chat.ChatCompletion:
        with openai.OpenAI(base_url=provider.openai_url, api_key="test", max_retries=0) as client:
            return client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": prompt.format(text=text)}]
            )

    @promptops.track(prompt=name)
    def with_anthropic(text: str, *, prompt: Prompt) -> anthropic.types.Message:
        with anthropic.Anthropic(base_url=provider.url, api_key="test", max_retries=0) as client:
            return client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=200,
                messages=[{"role": "user", "content": prompt.format(text=text)}],
            )

    @promptops.track(prompt=name)
    def with_langchain(text: str, *, prompt: Prompt) -> AIMessage:
        model = ChatOpenAI(base_url=provider.openai_url, api_key="test", max_retries=0, model="gpt-4o-mini")  # pyright: ignore[reportArgumentType]
        reply = model.invoke(prompt.format(text=text))
        assert isinstance(reply, AIMessage)
        return reply

    expected: dict[str, tuple[int, int]] = {}
    for func in (with_openai, with_anthropic, with_langchain):
        before = (provider.input_tokens, provider.output_tokens)
        func("the quarterly report, in three short sentences")
        expected[func.__name__] = (provider.input_tokens - before[0], provider.output_tokens - before[1])
        assert expected[func.__name__][0] > 0 and expected[func.__name__][1] > 0  # the server counted real usage
    found = {record.function.rsplit(".", 1)[-1]: record for record in records()}
    assert usage(found["with_openai"]) == (*expected["with_openai"], "gpt-4o-mini", "openai")
    assert usage(found["with_anthropic"]) == (*expected["with_anthropic"], "claude-haiku-4-5", "anthropic")
    langchain = usage(found["with_langchain"])
    assert langchain[:3] == (*expected["with_langchain"], "gpt-4o-mini")
    assert langchain[3] in ("openai", None)  # `model_provider` is in the message's metadata from langchain-core 1.0


@pytest.mark.parametrize("kind", ["generator", "async generator"])
def test_a_stream_keeps_the_usage_reported_while_it_runs(name: str, kind: str) -> None:
    """`record_usage()` inside a tracked generator, before, between and after its items, lands in its record.

    Two streams consumed in turns keep their own tokens; what the consumer reports between items is not theirs;
    the tracked call consuming them counts their tokens too, as for a nested call (issue 14).
    """
    promptops.configure(trace_exporter="none")

    @promptops.track(prompt=name)
    def words(text: str, n: int, *, prompt: Prompt) -> Iterator[str]:
        promptops.record_usage(input_tokens=10 * n, model="gpt-4o-mini", provider="openai")
        for word in text.split():
            yield word
            promptops.record_usage(output_tokens=n, response_model=f"gpt-4o-mini-{n}")

    @promptops.track(prompt=name)
    async def awords(text: str, n: int, *, prompt: Prompt) -> AsyncIterator[str]:
        promptops.record_usage(input_tokens=10 * n, model="gpt-4o-mini", provider="openai")
        for word in text.split():
            await asyncio.sleep(0)
            yield word
            promptops.record_usage(output_tokens=n, response_model=f"gpt-4o-mini-{n}")

    def mine() -> None:  # the consumer's own model call, between the streams' items
        promptops.record_usage(input_tokens=100, model="consumer-model")

    @promptops.track(prompt=name)
    def consume(text: str, *, prompt: Prompt) -> str:
        pairs: list[tuple[str, str]] = []
        if kind == "generator":
            for pair in zip(words(text, 1), words(text, 2), strict=True):
                mine()
                pairs.append(pair)
        else:

            async def both() -> None:
                first, second = awords(text, 1), awords(text, 2)
                async for item in first:
                    pairs.append((item, await anext(second)))
                    mine()
                assert [item async for item in second] == []

            asyncio.run(both())
        return " ".join(a + b for a, b in pairs)

    assert consume("one two three") == "oneone twotwo threethree"
    (outer,) = [record for record in records() if "consume" in record.function]
    streams = sorted(usage(record) for record in records() if "words" in record.function)
    assert streams == [(10, 3, "gpt-4o-mini-1", "openai"), (20, 6, "gpt-4o-mini-2", "openai")]
    assert usage(outer) == (330, 9, "gpt-4o-mini-2", "openai")  # its own 3 x 100, and the streams' tokens


def test_a_stream_through_the_real_openai_sdk_keeps_the_servers_token_counts(
    name: str, provider: ProviderServer
) -> None:
    """Streamed chat completions (`stream_options={"include_usage": True}`), sync and async, three ways of yielding.

    The usage is reported from the final chunk with `record_usage()`, or read from that chunk when the generator
    yields the SDK's chunks as they are; either way the record holds what the server counted.
    """
    promptops.configure(trace_exporter="none")
    options: Any = {"stream": True, "stream_options": {"include_usage": True}, "model": "gpt-4o-mini"}

    def ask(prompt: Prompt, text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": prompt.format(text=text)}]

    @promptops.track(prompt=name)
    def deltas(text: str, *, prompt: Prompt) -> Iterator[str]:
        with openai.OpenAI(base_url=provider.openai_url, api_key="test", max_retries=0) as client:
            for chunk in client.chat.completions.create(messages=ask(prompt, text), **options):
                if chunk.usage is not None:
                    promptops.record_usage(
                        input_tokens=chunk.usage.prompt_tokens,
                        output_tokens=chunk.usage.completion_tokens,
                        response_model=chunk.model,
                        provider="openai",
                    )
                elif chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content

    @promptops.track(prompt=name)
    def chunks(text: str, *, prompt: Prompt) -> Iterator[Any]:
        with openai.OpenAI(base_url=provider.openai_url, api_key="test", max_retries=0) as client:
            yield from client.chat.completions.create(messages=ask(prompt, text), **options)

    @promptops.track(prompt=name)
    async def achunks(text: str, *, prompt: Prompt) -> AsyncIterator[Any]:
        async with openai.AsyncOpenAI(base_url=provider.openai_url, api_key="test", max_retries=0) as client:
            async for chunk in await client.chat.completions.create(messages=ask(prompt, text), **options):
                yield chunk

    async def drain(stream: AsyncIterator[Any]) -> list[Any]:
        return [item async for item in stream]

    expected: dict[str, tuple[int, int]] = {}
    text = "the quarterly report, in three short sentences"
    for func in (deltas, chunks, achunks):
        before = (provider.input_tokens, provider.output_tokens)
        items = asyncio.run(drain(achunks(text))) if func is achunks else list(func(text))
        expected[func.__name__] = (provider.input_tokens - before[0], provider.output_tokens - before[1])
        assert expected[func.__name__][0] > 0 and len(items) > 3  # the server counted real usage, streamed
        if func is deltas:
            assert len("".join(items).split()) == expected["deltas"][1]  # the words streamed are those counted
    found = {record.function.rsplit(".", 1)[-1]: record for record in records()}
    for function, tokens in expected.items():
        assert usage(found[function]) == (*tokens, "gpt-4o-mini", "openai"), function


def test_usage_is_not_read_in_a_replay_by_capture(name: str) -> None:
    """Replay's own sink still gets the tokens: a replayed call is not captured, so nothing else takes them."""
    from promptops._usage import Usage, usage_sink  # pyright: ignore[reportPrivateUsage]
    from promptops.prompts import replay_active

    @promptops.track(prompt=name)
    def summarize(text: str, *, prompt: Prompt) -> str:
        promptops.record_usage(input_tokens=4, output_tokens=2, model="gpt-4o")
        return text

    sink = Usage()
    replaying, listening = replay_active.set(True), usage_sink.set(sink)
    try:
        summarize("a")
    finally:
        usage_sink.reset(listening)
        replay_active.reset(replaying)
    assert (sink.input_tokens, sink.output_tokens, sink.model, sink.reports) == (4, 2, "gpt-4o", 1)
    assert records() == []


def version_2_store(url: str) -> sa.Engine:
    """A store as promptops with schema version 2 left it: its tables, its columns, one capture."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        capture_store._migrate_v1(connection)  # pyright: ignore[reportPrivateUsage]
        capture_store._migrate_v2(connection)  # pyright: ignore[reportPrivateUsage]
        capture_store.schema_table.create(connection)
        connection.execute(capture_store.schema_table.insert().values(version=2))
    return engine


def test_a_version_2_store_gains_the_usage_columns_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v2.db'}"
    engine = version_2_store(url)
    old = make_capture(age=datetime.timedelta(minutes=2))
    write_as_older_schema(engine, [old])
    engine.dispose()
    with sqlite3.connect(tmp_path / "v2.db") as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(promptops_captures)")}
    assert "input_tokens" not in columns  # a faithful version 2 table

    store = CaptureStore.open(url)
    try:
        assert store.schema_version() == capture_store.SCHEMA_VERSION == 4
        new = make_capture(age=datetime.timedelta(minutes=1))
        new.input_tokens, new.output_tokens, new.model, new.provider = 7, 3, "gpt-4o", "openai"
        store.write([new])
        assert list(store.query()) == [old, new]  # the old call has no usage; the new one round-trips it
        assert usage(old) == (None, None, None, None)
        assert store.migrate() == 0
    finally:
        store.close()
