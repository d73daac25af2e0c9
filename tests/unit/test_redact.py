"""Redaction: default key and value rules (each with positive and negative examples), user rules, fail-closed."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import promptops
from promptops import _redact
from promptops._redact import MASK, MASK_ERROR, Redactor, maybe_secret, redaction_failures, redactor_for

CARD = "4111 1111 1111 1111"  # the classic Visa test number: Luhn-valid


@pytest.fixture
def redactor() -> Redactor:
    return Redactor()


# -- value patterns -------------------------------------------------------------------------------------------

POSITIVE = [
    ("credit_card", "4111111111111111"),
    ("credit_card", CARD),
    ("credit_card", "4111-1111-1111-1111"),
    ("credit_card", "5500 0000 0000 0004"),  # Mastercard
    ("credit_card", "3782 822463 10005"),  # Amex, 4-6-5
    ("credit_card", "6011000990139424"),  # Discover
    ("email", "jane.doe+news@mail.example.co.uk"),
    ("email", "a@b.co"),
    ("api_key", "sk-abcdefghijklmnopqrstuvwxyz012345"),
    ("api_key", "sk-proj-AbCdEfGhIjKlMnOpQrStUv_wx-yz0123456789"),
    ("api_key", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key", "ASIAY34FZKBOKMUTVV7A"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."),  # unsigned
    ("jwt", "eyJhbGciOiJIUzI1NiJ9"),  # a token cut short (by truncation) is still masked
    ("github_token", "ghp_" + "a1B2c3D4e5" * 4),
    ("github_token", "gho_" + "Z" * 36),
    ("github_token", "github_pat_" + "11ABCDEFG0" * 3),
    ("url_userinfo", "https://[REDACTED:url_userinfo]@host.example.com"),
    ("basic_auth", "Basic [REDACTED:basic_auth]"),
    ("private_key", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBody\n-----END EC PRIVATE KEY-----"),
    ("slack_token", "xoxp-1234567890-abcdefghij"),
    ("slack_token", "hooks.slack.com/services/TABCDEFGH/BABCDEFGH/abcdefghijklmnop"),
    ("stripe_key", "sk_live_" + "a1B2c3D4e5" * 2),
    ("google_key", "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
    ("google_key", "ya29." + "a0AfH6SMB" * 3),
    ("secret", "password=[REDACTED:secret]"),
]


# Rules that keep part of the match (a URL's scheme and host, an auth scheme, an assigned name) are written
# above as their masked form; the raw secret is put back here.
RAW = {
    "https://[REDACTED:url_userinfo]@host.example.com": "https://alice:pa55word@host.example.com",
    "Basic [REDACTED:basic_auth]": "Basic YWxpY2U6cGE1NXdvcmQ=",
    "password=[REDACTED:secret]": "password=hunterhunter",  # no digit, `-` or `_`: only the `=` gate lets it in
}


@pytest.mark.parametrize(("kind", "masked"), POSITIVE)
def test_each_default_value_pattern_masks_its_kind(redactor: Redactor, kind: str, masked: str) -> None:
    if masked in RAW:
        secret = RAW[masked]
        assert redactor.redact_text(f"before {secret} after") == f"before {masked} after"
        assert redactor.redact({"note": [secret]}) == {"note": [masked]}
        return
    secret = masked
    text = f"before {secret} after"
    assert redactor.redact_text(text) == f"before [REDACTED:{kind}] after"
    assert redactor.redact_text(secret) == f"[REDACTED:{kind}]"
    assert redactor.redact({"note": [text]}) == {"note": [f"before [REDACTED:{kind}] after"]}


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abcdefgh12345678",
        "authorization: bearer abcdefgh.12345678",
        "BEARER AbCdEfGhIjKl",
    ],
)
def test_bearer_keeps_the_scheme_and_masks_the_token(redactor: Redactor, text: str) -> None:
    result = redactor.redact_text(text)
    assert result.endswith(" [REDACTED:bearer]")
    assert text.split()[-1] not in result


NEGATIVE = [
    "4111 1111 1111 1112",  # fails Luhn
    "4111111111111112",  # fails Luhn
    "1700000000000",  # a millisecond timestamp: cards start 2-6
    "0000 0000 0000 0000",  # Luhn-valid, but no card starts with 0
    "550e8400-e29b-41d4-a716-446655440000",  # UUID
    "00000000-0000-0000-0000-000000000005",  # UUID with digits only in its groups
    "+1 415 555 0100",  # a phone number
    "2024-01-31 12:30:00",  # a date
    "order 12345 shipped",
    "The quick brown fox jumps over the lazy dog.",
    "user at example dot com",
    "not@an-email",
    "task-list and sk-short and risk-assessment-plan",
    "AKIA is a prefix; AKIAIOSFODNN7EXAMPL is one short",
    "keyJar eyJhb",  # no JWT: preceded by a letter, or too short
    "the bearer of bad news",  # 'bearer' followed by a word shorter than a token
    "ghp_short",
    "my_variable_name and snake_case_words",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_ordinary_text_is_left_alone(redactor: Redactor, text: str) -> None:
    assert redactor.redact_text(text) == text
    assert redactor.redact({"text": text}) == {"text": text}


def test_card_numbers_as_integers_are_masked(redactor: Redactor) -> None:
    assert redactor.redact({"n": 4111111111111111}) == {"n": "[REDACTED:credit_card]"}
    assert redactor.redact({"n": 4111111111111112}) == {"n": 4111111111111112}  # fails Luhn
    assert redactor.redact({"n": 1700000000000}) == {"n": 1700000000000}  # a timestamp
    assert redactor.redact({"n": 42, "big": 10**30}) == {"n": 42, "big": 10**30}


# -- keys -------------------------------------------------------------------------------------------------------

SENSITIVE_KEYS = [
    "password",
    "PASSWORD",
    "db_passwd",
    "client_secret",
    "access_token",
    "refresh_token",
    "oauth_token",
    "token",
    "api_key",
    "apiKey",
    "x-api-key",
    "Authorization",
    "auth",
    "basic_auth",
    "cookie",
    "Set-Cookie",
    "session",
    "session_id",
    "credentials",
    "private_key",
    "privateKey",
]


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_values_under_sensitive_keys_are_masked_whole(redactor: Redactor, key: str) -> None:
    assert redactor.sensitive_key(key)
    data = {key: {"nested": ["anything", 1]}, "other": "kept"}
    assert redactor.redact(data) == {key: MASK, "other": "kept"}


@pytest.mark.parametrize(
    "key",
    [
        "text",
        "query",
        "max_tokens",
        "input_tokens",
        "output_tokens",
        "completion_tokens",
        "token_count",
        "tokenizer",
        "author",
        "authors",
        "top_k",
        "model",
        "passage",
    ],
)
def test_ordinary_keys_are_not_sensitive(redactor: Redactor, key: str) -> None:
    assert not redactor.sensitive_key(key)
    assert redactor.redact({key: "value"}) == {key: "value"}


def test_secrets_in_keys_are_masked_too(redactor: Redactor) -> None:
    assert redactor.redact({"jane@example.com": 3}) == {"[REDACTED:email]": 3}


# -- user rules -------------------------------------------------------------------------------------------------


def test_user_regexes_mask_their_matches() -> None:
    redactor = Redactor([r"ACCT-\d{6}", re.compile("internal-[a-z]+", re.IGNORECASE)])
    text = "account ACCT-123456 on INTERNAL-host, see bob@example.com"
    assert redactor.redact_text(text) == "account [REDACTED:custom] on [REDACTED:custom], see [REDACTED:email]"
    assert redactor.redact({"a": [text]}) == {"a": [redactor.redact_text(text)]}


def test_user_callables_see_the_key_and_replace_the_value() -> None:
    seen: list[tuple[str, Any]] = []

    def mask_ssn(key: str, value: Any) -> Any:
        seen.append((key, value))
        return "***" if key == "ssn" else value

    redactor = Redactor([mask_ssn])
    data = {"ssn": "078-05-1120", "person": {"ssn": 78051120, "name": "Ann"}, "tags": ["x"]}
    assert redactor.redact(data) == {"ssn": "***", "person": {"ssn": "***", "name": "Ann"}, "tags": ["x"]}
    assert ("tags", "x") in seen  # list items carry the nearest key
    assert Redactor([mask_ssn]).redact_text("free text") == "free text"
    assert ("", "free text") in seen


def test_a_raising_callable_masks_the_value_counts_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    def broken(key: str, value: Any) -> Any:
        raise ValueError(f"cannot handle {value}")  # the message quotes the value: it must not be logged

    redactor = Redactor([broken])
    before = redaction_failures()
    with caplog.at_level(logging.WARNING, logger="promptops"):
        result = redactor.redact({"a": "secret-value-1", "b": ["secret-value-2"], "n": 5})
        assert redactor.redact_text("secret-value-3") == MASK_ERROR
    assert result == {"a": MASK_ERROR, "b": [MASK_ERROR], "n": MASK_ERROR}
    assert redaction_failures() == before + 4
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "broken" in message and "ValueError" in message
    assert "secret-value" not in caplog.text


def test_a_callable_returning_something_unrecordable_fails_closed() -> None:
    redactor = Redactor([lambda key, value: object()])
    before = redaction_failures()
    assert redactor.redact({"a": "raw"}) == {"a": MASK_ERROR}
    assert redaction_failures() == before + 1


def test_a_hostile_mapping_fails_closed(redactor: Redactor) -> None:
    class Hostile(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("no")

    before = redaction_failures()
    assert redactor.redact({"outer": Hostile(secret="x")}) == {"outer": MASK_ERROR}
    assert redaction_failures() == before + 1


def test_invalid_rules_are_rejected() -> None:
    with pytest.raises(TypeError):
        Redactor([42])  # type: ignore[list-item]
    with pytest.raises(re.error):
        Redactor(["("])


def test_stats_report_redaction_failures() -> None:
    def broken(key: str, value: Any) -> Any:
        raise ValueError("rule bug")

    before = promptops.stats()["redaction_failures"]
    assert Redactor([broken]).redact({"a": "raw", "b": "raw"}) == {"a": MASK_ERROR, "b": MASK_ERROR}
    assert promptops.stats()["redaction_failures"] == before + 2


# -- settings -------------------------------------------------------------------------------------------------


def test_redactor_for_is_cached_per_settings_object() -> None:
    first = redactor_for(promptops.get_settings())
    assert redactor_for(promptops.get_settings()) is first
    settings = promptops.configure(redact=[r"ACCT-\d+"])
    second = redactor_for(settings)
    assert second is not first
    assert second.redact_text("id ACCT-42") == "id [REDACTED:custom]"
    assert first.redact_text("id ACCT-42") == "id ACCT-42"


def test_environment_rules_reach_the_redactor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPS_REDACT", json.dumps([r"case-\d{4}"]))
    assert redactor_for(promptops.get_settings()).redact_text("see case-1234") == "see [REDACTED:custom]"


# -- properties -------------------------------------------------------------------------------------------------

ALPHABET = st.sampled_from(
    [
        *"abcxyzAKISJBeg@._- 0123456789\n{}[]\"'é\u2028\U0001f600\ud800",
        "sk-",
        "AKIA",
        "eyJ",
        "Bearer ",
        "ghp_",
        "@ex.com",
        "password",
        "=",
        ": ",
        "://u:p@",
        "xoxb-",
        "AIza",
        "ya29.",
        "GOCSPX-",
        "Basic ",
        "YWxpY2U6cHc=",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END RSA PRIVATE KEY-----",
        "sk_live_",
        "rk_test_",
        "hooks.slack.com/services/",
        "token",
        "KEY",
        "Pass",
    ]
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALPHABET, max_size=40).map("".join) | st.text(max_size=80))
def test_the_cheap_gates_never_skip_text_a_default_rule_would_change(text: str) -> None:
    # redact_with_defaults() runs each rule only behind a cheap test; they must be necessary conditions.
    assert _redact.redact_with_defaults(text) == _redact.redact_unconditionally(text)
    if not maybe_secret(text):
        assert _redact.redact_unconditionally(text) == text


@pytest.mark.parametrize(("_kind", "secret"), POSITIVE)
def test_the_cheap_gates_pass_every_example_secret(_kind: str, secret: str) -> None:
    assert maybe_secret(f"x {RAW.get(secret, secret)} y")


@settings(max_examples=300)
@given(
    st.text(max_size=40).map(lambda s: s + " "),
    st.sampled_from([RAW.get(secret, secret) for _, secret in POSITIVE if secret not in RAW]),
    st.text(max_size=40).map(lambda s: " " + s),
)
def test_secrets_are_masked_whatever_surrounds_them(before: str, secret: str, after: str) -> None:
    result = Redactor().redact_text(before + secret + after)
    assert secret not in result


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_LIKE)
def test_redact_never_raises_and_is_idempotent(data: Any) -> None:
    redactor = Redactor([r"\d{3}"])
    once = redactor.redact(data)
    assert redactor.redact(once) == once or once != once  # NaN compares unequal to itself
