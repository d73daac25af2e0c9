"""Issue 11: secrets that reached spans and captures. Each case goes through a real tracked call, with the real
OpenTelemetry SDK (in-memory exporter) and a real SQLite capture store read back raw, so both sinks are held to
the same rules."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import promptops
from promptops import Prompt
from promptops._redact import Redactor
from promptops._serialize import TRUNCATION_MARGIN, dumps_for_span, encode
from promptops.testing import capture_spans
from tests.conftest import Registry


@pytest.fixture
def name(local_registry: Registry, prompt_name: str) -> str:
    """A prompt in the session's real MLflow registry: a caller-given prompt is neither traced nor captured."""
    local_registry.register(prompt_name, "Answer: {{question}}", alias="production")
    return prompt_name


def recorded(tmp_path: Path, func: Any, *args: Any, **kwargs: Any) -> str:
    """Everything a call left in its span (attributes, events, status) and in the raw capture database."""
    db = tmp_path / "captures.db"
    promptops.configure(capture=f"sqlite:///{db}", trace_exporter="none")
    with capture_spans() as spans:
        try:
            func(*args, **kwargs)
        except Exception:
            pass
        assert promptops.flush(timeout=30)
        texts = []
        for span in spans.finished():
            texts.append(repr(dict(span.attributes or {})))
            texts.extend(repr(dict(event.attributes or {})) for event in span.events)
            texts.append(str(span.status.description))
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT * FROM promptops_captures").fetchall()
    assert len(rows) == 1
    files = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("captures.db"))
    return "\n".join(texts) + "\n" + repr(rows) + "\n" + files.decode("latin-1")


class Login(NamedTuple):
    user: str
    password: str


def test_a_named_tuple_field_named_password_is_masked(tmp_path: Path, name: str) -> None:
    @promptops.track(prompt=name)
    def ask(login: Login, *, prompt: Prompt) -> str:
        return "ok"

    text = recorded(tmp_path, ask, Login("ann", "Tr0ub4dor&3-canary"))
    assert "Tr0ub4dor" not in text
    assert "ann" in text  # the other field is kept


def test_non_utf8_bytes_holding_a_key_are_not_stored_as_decodable_base64(tmp_path: Path, name: str) -> None:
    key = "sk-CANARYbytes0123456789abcdefgh"
    payload = b"\xff\xfe header " + key.encode() + b" trailer \x80"

    @promptops.track(prompt=name)
    def upload(blob: bytes, *, prompt: Prompt) -> bytes:
        return payload

    text = recorded(tmp_path, upload, payload)
    assert key not in text
    assert base64.b64encode(payload).decode() not in text
    assert "[REDACTED:api_key]" in text


def test_a_value_under_a_sensitive_key_is_masked_where_the_exception_repeats_it(tmp_path: Path, name: str) -> None:
    @promptops.track(prompt=name)
    def connect(host: str, password: str, *, prompt: Prompt) -> str:
        raise PermissionError(f"login to {host} refused for password {password!r}")

    text = recorded(tmp_path, connect, "db.internal", "plainCanaryPw")
    assert "plainCanaryPw" not in text
    assert "db.internal" in text
    assert "refused for password" in text  # the message itself is kept


def test_a_long_key_is_redacted_before_it_is_cut() -> None:
    key = "sk-CANARYlongkey0123456789abcdefghijklmnop"
    name = "x" * 107 + " " + key + " " + "y" * 100  # cut at max_chars - 40 = 120 would keep 12 of its characters
    data = encode({name: 1}, max_chars=160, redactor=Redactor()).data
    assert isinstance(data, dict)
    assert not any("sk-CANARY" in shown for shown in data)
    assert not any(key[:12] in shown for shown in data)
    assert dumps_for_span({name: 1}, max_chars=160, redactor=Redactor()).count("sk-CANARY") == 0


def test_a_long_key_naming_a_secret_masks_its_value() -> None:
    data = encode({"x" * 200 + "_password": "hunter2-canary"}, max_chars=100, redactor=Redactor()).data
    assert "hunter2-canary" not in repr(data)


