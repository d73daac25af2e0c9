"""Tokens and cost of a replay (issue 13, item 4): real `openai`/`anthropic` SDKs and `ChatOpenAI` on ProviderServer.

The server reports `usage` in every successful answer and counts the tokens it reported; the JSON result must
hold exactly those counts, and their cost by the price table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import promptops
from promptops._config import ConfigError
from promptops._prices import DEFAULT_PRICES, Price, PriceTable, parse_prices
from promptops._usage import usage_of
from promptops.cli import app
from promptops.provider_server import ProviderServer
from tests.conftest import Registry
from tests.unit.test_replay import TEXTS, App, write_dataset

COST_APP = """
import os

import anthropic
import openai
from langchain_openai import ChatOpenAI
from promptops_langchain import PromptOpsCallbackHandler

import promptops


def url():
    return os.environ["PROMPTOPS_TEST_PROVIDER_URL"]


@promptops.track(prompt="PROMPT_NAME")
def recorded(text: str, *, prompt: promptops.Prompt) -> str:
    with openai.OpenAI(base_url=url() + "/v1", api_key="test", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt.format(text=text)}]
        )
    promptops.record_usage(
        input_tokens=reply.usage.prompt_tokens, output_tokens=reply.usage.completion_tokens, model=reply.model
    )
    return reply.choices[0].message.content


@promptops.track(prompt="PROMPT_NAME")
def returned(text: str, *, prompt: promptops.Prompt):
    with anthropic.Anthropic(base_url=url(), api_key="test", max_retries=0) as client:
        return client.messages.create(
            model="claude-3-5-haiku-20241022", max_tokens=200,
            messages=[{"role": "user", "content": prompt.format(text=text)}],
        )


@promptops.track(prompt="PROMPT_NAME")
def handled(text: str, *, prompt: promptops.Prompt) -> str:
    model = ChatOpenAI(base_url=url() + "/v1", api_key="test", max_retries=0, model="gpt-4o")
    return model.invoke(prompt.format(text=text), config={"callbacks": [PromptOpsCallbackHandler()]}).content


@promptops.track(prompt="PROMPT_NAME")
def silent(text: str, *, prompt: promptops.Prompt) -> str:
    with openai.OpenAI(base_url=url() + "/v1", api_key="test", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt.format(text=text)}]
        )
    return reply.choices[0].message.content
