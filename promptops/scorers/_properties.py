"""Property scorers: facts about the call itself (its latency, whether it raised); the reference is ignored."""

from __future__ import annotations

from collections.abc import Sequence

from ._base import Score, ScoreInput, Scorer

__all__ = ["Errors", "Latency"]


class Latency(Scorer):
    """The call's wall time in milliseconds (`ScoreInput.latency_ms`); lower is better. `None` when unknown."""

    name = "latency"
    higher_is_better = False

    def score(self, items: Sequence[ScoreInput]) -> list[Score]:
        """Each item's latency, also for calls that raised.

        Args:
            items: The records to score.

        Returns:
            One `Score` per item.
        """
        return [Score(None if item.latency_ms is None else float(item.latency_ms)) for item in items]


class Errors(Scorer):
    """1.0 when the call raised, else 0.0; lower is better. Its mean is the error rate."""

    name = "errors"
    higher_is_better = False

    def score(self, items: Sequence[ScoreInput]) -> list[Score]:
        """1.0 for each item whose call raised (the reason is the error), else 0.0.

        Args:
            items: The records to score.

        Returns:
            One `Score` per item.
        """
        return [Score(1.0, item.error) if item.error is not None else Score(0.0) for item in items]
