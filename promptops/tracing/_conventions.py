"""What other tools read from promptops' spans, derived in the export thread (issue 12): never on the call path.

* MLflow: the span type (`mlflow.spanType`) from `openinference.span.kind` where a span has one (the LangChain
  handler's tool and retriever runs), and the chat messages its trace view renders as a conversation
  (`mlflow.chat.messages`, `{role, content}` messages) from the GenAI conventions' `gen_ai.input.messages` and
  `gen_ai.output.messages`.
* OpenInference (Arize Phoenix and other OpenInference readers): `openinference.span.kind`, `input.value`/
  `input.mime_type`, `output.value`/`output.mime_type`, `llm.model_name`, `llm.prompt_template.*`, from
  promptops' own attributes. Names as the `openinference-semantic-conventions` package has them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..prompts import Prompt

__all__ = [
    "OpenInferenceExporter",
    "mlflow_chat_messages",
    "mlflow_span_type",
    "openinference_attributes",
    "openinference_static",
    "chat_prompt_messages",
    "remember_prompt",
    "with_attributes",
    "with_openinference",
]

SPAN_KIND = "openinference.span.kind"
INPUT_VALUE = "input.value"
INPUT_MIME_TYPE = "input.mime_type"
OUTPUT_VALUE = "output.value"
OUTPUT_MIME_TYPE = "output.mime_type"
LLM_MODEL_NAME = "llm.model_name"
LLM_PROVIDER = "llm.provider"
LLM_TOKEN_COUNT_PROMPT = "llm.token_count.prompt"
LLM_TOKEN_COUNT_COMPLETION = "llm.token_count.completion"
LLM_PROMPT_TEMPLATE = "llm.prompt_template.template"
LLM_PROMPT_TEMPLATE_VERSION = "llm.prompt_template.version"
LLM_PROMPT_TEMPLATE_VARIABLES = "llm.prompt_template.variables"
JSON = "application/json"

INPUTS = "promptops.inputs"
OUTPUT = "promptops.output"
PROMPT_NAME = "promptops.prompt.name"
PROMPT_VERSION = "promptops.prompt.version"
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"

# OpenInference span kinds as MLflow's span types (MLflow's own names where they differ).
_MLFLOW_TYPES = {
    "LLM": "LLM",
    "CHAIN": "CHAIN",
    "TOOL": "TOOL",
    "RETRIEVER": "RETRIEVER",
    "EMBEDDING": "EMBEDDING",
    "AGENT": "AGENT",
    "RERANKER": "RERANKER",
    "GUARDRAIL": "GUARDRAIL",
    "EVALUATOR": "EVALUATOR",
}


def _is_model_call(attributes: Mapping[str, Any]) -> bool:
    return any(key.startswith("gen_ai.") for key in attributes)


def mlflow_span_type(attributes: Mapping[str, Any]) -> str:
    """MLflow's span type: from `openinference.span.kind` if set, else LLM for a model call, else CHAIN.

    A chat model run is MLflow's `CHAT_MODEL`, as MLflow's own LangChain tracing types it.
    """
    kind = attributes.get(SPAN_KIND)
    if isinstance(kind, str) and kind in _MLFLOW_TYPES:
        if kind == "LLM" and attributes.get(GEN_AI_OPERATION) == "chat":
            return "CHAT_MODEL"
        return _MLFLOW_TYPES[kind]
    return "LLM" if _is_model_call(attributes) else "CHAIN"


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:  # cut at max_value_chars: not JSON any more
        return None


def _chat_message(message: Any) -> dict[str, Any] | None:
    """A GenAI-conventions message (`{role, parts}`) as MLflow's `{role, content}` chat message."""
    if not isinstance(message, dict):
        return None
    entry = cast("Mapping[str, Any]", message)  # decoded JSON
    role = entry.get("role")
    parts = entry.get("parts")
    if not isinstance(role, str) or not isinstance(parts, list):
        return None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    result: dict[str, Any] = {"role": role}
    for part in cast("list[Any]", parts):
        if not isinstance(part, dict):
            continue
        item = cast("Mapping[str, Any]", part)
        kind = item.get("type")
        if kind == "text" and isinstance(item.get("content"), str):
            texts.append(item["content"])
        elif kind == "tool_call":
            arguments = item.get("arguments")
            calls.append(
                {
                    "id": item.get("id"),
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": json.dumps(arguments)},
                }
            )
        elif kind == "tool_call_response":
            response = item.get("response")
            texts.append(response if isinstance(response, str) else json.dumps(response))
            if item.get("id"):
                result["tool_call_id"] = item["id"]
    result["content"] = "\n".join(texts)
    if calls:
        result["tool_calls"] = calls
    return result


