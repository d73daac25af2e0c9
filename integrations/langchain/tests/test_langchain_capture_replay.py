"""Captures of chain runs, and `promptops replay` of a Runnable target, end to end on a real registry and store."""

from __future__ import annotations

import asyncio
import importlib
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableConfig, RunnableLambda, RunnableSerializable
from langchain_support import FailingChat, ProviderChat, Registry, StreamingProviderChat, span_id
from typer.testing import CliRunner
from typing_extensions import override

import promptops
from promptops import replay
from promptops.capture import CaptureRecord, CaptureStore
from promptops.cli import app
from promptops.replay import ReplayError
from promptops.replay._target import RunnableTarget, load_target, runnable_function_id
from promptops.testing import capture_spans
from promptops_langchain import PromptOpsCallbackHandler, pinned_prompt

TEXTS = [
    "The parcel left the warehouse on Monday and should arrive by Friday at the latest.",
    "My invoice shows a double charge for the March subscription, please refund one of them.",
    "The app crashes whenever I open the settings page on my tablet after the last update.",
    "I love the new dashboard, it makes the weekly report much faster to put together.",
    "Password reset emails never reach my inbox, I checked the spam folder twice already.",
    "Could you add an export to CSV button on the orders page, our accountant needs it monthly.",
]

APP = """
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableConfig, RunnableLambda, RunnableSerializable
from promptops_langchain import PromptOpsCallbackHandler, pinned_prompt

# The model echoes its prompt: the output depends on the prompt version, as a real model's would.
summarize_chain = (pinned_prompt("PROMPT_NAME") | ParrotFakeChatModel() | StrOutputParser()).with_config(
    run_name="summarize", callbacks=[PromptOpsCallbackHandler()]
)
# A chain whose input is a plain string.
ask_chain = (
    RunnableLambda(lambda question: {"text": question}) | pinned_prompt("PROMPT_NAME") | ParrotFakeChatModel()
    | StrOutputParser()
).with_config(run_name="ask", callbacks=[PromptOpsCallbackHandler()])
"""


def records(function: str | None = None) -> list[CaptureRecord]:
    assert promptops.flush(timeout=10)
    store = CaptureStore.open("sqlite:///.promptops/captures.db")
    try:
        return list(store.query(function=function))
    finally:
        store.close()


@pytest.fixture
def versions(local_registry: Registry, prompt_name: str) -> dict[str, int]:
    return {
        "v1": local_registry.register(prompt_name, "Summarize the ticket. Ticket: {{ text }}", alias="production"),
        "same": local_registry.register(prompt_name, "Summarize the ticket. Ticket: {{ text }}"),
        "bad": local_registry.register(prompt_name, "TL;DR."),
    }


