"""LangChain runs as MLflow shows them (issue 12): span types, chat roles, the conversation MLflow's chat view renders.

A real chain (retriever, chat prompt, LangChain's fake chat model, a tool) through the handler, promptops' MLflow
exporter into a real sqlite tracking store, read back with MLflow's own client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import FakeListChatModel, ParrotFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.tools import tool
from langchain_core.vectorstores import InMemoryVectorStore

import promptops
from promptops_langchain import PromptOpsCallbackHandler


def stored_spans(uri: str) -> dict[str, Any]:
    import mlflow

    assert promptops.flush(60)
    (trace,) = mlflow.MlflowClient(uri).search_traces(locations=["0"], max_results=10)
    return {span.name: span for span in trace.data.spans}


def test_span_types_and_chat_messages_in_mlflow(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    promptops.configure(tracking_uri=uri, trace_exporter="mlflow", capture=None)
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([Document("Cats purr when content.", metadata={"source": "cats.md"})])

    @tool
    def shout(text: str) -> str:
        """Repeat the text in capitals."""
        return text.upper()

    prompt = ChatPromptTemplate.from_messages([("system", "Context: {context}"), ("human", "{question}")])
    retriever = store.as_retriever(search_kwargs={"k": 1})
    model = FakeListChatModel(responses=["Yes, they do."])
    chain = {"context": retriever, "question": RunnablePassthrough()} | prompt | model | StrOutputParser() | shout
    assert chain.invoke("do cats purr?", config={"callbacks": [PromptOpsCallbackHandler()]}) == "YES, THEY DO."

    spans = stored_spans(uri)
    types = {name: span.span_type for name, span in spans.items()}
    assert types["execute_tool shout"] == "TOOL"  # was LLM: its gen_ai.operation.name made it a "model call"
    assert types["VectorStoreRetriever"] == "RETRIEVER"
    assert types["chat FakeListChatModel"] == "CHAT_MODEL"
    assert types["RunnableSequence"] == types["StrOutputParser"] == "CHAIN"
    messages = spans["chat FakeListChatModel"].attributes["mlflow.chat.messages"]
    assert [message["role"] for message in messages] == ["system", "user", "assistant"]
    assert "Cats purr when content." in messages[0]["content"]
    assert messages[1:] == [
        {"role": "user", "content": "do cats purr?"},
        {"role": "assistant", "content": "Yes, they do."},
    ]


def test_tool_calls_and_tool_results_keep_their_roles(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    promptops.configure(tracking_uri=uri, trace_exporter="mlflow", capture=None)
    conversation = [
        SystemMessage("You answer with tools."),
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"id": "call-1", "name": "weather", "args": {"city": "Paris"}}]),
        ToolMessage("sunny", tool_call_id="call-1"),
        HumanMessage("So?"),
    ]
    model = ParrotFakeChatModel().with_config(run_name="parrot")
    model.invoke(conversation, config={"callbacks": [PromptOpsCallbackHandler()]})
    (span,) = stored_spans(uri).values()
    recorded = span.attributes["gen_ai.input.messages"]
    assert [message["role"] for message in recorded] == ["system", "user", "assistant", "tool", "user"]
    assert recorded[2]["parts"] == [
        {"type": "tool_call", "id": "call-1", "name": "weather", "arguments": {"city": "Paris"}}
    ]
    assert recorded[3]["parts"] == [{"type": "tool_call_response", "id": "call-1", "response": "sunny"}]
    chat = span.attributes["mlflow.chat.messages"]
    # The parrot answers with the last message itself, a user message.
    assert [message["role"] for message in chat] == ["system", "user", "assistant", "tool", "user", "user"]
    assert chat[2]["tool_calls"] == [
        {"id": "call-1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert (chat[3]["tool_call_id"], chat[3]["content"]) == ("call-1", "sunny")