FREE_TEXT = [
    ("connect with password=hunter2canary now", "hunter2canary"),
    ("token: tokCanary123", "tokCanary123"),
    ('{"api_key": "k3yCanary value"}', "k3yCanary"),
    ("GET /v1?access_token=atCanary42&page=2", "atCanary42"),
    ("GET /v1?x=1&api_key=akCanary42", "akCanary42"),
    ("PWD: pwdCanary!", "pwdCanary"),
    ("db_pass=dbCanary", "dbCanary"),
    ("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
    ("passphrase = 'correct horse canary'", "correct horse canary"),
    ("registry at http://alice:S3cretRegPw@registry.example.com:5000/api", "S3cretRegPw"),
    ("postgresql://svc:pgCanary@db:5432/app", "pgCanary"),
    ("Authorization: Basic " + base64.b64encode(b"alice:basicCanary").decode(), "YWxpY2U6YmFzaWNDYW5hcnk"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpCanaryKeyBody\n-----END RSA PRIVATE KEY-----", "MIIEpCanaryKeyBody"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaCanary (cut short", "b3BlbnNzaCanary"),
    ("slack xoxb-123456789012-1234567890123-CanaryAbCdEf", "CanaryAbCdEf"),
    ("hook https://hooks.slack.com/services/TCANARY00/BCANARY00/CanaryWebhookSecret", "CanaryWebhookSecret"),
    ("stripe sk_live_CanaryStripe0123456789", "CanaryStripe"),
    ("stripe rk_test_CanaryRestricted0123", "CanaryRestricted"),
    ("google AIzaSyCanary-0123456789abcdefghijklmnopq", "AIzaSyCanary"),
    ("oauth ya29.a0CanaryGoogleOauthToken12345", "CanaryGoogleOauth"),
    ("github ghp_CanaryGithubToken0123456789abcdefgh", "CanaryGithubToken"),
]


@pytest.mark.parametrize(("text", "secret"), FREE_TEXT)
def test_free_text_secrets_are_masked(text: str, secret: str) -> None:
    redactor = Redactor()
    assert secret not in redactor.redact_text(text)
    assert secret not in dumps_for_span({"q": text}, max_chars=4096, redactor=redactor)
    assert secret not in repr(encode([text], max_chars=4096, redactor=redactor).data)


@pytest.mark.parametrize(
    "text",
    [
        "the passage: a long one",
        "compass: north",
        "bypass=1",
        "max_tokens=512",
        "Basic understanding: required",
        "the key point: money",
        "input_tokens: 20",
        "http://example.com/path?page=2",
        "ask user@example.com",  # an e-mail address is masked, but not as a URL's userinfo
    ],
)
def test_free_text_rules_leave_ordinary_text_alone(text: str) -> None:
    result = Redactor().redact_text(text)
    assert "[REDACTED:secret]" not in result
    assert "[REDACTED:url_userinfo]" not in result
    assert "[REDACTED:basic_auth]" not in result


@pytest.mark.parametrize("key", ["pwd", "pass", "db_pass", "dbPass", "PASS", "passphrase", "private_key", "access_key"])
def test_more_key_names_are_sensitive(key: str) -> None:
    assert Redactor().redact({key: "v4lue-canary"}) == {key: "[REDACTED]"}


@pytest.mark.parametrize("key", ["passage", "compass", "bypass", "passenger", "password_policy_url"])
def test_words_containing_pass_are_not_sensitive_unless_they_name_a_password(key: str) -> None:
    expected = key.startswith("password")
    assert Redactor().sensitive_key(key) is expected


def test_a_huge_argument_is_cut_before_it_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 MB of text with a secret at the end: only the kept window and its margin are ever scanned (it cost about
    # 160 ms per call when the whole string was redacted and escaped before its length was checked).
    from promptops import _redact, _serialize

    big = "word " * 2_000_000 + "sk-CANARYattheend0123456789abcdef"
    scanned: list[int] = []
    for module, name in [
        (_redact, "redact_with_defaults"),
        (_serialize, "redact_with_defaults"),
        (_serialize, "maybe_secret"),
    ]:
        original = getattr(module, name)

        def recording(text: str, original: Any = original) -> Any:
            scanned.append(len(text))
            return original(text)

        monkeypatch.setattr(module, name, recording)
    for value in ({"text": big}, big, [big]):
        scanned.clear()
        text = dumps_for_span(value, max_chars=8192, redactor=Redactor())
        assert len(text) <= 8192
        assert "sk-CANARY" not in text
        assert scanned and max(scanned) <= 8192 + TRUNCATION_MARGIN, (type(value), max(scanned))
        scanned.clear()
        encoded = encode(value, max_chars=8192, redactor=Redactor())
        assert max(scanned) <= 8192 + TRUNCATION_MARGIN
        assert not encoded.replayable


def test_a_traced_and_captured_call_converts_its_values_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Issue 11: span and record each converted (bound, walked, redacted) the same inputs and output.
    import json

    from promptops import _serialize

    walks: list[object] = []
    original = _serialize._Walk.__init__  # pyright: ignore[reportPrivateUsage]

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        walks.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(_serialize._Walk, "__init__", counting)  # pyright: ignore[reportPrivateUsage]

    @promptops.track(prompt=name)
    def ask(query: str, options: dict[str, Any], *, prompt: Prompt) -> dict[str, Any]:
        options["mutated_after_start"] = True  # the record keeps the inputs the call was made with
        return {"answer": "yes", "api_key": "sk-CANARYshared0123456789abcdef"}

    db = tmp_path / "captures.db"
    promptops.configure(capture=f"sqlite:///{db}", trace_exporter="none")
    with capture_spans() as spans:
        ask("q", {"top_k": 3, "password": "pw-canary"})
        assert promptops.flush(timeout=30)
    assert len(walks) == 2  # the inputs once, the output once
    (span,) = spans.finished()
    attributes = dict(span.attributes or {})
    with sqlite3.connect(db) as connection:
        inputs, output = connection.execute("SELECT inputs, output FROM promptops_captures").fetchone()
    assert json.loads(attributes["promptops.inputs"]) == json.loads(inputs)
    assert json.loads(inputs) == {"query": "q", "options": {"top_k": 3, "password": "[REDACTED]"}}
    assert (
        json.loads(attributes["promptops.output"]) == json.loads(output) == {"answer": "yes", "api_key": "[REDACTED]"}
    )
