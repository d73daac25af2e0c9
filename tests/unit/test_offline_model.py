"""`promptops.testing.OfflineModel`: it reads its prompt, honours instructions, and its noise is seeded.

Most checks run over all the bundled support tickets (examples/support/tickets.jsonl), so an instruction that
is honoured "usually" fails here.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import promptops
from examples.support import app
from promptops.testing import OfflineModel

TICKETS = app.load_tickets()
CONTENT = [ticket["text"] for ticket in TICKETS]


def ask(model: OfflineModel, instruction: str, ticket: dict[str, str]) -> str:
    return model(f"{instruction}\n\nCustomer: {ticket['customer']}\nTicket:\n{ticket['text']}")


def answers(instruction: str, *, seed: int = 0, variation: float = 0.0) -> list[str]:
    model = OfflineModel(seed=seed, variation=variation)
    return [ask(model, instruction, ticket) for ticket in TICKETS]


def sentences(text: str) -> list[str]:
    return [piece for piece in re.split(r"(?<=[.!?])\s+", text.strip()) if piece]


# ------------------------------------------------------------------------------------------ the bundled tickets


def test_tickets_file_has_enough_distinct_valid_tickets() -> None:
    lines = app.TICKETS.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 220
    records = [json.loads(line) for line in lines]
    assert all(set(record) == {"customer", "product", "channel", "text"} for record in records)
    assert all(isinstance(value, str) and value.strip() for record in records for value in record.values())
    assert len({record["text"] for record in records}) == len(records)
    # No templated near-duplicates: no two tickets share their opening words.
    assert len({" ".join(record["text"].split()[:6]) for record in records}) == len(records)
    assert len({record["product"] for record in records}) >= 10
    assert len({record["channel"] for record in records}) >= 5
    assert app.load_tickets() == records


def test_load_tickets_reads_another_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"customer": "A", "product": "P", "channel": "chat", "text": "Hi."}\n\n', encoding="utf-8")
    assert app.load_tickets(path) == [{"customer": "A", "product": "P", "channel": "chat", "text": "Hi."}]


# ------------------------------------------------------------------------------------------ instructions


@pytest.mark.parametrize(
    ("instruction", "limit"),
    [
        ("Summarize the ticket in at most 30 words.", 30),
        ("Summarize the ticket in under 20 words.", 19),
        ("Summarize it in no more than twelve words.", 12),
        ("Summarize it in 8 words or fewer.", 8),
        ("Write a 15-word summary.", 15),
        ("Summarize in at most 3 words, in a friendly tone, and include the customer's name.", 3),
    ],
)
def test_word_limits_are_respected(instruction: str, limit: int) -> None:
    unlimited = answers("Summarize the ticket in 3 sentences.")
    outputs = answers(instruction, variation=0.5)
    assert OfflineModel.read(instruction + "\nText: x").max_words == limit
    assert all(0 < len(output.split()) <= limit for output in outputs)
    # The limit binds: many answers are shorter than they would be without it.
    assert sum(len(a.split()) < len(b.split()) for a, b in zip(outputs, unlimited)) > len(TICKETS) // 3


def test_the_tightest_of_several_limits_wins() -> None:
    reading = OfflineModel.read("In at most 30 words, under 20 words. Two sentences, or one sentence.\nText: x")
    assert (reading.max_words, reading.max_sentences) == (19, 1)
    assert OfflineModel.read("A very short summary.\nText: x").max_words == 12
    assert OfflineModel.read("A very short summary in 8 words.\nText: x").max_words == 8


def test_sentence_counts_are_respected() -> None:
    one = answers("Summarize the ticket in one sentence.", variation=0.5)
    two = answers("Summarize the ticket in 2 sentences.", variation=0.5)
    assert all(len(sentences(output)) == 1 for output in one)
    assert all(1 <= len(sentences(output)) <= 2 for output in two)
    assert sum(len(sentences(output)) == 2 for output in two) > len(TICKETS) * 0.8


def test_json_format_parses() -> None:
    for output, ticket in zip(answers("Summarize the ticket as JSON."), TICKETS):
        data = json.loads(output)
        assert list(data) == ["summary"]
        # Extractive: every sentence of the summary comes from the ticket (bar a capital letter or full stop).
        text = " ".join(ticket["text"].split())
        assert all(sentence[1:].rstrip(".") in text for sentence in sentences(data["summary"]))
    assert all(json.loads(output) for output in answers("Summarize the ticket as JSON.", variation=0.5))


def test_json_with_listed_keys() -> None:
    outputs = answers(
        "Reply with a JSON object with the keys category, sentiment, priority and keywords.", variation=0.5
    )
    categories = collections.Counter()
    for output in outputs:
        data = json.loads(output)
        assert list(data) == ["category", "sentiment", "priority", "keywords"]
        assert data["sentiment"] in {"positive", "negative", "neutral"}
        assert data["priority"] in {"high", "normal", "low"}
        assert isinstance(data["keywords"], list) and 1 <= len(data["keywords"]) <= 5
        categories[data["category"]] += 1
    assert len(categories) >= 5  # the tickets are about many things
    name_too = ask(OfflineModel(), "As JSON, and include the customer's name.", TICKETS[0])
    assert json.loads(name_too)["customer"] == TICKETS[0]["customer"]


def test_bullet_points() -> None:
    for output in answers("Summarize the ticket as bullet points.", variation=0.5):
        lines = output.splitlines()
        assert 1 <= len(lines) <= 3
        assert all(line.startswith("- ") and len(line) > 4 for line in lines)
    two = answers("Summarize the ticket in 2 bullet points.")
    assert all(1 <= len(output.splitlines()) <= 2 for output in two)


@pytest.mark.parametrize(
    ("instruction", "check"),
    [
        ("Summarize the ticket in uppercase.", lambda text: text == text.upper()),
        ("Summarize the ticket IN ALL CAPS.", lambda text: text == text.upper()),
        ("Summarize the ticket in lowercase.", lambda text: text == text.lower()),
    ],
)
def test_case(instruction: str, check: Callable[[str], bool]) -> None:
    outputs = answers(instruction, variation=0.5)
    assert all(check(output) and re.search(r"[A-Za-z]", output) for output in outputs)


def test_headline() -> None:
    for output in answers("Write a headline for this ticket.", variation=0.5):
        words = output.split()
        assert 1 <= len(words) <= 10
        assert not output.endswith(".")
        assert all(
            not word[0].islower()
            or word
            in {
                "a",
                "an",
                "the",
                "and",
                "or",
                "of",
                "to",
                "in",
                "on",
                "for",
                "at",
                "by",
                "with",
                "as",
                "but",
                "nor",
                "vs",
            }
            for word in words
        )


def test_tone_and_name() -> None:
    friendly = answers("Summarize in 2 sentences in a friendly tone, and include the customer's name.")
    formal = answers("Summarize in 2 sentences in a formal tone and mention the customer's name.")
    neutral = answers("Summarize in 2 sentences.")
    for ticket, casual, stiff, plain in zip(TICKETS, friendly, formal, neutral):
        first = ticket["customer"].split()[0]
        assert casual.startswith(f"Hi team, {first} says: ")
        assert stiff.startswith(f"{ticket['customer']} reports: ")
        assert not re.search(r"\b(do not|cannot|does not|did not|I am)\b", casual)
        assert not re.search(r"n't\b|\bI'm\b|'ll\b", stiff)
        assert ticket["customer"] not in plain
    # The tones really differ where the ticket has something to contract or expand.
    assert sum(a.split(": ", 1)[1] != b.split(": ", 1)[1] for a, b in zip(friendly, formal)) > 50


def test_product_and_omitted_details() -> None:
    prompt = "Summarize in one sentence; mention the product.\nProduct: Pulse Watch\nText: {}"
    assert OfflineModel()(prompt.format(CONTENT[0])).startswith("[Pulse Watch] ")
    no_name = answers("Summarize briefly and leave out names, numbers and other details.")
    assert all(not re.search(r"\d", output) for output in no_name)
    assert all(ticket["customer"] not in output for ticket, output in zip(TICKETS, no_name))


def test_other_tasks() -> None:
    model = OfflineModel()
    praise = "I love this kettle. It is fantastic and the pour is smooth. Great job."
    complaint = "The kettle is broken and leaking. This is unacceptable, I want a refund."
    assert model(f"Classify the sentiment as positive, negative or neutral.\nReview: {praise}") == "positive"
    assert model(f"Classify the sentiment as positive, negative or neutral.\nReview: {complaint}") == "negative"
    assert model(f"What category is this ticket?\nTicket: {complaint}") == "refund"
    keywords = model(f"Extract 3 keywords.\nText: {CONTENT[0]}").split(", ")
    assert len(keywords) == 3 and all(word in CONTENT[0].lower() for word in keywords)


def test_unknown_instructions_are_ignored() -> None:
    assert answers("Translate the ticket into French, please.") == answers("")
    assert answers("You are a pirate. Summarize the ticket in one sentence.") == answers("In one sentence.")


# ------------------------------------------------------------------------------------------ where the content is


def test_content_conventions() -> None:
    model = OfflineModel()
    text = CONTENT[3]
    expected = model(f"Summarize in one sentence.\nText: {text}")
    assert model(f'Summarize in one sentence.\n"""{text}"""') == expected
    assert model(f"Summarize the <text> in one sentence.\n<text>{text}</text>\nIn one sentence!") == expected
    assert model(f"Input: {text}\n") != model(f"Summarize in one sentence.\nInput: {text}")
    assert model(f"Summarize in one sentence.\n\n{text}") == expected  # the last paragraph
    reading = OfflineModel.read(f"Be brief.\nCustomer: Ana Lima\nChannel: chat\nReview:\n{text}")
    assert (reading.customer, reading.instructions, reading.content) == ("Ana Lima", "Be brief.", text)


def test_chat_messages() -> None:
    template = [
        {"role": "system", "content": "Summarize the customer's ticket in at most 20 words, in uppercase."},
        {"role": "user", "content": "{{ text }}"},
    ]
    prompt = promptops.Prompt(name="chat", version=1, template=template)
    model = OfflineModel()
    for text in CONTENT[:50]:
        output = model(prompt.format(text=text))
        assert output == output.upper() and 0 < len(output.split()) <= 20
    # Assistant messages (few-shot examples) are not instructions, and the last user message is the content.
    messages = [
        {"role": "system", "content": "Summarize in one sentence."},
        {"role": "user", "content": CONTENT[1]},
        {"role": "assistant", "content": "IN UPPERCASE AS JSON"},
        {"role": "user", "content": CONTENT[2]},
    ]
    answer = model(messages)
    assert len(sentences(answer)) == 1 and answer != answer.upper() and answer in CONTENT[2]


VOCABULARY = sorted({word for text in CONTENT for word in text.split()}) + [
    ".",
    "!",
    "?",
    "\n",
    "\n\n",
    "Hi,",
    "(",
    ")",
]
TEXTS = st.one_of(st.text(max_size=300), st.lists(st.sampled_from(VOCABULARY), max_size=120).map(" ".join))
STYLES = ["", "as JSON", "as bullet points", "as a headline", "in a friendly tone with the customer's name"]


@given(text=TEXTS, limit=st.integers(min_value=1, max_value=40), style=st.sampled_from(STYLES))
@settings(max_examples=200, deadline=None)
def test_hostile_content_never_breaks_the_limits(text: str, limit: int, style: str) -> None:
    output = OfflineModel(variation=0.5)(f"Summarize {style} in at most {limit} words.\nCustomer: Zoë\nText: {text}")
    if style == "as JSON":
        output = json.loads(output)["summary"]
    words = [word for word in output.split() if word != "-"]
    assert 0 < len(words) <= limit


# ------------------------------------------------------------------------------------------ nondeterminism


def test_variation_zero_is_deterministic() -> None:
    model = OfflineModel(seed=None)
    first = [ask(model, app.TEMPLATES["v1"], ticket) for ticket in TICKETS[:40]]
    for _ in range(3):
        assert [ask(model, app.TEMPLATES["v1"], ticket) for ticket in TICKETS[:40]] == first
    assert OfflineModel(seed=5).read("Text: x") == OfflineModel(seed=6).read("Text: x")


def test_same_seed_same_outputs_and_noise_is_seeded() -> None:
    instruction = "Summarize in at most 40 words, in a friendly tone, and include the customer's name."
    run_1 = answers(instruction, seed=1, variation=0.2)
    assert answers(instruction, seed=1, variation=0.2) == run_1
    run_2 = answers(instruction, seed=2, variation=0.2)
    differing = sum(a != b for a, b in zip(run_1, run_2))
    # Deterministic for these seeds (no flake); the bounds catch noise that is off, or always on.
    assert len(TICKETS) * 0.15 < differing < len(TICKETS) * 0.6, differing
    assert differing == sum(a != b for a, b in zip(run_1, answers(instruction, seed=2, variation=0.2)))


def test_kth_call_is_the_same_whatever_the_thread_scheduling() -> None:
    prompts = [f"Summarize in at most 30 words.\nText: {text}" for text in CONTENT[:60]]
    sequential = OfflineModel(seed=3, variation=0.5)
    expected = {prompt: [sequential(prompt) for _ in range(4)] for prompt in prompts}

    for attempt in range(3):
        model = OfflineModel(seed=3, variation=0.5)
        jobs = [prompt for prompt in prompts for _ in range(4)]
        random.Random(attempt).shuffle(jobs)
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(model, jobs))
        got: dict[str, list[str]] = collections.defaultdict(list)
        for prompt, output in zip(jobs, results):
            got[prompt].append(output)
        # Which thread made the k-th call of a prompt varies; the k-th answers, as a set, do not.
        assert {prompt: sorted(outputs) for prompt, outputs in got.items()} == {
            prompt: sorted(outputs) for prompt, outputs in expected.items()
        }
        assert model.calls == len(jobs)
    # And some prompts' repeated calls really differ, so the comparison above is not trivially equal.
    assert sum(len(set(outputs)) > 1 for outputs in expected.values()) > 10


def test_reset_replays_the_same_sequence_and_can_reseed() -> None:
    model = OfflineModel(seed=4, variation=0.5)
    prompts = [f"Summarize as bullet points.\nText: {text}" for text in CONTENT[:40]]
    first = [model(prompt) for prompt in prompts + prompts]
    model.reset()
    assert [model(prompt) for prompt in prompts + prompts] == first
    model.reset(seed=5)
    assert model.seed == 5 and model.calls == 0
    assert [model(prompt) for prompt in prompts + prompts] != first


def test_seed_none_is_fresh_randomness() -> None:
    prompts = [f"Summarize in 2 sentences.\nText: {text}" for text in CONTENT]
    a, b = OfflineModel(seed=None, variation=0.5), OfflineModel(seed=None, variation=0.5)
    assert a.seed != b.seed
    assert [a(prompt) for prompt in prompts] != [b(prompt) for prompt in prompts]


async def test_ainvoke_matches_the_synchronous_answers() -> None:
    prompts = [f"Summarize in at most 25 words.\nText: {text}" for text in CONTENT[:30]]
    sync = OfflineModel(seed=7, variation=0.5, latency_ms=1.0, jitter=0.5)
    expected = [sync.invoke(prompt) for prompt in prompts]
    model = OfflineModel(seed=7, variation=0.5, latency_ms=1.0, jitter=0.5)
    assert await asyncio.gather(*(model.ainvoke(prompt) for prompt in prompts)) == expected


@pytest.mark.parametrize("kwargs", [{"variation": 1.5}, {"variation": -0.1}, {"latency_ms": -1.0}, {"jitter": 2.0}])
def test_invalid_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"OfflineModel\("):
        OfflineModel(**kwargs)


# ------------------------------------------------------------------------------------------ the demo app


def test_demo_templates_separate_noise_from_regressions() -> None:
    """The demo's premise, with real rouge-score: A/A noise and the good candidate stay close, the bad ones fall."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def run(version: str, seed: int) -> list[str]:
        model = OfflineModel(seed=seed, variation=0.2)
        prompt = promptops.Prompt(name=app.PROMPT_NAME, version=1, template=app.TEMPLATES[version])
        return [model(prompt.format(text=t["text"], customer=t["customer"])) for t in TICKETS]

    baseline = run("v1", 1)

    def similarity(outputs: list[str]) -> float:
        return statistics.mean(scorer.score(b, o)["rougeL"].fmeasure for b, o in zip(baseline, outputs))

    assert 0.85 <= similarity(run("v1", 2)) < 0.99
    assert 0.85 <= similarity(run("good", 2)) < 0.99
    for bad in ("bad_truncate", "bad_format", "bad_drop"):
        assert similarity(run(bad, 2)) <= 0.6, bad


