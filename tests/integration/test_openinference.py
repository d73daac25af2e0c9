"""OpenInference attributes over OTLP (issue 12): what Arize Phoenix reads for its input, output, kind and template
columns, added in the export thread. The OTLP receiver is a real `mlflow server` (its `/v1/traces`), which keeps
every attribute as sent; the names are checked against the `openinference-semantic-conventions` package.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import promptops
from promptops.tracing import _conventions

from .conftest import MlflowServer, run_python
from .test_tracing_export import wait_for_traces


def test_attribute_names_are_openinference_names() -> None:
    from openinference.semconv.trace import OpenInferenceMimeTypeValues, OpenInferenceSpanKindValues, SpanAttributes

    names = {value for key, value in vars(SpanAttributes).items() if key.isupper() and isinstance(value, str)}
    ours = {
        value
        for key, value in vars(_conventions).items()
        if key.isupper() and isinstance(value, str) and not value.startswith(("promptops.", "gen_ai.", "mlflow."))
    }
    ours.discard(_conventions.JSON)
    assert ours and ours <= names, ours - names
    assert _conventions.JSON == OpenInferenceMimeTypeValues.JSON.value
    kinds = {kind.value for kind in OpenInferenceSpanKindValues}
    assert set(_conventions._MLFLOW_TYPES) <= kinds  # pyright: ignore[reportPrivateUsage]


def test_phoenix_columns_arrive_over_otlp(
    server: MlflowServer, prompt_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    server.register(prompt_name, "Summarize {{ text }}", model_config={"model_name": "gpt-test"})
    client = MlflowClient(tracking_uri=server.url)
    experiment_id = client.create_experiment(f"oi-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-mlflow-experiment-id={experiment_id}")
    promptops.configure(tracking_uri=server.url, trace_exporter="otlp", capture=None)

    @promptops.track(prompt=prompt_name)
    def summarize(text: str, *, prompt: promptops.Prompt) -> str:
        promptops.record_usage(input_tokens=7, output_tokens=2, provider="openai")
        return f"short {text}"

    @promptops.track(prompt=f"{prompt_name}-plain", name="plain", fallback="x")  # version 0: no template
    def plain(text: str) -> str:
        return summarize(text)

    with promptops.use_prompt(prompt_name, version=1):
        assert plain("doc") == "short doc"
    assert promptops.flush(30)
    (trace,) = wait_for_traces(client, experiment_id, 1)
    spans = {span.name: span.attributes for span in trace.data.spans}
    llm, chain = spans["summarize"], spans["plain"]
    assert llm["openinference.span.kind"] == "LLM"  # a model config and usage: a model call
    assert chain["openinference.span.kind"] == "CHAIN"
    assert llm["input.value"] == {"text": "doc"}
    assert llm["input.mime_type"] == "application/json"
    assert llm["output.value"] == "short doc"
    assert llm["output.mime_type"] == "application/json"
    assert llm["llm.model_name"] == "gpt-test"
    assert llm["llm.provider"] == "openai"
    assert (llm["llm.token_count.prompt"], llm["llm.token_count.completion"]) == (7, 2)
    assert llm["llm.prompt_template.template"] == "Summarize {{ text }}"
    assert llm["llm.prompt_template.version"] == "1"
    assert llm["llm.prompt_template.variables"] == {"text": "doc"}
    assert "llm.model_name" not in chain


def test_a_chat_prompt_call_carries_its_messages_into_mlflow(tmp_path: Path, prompt_name: str) -> None:
    # gen_ai.input.messages / gen_ai.output.messages for a chat prompt, and the conversation MLflow's Chat tab shows.
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.register_prompt(
        name=prompt_name,
        template=[{"role": "system", "content": "You summarize."}, {"role": "user", "content": "Summarize {{ text }}"}],
    )
    promptops.configure(tracking_uri=uri, trace_exporter="mlflow", capture=None)

    @promptops.track(prompt=prompt_name)
    def summarize(text: str, *, prompt: promptops.Prompt) -> str:
        return f"short {text}"

    @promptops.track(prompt=prompt_name, name="other_arguments")
    def other(document: str, *, prompt: promptops.Prompt) -> str:  # not the template's variables: no messages
        return document

    with promptops.use_prompt(prompt_name, version=1):
        summarize("the doc")
        other("x")
    assert promptops.flush(60)
    spans = {span.name: span for trace in client.search_traces(locations=["0"]) for span in trace.data.spans}
    attributes = spans["summarize"].attributes
    assert attributes["gen_ai.input.messages"] == [
        {"role": "system", "parts": [{"type": "text", "content": "You summarize."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Summarize the doc"}]},
    ]
    assert attributes["gen_ai.output.messages"] == [
        {"role": "assistant", "parts": [{"type": "text", "content": "short the doc"}], "finish_reason": "stop"}
    ]
    assert attributes["mlflow.chat.messages"] == [
        {"role": "system", "content": "You summarize."},
        {"role": "user", "content": "Summarize the doc"},
        {"role": "assistant", "content": "short the doc"},
    ]
    assert "gen_ai.input.messages" not in spans["other_arguments"].attributes


APP_PROVIDER = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import promptops

memory = InMemorySpanExporter()
provider = TracerProvider()  # the application's own set-up (as Phoenix's register() makes one)
provider.add_span_processor(SimpleSpanProcessor(memory))
trace.set_tracer_provider(provider)
promptops.configure(tracking_uri=sys.argv[1], capture=None)
name = sys.argv[2]


@promptops.track(prompt=name)
def summarize(text, *, prompt):
    promptops.record_usage(input_tokens=7, output_tokens=2, response_model="gpt-test-2", provider="openai")
    return "short " + text


@promptops.track(prompt=name + "-plain", name="plain", fallback="x")
def plain(text):
    return summarize(text)


@promptops.track(prompt=name, name="stream")
def stream(text, *, prompt):
    yield "a"
    yield "b"


plain("doc")
assert "".join(stream("doc")) == "ab"
print(json.dumps({span.name: dict(span.attributes) for span in memory.get_finished_spans()}))
"""