def mlflow_chat_messages(attributes: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The conversation MLflow's trace view renders: input then output messages; `None` if the span has none."""
    messages: list[dict[str, Any]] = []
    for key in (GEN_AI_INPUT_MESSAGES, GEN_AI_OUTPUT_MESSAGES):
        decoded = _loads(attributes.get(key))
        if isinstance(decoded, list):
            for message in decoded:  # pyright: ignore[reportUnknownVariableType]
                if (converted := _chat_message(message)) is not None:
                    messages.append(converted)
    return messages or None


def openinference_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenInference attributes a span's promptops and GenAI attributes amount to (only those it lacks)."""
    extra: dict[str, Any] = {}
    if SPAN_KIND not in attributes:
        extra[SPAN_KIND] = "LLM" if _is_model_call(attributes) else "CHAIN"
    if INPUTS in attributes and INPUT_VALUE not in attributes:
        extra[INPUT_VALUE] = attributes[INPUTS]
        extra[INPUT_MIME_TYPE] = JSON
    if OUTPUT in attributes and OUTPUT_VALUE not in attributes:
        extra[OUTPUT_VALUE] = attributes[OUTPUT]
        extra[OUTPUT_MIME_TYPE] = JSON
    model = attributes.get(GEN_AI_RESPONSE_MODEL) or attributes.get(GEN_AI_REQUEST_MODEL)
    if isinstance(model, str) and LLM_MODEL_NAME not in attributes:
        extra[LLM_MODEL_NAME] = model
    provider = attributes.get(GEN_AI_PROVIDER_NAME)
    if isinstance(provider, str) and LLM_PROVIDER not in attributes:
        extra[LLM_PROVIDER] = provider
    for source, target in (
        (GEN_AI_INPUT_TOKENS, LLM_TOKEN_COUNT_PROMPT),
        (GEN_AI_OUTPUT_TOKENS, LLM_TOKEN_COUNT_COMPLETION),
    ):
        if source in attributes and target not in attributes:
            extra[target] = attributes[source]
    return extra


# Prompt versions by (name, version), noted once per prompt copy by the span module (never per call), for the
# template (`llm.prompt_template.*`) and a chat prompt's messages at export. Bounded: the oldest are forgotten first.
_prompts: dict[tuple[str, int], Prompt] = {}
MAX_PROMPTS = 256


def remember_prompt(prompt: Prompt) -> None:
    """Note a registry prompt version for the export thread (a `fallback=` prompt, version 0, is not noted)."""
    if prompt.version <= 0:
        return
    if len(_prompts) >= MAX_PROMPTS:
        _prompts.pop(next(iter(_prompts)), None)
    _prompts[(prompt.name, prompt.version)] = prompt


def _prompt_of(attributes: Mapping[str, Any]) -> Prompt | None:
    name, version = attributes.get(PROMPT_NAME), attributes.get(PROMPT_VERSION)
    if isinstance(name, str) and isinstance(version, int):
        return _prompts.get((name, version))
    return None


def _text_message(role: Any, content: Any) -> dict[str, Any]:
    text = content if isinstance(content, str) else json.dumps(content)
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def chat_prompt_messages(attributes: Mapping[str, Any]) -> dict[str, str]:
    """`gen_ai.input.messages`/`gen_ai.output.messages` (JSON text) of a call whose prompt is a chat prompt.

    The input messages are the chat template filled with the call's recorded (redacted) arguments, when they are
    the template's variables; the output message is a text return value, as the assistant's reply. Empty when the
    span has them already, its prompt is a text prompt or unknown, or the arguments do not fill the template.
    """
    if GEN_AI_INPUT_MESSAGES in attributes or GEN_AI_OUTPUT_MESSAGES in attributes:
        return {}
    prompt = _prompt_of(attributes)
    if prompt is None or not prompt.is_chat:
        return {}
    variables = _loads(attributes.get(INPUTS))
    if not isinstance(variables, dict) or not prompt.variables <= variables.keys():  # pyright: ignore[reportUnknownMemberType]
        return {}
    try:
        filled: Any = prompt.format(**variables)  # pyright: ignore[reportUnknownArgumentType]
    except Exception:  # arguments that are not the template's variables: no messages to show
        return {}
    messages = [_text_message(message.get("role"), message.get("content")) for message in filled]
    result = {GEN_AI_INPUT_MESSAGES: json.dumps(messages)}
    output = _loads(attributes.get(OUTPUT))
    if isinstance(output, str):
        result[GEN_AI_OUTPUT_MESSAGES] = json.dumps([{**_text_message("assistant", output), "finish_reason": "stop"}])
    return result


def openinference_static(prompt: Prompt, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenInference attributes a prompt copy gives every call's span: kind, model, template and its version.

    For spans of an application's own tracer provider, set in the call (`_span._openinference`); `attributes` are
    the prompt's span attributes (its model config among them).
    """
    extra: dict[str, Any] = {SPAN_KIND: "LLM" if _is_model_call(attributes) else "CHAIN"}
    model = attributes.get(GEN_AI_REQUEST_MODEL)
    if isinstance(model, str):
        extra[LLM_MODEL_NAME] = model
    if prompt.version > 0:  # a registry version: a fallback= template is not a prompt template of the registry
        template = prompt.template
        extra[LLM_PROMPT_TEMPLATE] = template if isinstance(template, str) else json.dumps(template)
        extra[LLM_PROMPT_TEMPLATE_VERSION] = str(prompt.version)
    return extra


def with_openinference(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """`attributes` plus their OpenInference counterparts, the prompt template and a chat prompt's messages."""
    extra = openinference_attributes(attributes)
    prompt = _prompt_of(attributes)
    if prompt is not None and LLM_PROMPT_TEMPLATE not in attributes:
        template = prompt.template
        extra[LLM_PROMPT_TEMPLATE] = template if isinstance(template, str) else json.dumps(template)
        extra[LLM_PROMPT_TEMPLATE_VERSION] = str(prompt.version)
        if INPUTS in attributes:
            extra[LLM_PROMPT_TEMPLATE_VARIABLES] = attributes[INPUTS]
    extra.update(chat_prompt_messages(attributes))
    return {**attributes, **extra}


class OpenInferenceExporter(SpanExporter):
    """Adds the OpenInference attributes to each span in the export thread, then hands the batch on.

    Wraps the `"otlp"` and `"console"` exporters; an application with its own tracer provider can wrap its own
    exporter with it (`promptops.tracing.openinference_exporter()`).
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export `spans` with their OpenInference attributes."""
        return self.exporter.export([_converted(span) for span in spans])

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.exporter.force_flush(timeout_millis)


def _converted(span: ReadableSpan) -> ReadableSpan:
    attributes = span.attributes or {}
    if PROMPT_NAME not in attributes and SPAN_KIND not in attributes:
        return span  # not one of ours (an application's span on the same provider)
    return with_attributes(span, with_openinference(attributes))


def with_attributes(span: ReadableSpan, attributes: Mapping[str, Any], resource: Any = None) -> ReadableSpan:
    """A copy of the ended `span` with other attributes (and, if given, another resource), for an exporter."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource if resource is None else resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
