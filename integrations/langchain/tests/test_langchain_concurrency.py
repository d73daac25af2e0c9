"""Many invocations at once through one handler: threads and asyncio tasks, no run ever mixed with another."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from typing import Any

from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda

import promptops
from promptops.capture import CaptureStore
from promptops.testing import capture_spans
from promptops_langchain import PromptOpsCallbackHandler, pinned_prompt

N = 20


def check_traces(spans: list[Any]) -> None:
    """Every trace is one invocation: a root, four children, all of them about that invocation's text only."""
    by_trace: dict[int, list[Any]] = {}
    for span in spans:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    assert len(by_trace) == N
    texts: set[str] = set()
    for members in by_trace.values():
        (root,) = [span for span in members if span.parent is None]
        text = json.loads(root.attributes["promptops.inputs"])["text"]
        texts.add(text)
        assert json.loads(root.attributes["promptops.output"]) == f"Summarize: {text}"
        children = [span for span in members if span is not root]
        assert sorted(span.name for span in children) == [
            "PinnedPrompt<summarize>",
            "StrOutputParser",
            "chat ParrotFakeChatModel",
            "together",
        ]
        for child in children:
            assert child.parent is not None and child.parent.span_id == root.context.span_id
            values = json.dumps([child.attributes.get("promptops.inputs"), child.attributes.get("promptops.output")])
            others = [f"text {i:02d}" for i in range(N) if f"text {i:02d}" != text]
            assert text in values and not any(other in values for other in others), (child.name, values)
    assert texts == {f"text {i:02d}" for i in range(N)}


def check_captures() -> None:
    assert promptops.flush(timeout=10)
    store = CaptureStore.open("sqlite:///.promptops/captures.db")
    try:
        records = list(store.query(function="langchain:summarize"))
    finally:
        store.close()
    assert len(records) == N
    assert sorted((record.inputs["text"], record.output) for record in records) == [
        (f"text {i:02d}", f"Summarize: text {i:02d}") for i in range(N)
    ]
    assert len({record.trace_id for record in records}) == N


def test_twenty_threads_at_once() -> None:
    barrier = threading.Barrier(N, timeout=60)

    def together(value: Any) -> Any:
        barrier.wait()  # every invocation is in flight at the same moment
        return value

    prompt = pinned_prompt("summarize", fallback="Summarize: {{ text }}")
    chain = (prompt | RunnableLambda(together) | ParrotFakeChatModel() | StrOutputParser()).with_config(
        run_name="summarize"
    )
    handler = PromptOpsCallbackHandler()
    with capture_spans() as spans:
        with concurrent.futures.ThreadPoolExecutor(max_workers=N) as pool:
            futures = [pool.submit(chain.invoke, {"text": f"text {i:02d}"}, {"callbacks": [handler]}) for i in range(N)]
            outputs = [future.result() for future in futures]
        assert outputs == [f"Summarize: text {i:02d}" for i in range(N)]
        check_traces(spans.finished())
    check_captures()
    assert handler._runs == {}  # pyright: ignore[reportPrivateUsage]  # nothing left behind


async def test_twenty_asyncio_tasks_at_once() -> None:
    barrier = asyncio.Barrier(N)

    async def together(value: Any) -> Any:
        await barrier.wait()
        return value

    prompt = pinned_prompt("summarize", fallback="Summarize: {{ text }}")
    chain = (prompt | RunnableLambda(together) | ParrotFakeChatModel() | StrOutputParser()).with_config(
        run_name="summarize"
    )
    handler = PromptOpsCallbackHandler()
    with capture_spans() as spans:
        outputs = await asyncio.gather(
            *(chain.ainvoke({"text": f"text {i:02d}"}, config={"callbacks": [handler]}) for i in range(N))
        )
        assert outputs == [f"Summarize: text {i:02d}" for i in range(N)]
        check_traces(spans.finished())
    check_captures()
    assert handler._runs == {}  # pyright: ignore[reportPrivateUsage]
