"""Text scorers: ROUGE (rouge-score), BLEU (sacrebleu), exact match and length ratio.

The libraries are imported on first use (rouge-score brings NLTK: most of a second). Values are the
libraries' own: ROUGE is `rouge_score.rouge_scorer.RougeScorer(use_stemmer=True)`'s F-measure, BLEU is
`sacrebleu.sentence_bleu` / `sacrebleu.corpus_bleu` divided by 100; the tests compare them pair by pair.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ._base import Score, ScoreInput, SimilarityScorer

__all__ = ["ROUGE_TYPES", "Bleu", "ExactMatch", "LengthRatio", "Rouge"]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# Texts whose tokens are kept, and distinct words whose stems are kept: a replay scores each reference on
# both sides and with every ROUGE type, so tokenising it once pays.
_TOKENIZED_TEXTS = 16_384
_STEMMED_WORDS = 65_536
# Pairs whose reference n-grams sacrebleu holds at once (about 27 KB each for 300 characters).
_BLEU_CHUNK = 256


class _MemoStemmer:
    """NLTK's Porter stemmer (as rouge-score builds it), memoised: stemming is a pure function of the word."""

    def __init__(self) -> None:
        from nltk.stem import porter

        stemmer: Any = porter.PorterStemmer()
        stem: Callable[[str], str] = stemmer.stem
        self.stem = functools.lru_cache(maxsize=_STEMMED_WORDS)(stem)


_tokenizer_lock = threading.Lock()
_tokenizer: Any = None


def _shared_tokenizer() -> Any:
    """rouge-score's default tokenizer with stemming, memoised per text; one per process, shared by ROUGE types.

    Its tokens are exactly `DefaultTokenizer(use_stemmer=True)`'s: the same `rouge_score.tokenize.tokenize`
    with the same stemmer, cached. About 3x faster on a replay (most of ROUGE's time is stemming).
    """
    global _tokenizer
    with _tokenizer_lock:
        if _tokenizer is None:
            from rouge_score import tokenize, tokenizers

            stemmer = _MemoStemmer()

            @functools.lru_cache(maxsize=_TOKENIZED_TEXTS)
            def tokens(text: str) -> list[str]:
                return tokenize.tokenize(text, stemmer)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]

            class MemoTokenizer(tokenizers.Tokenizer):  # pyright: ignore[reportUntypedBaseClass]
                def tokenize(self, text: str) -> list[str]:  # pyright: ignore[reportIncompatibleMethodOverride]
                    # A copy: rouge-score does not mutate tokens today, and a cached list must survive if it does.
                    return list(tokens(text))

            _tokenizer = MemoTokenizer()
        return _tokenizer


class Rouge(SimilarityScorer):
    """ROUGE F-measure of the output against the reference: `rouge1`, `rouge2` or `rougeL`.

    Computed by `rouge_score.rouge_scorer.RougeScorer([kind], use_stemmer=True)`: lower-cased, Porter-stemmed
    tokens of letters and digits (`[a-z0-9]+`; other scripts have no tokens, so score 0). Range 0..1.

    Args:
        kind: `"rouge1"` (unigram overlap), `"rouge2"` (bigrams) or `"rougeL"` (longest common subsequence).
    """

    def __init__(self, kind: str = "rougeL") -> None:
        if kind not in ROUGE_TYPES:
            raise ValueError(f"kind must be one of {', '.join(ROUGE_TYPES)}, got {kind!r}")
        self.name = kind
        self._scorer: Any = None

    def _rouge(self) -> Any:
        if self._scorer is None:
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer([self.name], tokenizer=_shared_tokenizer())
        return self._scorer

    def similarity(self, outputs: Sequence[str], references: Sequence[str]) -> list[float]:
        """ROUGE F-measure of each pair (the reference is rouge-score's `target`, the output its `prediction`).

        Args:
            outputs: Output texts.
            references: Reference texts.

        Returns:
            F-measures, 0..1.
        """
        rouge = self._rouge()
        kind = self.name
        tokenize = _shared_tokenizer().tokenize
        # Identical texts with at least one n-gram score exactly 1.0 in rouge-score; skipping its O(n^2) LCS table
        # halves a replay's scoring when the baseline is compared with itself (no re-runs, or a deterministic model).
        least = 2 if kind == "rouge2" else 1
        return [
            1.0
            if output == reference and len(tokenize(output)) >= least
            else float(rouge.score(reference, output)[kind].fmeasure)
            for output, reference in zip(outputs, references)
        ]


def _unit(bleu_score: float) -> float:
    """A sacrebleu score (0..100) as 0..1, clamped: identical texts give 100.00000000000004 there (issue 17)."""
    return min(max(bleu_score / 100, 0.0), 1.0)


