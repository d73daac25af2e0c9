"""A small support app: summarise customer tickets with a prompt pinned in the MLflow Prompt Registry.

`summarize_ticket` is what production calls; every call is traced and captured by promptops, and
`promptops replay examples.support.app:summarize_ticket --candidate N` re-runs the captured tickets on another
version of the `support-summary` prompt. The model is `promptops.testing.OfflineModel`, an offline stand-in that
reads its prompt (length, format, tone) with a little seeded nondeterminism, as a real LLM at temperature > 0:

* `PROMPTOPS_DEMO_SEED`: seed of that nondeterminism (an integer); unset, every process draws its own.
* `PROMPTOPS_DEMO_VARIATION`: probability that an answer is a near-equivalent alternative (default 0.2).
* `PROMPTOPS_DEMO_LATENCY_MS`: simulated provider latency per call (default 0).

`TEMPLATES` holds the versions the demo registers: `v1` (production), `good` (reworded, same instructions: a
safe candidate), and three regressions: `bad_truncate` (cuts summaries to 8 words), `bad_format` (JSON fields
instead of a summary) and `bad_drop` (one very short sentence without the details or the customer's name).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import promptops
from promptops.testing import OfflineModel

PROMPT_NAME = "support-summary"
TICKETS = Path(__file__).with_name("tickets.jsonl")

TEMPLATES: dict[str, str] = {
    "v1": (
        "You are a customer support assistant. Summarize the support ticket below for the agent who will "
        "handle it. Write at most 40 words, in a friendly tone, and include the customer's name.\n"
        "\n"
        "Customer: {{ customer }}\n"
        "Ticket:\n"
        "{{ text }}"
    ),
    "good": (
        "Please write a friendly summary of this customer's ticket for our support agents. Mention the "
        "customer by name and keep it to no more than 40 words.\n"
        "\n"
        "Customer: {{ customer }}\n"
        "Ticket:\n"
        "{{ text }}"
    ),
    "bad_truncate": (
        "You are a customer support assistant. Summarize the support ticket below in at most 8 words.\n"
        "\n"
        "Customer: {{ customer }}\n"
        "Ticket:\n"
        "{{ text }}"
    ),
    "bad_format": (
        "You are a customer support assistant. Classify the support ticket below and reply with a JSON object "
        "with the keys category, sentiment and keywords.\n"
        "\n"
        "Customer: {{ customer }}\n"
        "Ticket:\n"
        "{{ text }}"
    ),
    "bad_drop": (
        "You are a customer support assistant. Summarize the support ticket below in one very short sentence; "
        "leave out the details.\n"
        "\n"
        "Customer: {{ customer }}\n"
        "Ticket:\n"
        "{{ text }}"
    ),
}


def _seed() -> int | None:
    value = os.environ.get("PROMPTOPS_DEMO_SEED", "").strip()
    return int(value) if value else None


# One model for the process, like one LLM client. Variation 0.2 makes about one answer in five a near-equivalent
# alternative: two runs over the bundled tickets agree at rougeL ~0.94 on average, the run-to-run noise replay
# has to tell apart from a real regression (the bad templates score 0.2-0.45).
MODEL = OfflineModel(
    seed=_seed(),
    variation=float(os.environ.get("PROMPTOPS_DEMO_VARIATION", "0.2")),
    latency_ms=float(os.environ.get("PROMPTOPS_DEMO_LATENCY_MS", "0")),
    jitter=0.3,
)


@promptops.track(prompt=PROMPT_NAME, fallback=TEMPLATES["v1"])
def summarize_ticket(text: str, customer: str, *, prompt: promptops.Prompt) -> str:
    """Summarise one support ticket for the agent who will handle it."""
    return MODEL(prompt.format(text=text, customer=customer))


def load_tickets(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The bundled tickets (or those in `path`): dicts with `customer`, `product`, `channel` and `text`."""
    lines = Path(path or TICKETS).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
