"""Scorers: values equal what rouge-score and sacrebleu compute on the same pairs; None/error rules; names.

The semantic scorer (a real model) is tested in test_scorers_semantic.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

import promptops.scorers
from promptops.scorers import (
    Bleu,
    Errors,
    ExactMatch,
    FunctionScorer,
    Latency,
    LengthRatio,
    Rouge,
    Score,
    ScoreInput,
    Scorer,
    ScorerError,
    _registry,
    available,
    get,
    resolve,
    scorer,
    to_text,
)

LONG = " ".join(f"sentence {n} talks about the committee reviewing proposals and schedules" for n in range(40))
# (output, reference): prose, stemming, empty texts, identical texts, accents, CJK, Greek, emoji, whitespace,
# numbers, word order, long text, JSON-ish text.
PAIRS: list[tuple[str, str]] = [
    ("The cat sat on the mat.", "A cat was sitting on the mat."),
    ("Running quickly, the runners ran home.", "The runner runs home quick."),
    ("", "Some reference text."),
    ("Some output.", ""),
    ("", ""),
    ("identical text here", "identical text here"),
    ("The quick brown fox jumps over the lazy dog", "The quick brown dog jumps over the lazy fox"),
    ("Zürich café naïve résumé déjà vu", "Zurich cafe naive resume deja vu"),
    ("日本語のテキストです。", "日本語の文章です。"),
    ("Ελληνικά κείμενα για δοκιμή", "Greek text for a test"),
    ("emoji 🎉 party time 🎉", "party time emoji"),
    ("multi\nline\ttext  with   spaces", "multi line text with spaces"),
    ("Numbers 1, 2, 3 and 4.5% of 1,000", "numbers one two three and 4.5 percent"),
    (LONG, LONG.replace("committee", "board")),
    ('{"answer": "yes", "confidence": 0.9}', '{"answer": "no", "confidence": 0.9}'),
    ("Paris", "Paris."),
]


def items_for(pairs: list[tuple[str, str]]) -> list[ScoreInput]:
    return [ScoreInput({}, output, reference) for output, reference in pairs]


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """No registered scorers (other tests' and the docs' are set aside), and the test's own forgotten after it."""
    monkeypatch.setattr(_registry, "_registered", {})


# -- values equal the libraries' ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rouge1", "rouge2", "rougeL"])
def test_rouge_equals_rouge_score(kind: str) -> None:
    library = rouge_scorer.RougeScorer([kind], use_stemmer=True)
    expected = [library.score(reference, output)[kind].fmeasure for output, reference in PAIRS]
    assert [score.value for score in get(kind).score(items_for(PAIRS))] == expected
    # A second pass (tokens now cached) gives the same values.
    assert [score.value for score in Rouge(kind).score(items_for(PAIRS))] == expected


def test_rouge_values_are_meaningful() -> None:
    # Guards against comparing two broken computations: known values from the definition of ROUGE.
    rouge1, rouge2, rouge_l = (get(kind) for kind in ("rouge1", "rouge2", "rougeL"))
    same = items_for([("the cats are running", "the cat is run")])  # stems: the cat are run / the cat is run
    assert rouge1.score(same)[0].value == pytest.approx(0.75)
    assert rouge2.score(same)[0].value == pytest.approx(1 / 3)
    assert rouge_l.score(items_for([("a b c d", "a b c d")]))[0].value == 1.0
    assert rouge_l.score(items_for([("w x y z", "a b c d")]))[0].value == 0.0


def unit(bleu_score: float) -> float:
    """sacrebleu's score as promptops reports it: / 100, clamped to [0, 1] (its float sums can pass 100)."""
    return min(max(bleu_score / 100, 0.0), 1.0)


def test_bleu_equals_sacrebleu_sentence_and_corpus() -> None:
    bleu = get("bleu")
    expected = [unit(sacrebleu.sentence_bleu(output, [reference]).score) for output, reference in PAIRS]
    assert [score.value for score in bleu.score(items_for(PAIRS))] == expected
    outputs = [output for output, _ in PAIRS]
    references = [reference for _, reference in PAIRS]
    assert bleu.corpus(items_for(PAIRS)) == unit(sacrebleu.corpus_bleu(outputs, [references]).score)
    assert 0 < expected[0] < 1
    # Identical texts: sacrebleu says 100.00000000000004 for this one; scores run 0..1, so exactly 1.0 (issue 17).
    same = "Mar 4: the parcel was lost again and nobody has answered my three emails"
    assert sacrebleu.sentence_bleu(same, [same]).score > 100  # the case the clamp is for
    assert bleu.score(items_for([(same, same)]))[0].value == 1.0
    assert bleu.corpus(items_for([(same, same)])) == 1.0


