"""`PromptOpsCallbackHandler` spans: real LangChain runnables, the real OpenTelemetry SDK, fake providers only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeListChatModelError,
    ParrotFakeChatModel,
)
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.tools import tool
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_support import FailingChat, ProviderChat, span_tree, trace_id
from opentelemetry.trace import SpanKind

import promptops
from promptops import tracing
from promptops.prompts import replay_active
from promptops.testing import capture_spans
from promptops_langchain import PromptOpsCallbackHandler, pinned_prompt

KEYS = ("promptops.langchain.run_type", "promptops.prompt.version", "gen_ai.operation.name")


def reply(text: str) -> AIMessage:
    return AIMessage(
        text,
        usage_metadata={"input_tokens": 11, "output_tokens": 3, "total_tokens": 14},
        response_metadata={"finish_reason": "stop", "model_name": "fake-chat-1-2026"},
    )


def summarize_chain(model: Any) -> Any:
    prompt = pinned_prompt("summarize", fallback="Summarize: {{ text }}")
    return (prompt | model | StrOutputParser()).with_config(run_name="summarize")


def attributes(spans: Any, name: str) -> dict[str, Any]:
    found = [span for span in spans.finished() if span.name == name]
    assert len(found) == 1, [span.name for span in spans.finished()]
    return dict(found[0].attributes)


def test_prompt_model_parser_span_tree_with_genai_attributes() -> None:
    chain = summarize_chain(ProviderChat(messages=iter([reply("A short summary.")])))
    with capture_spans() as spans:
        assert chain.invoke({"text": "a long text"}, config={"callbacks": [PromptOpsCallbackHandler()]}) == (
            "A short summary."
        )
    assert span_tree(spans.finished(), keys=KEYS) == [
        {
            "name": "summarize",
            "promptops.langchain.run_type": "chain",
            "promptops.prompt.version": 0,
            "children": [
                {
                    "name": "PinnedPrompt<summarize>",
                    "promptops.langchain.run_type": "prompt",
                    "promptops.prompt.version": 0,
                    "children": [],
                },
                {
                    "name": "chat fake-chat-1",
                    "promptops.langchain.run_type": "chat_model",
                    "gen_ai.operation.name": "chat",
                    "children": [],
                },
                {"name": "StrOutputParser", "promptops.langchain.run_type": "parser", "children": []},
            ],
        }
    ]
    root = attributes(spans, "summarize")
    assert root["promptops.function"] == "langchain:summarize"
    assert json.loads(root["promptops.inputs"]) == {"text": "a long text"}
    assert json.loads(root["promptops.output"]) == "A short summary."
    assert (root["promptops.prompt.name"], root["promptops.prompt.source"]) == ("summarize", "fallback")
    model = attributes(spans, "chat fake-chat-1")
    assert model["gen_ai.request.model"] == "fake-chat-1"
    assert model["gen_ai.response.model"] == "fake-chat-1-2026"
    assert model["gen_ai.provider.name"] == "provider"  # LangChain's ls_provider, from the class name
    assert (model["gen_ai.usage.input_tokens"], model["gen_ai.usage.output_tokens"]) == (11, 3)
    assert list(model["gen_ai.response.finish_reasons"]) == ["stop"]
    # Roles as MLflow's chat view and the GenAI conventions know them, not LangChain's human/ai (issue 12).
    assert json.loads(model["promptops.inputs"]) == [{"role": "user", "content": "Summarize: a long text"}]
    assert json.loads(model["promptops.output"]) == {"role": "assistant", "content": "A short summary."}
    assert json.loads(model["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Summarize: a long text"}]}
    ]
    assert json.loads(model["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "A short summary."}], "finish_reason": "stop"}
    ]
    assert model["openinference.span.kind"] == "LLM"
    assert "promptops.stream.items" not in model  # not streamed
    parser = attributes(spans, "StrOutputParser")  # a message is recorded as role and content, not LangChain's dump
    assert json.loads(parser["promptops.inputs"]) == {"role": "assistant", "content": "A short summary."}
    assert parser["openinference.span.kind"] == "CHAIN"
    kinds = {span.name: span.kind for span in spans.finished()}
    assert kinds.pop("chat fake-chat-1") == SpanKind.CLIENT  # a model call leaves the process
    assert set(kinds.values()) == {SpanKind.INTERNAL}
    assert "promptops.replay" not in root
    trace_ids = {trace_id(span) for span in spans.finished()}
    assert len(trace_ids) == 1


def test_chain_with_retriever_and_tool() -> None:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([Document("Cats purr when content.", metadata={"source": "cats.md"})])
    retriever = store.as_retriever(search_kwargs={"k": 1})

    @tool
    def shout(text: str) -> str:
        """Repeat the text in capitals."""
        return text.upper()

    prompt = ChatPromptTemplate.from_messages([("system", "Context: {context}"), ("human", "{question}")])
    chain = {"context": retriever, "question": RunnablePassthrough()} | prompt | ParrotFakeChatModel()
    chain = chain | StrOutputParser() | shout
    with capture_spans() as spans:
        assert chain.invoke("do cats purr?", config={"callbacks": [PromptOpsCallbackHandler()]}) == "DO CATS PURR?"
    (root,) = span_tree(spans.finished(), keys=("promptops.langchain.run_type",))
    assert root["name"] == "RunnableSequence"
    assert [child["name"] for child in root["children"]] == [
        "RunnableParallel<context,question>",
        "ChatPromptTemplate",
        "chat ParrotFakeChatModel",
        "StrOutputParser",
        "execute_tool shout",
    ]
    parallel = root["children"][0]
    assert sorted((child["name"], child["promptops.langchain.run_type"]) for child in parallel["children"]) == [
        ("RunnablePassthrough", "chain"),
        ("VectorStoreRetriever", "retriever"),
    ]
    retrieval = attributes(spans, "VectorStoreRetriever")
    assert json.loads(retrieval["promptops.inputs"]) == "do cats purr?"
    assert json.loads(retrieval["promptops.output"]) == [
        {"page_content": "Cats purr when content.", "metadata": {"source": "cats.md"}}
    ]
    used = attributes(spans, "execute_tool shout")
    assert (used["gen_ai.operation.name"], used["gen_ai.tool.name"]) == ("execute_tool", "shout")
    assert json.loads(used["promptops.output"]) == "DO CATS PURR?"
    assert (used["openinference.span.kind"], retrieval["openinference.span.kind"]) == ("TOOL", "RETRIEVER")
    model = attributes(spans, "chat ParrotFakeChatModel")
    assert [message["role"] for message in json.loads(model["promptops.inputs"])] == ["system", "user"]


def test_failing_model_records_a_redacted_error_on_each_span_up() -> None:
    chain = summarize_chain(FailingChat(messages=iter([])))
    with capture_spans() as spans, pytest.raises(RuntimeError, match="429 rate limited"):
        chain.invoke({"text": "hello"}, config={"callbacks": [PromptOpsCallbackHandler()]})
    dumped = {span["name"]: span for span in spans.dump()}
    assert set(dumped) == {"summarize", "PinnedPrompt<summarize>", "chat FailingChat"}
    for name in ("summarize", "chat FailingChat"):
        span = dumped[name]
        assert span["status"]["code"] == "ERROR"
        (event,) = span["events"]
        assert event["attributes"]["exception.type"] == "RuntimeError"
        assert "429 rate limited" in event["attributes"]["exception.message"]
        assert "sk-proj" not in json.dumps(span), "the key in the provider's message must be redacted"
        assert "promptops.output" not in span["attributes"]
    assert dumped["PinnedPrompt<summarize>"]["status"]["code"] == "UNSET"


def test_streaming_records_time_to_first_token() -> None:
    chain = summarize_chain(ProviderChat(messages=iter([reply("one two three")])))
    with capture_spans() as spans:
        chunks = list(chain.stream({"text": "streamed"}, config={"callbacks": [PromptOpsCallbackHandler()]}))
    assert "".join(chunks) == "one two three" and len(chunks) > 1
    model = attributes(spans, "chat fake-chat-1")
    assert model["promptops.stream.items"] == 5  # "one", " ", "two", " ", "three"
    assert model["promptops.stream.first_item_ms"] >= 0
    root = attributes(spans, "summarize")
    # A streamed chain learns its input only at the end (LangChain starts it with a placeholder).
    assert json.loads(root["promptops.inputs"]) == {"text": "streamed"}
    assert json.loads(root["promptops.output"]) == "one two three"
    assert len(span_tree(spans.finished())) == 1


def test_stream_failing_midway_ends_every_span_with_the_error() -> None:
    model = FakeListChatModel(responses=["abcdef"], error_on_chunk_number=3)
    chain = summarize_chain(model)
    seen: list[str] = []
    with capture_spans() as spans, pytest.raises(FakeListChatModelError):
        for chunk in chain.stream({"text": "x"}, config={"callbacks": [PromptOpsCallbackHandler()]}):
            seen.append(chunk)
    assert seen == ["a", "b", "c"]
    dumped = {span["name"]: span for span in spans.dump()}
    assert dumped["summarize"]["status"]["code"] == "ERROR"
    model_span = dumped["chat FakeListChatModel"]
    assert model_span["status"]["code"] == "ERROR"
    assert model_span["attributes"]["promptops.stream.items"] == 3


async def test_ainvoke_and_astream() -> None:
    chain = summarize_chain(ProviderChat(messages=iter([reply("async one"), reply("async two")])))
    handler = PromptOpsCallbackHandler()
    with capture_spans() as spans:
        assert await chain.ainvoke({"text": "a"}, config={"callbacks": [handler]}) == "async one"
        chunks = [chunk async for chunk in chain.astream({"text": "b"}, config={"callbacks": [handler]})]
    assert "".join(chunks) == "async two"
    roots = span_tree(spans.finished(), keys=("promptops.inputs",))
    assert [(root["name"], json.loads(root["promptops.inputs"])) for root in roots] == [
        ("summarize", {"text": "a"}),
        ("summarize", {"text": "b"}),
    ]
    assert [[child["name"] for child in root["children"]] for root in roots] == [
        ["PinnedPrompt<summarize>", "chat fake-chat-1", "StrOutputParser"]
    ] * 2
    streamed = [span for span in spans.finished() if span.name == "chat fake-chat-1"][1]
    assert streamed.attributes is not None and streamed.attributes["promptops.stream.items"] == 3


def test_batch_and_abatch_make_one_trace_per_input() -> None:
    chain = summarize_chain(ParrotFakeChatModel())
    handler = PromptOpsCallbackHandler()
    with capture_spans() as spans:
        assert chain.batch([{"text": "x"}, {"text": "y"}], config={"callbacks": [handler]}) == [
            "Summarize: x",
            "Summarize: y",
        ]
        outputs = asyncio.run(chain.abatch([{"text": "z"}, {"text": "w"}], config={"callbacks": [handler]}))
    assert outputs == ["Summarize: z", "Summarize: w"]
    roots = [span for span in spans.finished() if span.name == "summarize"]
    assert len(roots) == 4 and len({trace_id(span) for span in roots}) == 4
    for tree in span_tree(spans.finished(), keys=("promptops.output",)):
        text = json.loads(tree["promptops.output"])
        assert [json.loads(child["promptops.output"]) for child in tree["children"][2:]] == [text]


def test_nests_under_an_application_span_and_a_tracked_call() -> None:
    chain = summarize_chain(ParrotFakeChatModel())
    handler = PromptOpsCallbackHandler()

    @promptops.track(prompt="outer", fallback="outer {{ text }}")
    def outer(text: str) -> str:
        return chain.invoke({"text": text}, config={"callbacks": [handler]})

    with capture_spans() as spans:
        tracer = tracing.tracer()
        assert tracer is not None
        with tracer.start_as_current_span("request"):
            outer("hello")
    (tree,) = span_tree(spans.finished())
    assert tree["name"] == "request"
    assert [child["name"] for child in tree["children"]] == ["outer"]
    assert [child["name"] for child in tree["children"][0]["children"]] == ["summarize"]
    assert len(tree["children"][0]["children"][0]["children"]) == 3


def test_replay_flag_and_values_switch() -> None:
    chain = summarize_chain(ParrotFakeChatModel())
    handler = PromptOpsCallbackHandler()
    with capture_spans() as spans:
        token = replay_active.set(True)
        try:
            chain.invoke({"text": "replayed"}, config={"callbacks": [handler]})
        finally:
            replay_active.reset(token)
    assert all(span.attributes is not None and span.attributes["promptops.replay"] for span in spans.finished())

    promptops.configure(record_values=False)
    with capture_spans() as spans:
        chain.invoke({"text": "secret"}, config={"callbacks": [handler]})
    assert len(spans.finished()) == 4
    assert "secret" not in json.dumps(spans.dump())


def test_values_are_redacted_and_truncated() -> None:
    promptops.configure(max_value_chars=200)
    chain = summarize_chain(ParrotFakeChatModel())
    text = "Write to alice@example.com. " + "word " * 100
    with capture_spans() as spans:
        chain.invoke({"text": text}, config={"callbacks": [PromptOpsCallbackHandler()]})
    dumped = json.dumps(spans.dump())
    assert "alice@example.com" not in dumped
    for span in spans.finished():
        assert span.attributes is not None
        for key in ("promptops.inputs", "promptops.output"):
            assert len(str(span.attributes.get(key, ""))) <= 200
    assert "truncated" in attributes(spans, "summarize")["promptops.output"]


def test_tracing_off_makes_no_spans_and_never_raises() -> None:
    chain = summarize_chain(ParrotFakeChatModel())
    with capture_spans() as spans, spans.disabled():
        assert chain.invoke({"text": "t"}, config={"callbacks": [PromptOpsCallbackHandler()]}) == "Summarize: t"
    assert spans.finished() == []
