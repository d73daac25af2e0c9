"""Online comparison of a rollout's arms from the captured calls, and the guard's gates.

Every call a running rollout took part in is captured with tags `promptops.rollout.id` and
`promptops.rollout.arm`. `compare()` reads those records, splits them by arm and compares, per metric, the
candidate's mean with the baseline's (two independent samples, `_stats`):

| metric | per call | better |
|---|---|---|
| `errors.rate` | 1 if the call raised, else 0 | lower |
| `latency_ms.mean` | wall time of the call | lower |
| `output_chars.mean` | length of the output text (JSON text when not a string) | (shown, not gated by default) |
| `tokens.mean` | input + output tokens, for calls that reported usage | lower |
| `cost.mean` | USD by the price table (`promptops._prices`, the `prices` setting), for calls with a priced model | lower |
| `feedback.NAME.mean` | the value of `promptops.feedback(..., NAME, value)` on that call | higher |

The arms' token and cost totals (`Comparison.usage`) are summed as replay sums its sides'.

A gate is `METRIC noninferior MARGIN` (the candidate is not worse than the baseline by more than MARGIN, in
the metric's units, or `N%` of the baseline's mean). The guard decides on the always-valid interval, with
alpha split evenly between the gates (Bonferroni), and only once both arms have `min_calls` observations of
the metric:

* **fail** when the interval shows the candidate worse by more than the margin (all of it beyond `-margin`);
* **pass** when it shows the candidate not worse by more than the margin;
* **pending** otherwise: keep watching.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from .._config import get_settings
from .._errors import PromptopsError
from .._prices import PriceTable
from .._usage import UsageTotals, sum_usage
from ._state import ARMS, RolloutState
from ._stats import TwoSample, two_sample

__all__ = ["Comparison", "GateOutcome", "RolloutGate", "compare", "parse_gate"]

Verdict = Literal["pass", "fail", "pending"]
ROLLOUT_ID_TAG = "promptops.rollout.id"
ROLLOUT_ARM_TAG = "promptops.rollout.arm"
DEFAULT_GATES = ("errors.rate noninferior 0.02",)
_LOWER_IS_BETTER = {"errors.rate", "latency_ms.mean", "tokens.mean", "cost.mean"}
_METRICS = ("errors.rate", "latency_ms.mean", "output_chars.mean", "tokens.mean", "cost.mean")
_GATE = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w.-]*)\s+noninferior\s+(?P<margin>[0-9.eE+-]+)(?P<percent>%?)\s*$")


class GateSyntaxError(PromptopsError, ValueError):
    """A rollout gate that cannot be read."""


@dataclasses.dataclass(frozen=True)
class RolloutGate:
    """`METRIC noninferior MARGIN`.

    Attributes:
        expr: The gate as written.
        metric: `errors.rate`, `latency_ms.mean`, `output_chars.mean`, `tokens.mean`, `cost.mean` or
            `feedback.NAME.mean`.
        margin: How much worse the candidate may be, in the metric's units (or a fraction of the baseline mean
            when `relative`).
        relative: The margin was given as a percentage.
    """

    expr: str
    metric: str
    margin: float
    relative: bool = False

    @property
    def lower_is_better(self) -> bool:
        """Whether a smaller value is the better one."""
        return self.metric in _LOWER_IS_BETTER


def parse_gate(text: str) -> RolloutGate:
    """Read `METRIC noninferior MARGIN` (MARGIN a number, or `N%` of the baseline's mean).

    Raises:
        GateSyntaxError: anything else, with the forms that are understood.
    """
    match = _GATE.match(text)
    forms = f"{', '.join(_METRICS)} or feedback.NAME.mean"
    if match is None:
        raise GateSyntaxError(
            f"cannot read gate {text!r}: expected METRIC noninferior MARGIN, e.g. 'errors.rate noninferior 0.02' "
            f"or 'feedback.thumbs.mean noninferior 0.05' (METRIC is {forms})"
        )
    metric = match["metric"]
    if metric not in _METRICS and not re.fullmatch(r"feedback\.[\w-]+\.mean", metric):
        raise GateSyntaxError(f"gate {text!r}: unknown metric {metric!r}; use {forms}")
    try:
        margin = float(match["margin"])
    except ValueError:
        raise GateSyntaxError(f"gate {text!r}: margin {match['margin']!r} is not a number") from None
    if not margin >= 0:
        raise GateSyntaxError(f"gate {text!r}: the margin must be 0 or more")
    relative = bool(match["percent"])
    return RolloutGate(text.strip(), metric, margin / 100.0 if relative else margin, relative)


@dataclasses.dataclass(frozen=True)
class GateOutcome:
    """One gate's verdict.

    Attributes:
        gate: The gate.
        verdict: `pass`, `fail` or `pending`.
        reason: Why, in a sentence.
        sample: The metric's comparison, if it was observed.
    """

    gate: RolloutGate
    verdict: Verdict
    reason: str
    sample: TwoSample | None


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The arms of one rollout, compared.

    Attributes:
        state: The rollout.
        calls: Calls per arm.
        metrics: Each metric's two-sample comparison.
        gates: Each gate's verdict.
        min_calls: Observations each arm needs before a gate can pass or fail.
        alpha: The guard's overall false-alarm budget.
        usage: Tokens and cost per arm, over the calls that reported usage; empty when none did.
    """

    state: RolloutState
    calls: Mapping[str, int]
    metrics: Mapping[str, TwoSample]
    gates: Sequence[GateOutcome]
    min_calls: int
    alpha: float
    usage: Mapping[str, UsageTotals] = dataclasses.field(default_factory=dict[str, UsageTotals])

    @property
    def verdict(self) -> Verdict:
        """`fail` if any gate failed, else `pending` if any is pending, else `pass`."""
        verdicts = {outcome.verdict for outcome in self.gates}
        if "fail" in verdicts:
            return "fail"
        return "pending" if "pending" in verdicts else "pass"

    @property
    def failed(self) -> list[GateOutcome]:
        """The gates that failed."""
        return [outcome for outcome in self.gates if outcome.verdict == "fail"]


def _output_chars(output: Any) -> float:
    if output is None:
        return 0.0
    if isinstance(output, str):
        return float(len(output))
    return float(len(json.dumps(output, ensure_ascii=False, default=str)))


def arm_values(
    records: Iterable[Any],
    rollout_id: str,
    feedback: Mapping[str, Mapping[str, float]] | None = None,
    prices: PriceTable | None = None,
    usage: dict[str, list[tuple[int, int, str | None, float | None]]] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Per metric, per arm, the per-call values of the records that took part in rollout `rollout_id`.

    Args:
        records: Capture records (anything with `tags`, `error_type`, `latency_ms`, `output`, `id`, `trace_id`,
            and the usage fields).
        rollout_id: The rollout.
        feedback: Feedback values by name, keyed by capture id or trace id.
        prices: Prices the `cost.mean` metric (default: the shipped table).
        usage: Filled per arm with each call's (input tokens, output tokens, model, cost), when given.
    """
    table = prices if prices is not None else PriceTable()
    values: dict[str, dict[str, list[float]]] = {}

    def add(metric: str, arm: str, value: float) -> None:
        values.setdefault(metric, {name: [] for name in ARMS})[arm].append(value)

    for record in records:
        tags: Mapping[str, str] = record.tags or {}
        if tags.get(ROLLOUT_ID_TAG) != rollout_id:
            continue
        arm = tags.get(ROLLOUT_ARM_TAG)
        if arm not in ARMS:
            continue
        failed = record.error_type is not None
        add("errors.rate", arm, 1.0 if failed else 0.0)
        add("latency_ms.mean", arm, float(record.latency_ms))
        if not failed:
            add("output_chars.mean", arm, _output_chars(record.output))
        input_tokens, output_tokens = record.input_tokens, record.output_tokens
        if input_tokens is not None or output_tokens is not None:
            input_tokens, output_tokens = input_tokens or 0, output_tokens or 0
            add("tokens.mean", arm, float(input_tokens + output_tokens))
            cost = table.cost(record.model, input_tokens, output_tokens)
            if cost is not None:
                add("cost.mean", arm, cost)
            if usage is not None:
                usage.setdefault(arm, []).append((input_tokens, output_tokens, record.model, cost))
        for name, by_call in (feedback or {}).items():
            value = by_call.get(record.id)
            if value is None and record.trace_id is not None:
                value = by_call.get(record.trace_id)
            if value is not None:
                add(f"feedback.{name}.mean", arm, value)
    return values


def compare(
    state: RolloutState,
    records: Iterable[Any],
    *,
    gates: Sequence[str | RolloutGate] = DEFAULT_GATES,
    feedback: Mapping[str, Mapping[str, float]] | None = None,
    prices: PriceTable | None = None,
    min_calls: int = 100,
    alpha: float = 0.05,
    seed: int = 0,
    resamples: int = 2000,
) -> Comparison:
    """Compare the arms of `state` on `records` and apply `gates`.

    Args:
        state: The rollout.
        records: Its captured calls (records of other rollouts or of no rollout are ignored).
        gates: Gates (`METRIC noninferior MARGIN`).
        feedback: Feedback values by name, keyed by capture id or trace id.
        prices: What `cost.mean` prices calls with (default: the shipped table and the `prices` setting).
        min_calls: Observations each arm needs before a gate can pass or fail.
        alpha: The chance that the guard ever raises a false alarm over the whole rollout.
        seed: Seed of the bootstrap.
        resamples: Bootstrap resamples (0: only the always-valid intervals, which are what the gates use).

    Returns:
        The comparison.
    """
    parsed = [gate if isinstance(gate, RolloutGate) else parse_gate(gate) for gate in gates]
    if prices is None:
        prices = PriceTable(get_settings().prices)
    spent: dict[str, list[tuple[int, int, str | None, float | None]]] = {}
    values = arm_values(records, state.id, feedback, prices, spent)
    errors = values.get("errors.rate", {name: [] for name in ARMS})
    calls = {name: len(errors[name]) for name in ARMS}
    taus = {gate.metric: gate for gate in parsed}
    metrics: dict[str, TwoSample] = {}
    per_gate_alpha = alpha / max(len(parsed), 1)
    for metric, arms in values.items():
        tau: float | None = None
        gate = taus.get(metric)
        if gate is not None and gate.margin > 0:
            tau = _margin(gate, arms["baseline"])
        metrics[metric] = two_sample(
            arms["baseline"], arms["candidate"], alpha=per_gate_alpha, tau=tau, seed=seed, resamples=resamples
        )
    outcomes = [_judge(gate, metrics.get(gate.metric), min_calls, values.get(gate.metric)) for gate in parsed]
    usage = {arm: sum_usage(spent.get(arm, ())) for arm in ARMS} if spent else {}
    return Comparison(state, calls, metrics, outcomes, min_calls, alpha, usage)


def _margin(gate: RolloutGate, baseline: Sequence[float]) -> float:
    if not gate.relative:
        return gate.margin
    mean = sum(baseline) / len(baseline) if baseline else 0.0
    return abs(mean) * gate.margin


def _judge(
    gate: RolloutGate, sample: TwoSample | None, min_calls: int, arms: Mapping[str, list[float]] | None
) -> GateOutcome:
    if sample is None or sample.av_low is None or sample.av_high is None or sample.delta is None:
        return GateOutcome(gate, "pending", f"no {gate.metric} observed on both arms yet", sample)
    if min(sample.baseline_n, sample.candidate_n) < min_calls:
        return GateOutcome(
            gate,
            "pending",
            f"{min(sample.baseline_n, sample.candidate_n)} of the {min_calls} observations per arm needed",
            sample,
        )
    margin = _margin(gate, (arms or {}).get("baseline", []))
    # Orient so that "worse" is negative: delta' = -delta when lower is better.
    low, high = (-sample.av_high, -sample.av_low) if gate.lower_is_better else (sample.av_low, sample.av_high)
    shown = (
        f"candidate - baseline = {sample.delta:+.4g}, always-valid interval [{sample.av_low:.4g}, {sample.av_high:.4g}]"
    )
    if high < -margin:
        return GateOutcome(gate, "fail", f"the candidate is worse by more than {margin:.4g}: {shown}", sample)
    if low > -margin:
        return GateOutcome(gate, "pass", f"the candidate is not worse by more than {margin:.4g}: {shown}", sample)
    return GateOutcome(gate, "pending", f"not enough evidence either way yet: {shown}", sample)


def since(state: RolloutState) -> datetime.datetime | None:
    """From when to read captures for `state` (a minute of clock skew allowed)."""
    if state.started_at is None:
        return None
    return state.started_at - datetime.timedelta(minutes=1)
