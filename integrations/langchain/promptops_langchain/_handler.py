"""`PromptOpsCallbackHandler`: LangChain runs as OpenTelemetry spans, top-level chain runs as capture records.

One span per chain, prompt, parser, chat model / LLM, retriever and tool run, parented by LangChain's run ids;
a run whose parent this handler did not see (the top-level run) is a child of the span current when the chain
was invoked: a `@promptops.track` call's, the application's, or a replay's. Spans carry the attributes of
`@promptops.track` spans (`promptops.inputs`/`output`, redacted and truncated; the prompt version;
`promptops.replay`), and model runs the OpenTelemetry GenAI attributes.

The handler never attaches its spans to the OpenTelemetry context: LangChain calls `on_*_start` and `on_*_end`
of a streamed run from whatever context consumes the stream, so an attach/detach pair could not be kept
balanced (a leaked current span would parent the application's later spans). Code running inside a chain step
therefore nests under the span that was current when the chain was invoked.

Every callback runs inline (`run_inline`): a few dictionary operations and a span start or end, safe from any
thread or task. Runs are kept by run id under a lock, so concurrent invocations never mix.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from typing_extensions import override

import promptops
from promptops import Settings, tracing
from promptops.capture import CallCapture
from promptops.prompts import Prompt, active_prompt, replay_active

from ._internals import (
    FUNCTION,
    GEN_AI_FINISH_REASONS,
    GEN_AI_INPUT_TOKENS,
    GEN_AI_OPERATION,
    GEN_AI_OUTPUT_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    INPUTS,
    OUTPUT,
    REPLAY,
    STREAM_FIRST_ITEM_MS,
    STREAM_ITEMS,
    Usage,
    dump,
    log_internal_error,
    prompt_identity_attributes,
    record_exception,
    report_usage,
)

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.outputs import LLMResult
    from opentelemetry.trace import Span, Tracer

__all__ = ["RUN_ID", "RUN_TYPE", "PromptOpsCallbackHandler"]

RUN_TYPE = "promptops.langchain.run_type"
RUN_ID = "promptops.langchain.run_id"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"  # issue 12: as opentelemetry-semantic-conventions names them
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
SPAN_KIND = "openinference.span.kind"  # what MLflow (span type) and Phoenix (span kind) show the run as
# LangChain's message types as the roles MLflow's chat view and the GenAI conventions know (issue 12).
ROLES = {
    "human": "user",
    "HumanMessageChunk": "user",
    "ai": "assistant",
    "AIMessageChunk": "assistant",
    "system": "system",
    "SystemMessageChunk": "system",
    "tool": "tool",
    "ToolMessageChunk": "tool",
    "function": "tool",
    "FunctionMessageChunk": "tool",
}

_MISSING: Any = object()
_otel_trace: Any = None  # opentelemetry.trace, imported with the first span


def _client_kind() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.CLIENT


def _set_span_in_context(span: Span) -> Any:
    global _otel_trace
    if _otel_trace is None:
        from opentelemetry import trace

        _otel_trace = trace
    return _otel_trace.set_span_in_context(span)


class _Run:
    """One LangChain run this handler saw start."""

    __slots__ = (
        "capture",
        "first_ns",
        "function",
        "inputs",
        "prompt",
        "provider",
        "root",
        "settings",
        "span",
        "started_ns",
        "tokens",
        "tracer",
        "usage",
        "wanted",
    )

    def __init__(self, root: _Run | None, settings: Settings, tracer: Tracer | None) -> None:
        self.root: _Run = root if root is not None else self
        self.settings = settings
        self.tracer = tracer
        self.span: Span | None = None
        self.started_ns = time.perf_counter_ns()
        self.first_ns: int | None = None  # first streamed token (of this model run; for a root, of any)
        self.tokens = 0
        self.provider: str | None = None  # model runs: who serves the model (`ls_provider`)
        # Top-level chain runs only:
        self.capture: CallCapture | None = None
        self.function = ""
        self.inputs: Any = None
        self.prompt: Prompt | None = None  # the version the capture record is linked to
        self.wanted: str | None = None  # metadata promptops_prompt: which prompt that is, when several
        self.usage: Usage | None = None  # what the run's model runs used, for its capture record (issue 14)


def _name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    """The run's name as LangChain shows it: the run name, else the serialized object's name or class."""
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if serialized:
        given = serialized.get("name")
        if isinstance(given, str) and given:
            return given
        ids = serialized.get("id")
        if isinstance(ids, list) and ids and isinstance(ids[-1], str):
            return ids[-1]
    return default


def _role(message: BaseMessage) -> str:
    """The message's role as `user`/`assistant`/`system`/`tool` (a `ChatMessage` keeps its own role)."""
    role = getattr(message, "role", None)  # ChatMessage(role=...), and tool messages' "tool"
    if message.type in ("chat", "ChatMessageChunk") and isinstance(role, str) and role:
        return role
    return ROLES.get(message.type, message.type)