def test_bleu_of_a_replay_sized_batch_equals_sacrebleu_in_bounded_memory() -> None:
    # Issue 15: sacrebleu extracts every reference's n-grams before counting (about 27 KB each for 300 characters);
    # a replay's whole batch at once held 54 KB per record. Scored in chunks, the values stay sacrebleu's.
    import random
    import tracemalloc

    rng = random.Random(7)
    pairs = [
        (" ".join(f"w{rng.randrange(3000)}" for _ in range(50)), " ".join(f"w{rng.randrange(3000)}" for _ in range(50)))
        for _ in range(1_500)
    ]
    items = items_for(pairs)
    bleu = Bleu()
    bleu.score(items[:2])  # sacrebleu's imports and tables, outside the measurement
    tracemalloc.start()
    try:
        values = [score.value for score in bleu.score(items)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.1f} MB"  # 8 MB measured; all 1,500 references at once: 37 MB
    assert values == [unit(sacrebleu.sentence_bleu(output, [reference]).score) for output, reference in pairs]
    outputs, references = [output for output, _ in pairs], [reference for _, reference in pairs]
    assert bleu.corpus(items) == unit(sacrebleu.corpus_bleu(outputs, [references]).score)


def test_bleu_corpus_counts_raised_calls_as_empty_and_skips_missing_references() -> None:
    items = [
        ScoreInput({}, "the cat sat on the mat", "the cat sat on the mat"),
        ScoreInput({}, None, "a dog barked at the mailman", error="TimeoutError: slow"),
        ScoreInput({}, "ignored output", None),
    ]
    expected = sacrebleu.corpus_bleu(
        ["the cat sat on the mat", ""], [["the cat sat on the mat", "a dog barked at the mailman"]]
    )
    assert Bleu().corpus(items) == unit(expected.score)
    assert Bleu().corpus([ScoreInput({}, "x", None)]) is None
    assert Bleu().corpus([]) is None


def test_bleu_corpus_statistics_of_batches_add_up_to_the_corpus_of_all() -> None:
    # Issue 15: a replay scores in blocks (on Ray workers) and keeps only each block's summed statistics.
    items = [*items_for(PAIRS * 3), ScoreInput({}, None, "a dog barked", error="E: x"), ScoreInput({}, "y", None)]
    whole = Bleu()
    expected = whole.corpus(items)
    parts = [items[start : start + 4] for start in range(0, len(items), 4)]
    sums: list[int] | None = None
    for part in parts:
        scorer = Bleu()  # a worker's own scorer: its statistics come from its own batch
        scorer.score(part)
        found = scorer.corpus_statistics(part)
        if found is not None:
            sums = found if sums is None else [a + b for a, b in zip(sums, found, strict=True)]
    assert expected is not None and whole.corpus_of(sums) == expected
    assert whole.corpus_statistics([ScoreInput({}, "x", None)]) is None and whole.corpus_of(None) is None


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=60, deadline=None)
@given(output=_text, reference=_text)
def test_rouge_and_bleu_equal_the_libraries_on_any_text(output: str, reference: str) -> None:
    items = [ScoreInput({}, output, reference)]
    for kind in ("rouge1", "rougeL"):
        library = rouge_scorer.RougeScorer([kind], use_stemmer=True).score(reference, output)[kind].fmeasure
        assert Rouge(kind).score(items)[0].value == library
    value = Bleu().score(items)[0].value
    assert value == unit(sacrebleu.sentence_bleu(output, [reference]).score)
    assert value is not None and 0.0 <= value <= 1.0


# -- the rules every similarity scorer follows ----------------------------------------------------------------

SIMILARITY = ["rouge1", "rouge2", "rougeL", "bleu", "exact_match", "length_ratio"]


@pytest.mark.parametrize("name", SIMILARITY)
def test_similarity_scorers_handle_errors_and_missing_references(name: str) -> None:
    items = [
        ScoreInput({}, None, "the reference", error="ValueError: boom", latency_ms=12.0),
        ScoreInput({}, "an output", None),
        ScoreInput({}, None, None, error="ValueError: boom"),
        ScoreInput({}, "the reference text", "the reference text"),
    ]
    scores = get(name).score(items)
    assert scores[:3] == [Score(0.0, "call raised"), Score(None), Score(None)]
    assert scores[3].value == pytest.approx(1.0)  # identical texts: the maximum
    assert get(name).score([]) == []
    assert get(name).higher_is_better is True


