"""Helpers shared by the promptops-langchain tests: the registry client, span trees, stand-in providers."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Sequence
from typing import Any, cast

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from typing_extensions import override


class Registry:
    """A real MLflow sqlite prompt registry, shared by the session; tests use unique prompt names."""

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def register(self, name: str, template: Any, *, alias: str | None = None, **kwargs: Any) -> int:
        version = self.client.register_prompt(name=name, template=template, **kwargs)
        if alias:
            self.client.set_prompt_alias(name, alias, version.version)
        return int(version.version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.client.set_prompt_alias(name, alias, version)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, read, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def span_tree(spans: Sequence[Any], *, keys: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Finished spans as nested dicts: `{"name", "children", **{key: attribute}}`, children in start order.

    A span whose parent is not among `spans` is a root. Only the attributes named in `keys` are shown (when
    present), so assertions stay readable.
    """
    by_id = {span.context.span_id: span for span in spans}
    children: dict[int | None, list[Any]] = {}
    for span in sorted(spans, key=lambda s: s.start_time):
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in by_id else None
        children.setdefault(parent, []).append(span)

    def node(span: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"name": span.name}
        for key in keys:
            if key in span.attributes:
                value = span.attributes[key]
                data[key] = list(cast("tuple[Any, ...]", value)) if isinstance(value, tuple) else value
        data["children"] = [node(child) for child in children.get(span.context.span_id, [])]
        return data

    return [node(span) for span in children.get(None, [])]


def trace_id(span: Any) -> int:
    context = span.get_span_context()
    assert context is not None
    return int(context.trace_id)


def span_id(span: Any) -> int:
    context = span.get_span_context()
    assert context is not None
    return int(context.span_id)


class ProviderChat(GenericFakeChatModel):
    """LangChain's generic fake chat model with a `model` field, as provider chat models have one."""

    model: str = "fake-chat-1"


class StreamingProviderChat(ProviderChat):
    """`ProviderChat` whose stream ends with a chunk carrying the usage and model, as providers' streams do.

    LangChain's fake streams the content only; `ChatOpenAI(stream_usage=True)` and `ChatAnthropic` send the
    usage in a last chunk, which LangChain adds into the message the model run ends with.
    """

    @override
    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._generate(messages, stop=stop, run_manager=run_manager, **kwargs).generations[0].message
        assert isinstance(message, AIMessage) and isinstance(message.content, str)
        for word in re.split(r"(\s)", message.content):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word, id=message.id))
            if run_manager:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        last = AIMessageChunk(
            content="",
            id=message.id,
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
        )
        yield ChatGenerationChunk(message=last)


class FailingChat(GenericFakeChatModel):
    """A provider that rejects every request (the message carries a key, which must be redacted)."""

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise RuntimeError("429 rate limited for key sk-proj-abcdefghijklmnopqrstuvwxyz123456")
