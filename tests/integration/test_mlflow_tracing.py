"""A tracked call and MLflow's own tracing make one trace, whichever is outer, with the prompt link kept (issue 12).

Against a real sqlite tracking store and a real `mlflow server` subprocess; MLflow's own `@mlflow.trace`,
`mlflow.start_span` and `mlflow.langchain.autolog()` with a real LangChain runnable. Nothing is mocked.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import promptops

from .conftest import MlflowServer

# MLflow imports its pyfunc flavour when its first trace starts, which warns about its own type hints.
pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")


@pytest.fixture
def mlflow_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """MLflow's tracing as the application sets it up; reset afterwards (it is process-global)."""
    import mlflow
    from mlflow.tracing import provider
    from mlflow.tracking import fluent

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        yield mlflow
    finally:
        # Leave no MLflow state behind for later tests: URIs (and the variables MLflow sets for subprocesses),
        # the active experiment, the tracer provider.
        mlflow.flush_trace_async_logging()
        provider.reset()
        mlflow.set_tracking_uri(None)  # pyright: ignore[reportArgumentType]
        mlflow.set_registry_uri(None)  # pyright: ignore[reportArgumentType]
        fluent._active_experiment_id = None  # pyright: ignore[reportPrivateUsage]
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID"):
            os.environ.pop(name, None)


def use_store(mlflow: Any, uri: str, prompt_name: str) -> str:
    """MLflow and promptops pointed at one store and experiment; the prompt registered there (two versions)."""
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.register_prompt(name=prompt_name, template="Summarize {{ text }}")
    client.register_prompt(name=prompt_name, template="Summarize briefly {{ text }}")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.set_experiment(f"mixed-{uuid.uuid4().hex[:8]}")
    promptops.configure(tracking_uri=uri, trace_exporter="mlflow", capture=None)
    return str(experiment.experiment_id)


def traces(mlflow: Any, experiment_id: str, filter_string: str | None, expected: int) -> list[Any]:
    """The experiment's traces (MLflow links prompts in a thread of its own after the export: poll)."""
    mlflow.flush_trace_async_logging()
    assert promptops.flush(60)
    deadline = time.monotonic() + 30
    while True:
        found = mlflow.search_traces(
            locations=[experiment_id], filter_string=filter_string, return_type="list", max_results=100
        )
        if len(found) >= expected or time.monotonic() > deadline:
            if len(found) < expected:  # say what is there instead
                for trace in mlflow.search_traces(locations=[experiment_id], return_type="list"):
                    print(trace.info.tags, [(span.name, span.parent_id) for span in trace.data.spans])
            return found
        time.sleep(0.2)


def spans_by_name(trace: Any) -> dict[str, Any]:
    return {span.name: span for span in trace.data.spans}


def check_tracked_inside_mlflow(mlflow: Any, experiment_id: str, name: str) -> None:
    @promptops.track(prompt=name)
    def summarize(text: str, *, prompt: promptops.Prompt) -> str:
        return f"summary of {text} by v{prompt.version}"

    @mlflow.trace(name="handler")
    def handler(text: str) -> str:
        return summarize(text).upper()

    with promptops.use_prompt(name, version=2):
        assert handler("a doc") == "SUMMARY OF A DOC BY V2"
    (trace,) = traces(mlflow, experiment_id, f'prompt = "{name}/2"', 1)
    assert len(traces(mlflow, experiment_id, None, 1)) == 1  # one trace, not two
    spans = spans_by_name(trace)
    assert set(spans) == {"handler", "summarize"}
    assert spans["summarize"].parent_id == spans["handler"].span_id
    assert spans["summarize"].inputs == {"text": "a doc"}
    assert spans["summarize"].outputs == "summary of a doc by v2"
    assert spans["summarize"].attributes["promptops.prompt.version"] == 2
    assert spans["summarize"].span_type == "CHAIN"
    assert traces(mlflow, experiment_id, f'prompt = "{name}/1"', 0) == []


def check_mlflow_inside_tracked(mlflow: Any, experiment_id: str, name: str) -> None:
    @mlflow.trace(name="retrieve")
    def retrieve(text: str) -> list[str]:
        return [text, "context"]

    @promptops.track(prompt=name, name="answer")
    def answer(text: str, *, prompt: promptops.Prompt) -> str:
        promptops.record_usage(input_tokens=3, output_tokens=2, provider="openai")
        return " + ".join(retrieve(text))

    with promptops.use_prompt(name, version=1):
        assert answer("q") == "q + context"
    (trace,) = traces(mlflow, experiment_id, f'prompt = "{name}/1"', 1)
    assert len(traces(mlflow, experiment_id, None, 1)) == 1
    spans = spans_by_name(trace)
    assert set(spans) == {"answer", "retrieve"}
    assert spans["answer"].parent_id is None
    assert spans["retrieve"].parent_id == spans["answer"].span_id
    assert spans["answer"].outputs == "q + context"
    assert spans["answer"].span_type == "LLM"  # it reported a model call
    assert spans["answer"].attributes["gen_ai.provider.name"] == "openai"