class Bleu(SimilarityScorer):
    """Sentence BLEU per record, corpus BLEU in the summary (sacrebleu, default settings), scaled to 0..1.

    Per record: `sacrebleu.sentence_bleu(output, [reference]).score / 100`, clamped to 0..1 (13a tokenisation, exponential
    smoothing, effective order). `corpus()`: `sacrebleu.corpus_bleu(outputs, [references]).score / 100` over
    the items with a reference (a call that raised contributes an empty output).

    Both come from one pass of sacrebleu's per-segment statistics (n-gram matches and lengths): the sentence
    scores of a batch are computed from them, and `corpus()` sums those of the pairs it was given, exactly as
    `corpus_bleu` does, instead of tokenising every pair again.
    """

    name = "bleu"

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], Any] = {}  # (output, reference) -> segment statistics, last batch

    def _segment_stats(self, outputs: Sequence[str], references: Sequence[str]) -> list[Any]:
        from sacrebleu.metrics.bleu import BLEU

        # force=True only silences sacrebleu's "lines end in a tokenized period" hint, counted over a whole batch.
        metric = BLEU(force=True)
        # In chunks (issue 15): sacrebleu first extracts the n-grams of every reference it is given, about 27 KB
        # each for a 300-character text, then counts the matches; a whole replay's batch at once held them all.
        stats: list[Any] = []
        for start in range(0, len(outputs), _BLEU_CHUNK):
            stop = start + _BLEU_CHUNK
            stats += metric._extract_corpus_statistics(outputs[start:stop], [references[start:stop]])  # pyright: ignore[reportPrivateUsage]
        return stats

    def similarity(self, outputs: Sequence[str], references: Sequence[str]) -> list[float]:
        """Sentence BLEU of each pair, divided by 100.

        Args:
            outputs: Output texts (hypotheses).
            references: Reference texts.

        Returns:
            Values 0..1.
        """
        from sacrebleu.metrics.bleu import BLEU

        # What `sacrebleu.sentence_bleu` builds on every call, built once per batch instead.
        metric = BLEU(force=False, smooth_method="exp", effective_order=True)
        stats = self._segment_stats(outputs, references) if outputs else []
        self._stats = dict(zip(zip(outputs, references), stats))
        return [_unit(metric._aggregate_and_compute([stat]).score) for stat in stats]  # pyright: ignore[reportPrivateUsage]

    def corpus(self, items: Sequence[ScoreInput]) -> float | None:
        """Corpus BLEU over the items with a reference, divided by 100; `None` when there are none.

        Args:
            items: The same items as given to `score()`.

        Returns:
            A value 0..1, or `None`.
        """
        return self.corpus_of(self.corpus_statistics(items))

    def corpus_statistics(self, items: Sequence[ScoreInput]) -> list[int] | None:
        """The sacrebleu statistics of the items with a reference, summed; `None` when there are none.

        Summed statistics add up: `corpus()` of several batches together is `corpus_of()` of the sum of their
        statistics, so a replay scoring in batches (issue 15) need not keep every batch's texts for corpus BLEU.

        Args:
            items: Items given to `score()` (their statistics are reused from that call; others are computed).

        Returns:
            The elementwise sum of the segment statistics (lengths, n-gram matches and totals), or `None`.
        """
        outputs, references = self.texts(items)
        if not outputs:
            return None
        known = self._stats
        pairs = list(zip(outputs, references))
        missing = [pair for pair in pairs if pair not in known]
        if missing:
            known = {**known, **dict(zip(missing, self._segment_stats(*map(list, zip(*missing)))))}
        return [sum(column) for column in zip(*(known[pair] for pair in pairs))]

    def corpus_of(self, statistics: Sequence[int] | None) -> float | None:
        """Corpus BLEU (0..1) from summed statistics (`corpus_statistics()`); `None` for `None`."""
        if statistics is None:
            return None
        from sacrebleu.metrics.bleu import BLEU

        metric = BLEU()  # sacrebleu.corpus_bleu's defaults
        return _unit(metric._aggregate_and_compute([list(statistics)]).score)  # pyright: ignore[reportPrivateUsage]


class ExactMatch(SimilarityScorer):
    """1.0 when the output's text equals the reference's, ignoring leading and trailing whitespace; else 0.0."""

    name = "exact_match"

    def similarity(self, outputs: Sequence[str], references: Sequence[str]) -> list[float]:
        """1.0 for each pair whose stripped texts are equal, else 0.0.

        Args:
            outputs: Output texts.
            references: Reference texts.

        Returns:
            1.0 or 0.0 per pair.
        """
        return [1.0 if output.strip() == reference.strip() else 0.0 for output, reference in zip(outputs, references)]


class LengthRatio(SimilarityScorer):
    """Length of the output's text over the reference's, in characters (code points): 1.0 for the same length.

    Not applicable (`Score(None, "empty reference")`) when the reference text is empty and the output is not;
    1.0 when both are empty. Above 1 the output is longer. Gate it on both sides (`length_ratio.mean >= 0.8`
    and `length_ratio.mean <= 1.25`): a larger value is not better by itself.
    """

    name = "length_ratio"

    def score(self, items: Sequence[ScoreInput]) -> list[Score]:
        """Score each item (see the class documentation).

        Args:
            items: The records to score.

        Returns:
            One `Score` per item.
        """
        return [
            Score(None, "empty reference") if score.value is not None and math.isinf(score.value) else score
            for score in super().score(items)
        ]

    def similarity(self, outputs: Sequence[str], references: Sequence[str]) -> list[float]:
        """`len(output) / len(reference)` per pair (infinite for an empty reference and a non-empty output).

        Args:
            outputs: Output texts.
            references: Reference texts.

        Returns:
            One ratio per pair.
        """
        return [
            len(output) / len(reference) if reference else (1.0 if not output else math.inf)
            for output, reference in zip(outputs, references)
        ]
