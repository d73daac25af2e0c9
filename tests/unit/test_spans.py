"""Spans of tracked calls, asserted through the real OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dirty_equals import IsFloat, IsPositiveFloat, IsStr
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import StatusCode

import promptops
from promptops import Prompt
from promptops.testing import SpanCapture, capture_spans
from tests.conftest import Registry

CANARIES = ["sk-CANARYproj1234567890abcdefXYZ", "AKIACANARY1234567890", "hunter2-canary-pw", "4111 1111 1111 1111"]


@pytest.fixture
def spans() -> Iterator[SpanCapture]:
    with capture_spans() as captured:
        yield captured


@pytest.fixture
def name(local_registry: Registry, prompt_name: str) -> str:
    local_registry.register(
        prompt_name,
        "Summarize: {{text}}",
        alias="production",
        model_config={"model_name": "gpt-test", "temperature": 0.2, "max_tokens": 50},
    )
    return prompt_name


def tree(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    """Spans as dicts, parents named, in end order."""
    by_id = {span.context.span_id: span.name for span in spans if span.context is not None}
    return [
        {
            "name": span.name,
            "parent": by_id.get(span.parent.span_id, "<outside>") if span.parent is not None else None,
            "attributes": dict(span.attributes or {}),
        }
        for span in spans
    ]


def test_a_call_is_one_span_with_the_prompt_version(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    def summarize(text: str, *, prompt: Prompt) -> str:
        return str(prompt.format(text=text))

    assert summarize("hello") == "Summarize: hello"
    assert tree(spans.finished()) == [
        {
            "name": "summarize",
            "parent": None,
            "attributes": {
                "promptops.prompt.name": name,
                "promptops.prompt.version": 1,
                "promptops.prompt.alias": "production",
                "promptops.prompt.source": "registry",
                "promptops.function": f"{__name__}:test_a_call_is_one_span_with_the_prompt_version.<locals>.summarize",
                "promptops.inputs": '{"text":"hello"}',
                "promptops.output": '"Summarize: hello"',
                "gen_ai.request.model": "gpt-test",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 50,
            },
        }
    ]
    (span,) = spans.finished()
    assert span.status.status_code is StatusCode.UNSET


def test_span_name_override_and_usage(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name, name="llm.summarize")
    def summarize(text: str) -> str:
        promptops.record_usage(
            input_tokens=12,
            output_tokens=5,
            response_model="gpt-test-0613",
            operation="chat",
            finish_reasons=["stop"],
            provider="openai",
        )
        return text

    summarize("x")
    (span,) = spans.finished()
    assert span.name == "llm.summarize"
    assert span.attributes is not None
    assert {key: span.attributes[key] for key in span.attributes if key.startswith("gen_ai.")} == {
        "gen_ai.request.model": "gpt-test",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.response.model": "gpt-test-0613",
        "gen_ai.operation.name": "chat",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.provider.name": "openai",
    }


def test_genai_attribute_names_are_the_semantic_conventions() -> None:
    # Checked against the installed package, not from memory (issue 12).
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as semconv

    from promptops import _span

    ours = {value for key, value in vars(_span).items() if key.startswith("GEN_AI_")}
    ours |= set(_span._MODEL_CONFIG_ATTRIBUTES.values())  # pyright: ignore[reportPrivateUsage]
    known = {value for key, value in vars(semconv).items() if key.startswith("GEN_AI_") and isinstance(value, str)}
    assert ours and ours <= known, ours - known


def test_record_usage_outside_a_call_does_nothing(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    def echo(text: str) -> str:
        return text

    echo("first")  # something has been traced in this process, so record_usage does look for a span
    spans.clear()
    before = promptops.stats()["internal_errors"]
    promptops.record_usage(input_tokens=1, output_tokens=2, model="m")
    assert spans.finished() == []
    echo("after")  # nothing recorded outside a call leaks into the next call's span
    (span,) = spans.finished()
    attributes = dict(span.attributes or {})
    assert not [key for key in attributes if key.startswith("gen_ai.usage")]
    assert attributes.get("gen_ai.request.model") != "m"
    assert promptops.stats()["internal_errors"] == before


def test_nesting_and_application_spans(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    def inner(text: str) -> str:
        return text

    @promptops.track(prompt=name)
    def outer(text: str) -> str:
        return inner(text) + inner(text)

    app_provider = TracerProvider()  # the application's own tracing, on its own provider
    app_tracer = app_provider.get_tracer("app")
    with app_tracer.start_as_current_span("request") as request:
        outer("a")
    parents = {span["name"]: span["parent"] for span in tree(spans.finished())}
    assert parents == {"inner": "outer", "outer": "<outside>"}
    outer_span = next(span for span in spans.finished() if span.name == "outer")
    assert outer_span.parent is not None
    assert outer_span.parent.span_id == request.get_span_context().span_id
    assert outer_span.context is not None
    assert outer_span.context.trace_id == request.get_span_context().trace_id


@pytest.mark.parametrize("route", ["context variable", "public API"])
def test_the_span_is_current_during_the_call_and_the_context_restored_after(
    name: str, spans: SpanCapture, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call's span is made current through OpenTelemetry's context variable, or its public API when another runtime
    context is installed (issue 11): the same spans and parents either way, the context restored after a failure too."""
    from promptops import _span

    _span._api()  # pyright: ignore[reportPrivateUsage]  # binds the route
    assert _span._context_var is not None  # pyright: ignore[reportPrivateUsage]  # the default runtime context here
    if route == "public API":
        monkeypatch.setattr(_span, "_context_var", None)
    seen: list[Any] = []

    @promptops.track(prompt=name)
    def inner(text: str) -> str:
        seen.append(trace.get_current_span())
        if text == "fail":
            raise ValueError("no")
        return text

    @promptops.track(prompt=name)
    def outer(text: str) -> str:
        seen.append(trace.get_current_span())
        with pytest.raises(ValueError):
            inner("fail")
        assert trace.get_current_span() is seen[0]  # restored after the failed call
        return inner(text)

    before = trace.get_current_span()
    outer("a")
    assert trace.get_current_span() is before
    ended = spans.finished()  # in end order: the failed inner call, the other, outer
    assert [span.name for span in ended] == ["inner", "inner", "outer"]
    ids = [span.context.span_id for span in ended if span.context is not None]
    assert [span.get_span_context().span_id for span in seen] == [ids[2], ids[0], ids[1]]  # each saw its own span
    assert [span.parent.span_id if span.parent else None for span in ended[:2]] == [ids[2], ids[2]]


