"""`RolloutState`: a rollout as recorded on the prompt in the MLflow registry, and sticky arm assignment.

The state lives in prompt tags (issue 14: no new service, readable in MLflow's UI, on the prompt's page):

| tag | value |
|---|---|
| `promptops.rollout.status` | `running`, `promoted` or `rolled_back` |
| `promptops.rollout.id` | a new id per rollout (`summarize-20261206T005800Z-3f9a`); seeds the assignment |
| `promptops.rollout.candidate` | the candidate version |
| `promptops.rollout.baseline` | the alias the rollout shares traffic with (`production`) |
| `promptops.rollout.baseline_version` | the version that alias pointed at when the rollout started |
| `promptops.rollout.share` | the candidate's share of calls, `0` to `1` |
| `promptops.rollout.key` | the argument named by `rollout start --key` (empty: the decorator's rule) |
| `promptops.rollout.started_at` / `ended_at` | ISO 8601 UTC |
| `promptops.rollout.decision` | why it ended (promote, rollback, a failed gate) |

MLflow writes tags one at a time, so a reader could see a start half written: `start` writes `status` last and
an end writes it first, and only `status == running` makes a rollout active.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import math
from collections.abc import Mapping
from typing import Any, Literal, cast

__all__ = ["ARMS", "TAG_PREFIX", "Arm", "RolloutState", "bucket", "format_share", "tag_dict"]

Arm = Literal["baseline", "candidate"]
ARMS: tuple[Arm, Arm] = ("baseline", "candidate")
TAG_PREFIX = "promptops.rollout."
RUNNING = "running"
_SCALE = float(2**64)


def bucket(rollout_id: str, key: object) -> float:
    """Where a sticky key falls in [0, 1) for one rollout: the same in every process and Python version.

    A call is on the candidate arm when `bucket(...) < share`, so raising the share only moves keys from the
    baseline to the candidate, and a new rollout (a new id) draws new buckets.

    Args:
        rollout_id: The rollout's id.
        key: The sticky key's value (converted with `str()`).

    Returns:
        A number in [0, 1), uniform over keys.
    """
    digest = hashlib.blake2b(f"{rollout_id}\x00{key}".encode(errors="surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def _parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class RolloutState:
    """One rollout of a candidate version of a prompt, as its tags in the registry describe it.

    Attributes:
        prompt: The prompt's registry name.
        id: The rollout's id (new for every `rollout start`).
        status: `running`, `promoted` or `rolled_back`.
        candidate: The candidate version.
        baseline: The alias whose traffic is shared (`production`).
        share: The candidate's share of calls, from 0 to 1.
        key: The argument named as the sticky key when the rollout started, if any.
        started_at: When the rollout started.
        baseline_version: The version the baseline alias pointed at when the rollout started.
        ended_at: When it ended, if it has.
        decision: Why it ended, if it has.
    """

    prompt: str
    id: str
    status: str
    candidate: int
    baseline: str
    share: float
    key: str | None = None
    started_at: datetime.datetime | None = None
    baseline_version: int | None = None
    ended_at: datetime.datetime | None = None
    decision: str | None = None

    @property
    def running(self) -> bool:
        """Whether calls are being shared between the arms."""
        return self.status == RUNNING

    def arm_for(self, key: object) -> Arm:
        """The arm of a sticky key under the current share."""
        return "candidate" if bucket(self.id, key) < self.share else "baseline"

    def to_tags(self) -> dict[str, str]:
        """The prompt tags that record this state (empty values for what is unset)."""

        def when(value: datetime.datetime | None) -> str:
            return value.astimezone(datetime.UTC).isoformat(timespec="seconds") if value is not None else ""

        return {
            TAG_PREFIX + "id": self.id,
            TAG_PREFIX + "candidate": str(self.candidate),
            TAG_PREFIX + "baseline": self.baseline,
            TAG_PREFIX + "baseline_version": str(self.baseline_version) if self.baseline_version is not None else "",
            TAG_PREFIX + "share": format_share(self.share),
            TAG_PREFIX + "key": self.key or "",
            TAG_PREFIX + "started_at": when(self.started_at),
            TAG_PREFIX + "ended_at": when(self.ended_at),
            TAG_PREFIX + "decision": self.decision or "",
            TAG_PREFIX + "status": self.status,
        }

    @classmethod
    def from_tags(cls, prompt: str, tags: Mapping[str, str]) -> RolloutState | None:
        """The rollout recorded in a prompt's tags, or `None` when there is none (or it is unreadable).

        A malformed value (someone edited a tag by hand) reads as no rollout: every call then takes the
        baseline, which is the safe side.
        """
        status = tags.get(TAG_PREFIX + "status")
        rollout_id = tags.get(TAG_PREFIX + "id")
        if not status or not rollout_id:
            return None
        try:
            candidate = int(tags.get(TAG_PREFIX + "candidate", ""))
            share = float(tags.get(TAG_PREFIX + "share", ""))
            baseline_version_text = tags.get(TAG_PREFIX + "baseline_version") or ""
            baseline_version = int(baseline_version_text) if baseline_version_text else None
        except ValueError:
            return None
        if not math.isfinite(share) or not 0.0 <= share <= 1.0:
            return None
        return cls(
            prompt=prompt,
            id=rollout_id,
            status=status,
            candidate=candidate,
            baseline=tags.get(TAG_PREFIX + "baseline") or "production",
            share=share,
            key=tags.get(TAG_PREFIX + "key") or None,
            started_at=_parse_time(tags.get(TAG_PREFIX + "started_at")),
            baseline_version=baseline_version,
            ended_at=_parse_time(tags.get(TAG_PREFIX + "ended_at")),
            decision=tags.get(TAG_PREFIX + "decision") or None,
        )


def format_share(share: float) -> str:
    """A share as tag text: `0.3`, not `0.30000000000000004`."""
    return f"{share:.6g}"


def tag_dict(tags: Any) -> dict[str, str]:
    """Tags as MLflow hands them out (a dict, tag objects, or REST `{"key", "value"}` dicts) as a plain dict."""
    if isinstance(tags, Mapping):
        items: list[tuple[Any, Any]] = list(cast(Mapping[Any, Any], tags).items())
    else:
        items = []
        for tag in cast(list[Any], tags or []):
            if isinstance(tag, Mapping):
                mapping = cast(Mapping[str, Any], tag)
                items.append((mapping.get("key"), mapping.get("value")))
            else:
                items.append((getattr(tag, "key", None), getattr(tag, "value", None)))
    return {str(key): str(value) for key, value in items if key is not None}