def test_sqlite_a_tracked_call_inside_mlflow_trace_is_one_trace(
    tmp_path: Path, prompt_name: str, mlflow_tracing: Any
) -> None:
    experiment_id = use_store(mlflow_tracing, f"sqlite:///{tmp_path / 'mlflow.db'}", prompt_name)
    check_tracked_inside_mlflow(mlflow_tracing, experiment_id, prompt_name)


def test_sqlite_mlflow_trace_inside_a_tracked_call_is_one_trace(
    tmp_path: Path, prompt_name: str, mlflow_tracing: Any
) -> None:
    experiment_id = use_store(mlflow_tracing, f"sqlite:///{tmp_path / 'mlflow.db'}", prompt_name)
    mlflow_tracing.tracing.enable()  # the application has MLflow tracing on from start-up
    check_mlflow_inside_tracked(mlflow_tracing, experiment_id, prompt_name)


def test_server_both_orders_are_one_trace_each(server: MlflowServer, prompt_name: str, mlflow_tracing: Any) -> None:
    experiment_id = use_store(mlflow_tracing, server.url, prompt_name)
    check_tracked_inside_mlflow(mlflow_tracing, experiment_id, prompt_name)
    other = f"{prompt_name}-b"
    client = mlflow_tracing.MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    client.register_prompt(name=other, template="Answer {{ text }}")
    experiment_id = str(mlflow_tracing.set_experiment(f"mixed-{uuid.uuid4().hex[:8]}").experiment_id)
    mlflow_tracing.tracing.enable()  # set_experiment() resets MLflow's tracing: on again, as at start-up
    check_mlflow_inside_tracked(mlflow_tracing, experiment_id, other)


def test_without_mlflow_tracing_promptops_keeps_its_own_exporter(
    tmp_path: Path, prompt_name: str, mlflow_tracing: Any
) -> None:
    # No MLflow span and MLflow's tracing never set up: the span goes through promptops' exporter (counted there).
    from promptops import tracing

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    use_store(mlflow_tracing, uri, prompt_name)

    @promptops.track(prompt=prompt_name)
    def summarize(text: str, *, prompt: promptops.Prompt) -> str:
        return text

    before = tracing.stats()["spans_exported"]
    with promptops.use_prompt(prompt_name, version=1):
        summarize("x")
    assert promptops.flush(60)
    assert tracing.stats()["spans_exported"] - before == 1


def test_autologged_langchain_and_a_tracked_call_are_one_trace(
    tmp_path: Path, prompt_name: str, mlflow_tracing: Any
) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda

    experiment_id = use_store(mlflow_tracing, f"sqlite:///{tmp_path / 'mlflow.db'}", prompt_name)
    mlflow_tracing.langchain.autolog()
    try:

        @promptops.track(prompt=prompt_name)
        def summarize(text: str, *, prompt: promptops.Prompt) -> str:
            return f"v{prompt.version}: {text}"

        chain = (RunnableLambda(lambda text: text.strip()) | RunnableLambda(summarize)).with_config(run_name="chain")
        with promptops.use_prompt(prompt_name, version=1):
            assert chain.invoke("  doc ") == "v1: doc"
        (trace,) = traces(mlflow_tracing, experiment_id, f'prompt = "{prompt_name}/1"', 1)
        assert len(traces(mlflow_tracing, experiment_id, None, 1)) == 1
        spans = spans_by_name(trace)
        assert spans["summarize"].parent_id is not None
        assert spans["summarize"].outputs == "v1: doc"

        @promptops.track(prompt=prompt_name, name="outer")
        def outer(text: str) -> str:
            return chain.invoke(text)

        with promptops.use_prompt(prompt_name, version=2):
            assert outer("x") == "v2: x"
        (trace,) = traces(mlflow_tracing, experiment_id, f'prompt = "{prompt_name}/2"', 1)
        assert len(traces(mlflow_tracing, experiment_id, None, 2)) == 2
        spans = spans_by_name(trace)
        assert spans["outer"].parent_id is None
        assert spans["chain"].parent_id == spans["outer"].span_id
    finally:
        mlflow_tracing.langchain.autolog(disable=True)