def test_another_runtime_context_keeps_the_public_api() -> None:
    import types

    from promptops import _span

    _span._api()  # pyright: ignore[reportPrivateUsage]
    bound = _span._context_var  # pyright: ignore[reportPrivateUsage]
    try:
        _span._bind_context(types.SimpleNamespace(_RUNTIME_CONTEXT=object(), Context=dict))  # pyright: ignore[reportPrivateUsage]
        assert _span._context_var is None  # pyright: ignore[reportPrivateUsage]
    finally:
        _span._context_var = bound  # pyright: ignore[reportPrivateUsage]


def test_exceptions_are_recorded_and_reraised_untouched(name: str, spans: SpanCapture) -> None:
    error = ValueError(f"bad input, key was {CANARIES[0]}")

    @promptops.track(prompt=name)
    def failing(text: str) -> str:
        raise error

    with pytest.raises(ValueError) as info:
        failing("x")
    assert info.value is error
    (span,) = spans.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert "promptops.output" not in (span.attributes or {})
    (event,) = span.events
    assert event.name == "exception"
    assert dict(event.attributes or {}) == {
        "exception.type": "ValueError",
        "exception.message": IsStr(regex=r"bad input, key was \[REDACTED.*"),
        "exception.stacktrace": IsStr(regex=r"(?s)Traceback.*ValueError: bad input.*"),
        "exception.escaped": True,
    }
    assert CANARIES[0] not in json.dumps(spans.dump())


def test_no_secret_reaches_a_span_or_a_log(name: str, spans: SpanCapture, caplog: pytest.LogCaptureFixture) -> None:
    @promptops.track(prompt=name)
    def handler(question: str, api_key: str, config: dict[str, Any]) -> dict[str, Any]:
        return {"answer": f"card {CANARIES[3]} on file", "password": CANARIES[2]}

    with caplog.at_level(logging.DEBUG):
        handler(f"my key is {CANARIES[0]}", api_key="plain-looking-value", config={"aws": CANARIES[1]})
    dumped = json.dumps(spans.dump())
    for canary in [*CANARIES, "plain-looking-value"]:
        assert canary not in dumped
        assert canary not in caplog.text
    (span,) = spans.finished()
    assert span.attributes is not None
    inputs = json.loads(str(span.attributes["promptops.inputs"]))
    assert inputs["api_key"] == "[REDACTED]"


def test_values_can_be_left_out_or_truncated(name: str, spans: SpanCapture, local_registry: Registry) -> None:
    @promptops.track(prompt=name)
    def echo(text: str) -> str:
        return text

    promptops.configure(record_values=False)
    echo("secret-free but unwanted")
    (span,) = spans.finished()
    assert "promptops.inputs" not in (span.attributes or {}) and "promptops.output" not in (span.attributes or {})
    spans.clear()
    promptops.configure(record_values=True, max_value_chars=100)
    echo("x" * 10_000)
    (span,) = spans.finished()
    assert span.attributes is not None
    recorded = str(span.attributes["promptops.output"])
    assert len(recorded) <= 100  # the JSON text, marker and quotes included, within the cap (issue 16: was +40)
    output = json.loads(recorded)
    kept, cut = re.fullmatch(r"(x+)…\[truncated (\d+) chars\]", output).groups()  # type: ignore[union-attr]
    assert len(kept) + int(cut) == 10_000  # the marker says exactly how much was cut
    assert len(kept) >= 50  # and the start of the value is kept