@pytest.mark.parametrize("name", SIMILARITY)
def test_similarity_scorers_compare_non_string_outputs_as_canonical_json(name: str) -> None:
    scorer_ = get(name)
    live = [ScoreInput({}, {"b": [1, 2], "a": "yes"}, {"a": "yes", "b": [1, 2]})]
    assert scorer_.score(live)[0].value == pytest.approx(1.0)
    as_text = [ScoreInput({}, to_text({"b": [1, 2], "a": "yes"}), '{"a":"no","b":[1,2]}')]
    assert scorer_.score([ScoreInput({}, {"b": [1, 2], "a": "yes"}, {"a": "no", "b": [1, 2]})]) == scorer_.score(
        as_text
    )


def test_exact_match_strips_whitespace_only() -> None:
    pairs = [("Paris", "Paris"), ("  Paris\n", "Paris"), ("paris", "Paris"), ("Paris.", "Paris"), ("", "  ")]
    assert [score.value for score in ExactMatch().score(items_for(pairs))] == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert ExactMatch().score([ScoreInput({}, 3, 3.0)]) == [Score(0.0)]  # "3" is not "3.0"
    assert ExactMatch().score([ScoreInput({}, [1, "a"], (1, "a"))]) == [Score(1.0)]


def test_length_ratio_counts_characters() -> None:
    pairs = [("abcd", "ab"), ("ab", "abcd"), ("日本", "日本語"), ("🎉🎉", "ab"), ("same", "same"), ("", "")]
    assert [score.value for score in LengthRatio().score(items_for(pairs))] == [2.0, 0.5, 2 / 3, 1.0, 1.0, 1.0]
    assert LengthRatio().score(items_for([("text", "")])) == [Score(None, "empty reference")]


def test_latency_and_errors_ignore_the_reference() -> None:
    items = [
        ScoreInput({}, "ok", "ref", latency_ms=120.5),
        ScoreInput({}, None, "ref", latency_ms=30, error="RuntimeError: down"),
        ScoreInput({}, "ok", None),
    ]
    assert Latency().score(items) == [Score(120.5), Score(30.0), Score(None)]
    assert Errors().score(items) == [Score(0.0), Score(1.0, "RuntimeError: down"), Score(0.0)]
    assert Latency().higher_is_better is False
    assert Errors().higher_is_better is False
    assert Latency().corpus(items) is None


# -- to_text --------------------------------------------------------------------------------------------------


class Answer(pydantic.BaseModel):
    text: str
    score: float


@dataclasses.dataclass
class Point:
    y: int
    x: int


class Label(str):
    pass


