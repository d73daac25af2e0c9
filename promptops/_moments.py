"""Instants given on a command line: `30m`, `24h`, `7d` ago, or an ISO timestamp (captures, datasets, replay)."""

from __future__ import annotations

import datetime
import re

from ._errors import ConfigError

__all__ = ["parse_moment"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(value: str, *, option: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """An instant from a relative duration (`30m`, `24h`, `7d`: that long before `now`) or an ISO timestamp.

    Args:
        value: The text given on the command line.
        option: The option's name, for the error message.
        now: The reference instant for durations (default: the current time).

    Returns:
        A timezone-aware datetime (UTC when the text has no offset).

    Raises:
        ConfigError: the text is neither.
    """
    match = _DURATION.match(value)
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        reference = now or datetime.datetime.now(datetime.timezone.utc)
        try:
            return reference - datetime.timedelta(**{_UNITS[unit]: amount})
        except OverflowError:
            raise ConfigError(f"{option} {value!r} is too far in the past") from None
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"{option} {value!r} is not a duration or a timestamp; use e.g. 30m, 24h, 7d, 2w, or an ISO "
            "timestamp such as 2026-01-31 or 2026-01-31T12:00:00Z"
        ) from None
    return moment.replace(tzinfo=datetime.timezone.utc) if moment.tzinfo is None else moment
