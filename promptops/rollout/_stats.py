"""Two independent samples (the arms of a rollout): bootstrap and always-valid confidence intervals.

Replay compares paired records (the same inputs on both versions, `replay._stats`). A rollout's arms serve
different calls, so the comparison is of two independent samples: the difference of means, candidate minus
baseline.

* `bootstrap_ci`: a percentile bootstrap of the difference of means (each arm resampled on its own), the
  fixed-sample interval shown in `rollout status`.
* `always_valid_ci`: the confidence sequence of the mixture sequential probability ratio test (mSPRT; Robbins
  1970, Johari, Pekelis and Walsh, "Always valid inference", 2017, the method behind Optimizely's stats engine)
  for a difference of means with plug-in variances. It holds at every sample size at once: however often
  `rollout watch` looks, the chance that it *ever* excludes the true difference is at most `alpha`. The guard
  decides on this interval only, so peeking every minute does not inflate false alarms (simulated in
  docs/rollout.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TwoSample", "always_valid_ci", "bootstrap_ci", "two_sample"]


@dataclass(frozen=True)
class TwoSample:
    """One metric on both arms.

    Attributes:
        baseline_n: Baseline observations.
        candidate_n: Candidate observations.
        baseline_mean: Baseline mean (`None` without observations).
        candidate_mean: Candidate mean.
        delta: Candidate mean minus baseline mean.
        ci_low: Bootstrap 95% interval of `delta`, low end.
        ci_high: Its high end.
        av_low: Always-valid interval of `delta` (at the guard's alpha), low end.
        av_high: Its high end.
    """

    baseline_n: int
    candidate_n: int
    baseline_mean: float | None
    candidate_mean: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    av_low: float | None
    av_high: float | None


def bootstrap_ci(
    baseline: np.ndarray, candidate: np.ndarray, *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of `mean(candidate) - mean(baseline)`, each arm resampled on its own."""
    rng = np.random.default_rng(seed)
    b = baseline[rng.integers(0, baseline.size, size=(resamples, baseline.size))].mean(axis=1)
    c = candidate[rng.integers(0, candidate.size, size=(resamples, candidate.size))].mean(axis=1)
    deltas = np.sort(c - b)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(deltas, tail)), float(np.quantile(deltas, 1.0 - tail))


def always_valid_ci(delta: float, variance: float, *, tau: float, alpha: float = 0.05) -> tuple[float, float]:
    """The mSPRT confidence sequence for a difference of means, valid at every sample size simultaneously.

    Args:
        delta: The observed difference of means.
        variance: Its variance, `s_c^2 / n_c + s_b^2 / n_b`.
        alpha: The chance, over the whole rollout, that the interval ever excludes the true difference.
        tau: The standard deviation of the mixing distribution, in the metric's units: the effect size the
            test is most sensitive to. It must not depend on how much data has been seen (the gate's margin,
            or a fixed fraction of the metric's spread).

    Returns:
        `(low, high)`.
    """
    if variance <= 0.0 or tau <= 0.0:
        return delta, delta
    tau2 = tau * tau
    radius = math.sqrt(
        variance * (variance + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + math.log((variance + tau2) / variance))
    )
    return delta - radius, delta + radius


def two_sample(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    alpha: float = 0.05,
    tau: float | None = None,
    seed: int = 0,
    resamples: int = 2000,
) -> TwoSample:
    """Both intervals of `mean(candidate) - mean(baseline)`; `None`s where an arm has fewer than 2 values."""
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    b_mean = float(b.mean()) if b.size else None
    c_mean = float(c.mean()) if c.size else None
    if b.size < 2 or c.size < 2 or b_mean is None or c_mean is None:
        return TwoSample(int(b.size), int(c.size), b_mean, c_mean, None, None, None, None, None)
    delta = c_mean - b_mean
    variance = float(b.var(ddof=1)) / b.size + float(c.var(ddof=1)) / c.size
    low, high = bootstrap_ci(b, c, seed=seed, resamples=resamples) if resamples > 0 else (None, None)
    if tau is None:  # a tenth of the metric's spread: sensitive to small effects, stable as data grows
        tau = 0.1 * math.sqrt((float(b.var(ddof=1)) + float(c.var(ddof=1))) / 2.0)
    av_low, av_high = always_valid_ci(delta, variance, alpha=alpha, tau=tau)
    return TwoSample(int(b.size), int(c.size), b_mean, c_mean, delta, low, high, av_low, av_high)