def test_to_text() -> None:
    assert to_text("héllo\n") == "héllo\n"
    assert type(to_text(Label("x"))) is str
    assert to_text(None) == "null"
    assert to_text(3) == "3"
    assert to_text({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'
    assert to_text(Answer(text="yes", score=0.5)) == '{"score":0.5,"text":"yes"}'
    assert to_text(Point(y=2, x=1)) == '{"x":1,"y":2}'
    assert to_text(float("nan")) == '"NaN"'
    assert json.loads(to_text({"k": ("t", 1)})) == {"k": ["t", 1]}
    # A live output and its captured (serialised) copy give the same text.
    captured = json.loads(json.dumps(Answer(text="yes", score=0.5).model_dump(mode="json")))
    assert to_text(captured) == to_text(Answer(text="yes", score=0.5))


# -- names and resolve ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("clean_registry")
def test_builtin_names() -> None:
    assert available() == [
        "rouge1",
        "rouge2",
        "rougeL",
        "bleu",
        "semantic",
        "exact_match",
        "length_ratio",
        "latency",
        "errors",
    ]
    resolved = resolve(["rouge1", "rouge2", "rougeL", "bleu", "exact_match", "length_ratio", "latency", "errors"])
    assert [type(s) for s in resolved] == [Rouge, Rouge, Rouge, Bleu, ExactMatch, LengthRatio, Latency, Errors]
    assert [s.name for s in resolved] == ["rouge1", "rouge2", "rougeL", "bleu", "exact_match", "length_ratio"] + [
        "latency",
        "errors",
    ]
    assert resolve(" bleu ")[0].name == "bleu"  # a single name is accepted too


@pytest.mark.usefixtures("clean_registry")
def test_unknown_name_lists_the_names_and_the_closest() -> None:
    with pytest.raises(ScorerError) as raised:
        resolve(["bleu", "rogueL"])
    assert str(raised.value) == (
        "unknown scorer 'rogueL'; available: rouge1, rouge2, rougeL, bleu, semantic, exact_match, length_ratio, "
        "latency, errors; did you mean 'rougeL'?"
    )
    assert isinstance(raised.value, promptops.PromptopsError)
    with pytest.raises(ScorerError, match=r"did you mean 'rougeL'\?$"):
        get("ROUGEL")
    for slip, meant in [("exactmatch", "exact_match"), ("rouge-l", "rougeL"), ("length", "length_ratio")]:
        with pytest.raises(ScorerError, match=rf"did you mean '{meant}'\?$"):
            get(slip)
    with pytest.raises(
        ScorerError, match=r"^unknown scorer 'fluency'; available: .*; or give your own as module:function$"
    ):
        get("fluency")


def test_arguments_only_where_accepted() -> None:
    with pytest.raises(ScorerError, match=r"^scorer 'bleu' takes no argument, got 'bleu:4'$"):
        get("bleu:4")
    with pytest.raises(ScorerError, match=r"give a model name or path after 'semantic:'"):
        get("semantic:")


def test_two_scorers_with_one_name_are_rejected() -> None:
    with pytest.raises(ScorerError, match=r"two scorers are named 'bleu'"):
        resolve(["bleu", Bleu()])


def test_resolve_takes_instances_classes_and_functions() -> None:
    instance = Rouge("rouge2")

    def has_digits(output: str) -> bool:
        return any(c.isdigit() for c in output)

    resolved = resolve([instance, Bleu, has_digits])
    assert resolved[0] is instance
    assert isinstance(resolved[1], Bleu)
    assert isinstance(resolved[2], FunctionScorer) and resolved[2].name == "has_digits"
    assert resolved[2].score([ScoreInput({}, "a1", None)]) == [Score(1.0)]
    assert "has_digits" not in available()  # a plain function is not registered
    with pytest.raises(ScorerError, match=r"is a int, not a Scorer or a function"):
        resolve([3])  # pyright: ignore[reportArgumentType]
    with pytest.raises(ScorerError, match=r"is the class dict, not a Scorer subclass"):
        resolve([dict])  # pyright: ignore[reportArgumentType]


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of the user's, in the working directory, importable by a fresh name."""
    name = f"user_scorers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import promptops.scorers
            from promptops.scorers import Score, Scorer

            LIMIT = 3

            @promptops.scorers.scorer(name=__name__.replace("user_scorers", "decorated"))
            def decorated(output):
                return len(output)

            def plain(output, baseline):
                return float(output == baseline)

            class Always(Scorer):
                name = "always_one"

                def score(self, items):
                    return [Score(1.0) for _ in items]

            class NeedsArgs(Always):
                def __init__(self, value):
                    self.value = value

            instance = Always()
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    monkeypatch.setattr(_registry, "_registered", {})
    yield name
    sys.modules.pop(name, None)


def test_module_function_specs(user_module: str) -> None:
    # The working directory is not on sys.path (as under the `promptops` console script): it is added.
    plain = get(f"{user_module}:plain")
    assert isinstance(plain, FunctionScorer) and plain.name == "plain"
    assert plain.score([ScoreInput({}, "a", "a"), ScoreInput({}, "a", "b")]) == [Score(1.0), Score(0.0)]
    decorated_name = user_module.replace("user_scorers", "decorated")
    decorated = get(f"{user_module}:decorated")
    assert decorated is get(decorated_name)  # importing the module registered it by name
    assert decorated_name in available()
    assert get(f"{user_module}:instance").name == "always_one"
    made = get(f"{user_module}:Always")
    assert made.score([ScoreInput({}, "x", "y")]) == [Score(1.0)]


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("LIMIT", r"^scorer '{mod}:LIMIT' is a int, not a Scorer or a function$"),
        ("missing", r"^cannot import scorer '{mod}:missing': {mod} has no attribute 'missing'$"),
        ("NeedsArgs", r"^scorer '{mod}:NeedsArgs': cannot create NeedsArgs\(\) without arguments"),
        ("", r"^scorer '{mod}:': expected module:function, e.g. myapp.scorers:is_json$"),
    ],
)
def test_module_function_errors(user_module: str, attribute: str, message: str) -> None:
    with pytest.raises(ScorerError, match=message.format(mod=user_module)):
        get(f"{user_module}:{attribute}")


