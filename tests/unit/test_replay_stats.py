"""Paired statistics: summaries, bootstrap intervals (coverage), non-inferiority test, Holm adjustment."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptops.replay._stats import PairedSample, holm, noninferiority, paired_values, summarize

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


# -- summarize: exact figures ---------------------------------------------------------------------------------


def test_summary_by_hand() -> None:
    baseline = [0.5, 0.6, None, 0.8, 0.7]
    candidate = [0.6, 0.6, 0.9, None, 0.0]
    summary, sample = summarize("rougeL", baseline, candidate, higher_is_better=True, noise=0.02)
    pairs_b, pairs_c = [0.5, 0.6, 0.7], [0.6, 0.6, 0.0]  # the records where both sides have a value
    assert summary.name == "rougeL"
    assert summary.higher_is_better is True
    assert summary.n == sample.n == 3
    assert summary.baseline == pytest.approx(statistics.fmean(pairs_b))
    assert summary.candidate == pytest.approx(statistics.fmean(pairs_c))
    assert summary.delta == pytest.approx(statistics.fmean(c - b for b, c in zip(pairs_b, pairs_c)))
    assert summary.p50 == pytest.approx(0.6)
    assert summary.baseline_p50 == pytest.approx(0.6)
    # linear interpolation between order statistics (numpy's default, and statistics' "inclusive" method)
    assert summary.p95 == pytest.approx(statistics.quantiles(pairs_c, n=20, method="inclusive")[-1])
    assert summary.baseline_p95 == pytest.approx(0.69)
    assert summary.ratio == pytest.approx(statistics.fmean(pairs_c) / statistics.fmean(pairs_b))
    assert summary.p95_ratio == pytest.approx(0.6 / 0.69)
    assert summary.rate == pytest.approx(2 / 3)  # the candidate's 0.0 is the one zero
    assert summary.noise == 0.02
    assert summary.corpus_baseline is None and summary.corpus_candidate is None
    assert summary.ci_low is not None and summary.ci_high is not None and summary.delta is not None
    assert summary.ci_low <= summary.delta <= summary.ci_high
    assert list(sample.deltas) == pytest.approx([0.1, 0.0, -0.7])


def test_corpus_figures_and_direction_pass_through() -> None:
    summary, _ = summarize(
        "bleu", [40.0, 50.0], [45.0, 50.0], higher_is_better=False, corpus_baseline=41.5, corpus_candidate=44.0
    )
    assert (summary.higher_is_better, summary.corpus_baseline, summary.corpus_candidate) == (False, 41.5, 44.0)


def test_none_nan_and_infinity_are_missing() -> None:
    summary, _ = summarize(
        "m", [1.0, None, math.nan, math.inf, 2.0], [3.0, 1.0, 1.0, 1.0, -math.inf], higher_is_better=True
    )
    assert summary.n == 1
    assert (summary.baseline, summary.candidate, summary.delta) == (1.0, 3.0, 2.0)


def test_no_values_at_all() -> None:
    summary, sample = summarize("semantic", [None, None], [None, None], higher_is_better=True)
    assert summary.n == 0 and sample.n == 0
    fields = summary.to_dict()
    for key in ("baseline", "candidate", "delta", "ci_low", "ci_high", "p50", "p95", "baseline_p50"):
        assert fields[key] is None, key
    for key in ("baseline_p95", "ratio", "p95_ratio", "rate"):
        assert fields[key] is None, key
    empty, _ = summarize("semantic", [], [], higher_is_better=True)
    assert empty.n == 0 and empty.delta is None and empty.rate is None


def test_one_side_only_still_gets_its_own_figures() -> None:
    # e.g. latency when the dataset came from a file with no captured latencies
    summary, sample = summarize("latency", [None, None, None], [100.0, 200.0, 0.0], higher_is_better=False)
    assert summary.n == 0 and sample.n == 0
    assert summary.candidate == pytest.approx(100.0)
    assert summary.p50 == pytest.approx(100.0)
    assert summary.p95 == pytest.approx(190.0)
    assert summary.rate == pytest.approx(2 / 3)
    assert summary.baseline is None and summary.baseline_p95 is None
    assert summary.delta is None and summary.ci_low is None and summary.ratio is None and summary.p95_ratio is None


def test_one_sided_summary_keeps_its_name_and_direction() -> None:
    # Closes mutmut survivors (issue 16): the no-pairs branch's name, direction and missing baseline went unread.
    summary, _ = summarize("latency", [None, None], [1.0, 2.0], higher_is_better=False)
    assert (summary.name, summary.higher_is_better, summary.n) == ("latency", False, 0)
    assert (summary.baseline, summary.candidate, summary.baseline_p50) == (None, pytest.approx(1.5), None)


def test_one_resample_is_the_smallest_bootstrap() -> None:
    # The boundary of the resamples check (a mutmut survivor, issue 16): 1 is accepted, 0 is not. With one
    # resample the interval collapses onto that resample's mean, whatever it is.
    summary, sample = summarize("m", [0.1, 0.2, 0.3], [0.2, 0.2, 0.5], higher_is_better=True, resamples=1)
    assert sample.n == 3 and summary.ci_low is not None
    assert summary.ci_low == summary.ci_high
    assert min(sample.deltas) <= summary.ci_low <= max(sample.deltas)
    with pytest.raises(ValueError, match="at least 1"):
        summarize("m", [0.1], [0.2], higher_is_better=True, resamples=0)


def test_one_pair_interval_is_its_delta() -> None:
    summary, sample = summarize("m", [None, 0.25], [0.5, 0.875], higher_is_better=True)
    assert summary.n == 1
    assert summary.delta == summary.ci_low == summary.ci_high == 0.625
    assert sample.ci() == (0.625, 0.625)


def test_identical_deltas_give_an_interval_of_width_zero() -> None:
    baseline = [0.1 * i for i in range(50)]
    summary, _ = summarize("m", baseline, [b + 0.125 for b in baseline], higher_is_better=True)
    assert summary.ci_low == summary.ci_high == summary.delta
    assert summary.delta == pytest.approx(0.125)


@given(st.lists(unit, min_size=1, max_size=60))
def test_identical_sides_give_delta_zero_and_interval_zero(values: list[float]) -> None:
    summary, _ = summarize("m", values, list(values), higher_is_better=True, resamples=200)
    assert (summary.delta, summary.ci_low, summary.ci_high) == (0.0, 0.0, 0.0)
    assert summary.baseline == summary.candidate
    assert summary.ratio == (1.0 if summary.baseline else None)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), unit), st.one_of(st.none(), unit)), max_size=80))
def test_summary_agrees_with_plain_python(pairs: list[tuple[float | None, float | None]]) -> None:
    baseline, candidate = [b for b, _ in pairs], [c for _, c in pairs]
    summary, _ = summarize("m", baseline, candidate, higher_is_better=True, resamples=300)
    both = [(b, c) for b, c in pairs if b is not None and c is not None]
    assert summary.n == len(both)
    if not both:
        assert summary.delta is None and summary.ci_low is None
        return
    assert summary.baseline == pytest.approx(statistics.fmean(b for b, _ in both))
    assert summary.candidate == pytest.approx(statistics.fmean(c for _, c in both))
    assert summary.delta == pytest.approx(statistics.fmean(c - b for b, c in both), abs=1e-12)
    assert summary.p50 == pytest.approx(statistics.median(c for _, c in both))
    assert summary.rate == pytest.approx(sum(c != 0 for _, c in both) / len(both))
    assert summary.ci_low is not None and summary.ci_high is not None and summary.delta is not None
    assert summary.ci_low <= summary.delta + 1e-12 and summary.delta <= summary.ci_high + 1e-12
    # the interval of a mean of values in [0, 1] differences lies in [-1, 1]
    assert -1.0 <= summary.ci_low <= summary.ci_high <= 1.0


def test_misaligned_sides_are_rejected() -> None:
    with pytest.raises(ValueError, match="aligned"):
        summarize("m", [1.0, 2.0], [1.0], higher_is_better=True)
    with pytest.raises(TypeError, match="numbers or None"):
        paired_values(["a"], [1.0])  # pyright: ignore[reportArgumentType]


def test_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(3)
    baseline, candidate = rng.random(300), rng.random(300)
    first, sample = summarize("m", baseline, candidate, higher_is_better=True, seed=7)
    again, _ = summarize("m", baseline, candidate, higher_is_better=True, seed=7)
    other, _ = summarize("m", baseline, candidate, higher_is_better=True, seed=8)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    # the gates can rebuild the very same bootstrap from the raw deltas
    rebuilt = PairedSample.from_deltas(list(candidate - baseline), seed=7)
    assert np.array_equal(rebuilt.boot_means, sample.boot_means)
    assert not sample.boot_means.flags.writeable and not sample.deltas.flags.writeable
    assert list(sample.boot_means) == sorted(sample.boot_means)


def test_large_dataset_is_resampled_in_blocks() -> None:
    # 30,000 records x 2,000 resamples would be a 240 MB index matrix at once
    rng = np.random.default_rng(5)
    deltas = rng.normal(0.02, 0.1, 30_000)
    sample = PairedSample.from_deltas(deltas, resamples=2000, seed=1)
    interval = sample.ci()
    assert interval is not None
    se = deltas.std() / math.sqrt(deltas.size)
    assert interval[0] == pytest.approx(deltas.mean() - 1.96 * se, abs=0.2 * se)
    assert interval[1] == pytest.approx(deltas.mean() + 1.96 * se, abs=0.2 * se)


def test_interval_covers_the_true_mean_at_about_the_nominal_rate() -> None:
    # 300 simulated replays: per-record similarities piled up near 1 (skewed), 60 records each; the true mean
    # delta is known exactly. The percentile bootstrap should cover it about 95% of the time.
    rng = np.random.default_rng(2024)
    a_base, b_base, a_cand, b_cand = 11.75, 1.31, 9.0, 1.5
    true_delta = a_cand / (a_cand + b_cand) - a_base / (a_base + b_base)
    covered = 0
    for simulation in range(300):
        baseline = rng.beta(a_base, b_base, 60)
        candidate = rng.beta(a_cand, b_cand, 60)
        summary, _ = summarize("m", baseline, candidate, higher_is_better=True, resamples=1000, seed=simulation)
        assert summary.ci_low is not None and summary.ci_high is not None
        covered += summary.ci_low <= true_delta <= summary.ci_high
    assert 0.90 <= covered / 300 <= 0.99


# -- non-inferiority -------------------------------------------------------------------------------------------


def test_noninferiority_passes_with_a_clear_margin() -> None:
    deltas = np.random.default_rng(1).normal(0.0, 0.1, 200)
    p, bound = noninferiority(deltas, 0.05, higher_is_better=True)
    assert p < 0.01
    assert bound is not None and -0.05 < bound < deltas.mean()


def test_noninferiority_fails_on_a_clear_regression() -> None:
    deltas = np.random.default_rng(1).normal(-0.1, 0.1, 200)
    p, bound = noninferiority(deltas, 0.05, higher_is_better=True)
    assert p > 0.99
    assert bound is not None and bound < -0.1


def test_lower_is_better_direction() -> None:
    slower = np.random.default_rng(1).normal(0.1, 0.1, 200)  # latency up by 0.1: worse
    p, bound = noninferiority(slower, 0.05, higher_is_better=False)
    assert p > 0.99 and bound is not None and bound > 0.1  # the upper bound
    p, bound = noninferiority(-slower, 0.05, higher_is_better=False)  # faster: fine
    assert p < 0.01 and bound is not None and bound < -0.05
    # the same sample read the other way round is the mirror image
    p_high, bound_high = noninferiority(slower, 0.05, higher_is_better=True)
    assert p_high < 0.01
    p_low, bound_low = noninferiority(-slower, 0.05, higher_is_better=False)
    assert (p_low, bound_low) == pytest.approx((p_high, -(bound_high or 0.0)))


def test_noninferiority_p_value_has_the_plus_one_correction() -> None:
    zeros = [0.0] * 100
    assert noninferiority(zeros, 0.05, higher_is_better=True, resamples=999) == (1 / 1000, 0.0)
    # margin 0 is a superiority test: no change is not an improvement
    assert noninferiority(zeros, 0.0, higher_is_better=True, resamples=999) == (1.0, 0.0)
    assert noninferiority(zeros, 0.0, higher_is_better=False, resamples=999) == (1.0, 0.0)


def test_noninferiority_needs_two_records() -> None:
    assert noninferiority([], 0.05, higher_is_better=True) == (1.0, None)
    assert noninferiority([0.5], 0.05, higher_is_better=True) == (1.0, 0.5)
    assert noninferiority([None, 0.5], 0.05, higher_is_better=True) == (1.0, 0.5)
    assert noninferiority([0.5, 0.5], 0.05, higher_is_better=True)[0] < 0.001


def test_noninferiority_rejects_a_negative_margin() -> None:
    with pytest.raises(ValueError, match="margin"):
        noninferiority([0.1, 0.2], -0.01, higher_is_better=True)
    with pytest.raises(ValueError, match="margin"):
        noninferiority([0.1, 0.2], math.nan, higher_is_better=True)


def test_noninferiority_reuses_a_sample() -> None:
    deltas = np.random.default_rng(4).normal(-0.01, 0.1, 150)
    sample = PairedSample.from_deltas(deltas, seed=3)
    assert noninferiority(sample, 0.03, higher_is_better=True) == noninferiority(
        deltas, 0.03, higher_is_better=True, seed=3
    )


@pytest.mark.parametrize("margin", [0.0, 0.01, 0.02, 0.03])
def test_noninferiority_p_value_matches_the_z_test_for_large_samples(margin: float) -> None:
    # In the normal limit the bootstrap p-value is the one-sided paired z-test of "mean delta = -margin".
    deltas = np.random.default_rng(11).normal(-0.01, 0.12, 1000)
    p, bound = noninferiority(deltas, margin, higher_is_better=True, resamples=4000, seed=2)
    se = deltas.std() / math.sqrt(deltas.size)
    z_p = 0.5 * math.erfc((deltas.mean() + margin) / se / math.sqrt(2))  # the normal upper tail
    assert p == pytest.approx(z_p, abs=0.02)
    assert bound == pytest.approx(deltas.mean() - 1.6449 * se, abs=0.15 * se)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=2, max_size=50), unit, unit)
def test_noninferiority_p_value_falls_as_the_margin_grows(deltas: list[float], m1: float, m2: float) -> None:
    small, large = sorted((m1, m2))
    p_small, _ = noninferiority(deltas, small, higher_is_better=True, resamples=300)
    p_large, _ = noninferiority(deltas, large, higher_is_better=True, resamples=300)
    assert 0 < p_large <= p_small <= 1


# -- Holm ------------------------------------------------------------------------------------------------------


def test_holm_by_hand() -> None:
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_edge_cases() -> None:
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []
    assert holm([0.03]) == [0.03]
    assert holm([0.02, 0.02]) == [0.04, 0.04]
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            holm([0.01, bad])


@given(st.lists(unit, max_size=20))
def test_holm_properties(p_values: list[float]) -> None:
    adjusted = holm(p_values)
    m = len(p_values)
    for p, a in zip(p_values, adjusted):
        assert p <= a <= 1.0
        assert a <= min(1.0, m * p) + 1e-12  # never worse than Bonferroni
    for i in range(m):
        for j in range(m):
            if p_values[i] <= p_values[j]:
                assert adjusted[i] <= adjusted[j]