def test_demo_app_runs_on_its_fallback_prompt() -> None:
    # An unreachable registry: the tracked function runs on its fallback= template (v1), nothing exported.
    promptops.configure(tracking_uri="http://127.0.0.1:9", trace_exporter="none", capture=None, registry_timeout=0.5)
    ticket = TICKETS[0]
    output = app.summarize_ticket(ticket["text"], ticket["customer"])
    assert output.startswith(f"Hi team, {ticket['customer'].split()[0]} says: ")
    assert len(output.split()) <= 40
    assert set(app.TEMPLATES) == {"v1", "good", "bad_truncate", "bad_format", "bad_drop"}
    assert all(
        promptops.Prompt(name="p", version=1, template=t).variables == {"text", "customer"}
        for t in app.TEMPLATES.values()
    )


def third_party_modules_added_by(module: str) -> list[str]:
    """Top-level non-stdlib modules a fresh interpreter loads for `import module` on top of `import promptops`."""
    code = (
        "import json, sys, promptops\n"
        "before = set(sys.modules)\n"
        f"import {module}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROMPTOPS_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    added = json.loads(done.stdout.strip().splitlines()[-1])
    return [name for name in added if name not in sys.stdlib_module_names and name != "promptops"]


def test_importing_promptops_testing_stays_light() -> None:
    # On top of `import promptops` (checked by test_import_cost.py), the offline model needs the standard library only.
    assert third_party_modules_added_by("promptops.testing") == []
    assert "typer" in third_party_modules_added_by("promptops.cli")  # the probe does see a heavy import


def test_an_inline_marker_separates_instructions_from_content() -> None:
    article = (
        "The council approved a cycling plan on Tuesday. The plan adds forty kilometres of bike lanes over three "
        "years. Shop owners worry about parking. Construction starts in spring."
    )
    reading = OfflineModel.read("Summarize in at most 8 words, in uppercase. Text: " + article)
    assert reading.content == article and reading.max_words == 8 and reading.case == "upper"
    output = OfflineModel()("Summarize in at most 8 words, in uppercase. Text: " + article)
    assert len(output.split()) <= 8 and output == output.upper()