"""

PRODUCTION = "Summarize the ticket in at most 12 words. Ticket: {{ text }}"
# The same task, asked at four times the length: more input tokens for every call.
VERBOSE = (
    "You are a careful support assistant who reads every ticket in full before answering, and who never adds "
    "anything the customer did not write. Please summarize the ticket below in at most 12 words, keeping the "
    "customer's own terms where you can, without greetings, apologies or any other words around the summary, "
    "and without repeating these instructions in any form. Ticket: {{ text }}"
)
MODELS = {"recorded": "gpt-4o-mini", "returned": "claude-3-5-haiku-20241022", "handled": "gpt-4o"}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProviderServer]:
    with ProviderServer(rate_limited=0.2, retry_after_s=0.01, seed=7) as running:
        monkeypatch.setenv("PROMPTOPS_TEST_PROVIDER_URL", running.url)
        yield running


@pytest.fixture
def cost_app(local_registry: Registry, prompt_name: str, tmp_path: Path) -> App:
    application = App(local_registry, prompt_name, tmp_path, COST_APP)
    application.register("v1", PRODUCTION, alias="production")
    application.register("same", PRODUCTION)
    application.register("verbose", VERBOSE)
    return application


def cli(application: App, function: str, candidate: str, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    data = write_dataset(tmp_path / "tickets.jsonl", [{"inputs": {"text": text}} for text in TEXTS[:8]])
    out = tmp_path / f"{function}-{candidate}.json"
    outcome = CliRunner().invoke(
        app,
        ["replay", f"{application.module}:{function}", "--candidate", str(application.versions[candidate]),
         "--baseline", str(application.versions["v1"]), "--dataset", data, "--no-mlflow", "--workers", "4",
         "--json", str(out), *extra],
    )  # fmt: skip
    assert outcome.exit_code in (0, 1) and out.exists(), (outcome.output, repr(outcome.exception))
    return outcome.exit_code, json.loads(out.read_text())


@pytest.mark.parametrize("function", ["recorded", "returned", "handled"])
def test_tokens_and_cost_in_the_json_are_what_the_server_reported_times_the_price(
    cost_app: App, server: ProviderServer, tmp_path: Path, function: str
) -> None:
    code, document = cli(cost_app, function, "same", tmp_path, "--gate", "cost.ratio <= 1.1")
    price = DEFAULT_PRICES[MODELS[function].removesuffix("-20241022")]
    usage = document["usage"]
    assert server.by_status[429] > 0  # retried attempts reported nothing and were billed nothing
    assert server.input_tokens > 0 and server.output_tokens > 0
    assert usage["candidate"]["input_tokens"] + usage["baseline"]["input_tokens"] == server.input_tokens
    assert usage["candidate"]["output_tokens"] + usage["baseline"]["output_tokens"] == server.output_tokens
    assert usage["candidate"]["calls"] + usage["baseline"]["calls"] == server.by_status[200] == document["calls"]
    expected = (server.input_tokens * price.input + server.output_tokens * price.output) / 1_000_000
    assert usage["candidate"]["cost"] + usage["baseline"]["cost"] == pytest.approx(expected, rel=1e-9)
    assert document["spent"] == pytest.approx(expected, rel=1e-9)
    assert usage["candidate"]["unpriced_models"] == [] and usage["candidate"]["prices_as_of"]
    # the per-version metrics are the per-call figures behind those totals
    records = document["records"]
    candidate = usage["candidate"]
    assert (
        sum(record["scores"]["tokens"] for record in records) == candidate["input_tokens"] + candidate["output_tokens"]
    )
    assert document["metrics"]["cost"]["candidate"] * len(records) == pytest.approx(candidate["cost"], rel=1e-9)
    assert document["metrics"]["tokens"]["delta"] == 0  # A/A on a deterministic model: the same answers
    assert code == 0 and document["passed"] and document["gates"][-1]["expr"] == "cost.ratio <= 1.1"


def test_a_cost_gate_catches_a_longer_prompt_and_the_prices_setting_overrides_the_table(
    cost_app: App, server: ProviderServer, tmp_path: Path
) -> None:
    promptops.configure(prices={"gpt-4o-mini": {"input": 2.0, "output": 4.0}})
    code, document = cli(cost_app, "recorded", "verbose", tmp_path, "--gate", "cost.ratio <= 1.1")
    assert code == 1 and not document["passed"]
    gate = next(gate for gate in document["gates"] if gate["expr"] == "cost.ratio <= 1.1")
    assert not gate["passed"] and gate["value"] > 2  # four times the instructions
    expected = (server.input_tokens * 2.0 + server.output_tokens * 4.0) / 1_000_000
    assert document["usage"]["candidate"]["cost"] + document["usage"]["baseline"]["cost"] == pytest.approx(expected)
    assert document["metrics"]["tokens"]["candidate"] > document["metrics"]["tokens"]["baseline"]


def test_max_cost_stops_before_the_estimate_passes_the_limit_keeping_what_finished(
    cost_app: App, server: ProviderServer, tmp_path: Path
) -> None:
    price = DEFAULT_PRICES["gpt-4o-mini"]
    _, full = cli(cost_app, "recorded", "same", tmp_path)
    limit = full["spent"] / 3
    server.reset()
    code, document = cli(cost_app, "recorded", "same", tmp_path, "--max-cost", f"{limit:.10f}", "--fresh")
    spent = (server.input_tokens * price.input + server.output_tokens * price.output) / 1_000_000
    assert code == 1 and not document["passed"]
    assert "cost limit" in document["stopped"] and document["skipped"]["over_budget"] > 0
    assert document["spent"] == pytest.approx(spent)
    biggest = max(record["scores"]["cost"] for record in full["records"])
    assert limit / 2 < spent <= limit + 4 * biggest  # used the budget; overshoot at most the calls in flight
    assert 0 < len(document["records"]) < len(full["records"])


def test_max_cost_refuses_to_guess_when_calls_report_no_usage(
    cost_app: App, server: ProviderServer, tmp_path: Path
) -> None:
    code, document = cli(cost_app, "silent", "same", tmp_path, "--max-cost", "5")
    assert code == 1 and "reported no token usage" in document["stopped"]
    assert server.by_status[200] <= 4  # the first calls (at most --workers), then nothing more
    assert document["usage"] == {} and "tokens" not in document["metrics"]


def test_without_usage_there_are_no_tokens_or_cost_metrics_but_gates_on_them_fail_clearly(
    cost_app: App, server: ProviderServer, tmp_path: Path
) -> None:
    code, document = cli(cost_app, "silent", "same", tmp_path, "--gate", "tokens.mean <= 100")
    assert code == 1 and "tokens" not in document["metrics"] and document["spent"] is None
    assert document["gates"][-1]["detail"] == "tokens was not measured in this run -> FAIL"


# ------------------------------------------------------------------------------------------- prices and usage


def test_price_lookup_snapshots_provider_prefixes_and_unknown_models() -> None:
    table = PriceTable({"my-model": Price(1.0, 3.0)})
    assert table.price("gpt-4o-mini-2024-07-18") == DEFAULT_PRICES["gpt-4o-mini"]  # not gpt-4o's
    assert table.price("openai/gpt-4o") == DEFAULT_PRICES["gpt-4o"]
    assert table.price("claude-3-5-haiku@20241022") == DEFAULT_PRICES["claude-3-5-haiku"]
    assert table.price("gpt-4o2") is None and table.price("gpt-4") is None and table.price(None) is None
    assert table.cost("my-model", 2_000_000, 1_000_000) == pytest.approx(5.0)
    assert parse_prices('{"m": [1, 2]}') == {"m": Price(1.0, 2.0)}
    for bad in ('{"m": {"input": 1}}', '{"m": {"input": -1, "output": 1}}', '{"m": "cheap"}', "[1, 2]"):
        with pytest.raises(ValueError):
            parse_prices(bad)


def test_shipped_prices_agree_with_the_catalog_bundled_with_mlflow() -> None:
    """The default table is checked against a maintained source that works offline: the provider catalogs MLflow
    ships (`mlflow/utils/model_catalog/*.json`, standard tier). A model missing from the provider's own file is
    not compared (Vertex AI's file prices some Claude models differently from Anthropic's)."""
    import importlib.resources

    catalog = importlib.resources.files("mlflow.utils").joinpath("model_catalog")
    compared: dict[str, tuple[Price, Price]] = {}
    for provider in ("openai", "anthropic", "gemini"):
        models = json.loads(catalog.joinpath(f"{provider}.json").read_text())["models"]
        for name, ours in DEFAULT_PRICES.items():
            pricing = models.get(name, {}).get("pricing")
            if pricing:
                theirs = Price(pricing["input_per_million_tokens"], pricing["output_per_million_tokens"])
                compared[name] = (ours, theirs)
    assert len(compared) >= 18, sorted(compared)  # most of the table has a counterpart: the check is not vacuous
    assert {name: pair for name, pair in compared.items() if pair[0] != pair[1]} == {}


def test_prices_setting_reads_the_environment_and_names_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPS_PRICES", '{"house-model": {"input": 0.5, "output": 1.5}}')
    assert promptops.get_settings().prices == {"house-model": Price(0.5, 1.5)}
    promptops.configure(prices={"house-model": {"input": 1, "output": 2}})
    assert promptops.get_settings().prices == {"house-model": Price(1.0, 2.0)}
    with pytest.raises(ConfigError, match="invalid value for prices .* input price of 'm'"):
        promptops.configure(prices={"m": {"input": "a lot", "output": 1}})


def test_usage_is_read_from_response_objects_of_each_sdk() -> None:
    import anthropic
    import openai
    from langchain_openai import ChatOpenAI

    with ProviderServer() as running:
        with openai.OpenAI(base_url=running.openai_url, api_key="k", max_retries=0) as client:
            completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a b"}])
        with anthropic.Anthropic(base_url=running.url, api_key="k", max_retries=0) as client:
            message = client.messages.create(
                model="claude-3-haiku", max_tokens=5, messages=[{"role": "user", "content": "a b c"}]
            )
        chat = ChatOpenAI(base_url=running.openai_url, api_key="k", max_retries=0, model="gpt-4.1")
        ai_message = chat.invoke("a b c d")
    found = [usage_of(reply) for reply in (completion, message, ai_message)]
    assert [(usage.input_tokens, usage.model) for usage in found if usage is not None] == [
        (2, "gpt-4o"), (3, "claude-3-haiku"), (4, "gpt-4.1")
    ]  # fmt: skip
    assert [usage_of(value) for value in ("text", {"usage": 3}, None, 5)] == [None] * 4
