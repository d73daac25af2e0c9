"""promptops quick start: pinned prompt versions from a local MLflow registry, offline.

Run from the repository root:

    .venv/bin/python examples/quickstart.py

Everything (the sqlite registry, the last-known-good disk cache) lives in a temporary directory that is
removed at the end. `llm()` stands in for your model call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

# MLflow reports usage unless told not to; this example must work offline.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no "Creating initial MLflow database tables..."

import promptops


def llm(text: str) -> str:
    """A deterministic stand-in for a model call."""
    return f"<summary of {len(text)} chars>"


def main(workdir: Path) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    # A short TTL so the alias move below is picked up in about a second (the default is 60 s).
    promptops.configure(tracking_uri=uri, cache_dir=workdir / ".promptops", cache_ttl=1.0)

    # 1. Register two versions of a prompt and point the `production` alias at the first.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.register_prompt(name="summarize", template="Summarize: {{ text }}", commit_message="v1")
    client.register_prompt(name="summarize", template="Summarize in one line: {{ text }}", commit_message="v2")
    client.set_prompt_alias("summarize", alias="production", version=1)

    # 2. A decorated function: the resolved prompt is injected as `prompt`.
    @promptops.track(prompt="summarize")
    def summarize(text: str, *, prompt: promptops.Prompt) -> str:
        print(f"  summarize: version {prompt.version} via {prompt.alias!r}, from {prompt.source}")
        return llm(prompt.format(text=text))

    print("production -> version 1")
    summarize("The first call fetches from the registry.")
    summarize("The second is served from memory.")

    # 3. Move the alias. Once 80% of the TTL has passed, the next call starts one background refresh and
    # still returns the copy it has; calls after the refresh get the new version. No call waits.
    client.set_prompt_alias("summarize", alias="production", version=2)
    print("production -> version 2 (moved in the registry)")
    time.sleep(1.0)
    summarize("Served the stale copy while a refresh starts.")
    promptops.flush()  # wait for the background refresh, for a deterministic demo
    summarize("Now on the new version.")
    assert promptops.current_prompt() is None  # outside a tracked call

    # 4. Override the version for a block (replays and tests do this).
    with promptops.use_prompt("summarize", version=1):
        print("inside use_prompt('summarize', version=1)")
        summarize("Overridden.")

    # 5. A function without a `prompt` parameter reads it with current_prompt().
    @promptops.track(prompt="summarize")
    def summarize_plain(text: str) -> str:
        prompt = promptops.current_prompt()
        assert prompt is not None
        print(f"  summarize_plain: version {prompt.version} (current_prompt)")
        return llm(prompt.format(text=text))

    summarize_plain("No prompt parameter.")

    # 6. Async functions, generators and async generators work the same way.
    @promptops.track(prompt="summarize")
    async def summarize_async(text: str, *, prompt: promptops.Prompt) -> str:
        print(f"  summarize_async: version {prompt.version}")
        return llm(prompt.format(text=text))

    @promptops.track(prompt="summarize", version=1)
    def stream(text: str, *, prompt: promptops.Prompt):
        yield from prompt.format(text=text).split()

    @promptops.track(prompt="summarize")
    async def astream(text: str):
        prompt = promptops.current_prompt()
        assert prompt is not None
        for word in prompt.format(text=text).split():
            yield word

    async def run_async() -> None:
        await summarize_async("From a coroutine.")
        print(f"  astream: {[word async for word in astream('async generator')]}")

    asyncio.run(run_async())
    print(f"  stream (pinned to version 1 on the decorator): {list(stream('generator'))}")

    # 7. Fail fast at start-up: resolve what the service needs before it takes traffic.
    loaded = promptops.preload(["summarize", "summarize/1"])
    print(f"preloaded: { {reference: prompt.version for reference, prompt in loaded.items()} }")

    promptops.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    start = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="promptops-quickstart-") as tmp:
        os.chdir(tmp)  # anything written to the working directory lands in the temporary directory too
        try:
            main(Path(tmp))
        finally:
            os.chdir(start)
    print("done")
