"""Replay against real provider SDKs (openai, anthropic, LangChain's ChatOpenAI) on `promptops.provider_server`.

The server answers like OpenAI and Anthropic on 127.0.0.1 and injects 429s (with Retry-After), 500s and 529s;
the clients are built with `max_retries=0`, so the retries under test are promptops' own (issue 13).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from promptops import replay
from promptops.cli import app
from promptops.provider_server import ProviderServer
from promptops.replay._retry import RetryPolicy, is_infrastructure, is_rate_limit, is_transient, retry_after
from tests.conftest import Registry
from tests.unit.test_replay import TEXTS, App, write_dataset

PROVIDER_APP = """
import os

import anthropic
import openai
from langchain_openai import ChatOpenAI

import promptops


def url():
    return os.environ["PROMPTOPS_TEST_PROVIDER_URL"]


@promptops.track(prompt="PROMPT_NAME")
def with_openai(text: str, *, prompt: promptops.Prompt) -> str:
    with openai.OpenAI(base_url=url() + "/v1", api_key="test", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt.format(text=text)}]
        )
    return reply.choices[0].message.content


@promptops.track(prompt="PROMPT_NAME")
def with_anthropic(text: str, *, prompt: promptops.Prompt) -> str:
    with anthropic.Anthropic(base_url=url(), api_key="test", max_retries=0) as client:
        reply = client.messages.create(
            model="claude-haiku", max_tokens=200, messages=[{"role": "user", "content": prompt.format(text=text)}]
        )
    return reply.content[0].text


MODELS = {}


@promptops.track(prompt="PROMPT_NAME")
def with_langchain(text: str, *, prompt: promptops.Prompt) -> str:
    if url() not in MODELS:  # one model (and connection pool) per server, as an application keeps one
        MODELS[url()] = ChatOpenAI(base_url=url() + "/v1", api_key="test", max_retries=0, model="gpt-4o-mini")
    return MODELS[url()].invoke(prompt.format(text=text)).content


class Unparsable(ValueError):
    pass


@promptops.track(prompt="PROMPT_NAME")
def parses(text: str, *, prompt: promptops.Prompt) -> str:
    answer = with_openai.__wrapped__(text, prompt=prompt)
    if "invoice" in text:
        raise Unparsable("the model's answer is not what the parser expects")
    return answer
