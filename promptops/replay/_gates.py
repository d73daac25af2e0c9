"""Gates: the checks a replay must pass, written as text, parsed before anything runs, judged on the summaries.

Two forms:

- a threshold on a statistic, `metric.stat OP number`: `semantic.mean >= 0.85`, `rougeL.delta >= -0.05`,
  `latency.p95_ratio <= 1.3`, `errors.rate == 0`. The metric is everything before the *last* dot (metric names
  may contain dots, colons and `@`: `rougeL@expected.mean`, `semantic:all-MiniLM-L6-v2.mean`); OP is one of
  `>=`, `<=`, `>`, `<`, `==`, `!=`, spaces around it optional.
- non-inferiority, `metric noninferior MARGIN`: the candidate is not worse than the baseline by `MARGIN` or more
  (in the metric's units), shown at 95% confidence by a paired bootstrap test (`_stats.noninferiority`). All the
  non-inferiority gates of a run form one family whose p-values are Holm-adjusted, so the chance that *any* of
  them passes a candidate that is in fact worse by the margin stays at 5%.

A malformed gate or an unknown metric raises `GateError` (one line, naming the problem and the valid forms)
before the first call is made.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from .._errors import PromptopsError
from ._result import GateResult, MetricSummary
from ._stats import DEFAULT_RESAMPLES, FloatArray, PairedSample, holm

__all__ = [
    "ALPHA",
    "DEFAULT_MARGINS",
    "ERRORS_TOLERANCE",
    "OPERATORS",
    "STATISTICS",
    "Gate",
    "GateError",
    "check_metrics",
    "default_gates",
    "evaluate",
    "evaluate_many",
    "parse_gate",
    "parse_gates",
]

#: Family-wise error rate of the non-inferiority gates (one-sided).
ALPHA = 0.05

#: Gate statistic -> the `MetricSummary` field it reads.
STATISTICS: Mapping[str, str] = {
    "mean": "candidate",
    "p50": "p50",
    "p95": "p95",
    "delta": "delta",
    "delta_ci_low": "ci_low",
    "delta_ci_high": "ci_high",
    "ratio": "ratio",
    "p95_ratio": "p95_ratio",
    "rate": "rate",
    "baseline": "baseline",
    "n": "n",
}

OPERATORS: Mapping[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
# What held instead, for a failed comparison's detail: `0.81 < 0.85` for a failed `>= 0.85`.
_NEGATED = {">=": "<", "<=": ">", ">": "<=", "<": ">=", "==": "!=", "!=": "=="}

NONINFERIOR = "noninferior"

# Names people reach for that difflib would not map to ours.
_STAT_HINTS = {"avg": "mean", "average": "mean", "median": "p50", "count": "n", "lower": "delta_ci_low"}

#: Margins of the default non-inferiority gates, per built-in similarity metric, in the metric's own units:
#: 5% of the metric's range (0-1 for ROUGE, cosine similarity and BLEU, which promptops scales to 0-1).
DEFAULT_MARGINS: Mapping[str, float] = {
    "rouge1": 0.05,
    "rouge2": 0.05,
    "rougeL": 0.05,
    "rougeLsum": 0.05,
    "semantic": 0.05,
    "bleu": 0.05,
}

#: The default errors gate tolerates a rise in the error rate up to this (one point) before it must be significant.
ERRORS_TOLERANCE = 0.01

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Anything but whitespace, comparison characters and quotes: scorer names are free-form (`semantic:<model path>`),
# and `check_metrics` catches the typos against what the run actually measures.
_METRIC = re.compile(r"[^\s<>=!'\"]+")
# A word of its own: a metric may be called `noninferior_votes` or `my-noninferior`.
_KEYWORD = re.compile(r"(?<!\S)non-?inferior(?!\S)", re.IGNORECASE)
_OPERATOR_RUN = re.compile(r"[<>=!]+")


class GateError(PromptopsError, ValueError):
    """A gate is malformed or names a metric the run does not measure. Raised before anything runs."""


def _forms(metric: str = "rougeL") -> str:
    return f"write metric.stat OP number, e.g. {metric}.mean >= 0.5, or '{metric} noninferior 0.03'"


@dataclasses.dataclass(frozen=True, slots=True)
class Gate:
    """One parsed gate.

    Attributes:
        expr: The gate as written (on one line: runs of whitespace collapsed to one space).
        metric: The metric it checks (`rougeL`, `rougeL@expected`, `latency`, ...).
        stat: The statistic a threshold gate compares (a key of `STATISTICS`); `None` for non-inferiority.
        op: The comparison (`>=`, `<=`, `>`, `<`, `==`, `!=`), or `"noninferior"`.
        value: The threshold, or the non-inferiority margin.
    """

    expr: str
    metric: str
    stat: str | None
    op: str
    value: float

    @property
    def noninferior(self) -> bool:
        """Whether this is a non-inferiority gate (`metric noninferior MARGIN`)."""
        return self.op == NONINFERIOR

    @classmethod
    def parse(cls, text: str) -> Gate:
        """Parse one gate; see `parse_gate()`."""
        return parse_gate(text)

    def __str__(self) -> str:
        return self.expr


def _check_metric(expr: str, metric: str) -> None:
    if not metric:
        raise GateError(f"gate {expr!r} names no metric: {_forms()}")
    if not _METRIC.fullmatch(metric):
        raise GateError(f"gate {expr!r} has an invalid metric name {metric!r} (no spaces or quotes): {_forms()}")


def _number(text: str) -> float | None:
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None  # 1e999


def _parse_noninferior(expr: str, match: re.Match[str]) -> Gate:
    metric, margin_text = expr[: match.start()].strip(), expr[match.end() :].strip()
    _check_metric(expr, metric)
    head, dot, stat = metric.rpartition(".")
    if dot and head and stat in STATISTICS:
        raise GateError(
            f"gate {expr!r} puts a statistic on a non-inferiority gate, which always tests the paired delta: "
            f"write '{head} noninferior {margin_text or '0.03'}'"
        )
    if not margin_text:
        raise GateError(f"gate {expr!r} has no margin: write e.g. '{metric} noninferior 0.03'")
    if margin_text.endswith("%"):
        raise GateError(
            f"gate {expr!r}: the margin is a plain number in the metric's units, not a percentage: "
            f"write e.g. '{metric} noninferior 0.03'"
        )
    margin = _number(margin_text)
    if margin is None:
        raise GateError(
            f"gate {expr!r}: margin {margin_text!r} is not a number: write e.g. '{metric} noninferior 0.03'"
        )
    if margin < 0:
        raise GateError(
            f"gate {expr!r}: the margin is how much worse is acceptable, 0 or more: "
            f"write e.g. '{metric} noninferior {-margin:g}'"
        )
    return Gate(expr, metric, None, NONINFERIOR, margin)


def parse_gate(text: str) -> Gate:
    """Parse one gate: `metric.stat OP number` or `metric noninferior MARGIN`.

    Args:
        text: The gate, e.g. `"semantic.mean >= 0.85"` or `"rougeL noninferior 0.03"`.

    Returns:
        The gate.

    Raises:
        GateError: The text is not a valid gate; the message names the problem and shows the valid forms.
    """
    if not isinstance(text, str):  # pyright: ignore[reportUnnecessaryIsInstance] - callers pass user data
        raise GateError(f"a gate is text such as 'rougeL.mean >= 0.5', got {type(text).__name__}")
    expr = " ".join(text.split())  # one line, however it was wrapped
    if not expr:
        raise GateError(f"a gate is empty: {_forms()}")
    keyword = _KEYWORD.search(expr)
    if keyword is not None:
        return _parse_noninferior(expr, keyword)
    found = _OPERATOR_RUN.search(expr)
    if found is None:
        first = expr.split()[0]
        raise GateError(
            f"gate {expr!r} has no comparison (>=, <=, >, <, ==, !=): {_forms(first.rpartition('.')[0] or first)}"
        )
    op = found.group()
    left, right = expr[: found.start()].strip(), expr[found.end() :].strip()
    if op not in OPERATORS:
        raise GateError(f"gate {expr!r} has an unknown operator {op!r}: use one of >=, <=, >, <, ==, !=")
    if not left:
        raise GateError(f"gate {expr!r} names no metric: {_forms()}")
    metric, dot, stat = left.rpartition(".")
    if not dot:
        _check_metric(expr, left)
        raise GateError(f"gate {expr!r} has no statistic: {_forms(left)}")
    _check_metric(expr, metric)
    if stat not in STATISTICS:
        close = [_STAT_HINTS[stat.lower()]] if stat.lower() in _STAT_HINTS else []
        close = close or difflib.get_close_matches(stat, list(STATISTICS), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise GateError(
            f"gate {expr!r} has an unknown statistic {stat!r}{hint}; use one of {', '.join(STATISTICS)}"
            if stat
            else f"gate {expr!r} has no statistic after the dot: {_forms(metric)}"
        )
    if not right:
        raise GateError(f"gate {expr!r} has no number after {op!r}: write e.g. {metric}.{stat} {op} 0.5")
    threshold = _number(right)
    if threshold is None:
        raise GateError(f"gate {expr!r}: {right!r} is not a number: write e.g. {metric}.{stat} {op} 0.5")
    return Gate(expr, metric, stat, op, threshold)


def parse_gates(texts: Iterable[str | Gate] | str) -> list[Gate]:
    """Parse gates given as text (already parsed `Gate`s pass through).

    Args:
        texts: The gates; a single string is one gate.

    Returns:
        The gates, in order.

    Raises:
        GateError: The first malformed gate.
    """
    if isinstance(texts, str):
        texts = [texts]
    return [text if isinstance(text, Gate) else parse_gate(text) for text in texts]


def check_metrics(gates: Iterable[Gate], available: Iterable[str]) -> None:
    """Check that every gate names a metric the run measures. Call before anything runs.

    Args:
        gates: The parsed gates.
        available: The metric names the run will produce (scorer names, `name@expected`, latency, errors).

    Raises:
        GateError: The first gate naming an unknown metric, with the closest known name as a suggestion.
    """
    names = list(dict.fromkeys(available))
    for gate in gates:
        if gate.metric in names:
            continue
        close = difflib.get_close_matches(gate.metric, names, n=1, cutoff=0.6)
        if not close:  # `rougel` for `rougeL`: the case is the usual slip
            close = [name for name in names if name.lower() == gate.metric.lower()][:1]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        measured = ", ".join(names) if names else "nothing"
        raise GateError(f"gate {gate.expr!r} names unknown metric {gate.metric!r}{hint}; this run measures {measured}")


def _base_metric(name: str) -> str:
    """`rougeL@expected` -> `rougeL`, `semantic:all-MiniLM-L6-v2` -> `semantic`."""
    return name.split("@", 1)[0].split(":", 1)[0]


def default_gates(metrics: Mapping[str, bool]) -> list[Gate]:
    """The gates a replay uses when the user gives none.

    - `<similarity metric> noninferior <margin>` for each built-in similarity metric measured (ROUGE, BLEU,
      semantic, also their `@expected` forms): the candidate is not worse than the baseline by more than 5% of
      the metric's range (`DEFAULT_MARGINS`), at 95% confidence, Holm-corrected across these gates.
    - `errors.delta_ci_low <= 0.01`: the candidate's error rate is not, with 97.5% confidence, more than one
      point above the baseline's (the lower end of the 95% interval of the increase must not pass 0.01).

    Why these. *False alarms* (an A/A run, candidate identical to baseline, failing): with `repeats >= 1` the
    baseline is a re-run scored against the same reference as the candidate, so both sides carry the same noise
    and every true mean delta is 0. A non-inferiority gate then fails only when the one-sided bound of the
    delta misses `-margin`, which is rare once `margin / se` is about 4 (`se = sd(deltas) / sqrt(n)`), i.e. for
    `n >= (4 * sd(deltas) / margin) ** 2`: about 80 records for similarity scores spread with sd 0.08 on each
    side (delta sd 0.11), about 110 for sentence BLEU with a delta sd of 13 points. Simulated with 200 records
    (Beta-distributed similarity, mean 0.9, sd 0.08 per side; 1% flaky errors on both sides), no A/A run of 200
    failed with rougeL alone or rougeL + semantic, and 2% with rougeL + BLEU (BLEU 45 +- 13 per side); with 50
    records 6.5% failed, with 30 21%: below about 80 records a non-inferiority verdict needs more evidence than
    the run has, and the gate says so ("inconclusive"). The errors gate asks for a rise that is both
    significant and material: `errors.delta <= 0` would fail whenever the model is flaky, and
    `errors.delta_ci_low <= 0` failed 2-3% of A/A runs (the percentile bootstrap is a little liberal on rare
    0/1 events), this one none with a 1% baseline error rate, 1.3% with 5% and 2.3% with 20% (1,000 runs each).
    *Detection*: truncation and dropped content move ROUGE and BLEU by several margins (in a synthetic check,
    cutting 30% of the words: rougeL -0.14, BLEU -16; dropping a third: rougeL -0.16, BLEU -20); a 0.1 drop
    in a similarity mean (2 margins) failed every one of 200 simulated runs of 200 records (a 0.05 drop, at the
    margin, about 93%). A format change is seen by BLEU, whose tokens include punctuation, more than by ROUGE,
    which drops it: a change of layout alone (the same words as a bullet list) can pass rougeL, so gate a
    format-sensitive scorer when format matters. A candidate that breaks (raises) fails the errors gate and
    every similarity gate; a rise from 0 to 5% errors is caught about 80% of the time with 200 records.

    Deliberately not gated by default: `latency` (replay runs in different conditions than production:
    concurrency, caches, network; gate it explicitly, e.g. `latency.p95_ratio <= 1.3`, when the baseline is
    re-run side by side), `exact_match` (a 0/1 metric on nondeterministic outputs needs thousands of records to
    show non-inferiority within a few points), `length_ratio` (no "better" direction), and user scorers (their
    scale is unknown, so no margin is safe; gate them explicitly).

    Args:
        metrics: The run's metrics: name -> higher_is_better.

    Returns:
        The default gates, in the metrics' order, the errors gate last.
    """
    gates: list[Gate] = []
    for name, higher_is_better in metrics.items():
        margin = DEFAULT_MARGINS.get(_base_metric(name))
        if margin is not None and higher_is_better:
            gates.append(Gate(f"{name} noninferior {margin:g}", name, None, NONINFERIOR, margin))
    if "errors" in metrics:
        gates.append(
            Gate(f"errors.delta_ci_low <= {ERRORS_TOLERANCE:g}", "errors", "delta_ci_low", "<=", ERRORS_TOLERANCE)
        )
    return gates


# -- evaluation ---------------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 4) -> str:
    if value == 0:
        return "0"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 10**digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def _fmt_pair(value: float, other: float) -> tuple[str, str]:
    """Both numbers, with enough digits that different numbers never print the same (`0.85 < 0.85`)."""
    digits = 4
    while True:
        left, right = _fmt(value, digits), _fmt(other, digits)
        if left != right or value == other or digits >= 17:
            return left, right
        digits += 2


def _fixed(values: Sequence[float], spread: float) -> list[str]:
    """Numbers with as many decimals as make `spread` (an interval's width) show 2 significant digits."""
    if not spread > 0 or not math.isfinite(spread):
        return [_fmt(value) for value in values]
    decimals = min(10, max(0, 1 - math.floor(math.log10(spread))))
    return [f"{value:.{decimals}f}" for value in values]


def _missing_reason(gate: Gate, summary: MetricSummary) -> str:
    stat = gate.stat
    if stat == "ratio" and summary.baseline == 0:
        return "ratio undefined: the baseline mean is 0"
    if stat == "p95_ratio" and summary.baseline_p95 == 0:
        return "p95_ratio undefined: the baseline p95 is 0"
    if summary.n == 0:
        if summary.baseline is None and summary.candidate is None:
            return f"no record had a {gate.metric} value"
        if summary.baseline is None:
            return f"no record had a baseline {gate.metric} value"
        if summary.candidate is None:
            return f"no record had a candidate {gate.metric} value"
        return "no record had both a baseline and a candidate value"
    return f"{stat} is not available"


def _threshold(gate: Gate, summary: MetricSummary | None) -> GateResult:
    if summary is None:
        return GateResult(gate.expr, False, None, f"{gate.metric} was not measured in this run -> FAIL")
    assert gate.stat is not None
    raw = getattr(summary, STATISTICS[gate.stat])
    if raw is None:
        return GateResult(gate.expr, False, None, f"{_missing_reason(gate, summary)} -> FAIL")
    value = float(raw)
    passed = OPERATORS[gate.op](value, gate.value)
    shown, threshold = _fmt_pair(value, gate.value)
    relation = gate.op if passed else _NEGATED[gate.op]
    count = "" if gate.stat == "n" else f" (n={summary.n})"
    return GateResult(
        gate.expr, passed, value, f"{shown} {relation} {threshold}{count} -> {'pass' if passed else 'FAIL'}"
    )


def _as_sample(sample: PairedSample | Sequence[float | None] | FloatArray, resamples: int, seed: int) -> PairedSample:
    if isinstance(sample, PairedSample):
        return sample
    return PairedSample.from_deltas(sample, resamples=resamples, seed=seed)


@dataclasses.dataclass(slots=True)
class _Test:
    gate: Gate
    summary: MetricSummary | None
    sample: PairedSample | None
    p: float
    problem: str | None  # why the test could not even be made (it then fails with p = 1)


def _noninferior_test(
    gate: Gate,
    summary: MetricSummary | None,
    samples: Mapping[str, PairedSample | Sequence[float | None] | FloatArray],
    resamples: int,
    seed: int,
) -> _Test:
    if summary is None:
        return _Test(gate, None, None, 1.0, f"{gate.metric} was not measured in this run")
    raw = samples.get(gate.metric)
    if raw is None:
        return _Test(gate, summary, None, 1.0, f"no paired deltas were given for {gate.metric}")
    sample = _as_sample(raw, resamples, seed)
    if sample.n == 0:
        return _Test(gate, summary, sample, 1.0, _missing_reason(gate, summary))
    if sample.n == 1:
        return _Test(gate, summary, sample, 1.0, "only 1 record had both values; non-inferiority needs at least 2")
    p, _ = sample.noninferiority(gate.value, higher_is_better=summary.higher_is_better)
    return _Test(gate, summary, sample, p, None)


def _noninferior_results(tests: Sequence[_Test], alpha: float) -> list[GateResult]:
    """Holm step-down over the family; each gate's value is its delta bound at its Holm step's level."""
    k = len(tests)
    adjusted = holm([test.p for test in tests])
    ranks = {index: rank for rank, index in enumerate(sorted(range(k), key=lambda i: tests[i].p))}
    results: list[GateResult] = []
    for index, test in enumerate(tests):
        gate, summary, sample = test.gate, test.summary, test.sample
        if test.problem is not None or summary is None or sample is None:
            results.append(GateResult(gate.expr, False, None, f"{test.problem} -> FAIL"))
            continue
        p = adjusted[index]
        passed = p < alpha
        level = alpha / (k - ranks[index])
        bound = sample.bound(level, higher_is_better=summary.higher_is_better)
        mean = sample.mean
        interval = sample.ci(0.95)
        assert mean is not None and interval is not None  # n >= 2
        p_text, alpha_text = f"{p:.2g}", f"{alpha:g}"
        if p_text == alpha_text and p != alpha:  # 0.0496 is not "0.05 >= 0.05"
            p_text = f"{p:.4g}"
        label = "Holm p" if k > 1 else "p"
        direction = "" if summary.higher_is_better else " (lower is better)"
        delta_text, low_text, high_text = _fixed([mean, *interval], interval[1] - interval[0])
        if not delta_text.startswith("-") and mean != 0:
            delta_text = "+" + delta_text
        detail = (
            f"delta {delta_text} [95% CI {low_text}, {high_text}]{direction}, "
            f"{label}={p_text} {'<' if passed else '>='} {alpha_text} -> {'pass' if passed else 'FAIL'}"
        )
        if not passed:
            worse = mean <= -gate.value if summary.higher_is_better else mean >= gate.value
            detail += (
                f": worse than the baseline by more than the margin {_fmt(gate.value)}"
                if worse
                else f": inconclusive, the interval reaches past the margin {_fmt(gate.value)}; "
                "more records would settle it"
            )
        results.append(GateResult(gate.expr, passed, bound, detail))
    return results


def evaluate(
    gates: Sequence[Gate],
    summaries: Mapping[str, MetricSummary],
    samples: Mapping[str, PairedSample | Sequence[float | None] | FloatArray],
    *,
    alpha: float = ALPHA,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[GateResult]:
    """Judge every gate on the run's summaries.

    A threshold gate compares its statistic with the number; a statistic that is `None` (no record had a
    value, a ratio over a zero baseline) fails, and the detail says why. The non-inferiority gates are tested
    together: each gets a bootstrap p-value (`_stats.noninferiority`), the p-values are Holm-adjusted across all
    of them, and a gate passes iff its adjusted p-value is below `alpha`. Its `value` is the one-sided
    confidence bound of the mean delta on the "worse" side at its Holm step's level (`1 - alpha / (k - rank)`;
    the plain 95% bound when it is the only one). The verdict comes from the step-down procedure, so a gate can
    fail with a bound that clears the margin when a more significant gate of the family already failed.

    Args:
        gates: The parsed gates.
        summaries: The run's summaries, by metric name.
        samples: The paired deltas per metric, as `PairedSample`s (from `_stats.summarize`, reusing its
            resamples) or raw deltas (bootstrapped here with `resamples` and `seed`).
        alpha: Family-wise error rate of the non-inferiority gates.
        resamples: Bootstrap resamples for raw deltas.
        seed: Seed of the resampling for raw deltas.

    Returns:
        One result per gate, in the gates' order.
    """
    return evaluate_many(gates, [(summaries, samples)], alpha=alpha, resamples=resamples, seed=seed)[0]


def evaluate_many(
    gates: Sequence[Gate],
    candidates: Sequence[
        tuple[Mapping[str, MetricSummary], Mapping[str, PairedSample | Sequence[float | None] | FloatArray]]
    ],
    *,
    alpha: float = ALPHA,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[list[GateResult]]:
    """Judge the same gates for several candidates against one baseline (issue 13: `--candidate` given twice).

    As `evaluate()`, with one family for the Holm correction: every non-inferiority gate of every candidate, so
    the chance that *any* candidate passes any of them while in fact worse by the margin stays at `alpha`.

    Args:
        gates: The parsed gates.
        candidates: Per candidate, its summaries and paired samples by metric name.
        alpha: Family-wise error rate of the non-inferiority gates, across all candidates.
        resamples: Bootstrap resamples for raw deltas.
        seed: Seed of the resampling for raw deltas.

    Returns:
        Per candidate, one result per gate in the gates' order.
    """
    results: list[list[GateResult | None]] = [[None] * len(gates) for _ in candidates]
    family: list[tuple[int, int]] = []
    tests: list[_Test] = []
    for arm, (summaries, samples) in enumerate(candidates):
        for index, gate in enumerate(gates):
            summary = summaries.get(gate.metric)
            if gate.noninferior:
                family.append((arm, index))
                tests.append(_noninferior_test(gate, summary, samples, resamples, seed))
            else:
                results[arm][index] = _threshold(gate, summary)
    for (arm, index), result in zip(family, _noninferior_results(tests, alpha)):
        results[arm][index] = result
    final = [[result for result in row if result is not None] for row in results]
    assert all(len(row) == len(gates) for row in final)
    return final