def test_generator_span_ends_after_the_stream(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    def stream(n: int) -> Iterator[str]:
        for i in range(n):
            assert spans.finished() == []  # still open while streaming
            yield f"t{i} "

    assert "".join(stream(3)) == "t0 t1 t2 "
    (span,) = spans.finished()
    assert span.attributes is not None
    assert span.attributes["promptops.output"] == '"t0 t1 t2 "'
    assert span.attributes["promptops.stream.items"] == 3
    assert span.attributes["promptops.stream.first_item_ms"] == IsFloat(ge=0)


def test_generator_early_break_close_and_abandonment(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    def stream() -> Iterator[int]:
        yield 1
        yield 2
        yield 3

    for item in stream():
        if item == 1:
            break
    gen = stream()
    next(gen)
    next(gen)
    gen.close()
    abandoned = stream()
    next(abandoned)
    del abandoned
    never_started = stream()
    del never_started
    gc.collect()
    finished = spans.finished()
    assert [span.attributes["promptops.stream.items"] for span in finished if span.attributes] == [1, 2, 1, 0]
    assert len({span.context.span_id for span in finished if span.context}) == 4  # each ended exactly once
    gc.collect()
    assert len(spans.finished()) == 4


def test_generator_exception_mid_stream(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    def stream() -> Iterator[str]:
        yield "a"
        raise RuntimeError("model went away")

    with pytest.raises(RuntimeError, match="model went away"):
        list(stream())
    (span,) = spans.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["promptops.output"] == '"a"'


def test_nested_span_inside_a_generator_is_its_child(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    def step(i: int) -> int:
        return i

    @promptops.track(prompt=name)
    def stream() -> Iterator[int]:
        for i in range(2):
            yield step(i)

    list(stream())
    assert [(span["name"], span["parent"]) for span in tree(spans.finished())] == [
        ("step", "stream"),
        ("step", "stream"),
        ("stream", None),
    ]


async def test_async_function_and_tasks(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    async def leaf(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @promptops.track(prompt=name)
    async def fan_out() -> list[int]:
        return list(await asyncio.gather(*(asyncio.create_task(leaf(i)) for i in range(3))))

    assert await fan_out() == [0, 1, 2]
    parents = [(span["name"], span["parent"]) for span in tree(spans.finished())]
    assert sorted(parents) == [("fan_out", None), ("leaf", "fan_out"), ("leaf", "fan_out"), ("leaf", "fan_out")]


async def test_async_generator_aclose_from_another_task(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    async def stream() -> AsyncIterator[str]:
        for i in range(100):
            await asyncio.sleep(0)
            yield str(i)

    gen = stream()
    assert await gen.__anext__() == "0"
    assert await gen.__anext__() == "1"
    await asyncio.create_task(gen.aclose())  # type: ignore[attr-defined]
    (span,) = spans.finished()
    assert span.attributes is not None
    assert span.attributes["promptops.output"] == '"01"'
    assert span.attributes["promptops.stream.items"] == 2
    assert span.attributes["promptops.stream.first_item_ms"] == IsPositiveFloat | 0.0


def test_abandoned_async_generator_ends_once(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    async def stream() -> AsyncIterator[int]:
        yield 1
        yield 2

    async def take_one() -> None:
        gen = stream()
        await gen.__anext__()
        # dropped here without aclose(): the event loop's async-generator finalizer closes it

    asyncio.run(take_one())
    gc.collect()
    (span,) = spans.finished()
    assert span.attributes is not None and span.attributes["promptops.stream.items"] == 1


def test_threads_need_the_context_copied(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    def work() -> None:
        return None

    @promptops.track(prompt=name)
    def parent() -> None:
        plain = threading.Thread(target=work)
        plain.start()
        plain.join()
        context = contextvars.copy_context()  # the documented way: run the thread's work in a copy
        copied = threading.Thread(target=context.run, args=(work,))
        copied.start()
        copied.join()

    parent()
    assert [(span["name"], span["parent"]) for span in tree(spans.finished())] == [
        ("work", None),
        ("work", "parent"),
        ("parent", None),
    ]


def test_methods_record_inputs_without_self(name: str, spans: SpanCapture) -> None:
    class Bot:
        @promptops.track(prompt=name)
        def answer(self, question: str, *, prompt: Prompt) -> str:
            return question

        @promptops.track(prompt=name)
        @classmethod
        def build(cls, size: int) -> int:
            return size

    Bot().answer("why?")
    Bot.build(3)
    assert [span.attributes["promptops.inputs"] for span in spans.finished() if span.attributes] == [
        '{"question":"why?"}',
        '{"size":3}',
    ]


def test_no_tracer_no_spans(name: str, spans: SpanCapture) -> None:
    @promptops.track(prompt=name)
    def f() -> int:
        return 1

    with spans.disabled():
        assert f() == 1
    assert spans.finished() == []
    assert trace.get_current_span() is trace.INVALID_SPAN
