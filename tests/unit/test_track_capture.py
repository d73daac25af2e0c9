"""`@promptops.track` writes capture records through the real writer into a real SQLite store."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import promptops
from promptops import Prompt
from promptops.capture import CaptureRecord, CaptureStore, _writer  # pyright: ignore[reportPrivateUsage]
from promptops.prompts import replay_active
from promptops.testing import capture_spans
from tests.conftest import Registry


@pytest.fixture
def name(local_registry: Registry, prompt_name: str) -> str:
    local_registry.register(prompt_name, "Summarize: {{text}}", alias="production")
    return prompt_name


def records() -> list[CaptureRecord]:
    assert promptops.flush(timeout=10)
    url = promptops.get_settings().capture
    assert url is not None
    return list(CaptureStore.open(url).query())


def test_a_call_is_one_record(name: str) -> None:
    @promptops.track(prompt=name)
    def summarize(text: str, words: int = 10, *, prompt: Prompt) -> str:
        return str(prompt.format(text=text))

    with capture_spans() as spans:
        summarize("hello", words=3)
    (record,) = records()
    assert (record.function, record.prompt_name, record.prompt_version, record.prompt_alias) == (
        f"{__name__}:test_a_call_is_one_record.<locals>.summarize",
        name,
        1,
        "production",
    )
    assert record.inputs == {"text": "hello", "words": 3}
    assert record.output == "Summarize: hello"
    assert record.replayable and record.error_type is None
    assert record.latency_ms is not None and record.latency_ms >= 0
    (span,) = spans.finished()
    assert span.context is not None
    assert record.trace_id == format(span.context.trace_id, "032x")
    assert record.span_id == format(span.context.span_id, "016x")


def test_plain_arguments_hash_as_any_record_does(name: str) -> None:
    """The writer parses and sorts the hot path's JSON text with orjson: the hash is the standard library's."""
    from promptops.capture import input_hash

    @promptops.track(prompt=name)
    def search(query: str, options: dict[str, Any], *, prompt: Prompt) -> str:
        return query

    options = {"zeta": 0.2, "alpha": [1, 2.5, True, None, 0.0001], "mid": {"b": -3, "a": "x", "B": 1e15}, "Z": "z"}
    search("what was decided?", options)
    (record,) = records()
    assert record.inputs == {"query": "what was decided?", "options": options}
    assert record.input_hash == input_hash({"options": options, "query": "what was decided?"})


def test_a_queued_record_keeps_no_span_and_no_object_for_the_collector(name: str) -> None:
    """Issue 11: what waits in the queue is ids and text: the span is not kept past its export, and nothing of the
    record survives young collections into the oldest generation (that made capture's collections dear)."""

    @promptops.track(prompt=name)
    def answer(query: str, options: dict[str, Any], *, prompt: Prompt) -> str:
        return "an answer"

    with capture_spans():
        answer("warm", {"k": 1})
        assert promptops.flush(timeout=10)
        writer = _writer._writers[promptops.get_settings().capture or ""]  # pyright: ignore[reportPrivateUsage]
        with writer._lock:  # pyright: ignore[reportPrivateUsage]  # the writer thread waits to take a batch
            answer("what changed?", {"temperature": 0.2, "tags": ["a", "b"]})
            (item,) = list(writer._queue)  # pyright: ignore[reportPrivateUsage]
            gc.collect()  # a tuple of numbers is untracked by the collection that first sees it
            # Past the function, its settings and prompt: nothing the collector tracks (ids, JSON text, numbers), so
            # neither the span nor a converted value is kept alive by the queue.
            assert [value for value in item[3:] if gc.is_tracked(value)] == []
            assert json.loads(item[3]) == {
                "query": "what changed?",
                "options": {"temperature": 0.2, "tags": ["a", "b"]},
            }
    (_, record) = records()
    assert record.inputs == {"query": "what changed?", "options": {"temperature": 0.2, "tags": ["a", "b"]}}
    assert record.trace_id is not None and len(record.trace_id) == 32


def test_errors_streams_and_async(name: str) -> None:
    @promptops.track(prompt=name)
    def failing(text: str) -> str:
        raise KeyError("missing thing")

    @promptops.track(prompt=name)
    def stream(n: int) -> Iterator[str]:
        for i in range(n):
            yield f"{i},"

    @promptops.track(prompt=name)
    async def answer(question: str) -> dict[str, Any]:
        return {"answer": question.upper()}

    @promptops.track(prompt=name)
    async def astream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def run_async() -> None:
        await answer("why")
        assert [i async for i in astream(3)] == [0, 1, 2]

    with pytest.raises(KeyError):
        failing("x")
    assert list(stream(3)) == ["0,", "1,", "2,"]
    asyncio.run(run_async())
    by_function = {record.function.rsplit(".", 1)[-1]: record for record in records()}
    assert by_function["failing"].error_type == "KeyError"
    assert "missing thing" in str(by_function["failing"].error_message)
    assert by_function["stream"].output == "0,1,2,"
    assert by_function["stream"].first_item_ms is not None
    assert by_function["answer"].output == {"answer": "WHY"}
    assert by_function["astream"].output == [0, 1, 2]


def test_opt_out_sampling_disabled_and_replay(name: str) -> None:
    @promptops.track(prompt=name, capture=False)
    def private(text: str) -> str:
        return text

    @promptops.track(prompt=name, sample_rate=0.0)
    def never(text: str) -> str:
        return text

    @promptops.track(prompt=name)
    def normal(text: str) -> str:
        return text

    private("a"), never("b")
    token = replay_active.set(True)
    try:
        normal("under replay")
    finally:
        replay_active.reset(token)
    normal("kept")
    assert [record.inputs for record in records()] == [{"text": "kept"}]
    url = promptops.get_settings().capture
    assert url is not None
    promptops.configure(capture="none")
    normal("not captured")
    assert promptops.flush(timeout=10)
    assert [record.inputs for record in CaptureStore.open(url).query()] == [{"text": "kept"}]


def test_capture_store_down_never_breaks_the_call(name: str, tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    promptops.configure(capture=f"sqlite:///{blocker}/captures.db")  # a directory that cannot exist

    @promptops.track(prompt=name)
    def f(text: str) -> str:
        return text

    assert [f(str(i)) for i in range(100)] == [str(i) for i in range(100)]
    promptops.flush(timeout=2)


async def test_a_prompt_passed_by_the_caller_is_not_traffic(name: str) -> None:
    # A test that passes its own Prompt (docs/getting-started.md, "Testing") must not be captured or traced as a
    # production call of a version that may not exist (issue 17). Every kind of function, keyword and positional.
    fixed = Prompt(name=name, version=7, template="TL;DR: {{ text }}")

    @promptops.track(prompt=name)
    def plain(text: str, *, prompt: Prompt) -> str:
        assert promptops.current_prompt() is prompt
        return prompt.format(text=text)

    @promptops.track(prompt=name)
    def positional(text: str, prompt: Prompt) -> str:
        return prompt.format(text=text)

    class Service:
        @promptops.track(prompt=name)
        def method(self, text: str, *, prompt: Prompt) -> str:
            return prompt.format(text=text)

    @promptops.track(prompt=name)
    async def coroutine(text: str, *, prompt: Prompt) -> str:
        assert promptops.current_prompt() is prompt
        return prompt.format(text=text)

    @promptops.track(prompt=name)
    def words(text: str, *, prompt: Prompt) -> Iterator[str]:
        yield from prompt.format(text=text).split()

    @promptops.track(prompt=name)
    async def awords(text: str, *, prompt: Prompt) -> AsyncIterator[str]:
        for word in prompt.format(text=text).split():
            yield word

    with capture_spans() as spans:
        assert plain("a", prompt=fixed) == "TL;DR: a"
        assert positional("a", fixed) == "TL;DR: a"
        assert Service().method("a", prompt=fixed) == "TL;DR: a"
        assert await coroutine("a", prompt=fixed) == "TL;DR: a"
        assert list(words("a", prompt=fixed)) == ["TL;DR:", "a"]
        assert [word async for word in awords("a", prompt=fixed)] == ["TL;DR:", "a"]
        assert list(spans.finished()) == []
        assert plain("b") == "Summarize: b"  # a call without one is still traced and captured
        assert len(spans.finished()) == 1
    assert [(record.inputs, record.prompt_version) for record in records()] == [({"text": "b"}, 1)]


def test_long_streams_are_captured_whole_up_to_the_capture_limit_and_marked_past_it(name: str) -> None:
    """Issue 10: a 50,000-character stream was stored as 8,200 characters (the span limit), unmarked."""
    promptops.configure(tracking_uri=promptops.get_settings().tracking_uri, capture_max_value_chars=60_000)

    @promptops.track(prompt=name)
    def stream(parts: int) -> Iterator[str]:
        for i in range(parts):
            yield f"{i:05d}" + "x" * 95  # 100 characters a part

    assert len("".join(stream(500))) == 50_000
    assert len("".join(stream(1000))) == 100_000
    whole, cut = records()
    assert whole.output == "".join(f"{i:05d}" + "x" * 95 for i in range(500))
    assert cut.output.startswith("00000" + "x" * 95)
    assert len(cut.output) <= 60_000
    kept = cut.output.index("…[truncated ")
    assert cut.output[kept:] == f"…[truncated {100_000 - kept} chars]"


def test_a_stream_records_its_arguments_as_called_and_its_span_shows_the_same_conversion(name: str) -> None:
    # Issue 11: a stream's mutable arguments are converted once, at the call, for its span and its record alike
    # (they were converted again when the stream ended, after the caller had changed them); so is its output.
    @promptops.track(prompt=name)
    def numbers(options: dict[str, Any], *, prompt: Prompt) -> Iterator[dict[str, int]]:
        for index in range(options["n"]):
            yield {"index": index}

    options = {"n": 2, "tags": ["a", "b"]}
    with capture_spans() as spans:
        stream = numbers(options)
        first = next(stream)
        options["tags"].append("changed later")  # the caller reuses its dict while the stream runs
        rest = list(stream)
    assert [first, *rest] == [{"index": 0}, {"index": 1}]
    (record,) = records()
    assert record.inputs == {"options": {"n": 2, "tags": ["a", "b"]}}
    assert record.output == [{"index": 0}, {"index": 1}]
    (span,) = spans.finished()
    attributes = dict(span.attributes or {})
    assert json.loads(str(attributes["promptops.inputs"])) == record.inputs
    assert json.loads(str(attributes["promptops.output"])) == record.output