@pytest.fixture
def module(prompt_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The application module, in the working directory, as `promptops replay` finds it."""
    name = f"lc_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP).replace("PROMPT_NAME", prompt_name))
    monkeypatch.syspath_prepend(str(tmp_path))  # pyright: ignore[reportUnknownMemberType]
    return importlib.import_module(name)


def test_capture_then_replay_against_a_candidate_version(module: Any, versions: dict[str, int]) -> None:
    for text in TEXTS:
        module.summarize_chain.invoke({"text": text})
    captured = records()
    assert {record.function for record in captured} == {"langchain:summarize"}
    assert len(captured) == len(TEXTS)  # one record per top-level run, none for its steps
    first = captured[0]
    assert first.inputs == {"text": TEXTS[0]} and first.replayable
    assert first.output == f"Summarize the ticket. Ticket: {TEXTS[0]}"
    assert (first.prompt_version, first.prompt_alias, first.error_type) == (versions["v1"], "production", None)
    assert first.trace_id is not None and first.latency_ms > 0

    target = f"{module.__name__}:summarize_chain"
    with capture_spans() as spans:
        same = replay.run(target, candidate=versions["same"], log_to_mlflow=False)
    assert same.passed, same.summary()
    assert len(same.records) == len(TEXTS)
    assert all(record.candidate_output == record.baseline_output for record in same.records)
    # The chain's own handler traced the replayed runs as replay, under replay's spans, and captured nothing.
    chain_roots = [span for span in spans.finished() if span.name == "summarize"]
    assert len(chain_roots) == 2 * len(TEXTS)  # candidate + one baseline re-run per record
    assert all(span.attributes is not None and span.attributes["promptops.replay"] for span in chain_roots)
    replay_spans = {span_id(span) for span in spans.finished() if span.name == f"replay {target}"}
    assert all(span.parent is not None and span.parent.span_id in replay_spans for span in chain_roots)
    assert len(records()) == len(TEXTS)

    bad = replay.run(target, candidate=versions["bad"], log_to_mlflow=False, repeats=0)
    assert not bad.passed
    assert {record.candidate_output for record in bad.records} == {"TL;DR."}
    assert bad.prompt_name == same.prompt_name


def test_cli_replays_a_runnable_target(module: Any, versions: dict[str, int], tmp_path: Path) -> None:
    for text in TEXTS[:3]:
        module.summarize_chain.invoke({"text": text})
    assert len(records()) == 3
    result = CliRunner().invoke(
        app,
        [
            "replay",
            f"{module.__name__}:summarize_chain",
            "--candidate",
            str(versions["bad"]),
            "--json",
            str(tmp_path / "out.json"),
            "--no-mlflow",
        ],
    )
    assert result.exit_code == 1, result.output
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["passed"] is False and len(data["records"]) == 3
    assert data["candidate"]["version"] == versions["bad"]


def test_a_chain_taking_a_string_is_captured_as_input_and_replayed(module: Any, versions: dict[str, int]) -> None:
    for text in TEXTS[:3]:
        assert module.ask_chain.invoke(text) == f"Summarize the ticket. Ticket: {text}"
    captured = records("langchain:ask")
    assert [record.inputs for record in captured] == [{"input": text} for text in TEXTS[:3]]
    result = replay.run(f"{module.__name__}:ask_chain", candidate=versions["same"], log_to_mlflow=False)
    assert result.passed and [record.candidate_output for record in result.records] == [
        f"Summarize the ticket. Ticket: {text}" for text in TEXTS[:3]
    ]


def test_a_tracked_function_calling_a_chain_is_captured_once(module: Any, versions: dict[str, int]) -> None:
    @promptops.track(prompt="wrapper", fallback="unused")
    def handle(text: str) -> str:
        return module.summarize_chain.invoke({"text": text})

    handle("from a tracked call")
    captured = records()
    assert len(captured) == 1
    assert captured[0].function.endswith("handle") and captured[0].inputs == {"text": "from a tracked call"}


def test_a_tracked_call_keeps_the_tokens_its_chain_runs_reported(versions: dict[str, int]) -> None:
    """The handler reports each model run's usage; the tracked call around the chain keeps the sum (issue 14)."""
    reply = AIMessage(
        "Short.",
        usage_metadata={"input_tokens": 11, "output_tokens": 3, "total_tokens": 14},
        response_metadata={"model_name": "fake-chat-1-2026"},
    )
    model = ProviderChat(messages=iter([reply, reply]))
    chain = pinned_prompt("summarize", fallback="Summarize: {{ text }}") | model | StrOutputParser()

    @promptops.track(prompt="wrapper", fallback="unused")
    def handle(text: str) -> str:
        config: RunnableConfig = {"callbacks": [PromptOpsCallbackHandler()]}
        return chain.invoke({"text": text}, config=config) + chain.invoke({"text": text}, config=config)

    assert handle("twice") == "Short.Short."
    (record,) = [record for record in records() if record.function.endswith("handle")]
    provider = model._get_ls_params().get("ls_provider")  # pyright: ignore[reportPrivateUsage]
    assert (record.input_tokens, record.output_tokens, record.model, record.provider) == (
        22,
        6,
        "fake-chat-1-2026",
        provider,
    )
    assert provider


@pytest.mark.parametrize("how", ["invoke", "stream", "ainvoke"])
def test_a_captured_chain_run_keeps_the_tokens_its_model_runs_reported(versions: dict[str, int], how: str) -> None:
    """A top-level chain run's record keeps its model runs' usage, model and provider, as a tracked call's does."""
    first = AIMessage(
        "Short answer.",
        usage_metadata={"input_tokens": 11, "output_tokens": 3, "total_tokens": 14},
        response_metadata={"model_name": "fake-chat-1-2026"},
    )
    second = AIMessage(
        "Shorter.",
        usage_metadata={"input_tokens": 20, "output_tokens": 2, "total_tokens": 22},
        response_metadata={"model_name": "fake-chat-2-2026"},
    )
    model = StreamingProviderChat(messages=iter([first, second]))
    chain = (
        pinned_prompt("summarize", fallback="Summarize: {{ text }}")
        | model
        | StrOutputParser()
        | RunnableLambda(lambda text: {"text": text})
        | pinned_prompt("summarize", fallback="Shorten: {{ text }}")
        | model
        | StrOutputParser()
    ).with_config(run_name="two_models", callbacks=[PromptOpsCallbackHandler()])
    if how == "invoke":
        assert chain.invoke({"text": "a ticket"}) == "Shorter."
    elif how == "stream":
        assert "".join(chain.stream({"text": "a ticket"})) == "Shorter."
    else:
        assert asyncio.run(chain.ainvoke({"text": "a ticket"})) == "Shorter."
    (record,) = records("langchain:two_models")
    assert record.output == "Shorter."
    provider = model._get_ls_params().get("ls_provider")  # pyright: ignore[reportPrivateUsage]
    assert provider  # LangChain names one for every chat model (from the class name, for this fake)
    assert (record.input_tokens, record.output_tokens, record.model, record.provider) == (
        31,
        5,
        "fake-chat-2-2026",
        provider,
    )


def test_capture_options_and_errors(prompt_name: str) -> None:
    prompt = pinned_prompt(prompt_name, fallback="Say {{ text }}")
    chain = (prompt | ParrotFakeChatModel() | StrOutputParser()).with_config(run_name="say")
    chain.invoke({"text": "off"}, config={"callbacks": [PromptOpsCallbackHandler(capture=False)]})
    chain.invoke({"text": "sampled out"}, config={"callbacks": [PromptOpsCallbackHandler(sample_rate=0.0)]})
    named = PromptOpsCallbackHandler(name="custom", tags={"team": "support"})
    chain.invoke({"text": "named"}, config={"callbacks": [named]})
    failing = (prompt | FailingChat(messages=iter([])) | StrOutputParser()).with_config(run_name="fails")
    with pytest.raises(RuntimeError):
        failing.invoke({"text": "boom"}, config={"callbacks": [PromptOpsCallbackHandler()]})
    streamed = (prompt | ProviderChat(messages=iter([AIMessage("a b c")])) | StrOutputParser()).with_config(
        run_name="streamed"
    )
    assert "".join(streamed.stream({"text": "s"}, config={"callbacks": [PromptOpsCallbackHandler()]})) == "a b c"

    by_function = {record.function: record for record in records()}
    assert set(by_function) == {"langchain:custom", "langchain:fails", "langchain:streamed"}
    assert by_function["langchain:custom"].tags == {"team": "support"}
    error = by_function["langchain:fails"]
    assert (error.error_type, error.output, error.prompt_source) == ("RuntimeError", None, "fallback")
    assert error.error_message is not None and "sk-proj" not in error.error_message
    stream = by_function["langchain:streamed"]
    assert (stream.inputs, stream.output) == ({"text": "s"}, "a b c")
    assert stream.first_item_ms is not None and stream.first_item_ms <= stream.latency_ms


class Opaque(RunnableSerializable[Any, Any]):
    """A runnable of the application's own, delegating to a chain it keeps in `bound`, with no graph to draw."""

    inner: Any

    @property
    def bound(self) -> Any:
        return self.inner

    @override
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.inner.invoke(input, config)

    @override
    def get_graph(self, config: RunnableConfig | None = None) -> Any:
        raise ValueError("this runnable cannot be drawn")


def as_text(message: AIMessage) -> dict[str, Any]:
    return {"text": message.content}


def test_runnable_target_discovery(prompt_name: str) -> None:
    one = pinned_prompt(prompt_name, fallback="{{ text }}")
    two = pinned_prompt(prompt_name + "-b", version=2)
    chain = one | ParrotFakeChatModel() | StrOutputParser()
    target = RunnableTarget("m:chain", chain)
    assert (target.prompt_name, target.selector, target.function_id) == (
        prompt_name,
        None,
        "langchain:RunnableSequence",
    )
    assert not target.is_async
    assert target.arguments({"text": "t"}) == ([{"text": "t"}], {})

    both = (one | ParrotFakeChatModel() | RunnableLambda(as_text) | two).with_config(run_name="two-step")
    with pytest.raises(ReplayError, match="uses prompts .* name the one to replay"):
        RunnableTarget("m:both", both)
    chosen = RunnableTarget("m:both", both.with_config(metadata={"promptops_prompt": prompt_name + "-b"}))
    assert (chosen.prompt_name, chosen.selector, chosen.function_id) == (
        prompt_name + "-b",
        ("version", 2),
        "langchain:two-step",
    )
    with pytest.raises(ReplayError, match="its metadata names prompt 'nope'"):
        RunnableTarget("m:both", both.with_config(metadata={"promptops_prompt": "nope"}))
    # A custom runnable whose graph cannot be drawn: its parts are walked instead.
    assert RunnableTarget("m:opaque", Opaque(inner=chain)).prompt_name == prompt_name
    named = chain.with_config(callbacks=[PromptOpsCallbackHandler(name="custom")], run_name="ignored")
    assert runnable_function_id(named) == "langchain:custom"

    async def slow(value: Any) -> Any:
        return value

    assert RunnableTarget("m:async", one | RunnableLambda(slow)).is_async
    with pytest.raises(ReplayError, match="without a pinned prompt"):
        RunnableTarget("m:plain", ParrotFakeChatModel() | StrOutputParser())
    with pytest.raises(TypeError, match="needs input"):
        target.arguments({"other": 1})


def test_load_target_error_mentions_runnables(tmp_path: Path) -> None:
    (tmp_path / "plain_mod_lc.py").write_text("def f(text):\n    return text\n")
    with pytest.raises(ReplayError, match="pinned_prompt"):
        load_target("plain_mod_lc:f")
