"""What every scorer shares: the `Score` it returns, the `ScoreInput` it reads, the `Scorer` base classes.

A scorer is called with the items of a block of a replay's records (`Scorer.score` is batched; 256 records at a
time), so a model-backed scorer encodes a block's texts in one go and a cheap one loops. Similarity scorers derive from
`SimilarityScorer`, which applies the rules the runner relies on: a call that raised scores `0.0`, a missing
reference makes the pair not applicable (`Score(None)`), and identical texts score the maximum.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import PromptopsError
from .._serialize import to_jsonable

__all__ = ["Score", "ScoreInput", "Scorer", "ScorerError", "SimilarityScorer", "to_text"]

CALL_RAISED = "call raised"


class ScorerError(PromptopsError):
    """A scorer cannot be found, loaded or used. The message names the scorer and the fix."""


@dataclasses.dataclass(frozen=True, slots=True)
class Score:
    """One scorer's verdict on one item.

    Attributes:
        value: The metric's value; `None` when it does not apply to this item (no reference to compare with).
        reason: Why, in a few words, when the value needs explaining (`"call raised"`).
    """

    value: float | None
    reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ScoreInput:
    """What a scorer sees of one record.

    Attributes:
        inputs: The keyword arguments the target was called with.
        output: The output being scored: the candidate's, or a baseline re-run's (`None` when the call raised).
        reference: What `output` is compared with: the baseline output, or the record's `expected` in
            reference mode. `None` when there is none.
        expected: The record's expected output, if it has one.
        latency_ms: Wall time of the call that produced `output`.
        error: `"Type: message"` when that call raised.
    """

    inputs: Mapping[str, Any]
    output: Any
    reference: Any
    expected: Any = None
    latency_ms: float | None = None
    error: str | None = None


class Scorer(abc.ABC):
    """A metric computed per record, in batches.

    Subclasses set `name` (the metric's name in reports and gates, e.g. `"rougeL"`) and `higher_is_better`,
    and implement `score()`. The value for a record is `score([item])[0]`; the runner passes the records in
    blocks (256 at a time), so a scorer backed by a model can batch.

    Attributes:
        name: The metric's name.
        higher_is_better: Whether a larger value is an improvement (`False` for latency and errors).
    """

    name: str
    higher_is_better: bool = True

    @abc.abstractmethod
    def score(self, items: Sequence[ScoreInput]) -> list[Score]:
        """Score each item.

        Args:
            items: The records to score.

        Returns:
            One `Score` per item, in the same order.
        """

    def corpus(self, items: Sequence[ScoreInput]) -> float | None:
        """A corpus-level figure over all items (corpus BLEU), or `None` when the metric has none.

        Args:
            items: The same items as given to `score()`.

        Returns:
            The figure, or `None`.
        """
        del items
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class SimilarityScorer(Scorer):
    """A scorer comparing an output's text with its reference's; subclasses implement `similarity()`.

    The rules every similarity scorer follows: the pair is not applicable (`Score(None)`) when the reference
    is `None`; a call that raised scores `Score(0.0, "call raised")`; otherwise both sides go through
    `to_text()` and `similarity()` computes the values of all remaining pairs in one call.
    """

    @abc.abstractmethod
    def similarity(self, outputs: Sequence[str], references: Sequence[str]) -> list[float]:
        """The similarity of each output text with the reference text at the same position.

        Args:
            outputs: Output texts.
            references: Reference texts, as many as `outputs`.

        Returns:
            One value per pair; identical texts must get the metric's maximum.
        """

    def score(self, items: Sequence[ScoreInput]) -> list[Score]:
        """Score each item's output against its reference (see the class documentation for the rules).

        Args:
            items: The records to score.

        Returns:
            One `Score` per item, in the same order.
        """
        scores: list[Score | None] = []
        pending: list[int] = []
        outputs: list[str] = []
        references: list[str] = []
        for index, item in enumerate(items):
            if item.reference is None:
                scores.append(Score(None))
            elif item.output is None and item.error is not None:
                scores.append(Score(0.0, CALL_RAISED))
            else:
                scores.append(None)
                pending.append(index)
                outputs.append(to_text(item.output))
                references.append(to_text(item.reference))
        if pending:
            values = self.similarity(outputs, references)
            for index, value in zip(pending, values, strict=True):
                scores[index] = Score(value)
        return [score for score in scores if score is not None]

    def texts(self, items: Sequence[ScoreInput]) -> tuple[list[str], list[str]]:
        """The output and reference texts of the items `score()` compares (reference given, call did not raise).

        Corpus-level metrics use it; an item whose call raised contributes an empty output.

        Args:
            items: The records.

        Returns:
            Output texts and reference texts, position by position.
        """
        outputs: list[str] = []
        references: list[str] = []
        for item in items:
            if item.reference is None:
                continue
            raised = item.output is None and item.error is not None
            outputs.append("" if raised else to_text(item.output))
            references.append(to_text(item.reference))
        return outputs, references


_encoder = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def to_text(value: Any) -> str:
    """The text a similarity scorer compares: a string as it is, anything else as canonical JSON.

    Canonical JSON has sorted keys, no spaces and characters as they are (not escaped); values are first
    converted the way capture stores them (pydantic models and dataclasses become objects, and so on), so a
    live output and its captured copy give the same text.

    ```python
    from promptops.scorers import to_text

    assert to_text("Paris") == "Paris"
    assert to_text({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'
    ```

    Args:
        value: An output or reference.

    Returns:
        Its text.
    """
    if isinstance(value, str):
        return str(value)
    return _encoder.encode(to_jsonable(value, max_chars=sys.maxsize))
