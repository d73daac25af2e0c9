"""Captured and registry text made safe to print on a terminal.

Captured inputs and outputs, dataset records and registry templates are data from outside: printed as they are,
an escape sequence in them drives the user's terminal (colours, cursor moves, a changed window title, a fake
prompt; issue 11). Every command prints such text through `visible()` (tables, templates) or `json_text()`
(JSON output).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["json_text", "visible"]

# C0 controls, DEL and C1 controls (0x9b is an 8-bit CSI), and the Unicode format characters that reorder or hide
# text (bidirectional overrides and isolates, zero-width marks: "Trojan Source", CVE-2021-42574).
_FORMAT_CHARS = "\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_UNSAFE = re.compile(f"[\x00-\x1f{_FORMAT_CHARS}]")
_UNSAFE_KEEPING_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_FORMAT_CHARS}]")
_UNSAFE_IN_JSON = re.compile(f"[{_FORMAT_CHARS}]")  # json.dumps escapes C0 controls itself
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, keep_lines: bool = False) -> str:
    r"""`text` with control and invisible formatting characters written as escapes (`\x1b`, `\u202e`).

    Args:
        text: Text from outside (a captured value, a template, a name).
        keep_lines: Keep newlines and tabs as they are (a multi-line template); otherwise they are escaped too,
            as one table cell must stay on one line.
    """
    pattern = _UNSAFE_KEEPING_LINES if keep_lines else _UNSAFE
    return pattern.sub(_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_text(value: Any, **options: Any) -> str:
    r"""`json.dumps(value, ensure_ascii=False, **options)` with every unsafe character as a `\uXXXX` escape.

    JSON already escapes C0 controls; DEL, C1 controls and the format characters are escaped here too, which
    changes nothing a JSON reader sees (inside strings, the only place they can occur, `\u009b` means the same).
    """
    return _UNSAFE_IN_JSON.sub(_json_escape, json.dumps(value, ensure_ascii=False, **options))
