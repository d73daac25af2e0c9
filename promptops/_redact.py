"""Redaction: what is masked before any value is recorded on a span, in a capture or in a log line.

Default rules (always on; `settings.redact` adds to them, see `promptops._config`):

- **Keys**: a mapping value whose key contains `password`, `passwd`, `pwd`, `passphrase`, `secret`, `token`,
  `api_key` (also `apikey`, `api-key`), `access_key`, `auth`, `authorization`, `cookie`, `session`,
  `credential` or `private_key` (case-insensitive), or has `pass` as a word of its own (`pass`, `db_pass`,
  `dbPass`; not `passage` or `bypass`), is replaced, whole, by `"[REDACTED]"`. A named tuple's fields count as
  keys. Deliberate exceptions, because LLM functions take and report them all the time: the token *counts*
  `max_tokens`, `input_tokens`, `token_count`, `tokenizer` and the like, and `author`.
- **Values**: anywhere inside a string, these are replaced by `"[REDACTED:<kind>]"`: credit card numbers
  (13 to 19 digits starting 2-6, contiguous or in groups of 4 (or 4-6-5) separated by spaces or dashes,
  Luhn-checked: `credit_card`), e-mail addresses (`email`), the userinfo of a URL
  (`scheme://user:password@host`: `url_userinfo`), `sk-...` API keys including `sk-proj-` and `sk-ant-`
  (`api_key`), AWS access key ids (`aws_access_key`), JWTs and other base64url JSON tokens starting `eyJ`
  (`jwt`), the token of `Bearer <token>` (`bearer`), HTTP Basic credentials (`Basic <base64 of user:pass>`:
  `basic_auth`), PEM private keys, to their END line or to the end of a cut text (`private_key`), Slack
  tokens `xox?-` and webhook URLs (`slack_token`), Stripe secret and restricted keys `sk_live_`/`rk_test_`
  (`stripe_key`), Google API keys `AIza`, OAuth tokens `ya29.` and client secrets `GOCSPX-` (`google_key`),
  GitHub tokens `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_` (`github_token`), and the value of
  a secret written as `name=value` or `name: value` in free text, quoted or not (`password=...`,
  `"api_key": "..."`, `?access_token=...`, `AWS_SECRET_ACCESS_KEY=...`: `secret`), where the name contains
  `password`, `passwd`, `pwd`, `passphrase`, `secret`, `token`, `api_key`, `access_key`, `private_key`,
  `credential` or the word `pass`. An integer that is a Luhn-valid card number is masked too.
- **User rules**: regular expressions (every match becomes `"[REDACTED:custom]"`) and callables
  `(key, value) -> value`, called for every leaf value (string, number, boolean, null) with the nearest
  enclosing mapping key (`""` when there is none), after the rules above.

Redaction fails closed: if anything raises while a value is redacted (a user callable, typically), that
whole value becomes `"[REDACTED:error]"`, never the raw value; the failure is counted
(`redaction_failures()`) and logged once per rule as a WARNING that names the rule and the exception type
only, never the value or the exception's message (which could quote the value).

Cost: the common value holds no secret, so every string is first screened with a handful of `in` tests
(one per character or literal that every default pattern needs); each pattern runs only when its own test
passes. The token formats follow the rule sets of the maintained scanners detect-secrets and gitleaks; running
detect-secrets' scanner itself on every value costs about a millisecond per value, 60 to 5,000 times these
rules (`benchmarks/bench_redact.py`): too much for a hot path. Key decisions are cached per `Redactor`, and `redactor_for(settings)` keeps one `Redactor` per
settings object.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias

__all__ = [
    "MASK",
    "MASK_ERROR",
    "MIN_MASKED_CHARS",
    "Jsonable",
    "Redactor",
    "Rule",
    "maybe_secret",
    "redact_with_defaults",
    "redaction_failures",
    "redactor_for",
]

logger = logging.getLogger("promptops")

Jsonable: TypeAlias = "dict[str, Jsonable] | list[Jsonable] | str | int | float | bool | None"
Rule: TypeAlias = "re.Pattern[str] | str | Callable[[str, Any], Any]"

MASK: Final = "[REDACTED]"
"""What a value under a sensitive key becomes."""
MASK_ERROR: Final = "[REDACTED:error]"
"""What a value becomes when redacting it raised (fail-closed)."""
MIN_MASKED_CHARS: Final = 4
"""Shortest value under a sensitive key that is also masked where the call's exception message repeats it."""
_MASK_CUSTOM: Final = "[REDACTED:custom]"
_B64URL = "[A-Za-z0-9_-]"


