"""A tracked function on a real model: the `openai` SDK, the `anthropic` SDK and LangChain's `ChatOpenAI`.

Run from the repository root:

    .venv/bin/python examples/real_model.py                      # against a local stand-in server, offline
    OPENAI_API_KEY=... ANTHROPIC_API_KEY=... .venv/bin/python examples/real_model.py --base-url default

`--base-url URL` points the OpenAI clients at `URL/v1` and the Anthropic client at `URL` (any compatible
gateway); `default` uses the SDKs' own endpoints. Without it, `promptops.provider_server.ProviderServer` answers
on 127.0.0.1. The registry and captures live in a temporary directory removed at the end. See docs/models.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

import anthropic
import openai
from langchain_openai import ChatOpenAI

import promptops
from promptops.provider_server import ProviderServer

PROMPT = "support-reply"


def register(uri: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.register_prompt(
        name=PROMPT,
        template=[
            {"role": "system", "content": "You are a support agent. Answer in one sentence."},
            {"role": "user", "content": "{{ question }}"},
        ],
        model_config={"model_name": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 200},
    )
    client.set_prompt_alias(PROMPT, "production", version.version)


def openai_arguments(prompt: promptops.Prompt, **variables: Any) -> dict[str, Any]:
    """`chat.completions.create()` keyword arguments from a chat prompt and its model configuration."""
    config = prompt.model_config or {}
    return {
        "model": config.get("model_name", "gpt-4o-mini"),
        "temperature": config.get("temperature", 1.0),
        "max_tokens": config.get("max_tokens", 256),
        "messages": prompt.format(**variables),
    }


def anthropic_arguments(prompt: promptops.Prompt, **variables: Any) -> dict[str, Any]:
    """`messages.create()` keyword arguments: the system messages apart, `max_tokens` always given."""
    config = prompt.model_config or {}
    messages = prompt.format(**variables)
    return {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": config.get("max_tokens", 256),
        "system": "\n\n".join(message["content"] for message in messages if message["role"] == "system"),
        "messages": [message for message in messages if message["role"] != "system"],
    }


def main(openai_url: str | None, anthropic_url: str | None) -> None:
    openai_client = openai.OpenAI(base_url=openai_url, api_key=os.environ.get("OPENAI_API_KEY", "k"), max_retries=0)
    anthropic_client = anthropic.Anthropic(
        base_url=anthropic_url, api_key=os.environ.get("ANTHROPIC_API_KEY", "k"), max_retries=0
    )

    @promptops.track(prompt=PROMPT)
    def answer(question: str, *, prompt: promptops.Prompt) -> str:
        reply = openai_client.chat.completions.create(**openai_arguments(prompt, question=question))
        if reply.usage is not None:
            promptops.record_usage(
                input_tokens=reply.usage.prompt_tokens,
                output_tokens=reply.usage.completion_tokens,
                response_model=reply.model,
            )
        return reply.choices[0].message.content or ""

    @promptops.track(prompt=PROMPT)
    def answer_claude(question: str, *, prompt: promptops.Prompt) -> str:
        reply = anthropic_client.messages.create(**anthropic_arguments(prompt, question=question))
        promptops.record_usage(input_tokens=reply.usage.input_tokens, output_tokens=reply.usage.output_tokens)
        return "".join(block.text for block in reply.content if block.type == "text")

    @promptops.track(prompt=PROMPT)
    def answer_langchain(question: str, *, prompt: promptops.Prompt) -> str:
        arguments = openai_arguments(prompt, question=question)
        messages = arguments.pop("messages")
        model = ChatOpenAI(
            **arguments, base_url=openai_url, api_key=os.environ.get("OPENAI_API_KEY", "k"), max_retries=0
        )
        return str(model.invoke(messages).content)

    print("openai:   ", answer("Where is my parcel? It was due on Monday."))
    print("anthropic:", answer_claude("Can I change the delivery address?"))
    print("langchain:", answer_langchain("Do you ship to Norway?"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="the provider's base URL, or 'default' for the SDKs' own endpoints")
    base_url = parser.parse_args().base_url
    with tempfile.TemporaryDirectory(prefix="promptops-real-model-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        promptops.configure(
            tracking_uri=uri, cache_dir=Path(tmp) / ".promptops", capture=f"sqlite:///{Path(tmp) / 'captures.db'}"
        )
        register(uri)
        if base_url is None:
            with ProviderServer() as server:
                main(server.openai_url, server.url)
                assert server.by_status[200] == 3, server.by_status
        elif base_url == "default":
            main(None, None)
        else:
            main(base_url.rstrip("/") + "/v1", base_url)
        promptops.shutdown()
    print("done")