"""

PRODUCTION = "Summarize the ticket in at most 12 words. Ticket: {{ text }}"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProviderServer]:
    with ProviderServer(rate_limited=0.3, retry_after_s=0.01, seed=3) as running:
        monkeypatch.setenv("PROMPTOPS_TEST_PROVIDER_URL", running.url)
        yield running


@pytest.fixture
def provider_app(local_registry: Registry, prompt_name: str, tmp_path: Path) -> App:
    application = App(local_registry, prompt_name, tmp_path, PROVIDER_APP)
    application.register("v1", PRODUCTION, alias="production")
    application.register("same", PRODUCTION)
    application.register("bad", "Extract 3 keywords from the ticket, as uppercase. Ticket: {{ text }}")
    return application


def dataset(tmp_path: Path, texts: list[str] = TEXTS) -> str:
    return write_dataset(tmp_path / "tickets.jsonl", [{"inputs": {"text": text}} for text in texts])


def run(application: App, function: str, candidate: str, data: str, **options: Any) -> replay.ReplayResult:
    return replay.run(
        f"{application.module}:{function}",
        candidate=application.versions[candidate],
        baseline=str(application.versions["v1"]),
        dataset=data,
        log_to_mlflow=False,
        **options,
    )


@pytest.mark.parametrize("function", ["with_openai", "with_anthropic", "with_langchain"])
def test_a_a_replay_passes_through_30_percent_rate_limits(
    provider_app: App, server: ProviderServer, tmp_path: Path, function: str
) -> None:
    result = run(provider_app, function, "same", dataset(tmp_path))
    assert server.by_status[429] > 0 and result.rate_limited == server.by_status[429]
    assert result.passed, result.summary()
    assert result.infrastructure_errors == 0 and result.could_not_measure is None
    assert result.metrics["errors"].candidate == 0 and result.metrics["errors"].baseline == 0
    assert result.retries == server.by_status[429]  # every 429 was retried, and nothing else
    assert len(result.records) == len(TEXTS) and result.skipped == {}
    assert server.by_status[200] == result.calls == len(TEXTS) * 3  # candidate, reference, one re-run


def test_a_regression_is_still_caught_through_rate_limits(
    provider_app: App, server: ProviderServer, tmp_path: Path
) -> None:
    result = run(provider_app, "with_openai", "bad", dataset(tmp_path))
    assert server.by_status[429] > 0
    assert not result.passed and result.could_not_measure is None and result.infrastructure_errors == 0
    assert result.metrics["rougeL"].delta is not None and result.metrics["rougeL"].delta < -0.3


def test_anthropic_overloads_and_server_errors_are_retried(
    provider_app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ProviderServer(overloaded=0.15, server_error=0.15, seed=5) as running:
        monkeypatch.setenv("PROMPTOPS_TEST_PROVIDER_URL", running.url)
        result = run(provider_app, "with_anthropic", "same", dataset(tmp_path, TEXTS[:6]), repeats=0)
    assert running.by_status[529] > 0 and running.by_status[500] > 0
    assert result.passed and result.infrastructure_errors == 0, result.summary()
    assert result.retries == running.by_status[529] + running.by_status[500]
    assert result.rate_limited == 0


def test_provider_down_ends_in_could_not_measure_quickly(
    provider_app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ProviderServer() as stopped:
        url = stopped.url
    monkeypatch.setenv("PROMPTOPS_TEST_PROVIDER_URL", url)  # nothing listens there any more
    data = dataset(tmp_path, TEXTS * 10)
    started = time.monotonic()
    runner = CliRunner()
    outcome = runner.invoke(
        app,
        ["replay", f"{provider_app.module}:with_openai", "--candidate", str(provider_app.versions["same"]),
         "--baseline", str(provider_app.versions["v1"]), "--dataset", data, "--no-mlflow", "--workers", "4",
         "--json", str(tmp_path / "out.json")],
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert outcome.exit_code == 1, outcome.output
    document = json.loads((tmp_path / "out.json").read_text())
    assert "circuit breaker" in document["could_not_measure"] and not document["passed"]
    assert document["calls"] < len(TEXTS) * 10 * 3  # stopped early, not every record waited out
    assert document["metrics"] == {} or document["records"] == []
    assert "could not measure" in outcome.output.lower()
    assert elapsed < 120  # bounded: 360 planned calls with six attempts each would take far longer


def test_model_errors_stay_errors_and_infrastructure_errors_are_apart(
    provider_app: App, server: ProviderServer, tmp_path: Path
) -> None:
    result = run(provider_app, "parses", "same", dataset(tmp_path))
    assert result.infrastructure_errors == 0 and result.could_not_measure is None
    failing = [record for record in result.records if record.error is not None]
    assert failing and all("Unparsable" in (record.error or "") for record in failing)
    assert result.metrics["errors"].candidate == pytest.approx(len(failing) / len(TEXTS))


def test_retry_on_makes_a_users_error_transient_and_too_many_is_could_not_measure(
    provider_app: App, server: ProviderServer, tmp_path: Path
) -> None:
    def flaky(exc: BaseException) -> bool:
        return "Unparsable" in type(exc).__name__

    result = run(provider_app, "parses", "same", dataset(tmp_path), retry_on=flaky, repeats=0)
    invoices = sum("invoice" in text for text in TEXTS)
    assert result.infrastructure_errors == invoices * 2  # candidate and reference of each invoice record
    assert result.skipped == {"infrastructure_error": invoices}
    assert result.metrics["errors"].candidate == 0  # not counted as the model's errors
    assert result.could_not_measure is not None and "not a regression verdict" in result.could_not_measure
    assert not result.passed and result.gates[0].expr.startswith("infrastructure_errors.rate")
    # allowed up to 20%: measured, the infrastructure errors reported beside the verdict
    lenient = run(provider_app, "parses", "same", dataset(tmp_path), retry_on=flaky, repeats=0, max_infra_errors=0.2)
    assert lenient.passed and lenient.could_not_measure is None and lenient.gates[0].passed


# ------------------------------------------------------------------------------------------------ classification


def provider_errors(server: ProviderServer) -> list[BaseException]:
    """Real exceptions raised by the real SDKs for each failure the server injects."""
    import anthropic
    import openai

    errors: list[BaseException] = []
    with (
        openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0) as openai_client,
        anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0) as anthropic_client,
    ):
        for _ in range(4):
            try:
                openai_client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            except openai.APIError as exc:
                errors.append(exc)
            try:
                anthropic_client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
            except anthropic.APIError as exc:
                errors.append(exc)
    return errors


def test_real_sdk_errors_are_recognised_with_their_retry_after() -> None:
    with ProviderServer(rate_limited=1.0, retry_after_s=2.5) as limited:
        errors = provider_errors(limited)
    assert len(errors) == 8
    assert all(is_transient(exc) and is_rate_limit(exc) for exc in errors)
    assert {retry_after(exc) for exc in errors} == {2.5}  # retry-after-ms wins over the rounded Retry-After
    with ProviderServer(overloaded=1.0) as overloaded:
        errors = provider_errors(overloaded)
    assert errors and all(is_transient(exc) and not is_rate_limit(exc) for exc in errors)
    with ProviderServer() as stopped:
        pass
    refused = provider_errors(stopped)
    assert refused and all(is_transient(exc) for exc in refused)


def test_httpx_statuses_dates_chains_and_non_transient_errors() -> None:
    def status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
        request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
        response = httpx.Response(status, headers=headers, request=request)
        return httpx.HTTPStatusError("failed", request=request, response=response)

    assert all(is_transient(status_error(status)) for status in (408, 409, 429, 500, 503, 529))
    assert not any(is_transient(status_error(status)) for status in (400, 401, 404, 422))
    assert is_infrastructure(status_error(401)) and not is_infrastructure(status_error(400))
    assert retry_after(status_error(429, {"retry-after": "7"})) == 7.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (retry_after(status_error(429, {"retry-after": date})) or 0) <= 31
    assert retry_after(status_error(429, {"retry-after": "soon"})) is None
    assert is_transient(httpx.ConnectError("refused")) and is_transient(TimeoutError())
    try:
        try:
            raise status_error(503)
        except httpx.HTTPStatusError as inner:
            raise RuntimeError("the chain failed") from inner
    except RuntimeError as wrapper:
        assert is_transient(wrapper)  # a wrapper (LangChain's, the user's) is seen through
    assert not is_transient(ValueError("not JSON"))
    policy = RetryPolicy(lambda exc: isinstance(exc, KeyError))
    assert policy.retryable(KeyError("x")) and not policy.retryable(ValueError("x"))
    assert not policy.retryable(KeyboardInterrupt())
    broken = RetryPolicy(lambda exc: 1 / 0 > 0)
    assert not broken.retryable(ValueError("x"))  # a broken predicate is "no", not a crash


def test_provider_server_counts_and_refuses_bad_rates() -> None:
    with pytest.raises(ValueError, match="rate_limited"):
        ProviderServer(rate_limited=1.5)
    with ProviderServer(requests_per_second=0.5) as limited:
        statuses = [
            httpx.post(limited.openai_url + "/chat/completions", json={"messages": []}).status_code for _ in range(8)
        ]
    # one request allowed, then one every two seconds: eight requests in a row (well under 8 s) meet 429s
    assert statuses[0] == 200 and statuses.count(429) >= 4
    assert limited.requests == 8 and limited.by_status[429] == statuses.count(429)
    assert os.environ.get("PROMPTOPS_TEST_PROVIDER_URL") is None


def test_a_request_answered_after_reset_is_not_counted() -> None:
    # A killed replay's last call can still be answered after the test reset the counts (test_replay_resume).
    import threading

    with ProviderServer(latency_s=0.5) as server:
        late = threading.Thread(
            target=lambda: httpx.post(server.openai_url + "/chat/completions", json={"messages": []})
        )
        late.start()
        deadline = time.monotonic() + 10
        while server.requests == 0 and time.monotonic() < deadline:  # drawn: now waiting out its latency
            time.sleep(0.01)
        server.reset()
        late.join()
        assert server.by_status[200] == 0 and server.requests == 0
        httpx.post(server.openai_url + "/chat/completions", json={"messages": []})
        assert server.by_status[200] == 1 and server.requests == 1


def test_provider_server_runs_in_a_process_of_its_own_until_stdin_closes() -> None:
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "promptops.provider_server", "--rate-limited=1.0", "--retry-after-s=0.2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        response = httpx.post(url + "/v1/messages", json={"messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 429 and response.headers["retry-after-ms"] == "200"
        assert response.json()["error"]["type"] == "rate_limit_error"
    finally:
        process.stdin.close()
        assert process.wait(timeout=30) == 0
        process.stdout.close()