class _Patterns:
    """The default rules' regular expressions, compiled for the first value that needs one, not at import.

    Compiling them took about 2 ms of `import promptops` (issue 16); the first redaction that runs a pattern pays it
    instead, once per process (a value that passes no screening test never does).
    """

    def __init__(self) -> None:
        # Sensitive key names, matched anywhere in the key, case-insensitively. Before matching, the names LLM code
        # uses for token *counts* and for authors are taken out: masking `max_tokens` or `author` would hide the
        # parameters people most want to see, while `access_token`, `oauth_token` or `authorization` stay masked.
        self.sensitive_key = re.compile(
            r"passw(?:or)?d|pwd|passphrase|secret|token|api[-_]?key|access[-_]?key|auth|cookie|session|credential"
            r"|private[-_]?key",
            re.IGNORECASE,
        )
        # `pass` only as a word of the key (`pass`, `db_pass`, `dbPass`, `PASS`), not inside `passage` or `bypass`.
        self.pass_word = re.compile(r"(?<![A-Za-z])(?:pass|Pass|PASS)(?![A-Za-z])|(?<=[a-z])Pass(?![a-z])")
        self.not_sensitive = re.compile(
            r"(?:max|min|input|output|total|prompt|completion|num|cached|reasoning|response|request)[-_]?tokens?"
            r"|tokens?[-_]?(?:count|limit|usage|used)|tokeniz(?:er|ation|ed)|author(?!iz)",
            re.IGNORECASE,
        )
        # The default value patterns, one per kind, each run only when a cheap test says it could match. Each starts
        # with a literal or a small character set (its lookbehind comes after it), so the regex engine can skip to
        # candidate positions instead of trying every one: one alternation of them all, or a pattern opening with a
        # lookbehind or a broad character class, costs tens of microseconds on a paragraph. The token formats follow
        # the rule sets of detect-secrets and gitleaks (issue 11); benchmarks/bench_redact.py measures the cost.
        #
        # 13-19 digits starting 2-6 (the issued ranges: a 13-digit millisecond timestamp starts with 1), contiguous or
        # grouped 4-4-4-4(-3) / 4-6-5 with one kind of separator, which leaves UUIDs, dates and phone numbers alone;
        # Luhn is checked on each match.
        self.card = re.compile(
            r"[2-6](?<![0-9][2-6])(?:[0-9]{12,18}|[0-9]{3}(?P<sep>[ -])(?:[0-9]{4}(?P=sep)[0-9]{4}(?P=sep)[0-9]{4}"
            r"(?:(?P=sep)[0-9]{3})?|[0-9]{6}(?P=sep)[0-9]{4,5}))(?![0-9])"
        )
        # From the `@` on; the local part is found by walking back from it (see `_mask_emails`).
        self.email_domain = re.compile(r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
        # `scheme://user:password@host`: the whole userinfo (the user name can be an e-mail address or a key).
        self.url_userinfo = re.compile(r"://[^\s/?#@\[\]]{1,512}@")
        self.api_key = re.compile(rf"sk-(?<![A-Za-z0-9]sk-){_B64URL}{{16,}}")
        self.aws_key = re.compile(r"A(?<![A-Z0-9]A)(?:KIA|SIA)[A-Z0-9]{16}(?![A-Z0-9])")
        # Three dot-separated segments normally; a long first segment alone is masked too, so a token cut by
        # truncation never shows its beginning.
        self.jwt = re.compile(rf"eyJ(?<!{_B64URL}eyJ){_B64URL}{{10,}}(?:\.{_B64URL}*){{0,2}}")
        self.bearer = re.compile(r"([Bb]earer|BEARER)[ \t]+[A-Za-z0-9._~+/=-]{8,}")
        # HTTP Basic credentials: masked only when the token decodes to `user:password` (not "Basic understanding").
        self.basic = re.compile(r"([Bb]asic|BASIC)[ \t]+([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
        self.github = re.compile(r"g(?<![A-Za-z0-9]g)(?:h[pousr]_[A-Za-z0-9]{30,}|ithub_pat_[A-Za-z0-9_]{22,})")
        # A PEM private key, to its END line, or to the end of the text when it was cut (a truncated key stays masked).
        self.private_key = re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.DOTALL,
        )
        self.slack = re.compile(
            r"xox(?<![A-Za-z0-9]xox)[abposre]-[A-Za-z0-9-]{10,}|hooks\.slack\.com/services/[A-Za-z0-9/_-]{16,}"
        )
        self.stripe = re.compile(r"[rs](?<![A-Za-z0-9][rs])k_(?:live|test)_[A-Za-z0-9]{10,}")
        self.google = re.compile(r"AIza[A-Za-z0-9_-]{35}|ya29\.[A-Za-z0-9_-]{20,}|GOCSPX-[A-Za-z0-9_-]{20,}")
        # A secret written as `name=value` in free text (see `_NAME_WORDS`).
        self.key_run = re.compile(r"[A-Za-z0-9_.-]*")
        self.operator = re.compile(r"[\"']?[ \t]{0,3}[:=][ \t]{0,3}")
        self.assigned_value = re.compile(r"\"(?:[^\"\\\n]|\\.)+\"|'[^'\n]+'|[^\s\"'&,;<>]+")
        self.secret_name = re.compile(
            r"passw(?:or)?d|pwd|passphrase|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credential",
            re.IGNORECASE,
        )


_compiled: _Patterns | None = None


def _patterns() -> _Patterns:
    """The compiled patterns (two threads racing to compile the first time each get a complete set)."""
    global _compiled
    if _compiled is None:
        _compiled = _Patterns()
    return _compiled


def _sensitive_key(key: str) -> bool:
    patterns = _compiled or _patterns()
    key = patterns.not_sensitive.sub(" ", key)
    return patterns.sensitive_key.search(key) is not None or patterns.pass_word.search(key) is not None


_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
# `password=...`, `token: ...`, `"api_key": "..."`, `?access_token=...` in free text. Found from the (rare)
# occurrences of a secret's name, not from every `:` or `=`: a pattern tried at every position costs about
# 0.8 ms per KB, and prose has many colons. The value is the quoted string, or the text up to the next space,
# quote, `&`, `,` or `;`.
_NAME_WORDS = (b"pass", b"pwd", b"secret", b"token", b"key", b"credential")
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_names: dict[str, bool] = {}  # decisions of `_secret_name`, bounded


def _secret_name(name: str) -> bool:
    """Whether a key written in free text (`name=value`) names a secret; narrower than the mapping key rule."""
    decision = _names.get(name)
    if decision is None:
        patterns = _compiled or _patterns()
        cleaned = patterns.not_sensitive.sub(" ", name)
        decision = patterns.secret_name.search(cleaned) is not None or patterns.pass_word.search(cleaned) is not None
        if len(_names) >= 4096:
            _names.clear()
        _names[name] = decision
    return decision


def _mask_assignments(text: str) -> str:
    # One byte per character (non-ASCII become `?`), lower-cased: positions match `text`'s.
    low = text.encode("ascii", "replace").lower()
    hits: list[int] = []
    for word in _NAME_WORDS:
        at = low.find(word)
        while at >= 0:
            hits.append(at)
            at = low.find(word, at + 1)
    if not hits:
        return text
    hits.sort()
    patterns = _compiled or _patterns()
    parts: list[str] = []
    done = 0
    for at in hits:
        if at < done:
            continue
        run = patterns.key_run.match(text, at)  # `*`: always matches
        end = run.end() if run is not None else at
        operator = patterns.operator.match(text, end)
        if operator is None:
            continue
        start = at
        while start > done and at - start < 64 and text[start - 1] in _KEY_CHARS:
            start -= 1
        if not _secret_name(text[start:end]):
            continue
        begin = operator.end()
        value = patterns.assigned_value.match(text, begin)
        if value is None or text.startswith("[REDACTED", begin + (text[begin] in "\"'")):
            continue  # nothing assigned, or masked by a more specific rule already
        parts.append(text[done:begin])
        parts.append("[REDACTED:secret]")
        done = value.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _may_assign(text: str) -> bool:
    """`:` or `=`, and a secret's name: the search of bytes is five times cheaper than of the `str`."""
    if "=" not in text and ":" not in text:
        return False
    low = text.encode("ascii", "replace").lower()
    for word in _NAME_WORDS:
        if word in low:
            return True
    return False


def maybe_secret(text: str) -> bool:
    """Whether `text` could hold a secret the default value rules mask; `False` for most text, quickly.

    A single character is found with memchr in about 10 ns; a longer literal costs ten times that, so those
    are only looked for behind a character test. Keep in step with the patterns: credit_card needs digits,
    email and url_userinfo `@`, api_key, slack_token and private_key `-` (a Slack webhook `hooks.slack.com`), github_token and stripe_key `_`,
    jwt `J`, aws_access_key `IA`, google_key `AIza`/digits/`-`, bearer `earer`/`EARER`, basic_auth
    `asic`/`ASIC`, secret (`name=value`) `=` or `:` and a fragment of a secret's name.
    """
    size = len(text)
    if size < 13:  # shorter than any default pattern but an e-mail address (`a@b.co`) and `pwd=secret`
        return size >= 5 and ("@" in text or _may_assign(text))
    return (
        "-" in text
        or "_" in text
        or "@" in text
        or "J" in text
        or "0" in text
        or "1" in text
        or "2" in text
        or "3" in text
        or "4" in text
        or "5" in text
        or "6" in text
        or "7" in text
        or "8" in text
        or "9" in text
        or ("I" in text and ("IA" in text or "AIza" in text))
        or ("b" in text and ("earer" in text or "asic" in text))
        or ("B" in text and ("earer" in text or "EARER" in text or "asic" in text or "ASIC" in text))
        or ("/" in text and "hooks.slack.com" in text)
        or _may_assign(text)
    )


def _digits(text: str) -> int:
    count = text.count
    return (
        count("0") + count("1") + count("2") + count("3") + count("4")
        + count("5") + count("6") + count("7") + count("8") + count("9")
    )  # fmt: skip


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        number = ord(char) - 48
        if index % 2:
            number *= 2
            if number > 9:
                number -= 9
        total += number
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    text = match.group()
    return "[REDACTED:credit_card]" if _luhn_valid(text.replace(" ", "").replace("-", "")) else text


def _mask_bearer(match: re.Match[str]) -> str:
    return f"{match.group(1)} [REDACTED:bearer]"


def _mask_basic(match: re.Match[str]) -> str:
    token = match.group(2)
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except ValueError:
        return match.group()
    return f"{match.group(1)} [REDACTED:basic_auth]" if b":" in decoded else match.group()


def _mask_emails(text: str) -> str:
    parts: list[str] = []
    done = 0
    for match in (_compiled or _patterns()).email_domain.finditer(text):
        at = match.start()
        start = at
        while start > done and at - start < 64 and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        if start == at:
            continue
        parts.append(text[done:start])
        parts.append("[REDACTED:email]")
        done = match.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def redact_unconditionally(text: str) -> str:
    """Every default value rule, unconditionally: the reference `redact_with_defaults` must agree with."""
    patterns = _compiled or _patterns()
    text = patterns.private_key.sub("[REDACTED:private_key]", text)
    text = patterns.card.sub(_mask_card, text)
    text = patterns.url_userinfo.sub("://[REDACTED:url_userinfo]@", text)
    text = _mask_emails(text)
    text = patterns.api_key.sub("[REDACTED:api_key]", text)
    text = patterns.slack.sub("[REDACTED:slack_token]", text)
    text = patterns.google.sub("[REDACTED:google_key]", text)
    text = patterns.aws_key.sub("[REDACTED:aws_access_key]", text)
    text = patterns.bearer.sub(_mask_bearer, text)
    text = patterns.basic.sub(_mask_basic, text)
    text = patterns.jwt.sub("[REDACTED:jwt]", text)
    text = patterns.github.sub("[REDACTED:github_token]", text)
    text = patterns.stripe.sub("[REDACTED:stripe_key]", text)
    return _mask_assignments(text)


def redact_with_defaults(text: str) -> str:
    """`text` with the default value rules applied: what a `Redactor` without extra rules does to a string.

    Each rule runs only if the characters it needs are present. Returns `text` itself when nothing changed.
    """
    if not maybe_secret(text):
        return text
    patterns = _compiled or _patterns()
    # A one-character test (memchr) before each longer literal (ten times dearer).
    if "-" in text and "-----BEGIN" in text:
        text = patterns.private_key.sub("[REDACTED:private_key]", text)
    if _digits(text) >= 13:
        text = patterns.card.sub(_mask_card, text)
    if "@" in text:
        if "://" in text:
            text = patterns.url_userinfo.sub("://[REDACTED:url_userinfo]@", text)
        text = _mask_emails(text)
    if "-" in text and "sk-" in text:
        text = patterns.api_key.sub("[REDACTED:api_key]", text)
    if ("-" in text and "xox" in text) or ("/" in text and "hooks.slack.com" in text):
        text = patterns.slack.sub("[REDACTED:slack_token]", text)
    if ("I" in text and "AIza" in text) or ("y" in text and "ya29." in text) or ("X" in text and "GOCSPX-" in text):
        text = patterns.google.sub("[REDACTED:google_key]", text)
    if "I" in text and "IA" in text:
        text = patterns.aws_key.sub("[REDACTED:aws_access_key]", text)
    if ("b" in text or "B" in text) and ("earer" in text or "EARER" in text):
        text = patterns.bearer.sub(_mask_bearer, text)
    if ("b" in text or "B" in text) and ("asic" in text or "ASIC" in text):
        text = patterns.basic.sub(_mask_basic, text)
    if "J" in text and "eyJ" in text:
        text = patterns.jwt.sub("[REDACTED:jwt]", text)
    if "_" in text:
        text = patterns.github.sub("[REDACTED:github_token]", text)
        if "k_live_" in text or "k_test_" in text:
            text = patterns.stripe.sub("[REDACTED:stripe_key]", text)
    if "=" in text or ":" in text:
        text = _mask_assignments(text)
    return text


_failures_lock = threading.Lock()
_failures = 0


def redaction_failures() -> int:
    """How many values were fully masked because redacting them raised, in this process."""
    return _failures


def reset_redaction_failures() -> None:
    """Zero the failure count (tests use this)."""
    global _failures
    with _failures_lock:
        _failures = 0


_KEY_CACHE_SIZE = 2048
_KEY_CACHE_MAX_LEN = 128


class Redactor:
    """Masks secrets in JSON-like data and in text. Build one per settings with `redactor_for(settings)`.

    Args:
        extra_rules: Rules on top of the defaults: regular expressions (compiled or as strings; every match is
            masked) and callables `(key, value) -> value` (see the module documentation).

    Raises:
        TypeError: a rule is neither a regular expression nor a callable.
        re.error: a rule given as a string is not a valid regular expression.
    """

    def __init__(self, extra_rules: Iterable[Rule] = ()) -> None:
        patterns: list[re.Pattern[str]] = []
        callables: list[Callable[[str, Any], Any]] = []
        for rule in extra_rules:
            if isinstance(rule, str):
                patterns.append(re.compile(rule))
            elif isinstance(rule, re.Pattern):
                patterns.append(rule)  # pyright: ignore[reportUnknownArgumentType]
            elif callable(rule):
                callables.append(rule)
            else:
                raise TypeError(f"a redaction rule must be a regular expression or a callable, got {rule!r}")
        self._patterns: tuple[re.Pattern[str], ...] = tuple(patterns)
        self._callables: tuple[Callable[[str, Any], Any], ...] = tuple(callables)
        self.plain = not patterns and not callables
        """Whether only the default rules apply (the serialiser then takes a shortcut)."""
        self.key_decisions: dict[str, tuple[bool, str]] = {}
        """Cache of `key()`: key to (masked whole, key text); the serialiser reads it directly."""
        self._warned: set[tuple[str, str]] = set()

    # -- public ---------------------------------------------------------------------------------------------

    def redact(self, data: Any) -> Jsonable:
        """Redact JSON-like data: masks values under sensitive keys and secrets inside strings.

        Args:
            data: Dicts, lists and tuples of strings, numbers, booleans and `None` (what
                `promptops._serialize.to_jsonable` returns). Other objects are treated as leaves.

        Returns:
            A redacted copy (strings that needed no change are shared, not copied). Never raises.
        """
        return self._walk(data, "", 0)

    def redact_text(self, text: str, masked: Iterable[str] = ()) -> str:
        """Redact free text, such as an exception message or a log line.

        User callables are called with the key `""`.

        Args:
            text: The text.
            masked: Values masked elsewhere (under a sensitive key of the call's inputs, see `masked_values`):
                each occurrence in `text` becomes `"[REDACTED]"` too, so an exception message that repeats
                an argument does not reveal it.

        Returns:
            The text with every secret masked, or `"[REDACTED:error]"` if redacting it raised.
        """
        try:
            for value in sorted(masked, key=len, reverse=True):  # longest first: one may contain another
                if value in text:
                    text = text.replace(value, MASK)
        except Exception as exc:
            self._failed("masked values", exc)
            return MASK_ERROR
        result = self.leaf("", text)
        return result if isinstance(result, str) else MASK_ERROR

    def masked_values(self, data: Any) -> list[str]:
        """The text of every value `redact` would mask whole because of its key, to mask where it is repeated.

        Walks mappings, lists and tuples (a named tuple's fields by name) a few levels deep. Values shorter than
        `MIN_MASKED_CHARS` are left out: masking `"on"` everywhere in a message would hide the message.

        Args:
            data: A call's inputs by name (before conversion).

        Returns:
            The masked values as text, at most 64 of them. Never raises.
        """
        found: list[str] = []
        try:
            self._masked(data, False, 0, found)
        except Exception as exc:
            self._failed("masked values", exc)
        return found

    def _masked(self, data: Any, under: bool, depth: int, found: list[str]) -> None:
        if depth > 8 or len(found) >= 64:
            return
        if isinstance(data, Mapping):
            items: Mapping[Any, Any] = data  # pyright: ignore[reportUnknownVariableType]
            for name, value in items.items():
                self._masked(value, under or self.key(str(name))[0], depth + 1, found)
        elif isinstance(data, (list, tuple)):
            values: list[Any] = list(data)  # pyright: ignore[reportUnknownArgumentType]
            names: Any = getattr(type(data), "_fields", None)  # pyright: ignore[reportUnknownArgumentType]
            for index, value in enumerate(values):
                sensitive = under or (names is not None and index < len(names) and self.key(str(names[index]))[0])
                self._masked(value, sensitive, depth + 1, found)
        elif under:
            if isinstance(data, (bytes, bytearray)):
                data = bytes(data).decode("utf-8", "replace")
            elif isinstance(data, (int, float)) and not isinstance(data, bool):
                data = str(data)
            if isinstance(data, str) and len(data) >= MIN_MASKED_CHARS:
                found.append(str.__str__(data))

    def sensitive_key(self, key: str) -> bool:
        """Whether values under `key` are masked whole (by the default key rules)."""
        return self.key(key)[0]

    # -- used by the serialiser's single pass -----------------------------------------------------------------

    def key(self, key: str) -> tuple[bool, str]:
        """Decide about a mapping key: whether its value is masked whole, and the key's own redacted text.

        Keys are text too (an e-mail address used as a key is masked like any other). Cached per key.
        """
        cached = self.key_decisions.get(key)
        if cached is not None:
            return cached
        try:
            sensitive = _sensitive_key(key)
            text = redact_with_defaults(key)
            for pattern in self._patterns:
                text = pattern.sub(_MASK_CUSTOM, text)
            decision = (sensitive, text)
        except Exception as exc:  # a user pattern cannot normally raise; fail closed anyway
            self._failed("key pattern", exc)
            return (True, MASK_ERROR)
        if len(key) <= _KEY_CACHE_MAX_LEN:
            if len(self.key_decisions) >= _KEY_CACHE_SIZE:
                self.key_decisions.clear()
            self.key_decisions[key] = decision
        return decision

    def leaf(self, key: str, value: Any) -> Any:
        """Redact one leaf value (a string, number, boolean or `None`); fail-closed.

        Args:
            key: The nearest enclosing mapping key, `""` if none; passed to user callables.
            value: The value.

        Returns:
            The value, or a redacted replacement (the same object when nothing changed).
        """
        if self.plain:
            try:
                if type(value) is str:
                    return redact_with_defaults(value)
                if type(value) is int and (value >= 10**12 or value <= -(10**12)):
                    return self._number(value)
                return value
            except Exception as exc:  # not expected from the built-in rules; fail closed all the same
                self._failed("default patterns", exc)
                return MASK_ERROR
        return self._leaf_with_rules(key, value)

    # -- internals --------------------------------------------------------------------------------------------

    def _number(self, value: int) -> Any:
        if value.bit_length() < 64:
            digits = str(abs(value))
            if 13 <= len(digits) <= 19 and "2" <= digits[0] <= "6" and _luhn_valid(digits):
                return "[REDACTED:credit_card]"
        return value

    def _leaf_with_rules(self, key: str, value: Any) -> Any:
        rule = "default patterns"
        try:
            if isinstance(value, str):
                value = redact_with_defaults(value)
                for pattern in self._patterns:
                    rule = f"pattern {pattern.pattern!r}"
                    value = pattern.sub(_MASK_CUSTOM, value)
            elif type(value) is int and (value >= 10**12 or value <= -(10**12)):
                value = self._number(value)
            for function in self._callables:
                rule = f"callable {getattr(function, '__qualname__', type(function).__name__)}"
                value = function(key, value)
                if not (value is None or isinstance(value, (str, int, float))):
                    raise TypeError(f"a redaction callable must return a str, number, bool or None, got {type(value)}")
                if isinstance(value, str) and type(value) is not str:
                    value = str.__str__(value)
            return value
        except Exception as exc:
            self._failed(rule, exc)
            return MASK_ERROR

    def _failed(self, rule: str, exc: BaseException) -> None:
        global _failures
        with _failures_lock:
            _failures += 1
            marker = (rule, type(exc).__name__)
            first = marker not in self._warned
            self._warned.add(marker)
        if first:
            # Neither the value nor the exception's message: either could hold the secret.
            logger.warning(
                "redaction rule %s raised %s; the value was masked whole. Later failures of this "
                "rule are counted in promptops.stats() without logging.",
                rule,
                type(exc).__name__,
            )

    def _walk(self, data: Any, key: str, depth: int) -> Any:
        try:
            if isinstance(data, Mapping):
                if depth >= 64:
                    return "<depth limit>"
                result: dict[str, Any] = {}
                items: Mapping[Any, Any] = data  # pyright: ignore[reportUnknownVariableType]
                for name, value in items.items():
                    name_text = name if isinstance(name, str) else str(name)
                    sensitive, shown = self.key(name_text)
                    result[shown] = MASK if sensitive else self._walk(value, name_text, depth + 1)
                return result
            if isinstance(data, (list, tuple)):
                if depth >= 64:
                    return "<depth limit>"
                values: list[Any] = list(data)  # pyright: ignore[reportUnknownArgumentType]
                names: Any = getattr(type(data), "_fields", None)  # pyright: ignore[reportUnknownArgumentType]
                if names is not None:  # a named tuple: its fields are keys (issue 11)
                    return [
                        MASK if self.key(str(name))[0] else self._walk(value, str(name), depth + 1)
                        for name, value in zip(names, values)
                    ]
                return [self._walk(value, key, depth + 1) for value in values]
            return self.leaf(key, data)
        except Exception as exc:  # e.g. a hostile Mapping whose items() raises
            self._failed("walk", exc)
            return MASK_ERROR


# One Redactor per settings object; settings are immutable and replaced by every configure().
_cached: tuple[object, Redactor] | None = None


def redactor_for(settings: Any) -> Redactor:
    """The `Redactor` for a settings object (anything with a `redact` tuple of rules), built once and cached.

    Args:
        settings: Usually `promptops.get_settings()`.

    Returns:
        The cached redactor when `settings` is the object seen last, else a new one.
    """
    cached = _cached
    if cached is not None and cached[0] is settings:
        return cached[1]
    return _build(settings)


def _build(settings: Any) -> Redactor:
    global _cached
    redactor = Redactor(getattr(settings, "redact", ()))
    _cached = (settings, redactor)  # one tuple, assigned atomically
    return redactor
