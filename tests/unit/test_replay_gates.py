"""Gates: parsing (every error path), metric checks, evaluation with Holm, defaults and their verdict quality."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptops import PromptopsError
from promptops.replay._gates import (
    DEFAULT_MARGINS,
    OPERATORS,
    STATISTICS,
    Gate,
    GateError,
    check_metrics,
    default_gates,
    evaluate,
    parse_gate,
    parse_gates,
)
from promptops.replay._result import MetricSummary
from promptops.replay._stats import PairedSample, holm, noninferiority, summarize

# -- parsing ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "stat", "op", "value"),
    [
        ("semantic.mean >= 0.85", "semantic", "mean", ">=", 0.85),
        ("semantic.mean>=0.85", "semantic", "mean", ">=", 0.85),
        ("  rougeL.delta >= -0.05 ", "rougeL", "delta", ">=", -0.05),
        ("latency.p95_ratio <= 1.3", "latency", "p95_ratio", "<=", 1.3),
        ("errors.rate == 0", "errors", "rate", "==", 0.0),
        ("errors.rate != 1", "errors", "rate", "!=", 1.0),
        ("bleu.p50 > 20", "bleu", "p50", ">", 20.0),
        ("bleu.p95<+1e2", "bleu", "p95", "<", 100.0),
        ("rougeL.n >= 50", "rougeL", "n", ">=", 50.0),
        ("rougeL@expected.mean >= .5", "rougeL@expected", "mean", ">=", 0.5),
        ("semantic:all-MiniLM-L6-v2.delta_ci_low >= -0.02", "semantic:all-MiniLM-L6-v2", "delta_ci_low", ">=", -0.02),
        ("semantic:/models/mini.v2.baseline < 1", "semantic:/models/mini.v2", "baseline", "<", 1.0),
        ("my_scorer-2.delta_ci_high <= 0.1", "my_scorer-2", "delta_ci_high", "<=", 0.1),
        ("rougeL.ratio >= 0.95", "rougeL", "ratio", ">=", 0.95),
    ],
)
def test_threshold_gates(text: str, metric: str, stat: str, op: str, value: float) -> None:
    gate = parse_gate(text)
    assert gate == Gate(text.strip(), metric, stat, op, value)
    assert not gate.noninferior
    assert str(gate) == text.strip()


@pytest.mark.parametrize(
    ("text", "metric", "margin"),
    [
        ("rougeL noninferior 0.03", "rougeL", 0.03),
        ("rougeL   noninferior   0.03", "rougeL", 0.03),
        ("bleu noninferior 5", "bleu", 5.0),
        ("semantic NonInferior 0", "semantic", 0.0),
        ("rougeL@expected non-inferior 0.05", "rougeL@expected", 0.05),
        ("semantic:/models/mini.v2 noninferior 0.05", "semantic:/models/mini.v2", 0.05),
        ("my-noninferior noninferior 0.1", "my-noninferior", 0.1),
    ],
)
def test_noninferiority_gates(text: str, metric: str, margin: float) -> None:
    gate = Gate.parse(text)
    assert (gate.metric, gate.stat, gate.op, gate.value, gate.noninferior) == (
        metric,
        None,
        "noninferior",
        margin,
        True,
    )


def test_metric_names_may_contain_the_keyword() -> None:
    assert parse_gate("noninferior_votes.mean >= 1").metric == "noninferior_votes"
    assert parse_gate("my-noninferior.rate == 0").metric == "my-noninferior"


def test_every_statistic_parses() -> None:
    for stat in STATISTICS:
        assert parse_gate(f"rougeL.{stat} >= 0").stat == stat


FORMS = "write metric.stat OP number, e.g. rougeL.mean >= 0.5, or 'rougeL noninferior 0.03'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rougeL >= 0.5", f"gate 'rougeL >= 0.5' has no statistic: {FORMS}"),
        ("", f"a gate is empty: {FORMS}"),
        ("   ", "a gate is empty"),
        ("rougeL.mean 0.5", "has no comparison (>=, <=, >, <, ==, !=)"),
        ("rougeL", "has no comparison"),
        ("rougeL.mean => 0.5", "unknown operator '=>': use one of >=, <=, >, <, ==, !="),
        ("rougeL.mean = 0.5", "unknown operator '='"),
        ("rougeL.mean =< 0.5", "unknown operator '=<'"),
        ("rougeL.mean >>= 0.5", "unknown operator '>>='"),
        ("rougeL.mean >=", "has no number after '>='"),
        ("rougeL.mean >= high", "'high' is not a number"),
        ("rougeL.mean >= 0.5 and bleu.mean >= 0.3", "is not a number"),
        ("rougeL.mean >= 5%", "'5%' is not a number"),
        ("rougeL.mean >= nan", "'nan' is not a number"),
        ("rougeL.mean >= inf", "'inf' is not a number"),
        ("rougeL.mean >= 1e999", "'1e999' is not a number"),
        ("rougeL noninferior 1e999", "margin '1e999' is not a number"),
        ("rougeL.avg >= 0.5", "unknown statistic 'avg' (did you mean 'mean'?); use one of mean, p50, p95, delta,"),
        ("rougeL.delta_ci_lo >= 0", "(did you mean 'delta_ci_low'?)"),
        ("rougeL.median >= 0", "(did you mean 'p50'?)"),
        ("rougeL.zzz >= 0", "unknown statistic 'zzz'; use one of"),
        ("rougeL. >= 0", "has no statistic after the dot"),
        (".mean >= 0.5", "names no metric"),
        (">= 0.5", "names no metric"),
        ("rouge L.mean >= 0.5", "invalid metric name 'rouge L'"),
        ("'rougeL'.mean >= 0.5", "invalid metric name"),
        ("rougeL noninferior", "has no margin: write e.g. 'rougeL noninferior 0.03'"),
        ("rougeL noninferior -0.03", "0 or more: write e.g. 'rougeL noninferior 0.03'"),
        ("rougeL noninferior 3%", "a plain number in the metric's units, not a percentage"),
        ("rougeL noninferior lots", "margin 'lots' is not a number"),
        ("rougeL noninferior 0.03 0.04", "margin '0.03 0.04' is not a number"),
        ("rougeL.mean noninferior 0.03", "statistic on a non-inferiority gate"),
        ("noninferior 0.03", "names no metric"),
        ("rouge L noninferior 0.03", "invalid metric name"),
    ],
)
def test_malformed_gates(text: str, message: str) -> None:
    with pytest.raises(GateError) as raised:
        parse_gate(text)
    error = raised.value
    assert isinstance(error, PromptopsError) and isinstance(error, ValueError)
    assert message in str(error)
    assert "\n" not in str(error)
    if text.strip():
        assert repr(text.strip()) in str(error)  # it names the gate


def test_a_wrapped_gate_is_one_line() -> None:
    assert parse_gate("rougeL.mean\n  >= 0.5").expr == "rougeL.mean >= 0.5"
    with pytest.raises(GateError) as raised:
        parse_gate("rougeL\n >= 0.5")
    assert "\n" not in str(raised.value)


def test_a_gate_is_text() -> None:
    with pytest.raises(GateError, match="a gate is text"):
        parse_gate(0.5)  # pyright: ignore[reportArgumentType]


def test_parse_gates() -> None:
    ready = parse_gate("bleu noninferior 5")
    gates = parse_gates(["rougeL.mean >= 0.5", ready])
    assert [g.expr for g in gates] == ["rougeL.mean >= 0.5", "bleu noninferior 5"]
    assert gates[1] is ready
    assert parse_gates("rougeL.mean >= 0.5") == [parse_gate("rougeL.mean >= 0.5")]  # one string is one gate
    assert parse_gates([]) == []
    with pytest.raises(GateError, match="no statistic"):
        parse_gates(["rougeL.mean >= 0.5", "bleu > 3"])


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_gate_error(text: str) -> None:
    try:
        gate = parse_gate(text)
    except GateError as exc:
        assert "\n" not in str(exc)
    else:
        assert gate.expr == " ".join(text.split())


# Random text almost never parses (issue 16: the branch above was never exercised), so valid gates are built
# from their parts, with any whitespace between them, and every part must come back.
_METRICS = st.from_regex(r"[A-Za-z][A-Za-z0-9_@:/-]{0,12}", fullmatch=True).filter(
    lambda name: "noninferior" not in name.lower() and "non-inferior" not in name.lower()
)
_SPACE = st.text(alphabet=" \t\n", max_size=3)
_NUMBERS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 4))


@given(
    st.one_of(_METRICS, st.from_regex(r"semantic:[a-z0-9_/.-]{1,12}[a-z0-9]", fullmatch=True)),  # dots in a path
    st.sampled_from(sorted(STATISTICS)),
    st.sampled_from(sorted(OPERATORS)),
    _NUMBERS,
    _SPACE,
    _SPACE,
)
def test_generated_threshold_gates_parse_to_their_parts(
    metric: str, stat: str, op: str, value: float, before: str, between: str
) -> None:
    text = f"{before}{metric}.{stat}{between}{op}{between} {value!r}{before}"
    gate = parse_gate(text)
    assert (gate.metric, gate.stat, gate.op, gate.value) == (metric, stat, op, value)
    assert gate.expr == " ".join(text.split()) and not gate.noninferior


@given(_METRICS, st.floats(min_value=0, max_value=1e3, allow_nan=False).map(lambda x: round(x, 4)), _SPACE)
def test_generated_noninferiority_gates_parse_to_their_parts(metric: str, margin: float, space: str) -> None:
    gate = parse_gate(f"{space}{metric} {space}noninferior {margin!r}{space}")
    assert (gate.metric, gate.stat, gate.op, gate.value) == (metric, None, "noninferior", margin)
    assert gate.noninferior


# -- metric checks ---------------------------------------------------------------------------------------------

MEASURED = ["rougeL", "bleu", "rougeL@expected", "latency", "errors"]


def test_known_metrics_pass() -> None:
    check_metrics(parse_gates(["rougeL.mean >= 0.5", "rougeL@expected noninferior 0.1", "errors.rate == 0"]), MEASURED)
    check_metrics([], [])


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        (
            "rogueL.mean >= 0.5",
            "gate 'rogueL.mean >= 0.5' names unknown metric 'rogueL' (did you mean 'rougeL'?); "
            "this run measures rougeL, bleu, rougeL@expected, latency, errors",
        ),
        ("ROUGEL noninferior 0.03", "unknown metric 'ROUGEL' (did you mean 'rougeL'?)"),
        ("rougeL@expectd.mean > 0", "(did you mean 'rougeL@expected'?)"),
        ("semantic.mean >= 0.8", "names unknown metric 'semantic'; this run measures rougeL,"),
    ],
)
def test_unknown_metric(gate: str, message: str) -> None:
    with pytest.raises(GateError) as raised:
        check_metrics([parse_gate("bleu.mean > 0"), parse_gate(gate)], MEASURED)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unknown_metric_when_nothing_is_measured() -> None:
    with pytest.raises(GateError, match="this run measures nothing"):
        check_metrics(parse_gates(["bleu.mean > 0"]), [])


# -- evaluation: thresholds ------------------------------------------------------------------------------------


def _summary(**fields: object) -> MetricSummary:
    base: dict[str, object] = {
        "name": "m",
        "higher_is_better": True,
        "n": 200,
        "baseline": 0.9,
        "candidate": 0.81,
        "delta": -0.09,
        "ci_low": -0.1,
        "ci_high": -0.08,
    }
    base.update(fields)
    return MetricSummary(**base)  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize(
    ("gate", "passed", "detail"),
    [
        ("m.mean >= 0.85", False, "0.81 < 0.85 (n=200) -> FAIL"),
        ("m.mean >= 0.8", True, "0.81 >= 0.8 (n=200) -> pass"),
        ("m.mean > 0.81", False, "0.81 <= 0.81 (n=200) -> FAIL"),
        ("m.mean <= 0.81", True, "0.81 <= 0.81 (n=200) -> pass"),
        ("m.mean < 0.5", False, "0.81 >= 0.5 (n=200) -> FAIL"),
        ("m.mean == 0.81", True, "0.81 == 0.81 (n=200) -> pass"),
        ("m.mean != 0.81", False, "0.81 == 0.81 (n=200) -> FAIL"),
        ("m.delta >= -0.05", False, "-0.09 < -0.05 (n=200) -> FAIL"),
        ("m.delta_ci_low >= -0.1", True, "-0.1 >= -0.1 (n=200) -> pass"),
        ("m.delta_ci_high < 0", True, "-0.08 < 0 (n=200) -> pass"),
        ("m.baseline >= 0.9", True, "0.9 >= 0.9 (n=200) -> pass"),
        ("m.n >= 250", False, "200 < 250 -> FAIL"),
    ],
)
def test_threshold_verdicts(gate: str, passed: bool, detail: str) -> None:
    [result] = evaluate([parse_gate(gate)], {"m": _summary()}, {})
    assert (result.expr, result.passed, result.detail) == (gate, passed, detail)
    assert result.value is not None


def test_close_numbers_never_print_the_same() -> None:
    [result] = evaluate([parse_gate("m.mean >= 0.85")], {"m": _summary(candidate=0.849999)}, {})
    assert result.detail == "0.849999 < 0.85 (n=200) -> FAIL"


def test_threshold_on_real_summaries() -> None:
    summary, _ = summarize("latency", [100.0, 120.0, 80.0, 300.0], [110.0, 150.0, 70.0, 420.0], higher_is_better=False)
    results = evaluate(
        parse_gates(["latency.p95_ratio <= 1.3", "latency.ratio <= 1.3", "latency.p95 <= 400"]),
        {"latency": summary},
        {},
    )
    # p95: 379.5 against 273 (linear interpolation); means: 187.5 against 150
    assert [r.passed for r in results] == [False, True, True]
    assert [r.value for r in results] == pytest.approx([379.5 / 273, 1.25, 379.5])
    assert results[0].detail == "1.39 > 1.3 (n=4) -> FAIL"


@pytest.mark.parametrize(
    ("gate", "summary", "reason"),
    [
        ("m.delta >= 0", {"n": 0, "baseline": None, "candidate": None, "delta": None}, "no record had a m value"),
        ("m.delta >= 0", {"n": 0, "baseline": None, "delta": None}, "no record had a baseline m value"),
        ("m.mean >= 0", {"n": 0, "candidate": None, "delta": None}, "no record had a candidate m value"),
        ("m.delta >= 0", {"n": 0, "delta": None}, "no record had both a baseline and a candidate value"),
        ("m.ratio <= 1.3", {"baseline": 0.0, "ratio": None}, "ratio undefined: the baseline mean is 0"),
        ("m.p95_ratio <= 1.3", {"baseline_p95": 0.0}, "p95_ratio undefined: the baseline p95 is 0"),
        ("m.rate == 0", {}, "rate is not available"),
    ],
)
def test_a_missing_statistic_fails_and_says_why(gate: str, summary: dict[str, object], reason: str) -> None:
    [result] = evaluate([parse_gate(gate)], {"m": _summary(**summary)}, {})
    assert not result.passed
    assert result.value is None
    assert result.detail == f"{reason} -> FAIL"


def test_no_values_at_all_fails_every_kind_of_gate() -> None:
    summary, sample = summarize("semantic", [None] * 3, [None] * 3, higher_is_better=True)
    results = evaluate(
        parse_gates(["semantic.mean >= 0.5", "semantic noninferior 0.05"]), {"semantic": summary}, {"semantic": sample}
    )
    assert [(r.passed, r.value, r.detail) for r in results] == [
        (False, None, "no record had a semantic value -> FAIL"),
        (False, None, "no record had a semantic value -> FAIL"),
    ]


def test_unmeasured_metric_fails() -> None:
    results = evaluate(parse_gates(["x.mean >= 0", "x noninferior 0.1"]), {}, {})
    assert [(r.passed, r.detail) for r in results] == [
        (False, "x was not measured in this run -> FAIL"),
        (False, "x was not measured in this run -> FAIL"),
    ]


# -- evaluation: non-inferiority and Holm ----------------------------------------------------------------------


def _sample(mean: float, sd: float, n: int = 200, seed: int = 0) -> tuple[MetricSummary, PairedSample]:
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(0.6, 0.9, n)
    return summarize("m", baseline, baseline + rng.normal(mean, sd, n), higher_is_better=True, seed=seed)


def test_noninferiority_pass_detail_and_value() -> None:
    summary, sample = _sample(-0.01, 0.1)
    [result] = evaluate([parse_gate("m noninferior 0.05")], {"m": summary}, {"m": sample})
    p, bound = noninferiority(sample, 0.05, higher_is_better=True)
    assert result.passed
    assert result.value == bound  # alone in its family: the plain one-sided 95% bound
    assert summary.delta is not None and summary.ci_low is not None and summary.ci_high is not None
    assert result.detail == (
        f"delta {summary.delta:.3f} [95% CI {summary.ci_low:.3f}, {summary.ci_high:.3f}], p={p:.2g} < 0.05 -> pass"
    )


def test_noninferiority_fail_details() -> None:
    worse, worse_sample = _sample(-0.1, 0.1)
    [result] = evaluate([parse_gate("m noninferior 0.05")], {"m": worse}, {"m": worse_sample})
    assert not result.passed
    assert result.detail.endswith("-> FAIL: worse than the baseline by more than the margin 0.05")
    assert result.value is not None and result.value < -0.05
    few, few_sample = _sample(0.0, 0.1, n=10)
    [result] = evaluate([parse_gate("m noninferior 0.05")], {"m": few}, {"m": few_sample})
    assert not result.passed
    assert result.detail.endswith(
        "-> FAIL: inconclusive, the interval reaches past the margin 0.05; more records would settle it"
    )


def test_noninferiority_on_a_lower_is_better_metric() -> None:
    summary, sample = summarize("latency", [100.0] * 50, [100.0 + i % 5 for i in range(50)], higher_is_better=False)
    gates = parse_gates(["latency noninferior 5", "latency noninferior 1"])
    results = evaluate(gates, {"latency": summary}, {"latency": sample})
    assert [r.passed for r in results] == [True, False]
    assert "(lower is better)" in results[0].detail
    assert results[0].detail.startswith("delta +2.00 [95% CI 1.62, 2.42] (lower is better), Holm p=")
    assert results[0].value is not None and 2.0 < results[0].value < 5.0  # the upper bound


def test_holm_correction_across_the_family() -> None:
    # Two gates whose margins put each raw p-value near 0.035: each passes alone, together neither does.
    first, first_sample = _sample(0.0, 0.1, seed=1)
    second, second_sample = _sample(0.0, 0.1, seed=2)
    margins = [-float(np.quantile(s.boot_means, 0.035)) for s in (first_sample, second_sample)]
    raw = [noninferiority(s, m, higher_is_better=True)[0] for s, m in zip((first_sample, second_sample), margins)]
    assert all(0.025 < p < 0.05 for p in raw)
    summaries = {"a": first, "b": second}
    samples = {"a": first_sample, "b": second_sample}
    gates = [parse_gate(f"a noninferior {margins[0]!r}"), parse_gate(f"b noninferior {margins[1]!r}")]
    assert evaluate(gates[:1], summaries, samples)[0].passed
    assert evaluate(gates[1:], summaries, samples)[0].passed
    together = evaluate(gates, summaries, samples)
    assert [r.passed for r in together] == [False, False]
    adjusted = holm(raw)
    for result, p in zip(together, adjusted):
        assert f"Holm p={p:.2g} >= 0.05 -> FAIL" in result.detail
    # threshold gates are not part of the family
    mixed = evaluate([gates[0], parse_gate("b.mean > 0")], summaries, samples)
    assert mixed[0].passed and "Holm" not in mixed[0].detail


def test_holm_value_is_the_bound_at_the_step_level() -> None:
    strong, strong_sample = _sample(0.05, 0.05, seed=3)
    weak, weak_sample = _sample(0.0, 0.1, seed=4)
    results = evaluate(
        parse_gates(["s noninferior 0.05", "w noninferior 0.05"]),
        {"s": strong, "w": weak},
        {"s": strong_sample, "w": weak_sample},
    )
    assert all(r.passed for r in results)
    # the most significant gate is tested at 0.05 / 2, the next at 0.05 / 1
    p_strong = noninferiority(strong_sample, 0.05, higher_is_better=True)[0]
    p_weak = noninferiority(weak_sample, 0.05, higher_is_better=True)[0]
    assert p_strong <= p_weak
    assert results[0].value == strong_sample.bound(0.025, higher_is_better=True)
    assert results[1].value == weak_sample.bound(0.05, higher_is_better=True)


def test_raw_deltas_give_the_same_verdict_as_the_sample() -> None:
    summary, sample = _sample(-0.02, 0.1, seed=5)
    gate = [parse_gate("m noninferior 0.05")]
    from_sample = evaluate(gate, {"m": summary}, {"m": sample})
    from_list = evaluate(gate, {"m": summary}, {"m": [float(d) for d in sample.deltas] + [None]}, seed=5)
    assert from_sample == from_list


def test_noninferiority_needs_deltas_and_two_records() -> None:
    summary, sample = summarize("m", [0.5, None], [0.6, 0.7], higher_is_better=True)
    [result] = evaluate([parse_gate("m noninferior 0.05")], {"m": summary}, {"m": sample})
    assert (result.passed, result.detail) == (
        False,
        "only 1 record had both values; non-inferiority needs at least 2 -> FAIL",
    )
    [result] = evaluate([parse_gate("m noninferior 0.05")], {"m": summary}, {})
    assert (result.passed, result.detail) == (False, "no paired deltas were given for m -> FAIL")


def test_results_keep_the_gates_order() -> None:
    summary, sample = _sample(0.0, 0.05)
    texts = ["m.mean > 0", "m noninferior 0.05", "m.n == 200", "m noninferior 0.1", "m.delta < -1"]
    results = evaluate(parse_gates(texts), {"m": summary}, {"m": sample})
    assert [r.expr for r in results] == texts
    assert [r.passed for r in results] == [True, True, True, True, False]
    assert all("\n" not in r.detail for r in results)


# -- defaults and their verdict quality ------------------------------------------------------------------------


def test_default_gates() -> None:
    metrics = {
        "rougeL": True,
        "bleu": True,
        "semantic:all-MiniLM-L6-v2": True,
        "exact_match": True,
        "length_ratio": True,
        "my_scorer": True,
        "latency": False,
        "errors": False,
        "rougeL@expected": True,
    }
    gates = default_gates(metrics)
    assert [g.expr for g in gates] == [
        "rougeL noninferior 0.05",
        "bleu noninferior 0.05",
        "semantic:all-MiniLM-L6-v2 noninferior 0.05",
        "rougeL@expected noninferior 0.05",
        "errors.delta_ci_low <= 0.01",
    ]
    for gate in gates:
        assert parse_gate(gate.expr) == gate
    check_metrics(gates, metrics)
    assert default_gates({}) == []
    assert default_gates({"rougeL": False}) == []  # a similarity metric said to be lower-is-better: no guess
    assert set(DEFAULT_MARGINS) >= {"rouge1", "rouge2", "rougeL", "bleu", "semantic"}


def test_default_errors_gate() -> None:
    [gate] = default_gates({"errors": False})
    n = 200
    flaky = [float(i % 50 == 0) for i in range(n)]  # 2% of calls raise, on both sides
    broken = [1.0] * n  # e.g. the candidate template lost a variable: every call raises
    shifted = flaky[1:] + flaky[:1]  # as flaky, on other records
    outcomes: list[tuple[bool, str]] = []
    for candidate in (flaky, shifted, broken):
        summary, sample = summarize("errors", flaky, candidate, higher_is_better=False)
        [result] = evaluate([gate], {"errors": summary}, {"errors": sample})
        outcomes.append((result.passed, result.detail))
    assert outcomes[0] == (True, "0 <= 0.01 (n=200) -> pass")
    assert outcomes[1][0] is True
    assert outcomes[2][0] is False
    assert re.fullmatch(r"0\.9\d+ > 0\.01 \(n=200\) -> FAIL", outcomes[2][1])  # the interval's low end, near 0.98


def _similarity(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    # per-record similarity piled up near the top: Beta with the given mean and sd 0.08
    strength = mean * (1 - mean) / 0.08**2 - 1
    return rng.beta(mean * strength, (1 - mean) * strength, n)


def _replay(rng: np.random.Generator, candidate_mean: float, seed: int) -> bool:
    """One simulated replay of 200 records on rougeL, semantic and errors, judged by the default gates."""
    n = 200
    gates = default_gates({"rougeL": True, "semantic": True, "latency": False, "errors": False})
    summaries: dict[str, MetricSummary] = {}
    samples: dict[str, PairedSample] = {}
    for name in ("rougeL", "semantic"):
        summaries[name], samples[name] = summarize(
            name, _similarity(rng, 0.9, n), _similarity(rng, candidate_mean, n), higher_is_better=True, seed=seed
        )
    flaky = [(rng.random(n) < 0.01).astype(float) for _ in range(2)]  # 1% of calls raise, on both sides
    summaries["errors"], samples["errors"] = summarize("errors", *flaky, higher_is_better=False, seed=seed)
    return all(result.passed for result in evaluate(gates, summaries, samples))


def test_default_gates_rarely_cry_wolf_and_catch_a_real_drop() -> None:
    # The verdict-quality target of issue 5 in miniature: A/A replays (candidate = baseline, both noisy) pass at
    # least 95% of the time, a 0.1 drop in similarity fails at least 95% of the time.
    rng = np.random.default_rng(5)
    false_alarms = sum(not _replay(rng, 0.9, seed) for seed in range(100))
    detected = sum(not _replay(rng, 0.8, seed) for seed in range(100))
    assert false_alarms <= 5
    assert detected >= 95