def test_an_application_provider_gets_the_openinference_attributes(tmp_path: Path, prompt_name: str) -> None:
    # Issue 12: with its own tracer provider the application exports with its own exporters, which add nothing: the
    # attributes Phoenix reads are set on the span in the call.
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.register_prompt(name=prompt_name, template="Summarize {{ text }}", model_config={"model_name": "gpt-test"})
    client.set_prompt_alias(prompt_name, "production", 1)
    spans = run_python(APP_PROVIDER, uri, prompt_name, cwd=tmp_path)
    llm, chain, streamed = spans["summarize"], spans["plain"], spans["stream"]
    assert llm["openinference.span.kind"] == "LLM"
    assert llm["input.value"] == llm["promptops.inputs"] == '{"text":"doc"}'
    assert llm["input.mime_type"] == llm["output.mime_type"] == "application/json"
    assert llm["output.value"] == llm["promptops.output"] == '"short doc"'
    assert llm["llm.model_name"] == "gpt-test-2"  # the model that answered (record_usage), over the config's
    assert llm["llm.provider"] == "openai"
    assert (llm["llm.token_count.prompt"], llm["llm.token_count.completion"]) == (7, 2)
    assert llm["llm.prompt_template.template"] == "Summarize {{ text }}"
    assert llm["llm.prompt_template.version"] == "1"
    assert llm["llm.prompt_template.variables"] == '{"text":"doc"}'
    assert chain["openinference.span.kind"] == "CHAIN"  # no model config, no usage
    assert chain["input.value"] == '{"text":"doc"}' and chain["output.value"] == '"short doc"'
    assert chain["input.mime_type"] == chain["output.mime_type"] == "application/json"
    assert "llm.prompt_template.template" not in chain  # a fallback= template is not a registry prompt version
    assert "llm.prompt_template.variables" not in chain
    assert streamed["openinference.span.kind"] == "LLM"  # the prompt's model config: a model call
    assert streamed["output.value"] == '"ab"'


def test_the_names_set_in_the_call_are_the_export_threads() -> None:
    from promptops import _span

    assert _span.OI_SPAN_KIND == _conventions.SPAN_KIND
    assert _span.OI_INPUT_VALUE == _conventions.INPUT_VALUE
    assert _span.OI_OUTPUT_VALUE == _conventions.OUTPUT_VALUE
    assert _span.OI_INPUT_MIME_TYPE == _conventions.INPUT_MIME_TYPE
    assert _span.OI_OUTPUT_MIME_TYPE == _conventions.OUTPUT_MIME_TYPE
    assert _span.OI_TEMPLATE_VARIABLES == _conventions.LLM_PROMPT_TEMPLATE_VARIABLES
    assert _span.JSON_MIME_TYPE == _conventions.JSON