def test_module_that_cannot_be_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_scorers_mod.py").write_text("import not_a_module_anywhere\n", encoding="utf-8")
    with pytest.raises(ScorerError) as raised:
        get("broken_scorers_mod:f")
    assert str(raised.value) == (
        "cannot import scorer 'broken_scorers_mod:f': ModuleNotFoundError: No module named 'not_a_module_anywhere'"
    )
    with pytest.raises(ScorerError, match=r"^cannot import scorer 'no_such_pkg_x:f': ModuleNotFoundError"):
        get("no_such_pkg_x:f")
    sys.modules.pop("broken_scorers_mod", None)


# -- @scorer --------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("clean_registry")
def test_decorator_forms() -> None:
    @scorer
    def is_json(output: str) -> float:
        try:
            json.loads(output)
        except ValueError:
            return 0.0
        return 1.0

    @scorer()
    def shouting(output: str) -> bool:
        return output.isupper()

    @scorer(name="too_long", higher_is_better=False)
    def length_over(output: str, baseline: str) -> float:
        return max(0, len(output) - len(baseline))

    assert isinstance(is_json, FunctionScorer) and isinstance(is_json, Scorer)
    assert (is_json.name, is_json.higher_is_better) == ("is_json", True)
    assert (length_over.name, length_over.higher_is_better) == ("too_long", False)
    assert is_json('{"a": 1}') == 1.0  # still callable as the function
    assert shouting("HEY") is True
    assert [get("is_json"), get("shouting"), get("too_long")] == [is_json, shouting, length_over]
    assert {"is_json", "shouting", "too_long"} <= set(available())
    items = [ScoreInput({}, '{"a": 1}', "x"), ScoreInput({}, "NOT JSON", "no")]
    assert is_json.score(items) == [Score(1.0), Score(0.0)]
    assert shouting.score(items) == [Score(0.0), Score(1.0)]
    assert length_over.score(items) == [Score(7.0), Score(6.0)]
    assert resolve(["is_json", "rougeL"])[0] is is_json


@pytest.mark.usefixtures("clean_registry")
def test_decorated_function_receives_arguments_by_name() -> None:
    seen: list[dict[str, Any]] = []

    @scorer
    def everything(expected: Any, output: Any, inputs: Any, baseline: Any) -> float:
        seen.append({"inputs": inputs, "output": output, "baseline": baseline, "expected": expected})
        return 0.5

    @scorer
    def keywords(**kwargs: Any) -> float:
        seen.append(kwargs)
        return 1

    item = ScoreInput({"q": "hi"}, "out", "ref", expected="exp", latency_ms=5.0)
    assert everything.score([item]) == [Score(0.5)]
    assert keywords.score([item]) == [Score(1.0)]
    assert seen == [
        {"inputs": {"q": "hi"}, "output": "out", "baseline": "ref", "expected": "exp"},
        {
            "inputs": {"q": "hi"},
            "output": "out",
            "baseline": "ref",
            "expected": "exp",
            "latency_ms": 5.0,
            "error": None,
        },
    ]


@pytest.mark.usefixtures("clean_registry")
def test_return_values() -> None:
    import numpy as np

    returned: list[Any] = [0.25, 2, True, (0.5, "half"), Score(0.75, "why"), None, np.float32(0.5), (None, "n/a")]
    results = iter(returned)

    @scorer
    def varied(output: str) -> Any:
        return next(results)

    scores = varied.score([ScoreInput({}, "x", None)] * len(returned))
    assert scores == [
        Score(0.25),
        Score(2.0),
        Score(1.0),
        Score(0.5, "half"),
        Score(0.75, "why"),
        Score(None),
        Score(0.5),
        Score(None, "n/a"),
    ]
    assert all(type(s.value) is float for s in scores if s.value is not None)


