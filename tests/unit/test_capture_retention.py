"""The `capture_retention` setting and the durations it shares with `--since` and `captures prune` (issue 15).

The deleting itself is tested on SQLite and PostgreSQL in tests/integration/test_capture_retention.py.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

import promptops
from promptops._moments import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 7 * 86400), ("2w", 14 * 86400), ("1.5h", 5400), (" 0s ", 0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, option="--older-than") == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["30", "30x", "d", "-1d", "7 days", "2026-01-31", ""])
def test_parse_duration_refuses_anything_else(text: str) -> None:
    with pytest.raises(promptops.ConfigError, match=rf"^--older-than {text!r} is not a duration; use a number"):
        parse_duration(text, option="--older-than")


def test_an_absurd_duration_is_a_config_error() -> None:
    with pytest.raises(promptops.ConfigError, match="too long a duration"):
        parse_duration("99999999999w", option="--older-than")


def test_capture_retention_is_off_by_default() -> None:
    assert promptops.get_settings().capture_retention is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30d", 30 * 86400), ("90s", 90), (3600, 3600), (0.5, 0.5), ("7200", 7200), (datetime.timedelta(hours=2), 7200)],
)
def test_capture_retention_takes_a_duration_or_seconds(value: object, seconds: float) -> None:
    assert promptops.configure(capture_retention=value).capture_retention == seconds  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("value", ["0s", 0, -5, "thirty days", "30x", True, float("inf")])
def test_capture_retention_refuses_what_is_not_a_positive_duration(value: object) -> None:
    with pytest.raises(promptops.ConfigError, match=r"invalid value for capture_retention from configure\("):
        promptops.configure(capture_retention=value)  # pyright: ignore[reportArgumentType]


def test_capture_retention_from_the_environment_and_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.promptops]\ncapture_retention = "14d"\n')
    assert promptops.configure().capture_retention == 14 * 86400
    monkeypatch.setenv("PROMPTOPS_CAPTURE_RETENTION", "12h")
    assert promptops.configure().capture_retention == 12 * 3600
    monkeypatch.setenv("PROMPTOPS_CAPTURE_RETENTION", "none")
    assert promptops.configure().capture_retention is None
    monkeypatch.setenv("PROMPTOPS_CAPTURE_RETENTION", "1 month")
    with pytest.raises(promptops.ConfigError, match="capture_retention from PROMPTOPS_CAPTURE_RETENTION"):
        promptops.configure()


def test_capture_retention_none_keeps_captures_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPS_CAPTURE_RETENTION", "30d")
    assert promptops.get_settings().capture_retention == 30 * 86400
    assert promptops.configure(capture_retention=None).capture_retention is None