def _message(message: BaseMessage) -> dict[str, Any]:
    """A chat message as the span records it: role and content (and tool calls), not LangChain's whole model."""
    data: dict[str, Any] = {"role": _role(message), "content": message.content}
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        data["tool_calls"] = tool_calls
    call_id = getattr(message, "tool_call_id", None)
    if isinstance(call_id, str) and call_id:
        data["tool_call_id"] = call_id
    return data


def _parts(message: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded message in the GenAI conventions' shape: role and typed parts (text, tool calls, tool results)."""
    content = message.get("content")
    parts: list[dict[str, Any]] = []
    if message.get("role") == "tool":
        parts.append({"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content})
    elif isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for item in content:  # pyright: ignore[reportUnknownVariableType]
            if isinstance(item, str):
                parts.append({"type": "text", "content": item})
            elif isinstance(item, dict) and item.get("type") == "text":  # pyright: ignore[reportUnknownMemberType]
                parts.append({"type": "text", "content": item.get("text", "")})  # pyright: ignore[reportUnknownMemberType]
    for call in message.get("tool_calls") or ():
        parts.append(
            {"type": "tool_call", "id": call.get("id"), "name": call.get("name"), "arguments": call.get("args")}
        )
    return {"role": message.get("role"), "parts": parts}


def _messages(value: object) -> TypeGuard[list[BaseMessage]]:
    if not isinstance(value, list):
        return False
    items: list[Any] = value  # pyright: ignore[reportUnknownVariableType]
    return bool(items) and all(isinstance(item, BaseMessage) for item in items)


def _compact(value: Any) -> Any:
    """A message (or list of messages) as role and content on spans: LangChain's full dump repeats ids and metadata."""
    if isinstance(value, BaseMessage):
        return _message(value)
    if _messages(value):
        return [_message(item) for item in value]
    return value


def _document(document: Document) -> dict[str, Any]:
    return {"page_content": document.page_content, "metadata": document.metadata}


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _chain_inputs(value: Any) -> dict[str, Any]:
    """What a capture record stores as inputs: a dict input as it is, anything else as `{"input": value}`."""
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):  # pyright: ignore[reportUnknownVariableType]
        return dict(value)  # pyright: ignore[reportUnknownArgumentType]
    return {"input": value}


class PromptOpsCallbackHandler(BaseCallbackHandler):
    """Trace LangChain runs with promptops, and capture top-level chain runs for replay.

    Pass it in the config of an invocation (`config={"callbacks": [handler]}`) or bind it to a chain
    (`chain.with_config(callbacks=[handler])`). One handler can serve any number of chains, threads and asyncio
    tasks at once.

    * **Spans**: one per chain, prompt, parser, chat model or LLM, retriever and tool run, nested by LangChain's
      run ids, under whatever span is current when the chain is invoked. Model spans carry
      `gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`/`output_tokens`,
      `gen_ai.response.finish_reasons`; streamed ones `promptops.stream.items` and
      `promptops.stream.first_item_ms` (time to first token). Exceptions are recorded (redacted) with status
      ERROR. Under `promptops replay` spans carry `promptops.replay=true`.
    * **Captures**: a top-level chain run becomes one capture record: the chain's input (a dict as it is, any
      other value as `{"input": value}`), its final output, latency, error, trace ids and the pinned prompt
      version it used. Its `function` is `langchain:<name>`: `name=` if given, else the chain's run name
      (`chain.with_config(run_name="summarize")`), which is what `promptops replay module:chain` looks for.
      Not captured: runs inside a `@promptops.track` call (that call is captured already), replay runs, and
      runs sampled out.

    Args:
        name: The capture records' function is `langchain:<name>` for every top-level run of this handler
            (default: each run's own name).
        capture: `False`: trace only, never capture.
        sample_rate: Fraction of top-level runs captured (default: the `sample_rate` setting).
        tags: Stored with every capture record.

    Raises:
        ValueError: `sample_rate` outside [0, 1].
    """

    run_inline = True  # a few microseconds per event, thread-safe: no executor hop per event in async code

    def __init__(
        self,
        *,
        name: str | None = None,
        capture: bool = True,
        sample_rate: float | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Create a handler; see the class documentation for the arguments."""
        if sample_rate is not None and not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"PromptOpsCallbackHandler(sample_rate={sample_rate!r}): a fraction between 0 and 1")
        self.promptops_function: str | None = f"langchain:{name}" if name else None
        self.capture = capture
        self.sample_rate = sample_rate
        self.tags: dict[str, str] = {str(key): str(value) for key, value in (tags or {}).items()}
        self._runs: dict[UUID, _Run] = {}
        self._lock = threading.Lock()
        self._captures: dict[str, CallCapture] = {}

    def __repr__(self) -> str:
        """`PromptOpsCallbackHandler(name=..., capture=...)`."""
        name = self.promptops_function.removeprefix("langchain:") if self.promptops_function else None
        return f"PromptOpsCallbackHandler(name={name!r}, capture={self.capture!r})"

    # -- bookkeeping ---------------------------------------------------------------------------------------

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        span_name: str,
        attributes: dict[str, Any],
        inputs: Any,
        kind: Any = None,
    ) -> _Run:
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        if parent is not None:
            run = _Run(parent.root, parent.root.settings, parent.root.tracer)
        else:
            run = _Run(None, promptops.get_settings(), tracing.tracer())
        tracer = run.tracer
        if tracer is not None:
            try:
                attributes[RUN_ID] = str(run_id)
                if replay_active.get():
                    attributes[REPLAY] = True
                if run.settings.record_values and inputs is not _MISSING:
                    attributes[INPUTS] = dump(run.settings, _compact(inputs))
                context = _set_span_in_context(parent.span) if parent is not None and parent.span is not None else None
                if kind is None:
                    run.span = tracer.start_span(span_name, context=context, attributes=attributes)
                else:
                    run.span = tracer.start_span(span_name, context=context, kind=kind, attributes=attributes)
            except Exception:
                log_internal_error("langchain span start")
        with self._lock:
            self._runs[run_id] = run
        return run

    def _end(
        self,
        run_id: UUID,
        *,
        output: Any = _MISSING,
        error: BaseException | None = None,
        inputs: Any = _MISSING,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        ended_ns = time.perf_counter_ns()
        settings = run.settings
        span = run.span
        if span is not None:
            try:
                if attributes:
                    span.set_attributes(attributes)
                if run.tokens:
                    span.set_attribute(STREAM_ITEMS, run.tokens)
                    if run.first_ns is not None:
                        span.set_attribute(STREAM_FIRST_ITEM_MS, (run.first_ns - run.started_ns) / 1e6)
                if settings.record_values:
                    if inputs is not _MISSING:  # a streamed chain learns its input at the end
                        span.set_attribute(INPUTS, dump(settings, _compact(inputs)))
                    if error is None and output is not _MISSING:
                        span.set_attribute(OUTPUT, dump(settings, _compact(output)))
                if error is not None:
                    record_exception(span, settings, error)
            except Exception:
                log_internal_error("langchain span end")
            try:
                span.end()
            except Exception:
                log_internal_error("span end")
        capture = run.capture
        if capture is not None:
            capture.submit_inputs(
                run.prompt,
                _chain_inputs(run.inputs if inputs is _MISSING else inputs),
                output=None if output is _MISSING else output,
                error=error,
                started_ns=run.started_ns,
                ended_ns=ended_ns,
                first_item_ns=run.first_ns,
                span_context=span,
                usage=run.usage,
            )

    def _count(self, run_id: UUID, attributes: Mapping[str, Any]) -> None:
        """Report a finished model run's usage: to the call in progress, and to its top-level run if captured."""
        run = self._runs.get(run_id)
        provider = run.provider if run is not None else None
        input_tokens, output_tokens = attributes.get(GEN_AI_INPUT_TOKENS), attributes.get(GEN_AI_OUTPUT_TOKENS)
        model = attributes.get(GEN_AI_RESPONSE_MODEL)
        report_usage(input_tokens, output_tokens, model, provider)
        root = run.root if run is not None else None
        if root is not None and root.capture is not None and (input_tokens is not None or output_tokens is not None):
            with self._lock:  # a chain's parallel branches end their model runs from several threads
                if root.usage is None:
                    root.usage = Usage()
                root.usage.add(input_tokens, output_tokens, model, provider)

    def _capture_for(self, function: str) -> CallCapture:
        capture = self._captures.get(function)
        if capture is None:
            capture = CallCapture.named(function, enabled=self.capture, sample_rate=self.sample_rate, tags=self.tags)
            self._captures[function] = capture
        return capture

    def promptops_prompt_used(self, run_id: UUID, prompt: Prompt) -> None:
        """Called by a `pinned_prompt()` run with the version it resolved: recorded on its span and its chain's.

        The top-level run's capture record is linked to the first prompt resolved in it, or, when the chain's
        metadata names one (`chain.with_config(metadata={"promptops_prompt": NAME})`), to that one.

        Args:
            run_id: The prompt run's id.
            prompt: The prompt that served it.
        """
        try:
            run = self._runs.get(run_id)
            if run is None:
                return
            attributes = prompt_identity_attributes(prompt)
            if run.span is not None:
                run.span.set_attributes(attributes)
            root = run.root
            with self._lock:
                take = root.prompt is None and (root.wanted is None or root.wanted == prompt.name)
                if take:
                    root.prompt = prompt
            if take and root is not run and root.span is not None:
                root.span.set_attributes(attributes)
        except Exception:
            log_internal_error("langchain prompt report")

    # -- chains (and prompts, parsers, lambdas: every Runnable run) -------------------------------------------

    @override
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start the span of a chain run; a top-level one is also prepared for capture."""
        try:
            name = _name(serialized, kwargs, "chain")
            run_type = kwargs.get("run_type") or "chain"
            attributes: dict[str, Any] = {RUN_TYPE: run_type, SPAN_KIND: "CHAIN"}
            root = parent_run_id is None or parent_run_id not in self._runs
            function = ""
            if root:
                function = self.promptops_function or f"langchain:{name}"
                attributes[FUNCTION] = function
            run = self._start(run_id, parent_run_id, name, attributes, inputs)
            if root:
                run.function = function
                run.inputs = inputs
                wanted = (metadata or {}).get("promptops_prompt")
                run.wanted = wanted if isinstance(wanted, str) else None
                # A run inside a tracked call is captured by that call; replay runs never are.
                if (
                    self.capture
                    and run.settings.capture is not None
                    and active_prompt.get() is None
                    and not replay_active.get()
                ):
                    run.capture = self._capture_for(function)
        except Exception:
            log_internal_error("langchain chain start")

    @override
    def on_chain_end(
        self,
        outputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End the chain run's span with its output; submit a top-level run's capture record."""
        try:
            self._end(run_id, output=outputs, inputs=kwargs.get("inputs", _MISSING))
        except Exception:
            log_internal_error("langchain chain end")

    @override
    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End the chain run's span with the exception (redacted), status ERROR."""
        try:
            inputs = kwargs.get("inputs")
            self._end(run_id, error=error, inputs=_MISSING if inputs is None else inputs)
        except Exception:
            log_internal_error("langchain chain error")

    # -- models ----------------------------------------------------------------------------------------------

    def _model_start(
        self,
        operation: str,
        serialized: dict[str, Any] | None,
        inputs: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        metadata = metadata or {}
        params: Mapping[str, Any] = kwargs.get("invocation_params") or {}
        model = metadata.get("ls_model_name") or params.get("model") or params.get("model_name")
        name = _name(serialized, kwargs, "model")
        attributes: dict[str, Any] = {
            RUN_TYPE: "chat_model" if operation == "chat" else "llm",
            GEN_AI_OPERATION: operation,
            SPAN_KIND: "LLM",
        }
        if isinstance(model, str) and model:
            attributes[GEN_AI_REQUEST_MODEL] = model
        provider = metadata.get("ls_provider")
        if isinstance(provider, str) and provider:
            attributes[GEN_AI_PROVIDER] = provider
        temperature = _number(metadata.get("ls_temperature", params.get("temperature")))
        if temperature is not None:
            attributes[GEN_AI_TEMPERATURE] = temperature
        max_tokens = _number(metadata.get("ls_max_tokens", params.get("max_tokens")))
        if max_tokens is not None:
            attributes[GEN_AI_MAX_TOKENS] = max_tokens
        span_name = f"{operation} {model}" if isinstance(model, str) and model else f"{operation} {name}"
        if operation == "chat" and isinstance(inputs, list):
            batch: list[dict[str, Any]] = inputs[0] if inputs and isinstance(inputs[0], list) else inputs  # pyright: ignore[reportUnknownVariableType]
            settings = promptops.get_settings()
            if settings.record_values:
                attributes[GEN_AI_INPUT_MESSAGES] = dump(settings, [_parts(message) for message in batch])
        # A model call leaves the process: CLIENT, as the GenAI conventions have it (issue 12).
        run = self._start(run_id, parent_run_id, span_name, attributes, inputs, _client_kind())
        run.provider = provider if isinstance(provider, str) and provider else None

    @override
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start a chat model run's span (`chat <model>`)."""
        try:
            batches = [[_message(message) for message in batch] for batch in messages]
            inputs = batches[0] if len(batches) == 1 else batches
            self._model_start("chat", serialized, inputs, run_id, parent_run_id, metadata, kwargs)
        except Exception:
            log_internal_error("langchain model start")

    @override
    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start a text completion model run's span (`text_completion <model>`)."""
        try:
            inputs = prompts[0] if len(prompts) == 1 else prompts
            self._model_start("text_completion", serialized, inputs, run_id, parent_run_id, metadata, kwargs)
        except Exception:
            log_internal_error("langchain model start")

    @override
    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Count a streamed token; the first one times the model's (and the chain's) time to first token."""
        run = self._runs.get(run_id)
        if run is None:
            return
        run.tokens += 1
        if run.first_ns is None:
            now = time.perf_counter_ns()
            run.first_ns = now
            root = run.root
            if root.first_ns is None:
                root.first_ns = now

    @override
    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """End a model run's span with its output, token usage, finish reasons and response model.

        The usage counts for the call around the chain: a replayed call's `tokens` and `cost` (issue 13), an
        enclosing tracked call's capture record, or else the capture record of the top-level chain run (issue 14).
        """
        try:
            output, attributes, replies = _model_result(response)
            self._count(run_id, attributes)
            settings = promptops.get_settings()
            if replies and settings.record_values:
                attributes[GEN_AI_OUTPUT_MESSAGES] = dump(settings, replies)
            self._end(run_id, output=output, attributes=attributes)
        except Exception:
            log_internal_error("langchain model end")

    @override
    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """End a model run's span with the exception (redacted), status ERROR."""
        try:
            self._end(run_id, error=error)
        except Exception:
            log_internal_error("langchain model error")

    # -- retrievers ------------------------------------------------------------------------------------------

    @override
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start a retriever run's span, with the query as its input."""
        try:
            name = _name(serialized, kwargs, "retriever")
            self._start(run_id, parent_run_id, name, {RUN_TYPE: "retriever", SPAN_KIND: "RETRIEVER"}, query)
        except Exception:
            log_internal_error("langchain retriever start")

    @override
    def on_retriever_end(
        self,
        documents: Sequence[Document],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End a retriever run's span with the documents (content and metadata) as its output."""
        try:
            self._end(run_id, output=[_document(document) for document in documents])
        except Exception:
            log_internal_error("langchain retriever end")

    @override
    def on_retriever_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End a retriever run's span with the exception (redacted), status ERROR."""
        try:
            self._end(run_id, error=error)
        except Exception:
            log_internal_error("langchain retriever error")

    # -- tools -----------------------------------------------------------------------------------------------

    @override
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start a tool run's span (`execute_tool <name>`)."""
        try:
            name = _name(serialized, kwargs, "tool")
            attributes: dict[str, Any] = {
                RUN_TYPE: "tool",
                GEN_AI_OPERATION: "execute_tool",
                GEN_AI_TOOL_NAME: name,
                SPAN_KIND: "TOOL",
            }
            call_id = kwargs.get("tool_call_id")
            if isinstance(call_id, str) and call_id:
                attributes[GEN_AI_TOOL_CALL_ID] = call_id
            self._start(
                run_id, parent_run_id, f"execute_tool {name}", attributes, input_str if inputs is None else inputs
            )
        except Exception:
            log_internal_error("langchain tool start")

    @override
    def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End a tool run's span with its output."""
        try:
            self._end(run_id, output=output)
        except Exception:
            log_internal_error("langchain tool end")

    @override
    def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End a tool run's span with the exception (redacted), status ERROR."""
        try:
            self._end(run_id, error=error)
        except Exception:
            log_internal_error("langchain tool error")


def _model_result(response: LLMResult) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """A model run's output as the span records it, its GenAI attributes, and its replies as GenAI messages."""
    generations = [generation for batch in response.generations for generation in batch]
    outputs: list[Any] = []
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reasons: list[str] = []
    response_model: str | None = None
    for generation in generations:
        message: Any = getattr(generation, "message", None)
        info: Mapping[str, Any] = generation.generation_info or {}
        metadata: Mapping[str, Any] = getattr(message, "response_metadata", None) or {}
        outputs.append(_message(message) if message is not None else generation.text)
        usage: Mapping[str, Any] | None = getattr(message, "usage_metadata", None)
        if usage:
            input_tokens = (input_tokens or 0) + int(usage.get("input_tokens", 0))
            output_tokens = (output_tokens or 0) + int(usage.get("output_tokens", 0))
        reason = info.get("finish_reason") or metadata.get("finish_reason") or metadata.get("stop_reason")
        if isinstance(reason, str) and reason:
            finish_reasons.append(reason)
        model = metadata.get("model_name") or metadata.get("model")
        if response_model is None and isinstance(model, str) and model:
            response_model = model
    llm_output: Mapping[str, Any] = response.llm_output or {}
    if input_tokens is None:
        usage = llm_output.get("token_usage") or llm_output.get("usage")
        if isinstance(usage, Mapping):
            found: Mapping[str, Any] = usage  # pyright: ignore[reportUnknownVariableType]
            prompt_tokens = _number(found.get("prompt_tokens", found.get("input_tokens")))
            completion_tokens = _number(found.get("completion_tokens", found.get("output_tokens")))
            input_tokens = int(prompt_tokens) if prompt_tokens is not None else None
            output_tokens = int(completion_tokens) if completion_tokens is not None else None
    if response_model is None:
        model = llm_output.get("model_name") or llm_output.get("model")
        response_model = model if isinstance(model, str) and model else None
    attributes: dict[str, Any] = {}
    if input_tokens is not None:
        attributes[GEN_AI_INPUT_TOKENS] = input_tokens
    if output_tokens is not None:
        attributes[GEN_AI_OUTPUT_TOKENS] = output_tokens
    if finish_reasons:
        attributes[GEN_AI_FINISH_REASONS] = finish_reasons
    if response_model is not None:
        attributes[GEN_AI_RESPONSE_MODEL] = response_model
    replies: list[dict[str, Any]] = []
    messages: list[Mapping[str, Any]] = [output for output in outputs if isinstance(output, dict)]
    for index, reply in enumerate(messages):
        reason = finish_reasons[index] if index < len(finish_reasons) else "stop"
        replies.append({**_parts(reply), "finish_reason": reason})
    output: Any = outputs[0] if len(outputs) == 1 else outputs
    return output, attributes, replies