@pytest.mark.usefixtures("clean_registry")
def test_a_failing_scorer_function_costs_its_records_not_the_run(caplog: pytest.LogCaptureFixture) -> None:
    @scorer
    def fragile(output: str) -> float:
        if output == "bad":
            raise ValueError("cannot parse\nsecond line")
        return 1.0

    @scorer
    def wrong_type(output: str) -> Any:
        return "yes"

    @scorer
    def not_a_number(output: str) -> float:
        return math.nan

    items = [ScoreInput({}, "bad", None), ScoreInput({}, "good", None), ScoreInput({}, "bad", None)]
    with caplog.at_level(logging.WARNING, logger="promptops.scorers"):
        assert fragile.score(items) == [
            Score(None, "scorer raised ValueError: cannot parse"),
            Score(1.0),
            Score(None, "scorer raised ValueError: cannot parse"),
        ]
        assert wrong_type.score(items[:1]) == [
            Score(None, "scorer returned 'yes'; expected a number, (number, reason), a Score or None")
        ]
    assert not_a_number.score(items[:1]) == [Score(None, "scorer returned NaN")]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2  # once per scorer, not per record
    assert "scorer 'fragile' raised" in warnings[0]


@pytest.mark.usefixtures("clean_registry")
def test_raised_calls_reach_only_functions_that_declare_error() -> None:
    @scorer
    def nonempty(output: str) -> float:
        return float(bool(output))

    @scorer
    def error_aware(output: Any, error: str | None) -> float:
        return 0.0 if error else 1.0

    items = [ScoreInput({}, None, "ref", error="KeyError: 'x'"), ScoreInput({}, "text", "ref")]
    assert nonempty.score(items) == [Score(None, "call raised"), Score(1.0)]
    assert error_aware.score(items) == [Score(0.0), Score(1.0)]


@pytest.mark.usefixtures("clean_registry")
def test_functions_that_cannot_be_scorers() -> None:
    with pytest.raises(ScorerError, match=r"^scorer 'f': unknown parameter 'text'; a scorer function takes any of"):

        @scorer
        def f(text: str) -> float:
            return 0.0

    @scorer
    def with_default(output: str, threshold: float = 0.5) -> float:  # an extra parameter with a default is fine
        return float(len(output) > threshold)

    assert with_default.score([ScoreInput({}, "ab", None)]) == [Score(1.0)]
    with pytest.raises(ScorerError, match=r"async functions cannot be scorers"):

        @scorer
        async def slow(output: str) -> float:
            return 0.0

    with pytest.raises(ScorerError, match=r"a scorer name must be an identifier .* got '<lambda>'"):
        scorer(lambda output: 1.0)
    assert scorer(name="short")(lambda output: float(len(output) < 5)).name == "short"
    with pytest.raises(ScorerError, match=r"got 'semantic\.v2'"):
        scorer(name="semantic.v2")(lambda output: 1.0)
    with pytest.raises(ScorerError, match=r"^'bleu' is a built-in scorer; give yours another name"):

        @scorer
        def bleu(output: str) -> float:
            return 0.0

    assert get("bleu").__class__ is Bleu


@pytest.mark.usefixtures("clean_registry")
def test_registering_a_name_again_replaces_it() -> None:
    first = scorer(name="again")(lambda output: 1.0)
    second = scorer(name="again")(lambda output: 2.0)
    assert get("again") is second is not first
    promptops.scorers.unregister("again")
    assert "again" not in available()


# -- import cost ----------------------------------------------------------------------------------------------

PROBE = """
import json, sys
import promptops
before = sorted(m for m in sys.modules if m.startswith("promptops.scorers"))
import promptops.scorers
scorers = promptops.scorers.resolve(["rougeL", "bleu", "semantic", "exact_match", "latency"])
heavy = {"numpy", "torch", "sentence_transformers", "transformers", "rouge_score", "nltk", "sacrebleu"}
print(json.dumps([before, sorted(m for m in sys.modules if m.split(".")[0] in heavy)]))
"""


def test_importing_and_resolving_scorers_imports_no_scoring_library() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROMPTOPS_")}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == []  # `import promptops` does not import the scorers
    assert heavy == []


@pytest.mark.parametrize("kind", ["rouge1", "rouge2", "rougeL"])
@pytest.mark.parametrize("text", ["", "one", "two words", "Ünïcödé only", "a b c d e f", "the cat sat. The cat sat!"])
def test_identical_texts_score_what_rouge_score_computes(kind: str, text: str) -> None:
    expected = rouge_scorer.RougeScorer([kind], use_stemmer=True).score(text, text)[kind].fmeasure
    (score,) = Rouge(kind).score([ScoreInput({}, text, text)])
    assert score.value == expected
