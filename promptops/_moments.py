"""Instants and durations given on a command line or in a setting: `90s`, `30m`, `24h`, `7d`, `2w`, or an ISO timestamp.

Durations mean the same everywhere: `--since 7d` (captures, datasets, replay), `captures prune --older-than 7d`
and the `capture_retention` setting.
"""

from __future__ import annotations

import datetime
import re

from ._errors import ConfigError

__all__ = ["DURATION_FORMS", "parse_duration", "parse_moment"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION_FORMS = "90s, 30m, 24h, 7d or 2w"


def _duration(match: re.Match[str], option: str, value: str) -> datetime.timedelta:
    try:
        return datetime.timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:
        raise ConfigError(f"{option} {value!r} is too long a duration") from None


def parse_duration(value: str, *, option: str) -> datetime.timedelta:
    """A duration: a number and a unit, `s` (seconds), `m`, `h`, `d` or `w` (`90s`, `30m`, `7d`).

    Args:
        value: The text given.
        option: The option's or setting's name, for the error message.

    Returns:
        The duration (zero for `0s`).

    Raises:
        ConfigError: the text is not such a duration.
    """
    match = _DURATION.match(value)
    if match is None:
        raise ConfigError(f"{option} {value!r} is not a duration; use a number and a unit, e.g. {DURATION_FORMS}")
    return _duration(match, option, value)


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
        reference = now or datetime.datetime.now(datetime.timezone.utc)
        try:
            return reference - _duration(match, option, value)
        except OverflowError:
            raise ConfigError(f"{option} {value!r} is too far in the past") from None
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"{option} {value!r} is not a duration or a timestamp; use e.g. {DURATION_FORMS}, or an ISO "
            "timestamp such as 2026-01-31 or 2026-01-31T12:00:00Z"
        ) from None
    return moment.replace(tzinfo=datetime.timezone.utc) if moment.tzinfo is None else moment
