"""promptops with LangChain: a pinned prompt in a chain, spans and captures from the handler, then a replay. Offline.

Run from the repository root (needs `pip install -e integrations/langchain`):

    .venv/bin/python examples/langchain_app.py

The registry (sqlite), the captures and the last-known-good prompt copies live in a temporary directory that is
removed at the end. LangChain's `ParrotFakeChatModel` stands in for a provider: it answers with the prompt it
was given, so what a prompt version changes is visible in the output.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

# MLflow reports usage unless told not to; this example must work offline.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser

import promptops
from promptops.testing import capture_spans
from promptops_langchain import PromptOpsCallbackHandler, pinned_prompt

# Built once, at import: the prompt is resolved at every invocation, so alias moves and overrides still apply.
summarize_chain = (pinned_prompt("summarize") | ParrotFakeChatModel() | StrOutputParser()).with_config(
    run_name="summarize",  # capture records are `langchain:summarize`, which replay of this chain looks for
    callbacks=[PromptOpsCallbackHandler()],
)

TICKETS = [
    "The parcel left the warehouse on Monday and should arrive by Friday at the latest.",
    "My invoice shows a double charge for the March subscription, please refund one of them.",
    "The app crashes whenever I open the settings page on my tablet after the last update.",
]


def print_spans(spans: list[dict[str, Any]]) -> None:
    for span in spans:
        version = span["attributes"].get("promptops.prompt.version")
        print(f"  {span['name']:<28} {'version ' + str(version) if version is not None else ''}")


def main(workdir: Path) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    promptops.configure(tracking_uri=uri, cache_dir=workdir / ".promptops", trace_exporter="none")

    # 1. Two versions of the prompt in the registry; production points at the first.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.register_prompt(name="summarize", template="Summarize the ticket. Ticket: {{ text }}")
    client.register_prompt(name="summarize", template="TL;DR in five words: {{ text }}")
    client.set_prompt_alias("summarize", alias="production", version=1)

    # 2. Production traffic: each top-level run is traced and captured (the handler is bound to the chain).
    with capture_spans() as spans:
        for ticket in TICKETS:
            print("answer:", summarize_chain.invoke({"text": ticket}))
    print("spans of the last run (they end children first):")
    print_spans(spans.dump()[-4:])

    # 3. Streaming works the same way; the model span records the time to first token.
    print("streamed:", "".join(summarize_chain.stream({"text": TICKETS[0]})))

    # 4. Replay the captured traffic on version 2 (a regression for this echoing model: the gates fail).
    promptops.flush()
    from promptops import replay

    result = replay.run("__main__:summarize_chain", candidate=2, log_to_mlflow=False)
    rouge = result.metrics["rougeL"]
    print(f"replay on version 2: {len(result.records)} records, passed={result.passed}")
    print(f"  rougeL: baseline {rouge.baseline:.2f}, candidate {rouge.candidate:.2f}")
    assert not result.passed

    # 5. What replay does for each call: an override for a block.
    with promptops.use_prompt("summarize", version=2):
        print("with version 2:", summarize_chain.invoke({"text": TICKETS[0]}))

    promptops.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    start = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="promptops-langchain-") as tmp:
        os.chdir(tmp)  # anything written to the working directory lands in the temporary directory too
        try:
            main(Path(tmp))
        finally:
            os.chdir(start)
    print("done")
