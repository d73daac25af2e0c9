"""Word-level output diffs and line-level template diffs, escaped and marked with `<del>`/`<ins>`."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    pass
from ._format import escape, plural

_DIFF_BUDGET: Final = 20_000  # token comparisons per difflib pass before it falls back to its autojunk heuristic
_WORDS: Final = re.compile(r"\w+\s*|[^\w\s]\s*|\s+")


def _opcodes(old: list[str], new: list[str]) -> list[tuple[str, int, int, int, int]]:
    """`SequenceMatcher` opcodes, bounded in time whatever the texts.

    The common head and tail are matched directly (the usual case: a few words changed). On the rest, difflib
    costs about (occurrences in `new` of each token of `old`) per pass: fine for prose, but minutes for texts
    made of a few repeated tokens (`"a, a, a, ..."`, tables, base64). Past a budget, difflib's own heuristic
    (`autojunk`: tokens in more than 1% of positions are not used as anchors) bounds it, at some precision.
    """
    size = min(len(old), len(new))
    head = 0
    while head < size and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < size - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    old_core, new_core = old[head : len(old) - tail], new[head : len(new) - tail]
    counts = Counter(new_core)
    cost = sum(counts[token] for token in old_core)
    matcher = difflib.SequenceMatcher(None, old_core, new_core, autojunk=cost > _DIFF_BUDGET)
    codes: list[tuple[str, int, int, int, int]] = [("equal", 0, head, 0, head)] if head else []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        codes.append((tag, i1 + head, i2 + head, j1 + head, j2 + head))
    if tail:
        codes.append(("equal", len(old) - tail, len(old), len(new) - tail, len(new)))
    return codes


def word_diff(old: str, new: str) -> tuple[str, str]:
    """Both texts as HTML, words only in `old` in `<del>`, words only in `new` in `<ins>`."""
    old_tokens, new_tokens = _WORDS.findall(old), _WORDS.findall(new)
    # Compare words without their trailing spaces, so a reflowed line does not read as changed; each side
    # is then rendered with its own tokens.
    codes = _opcodes([token.rstrip() for token in old_tokens], [token.rstrip() for token in new_tokens])
    left: list[str] = []
    right: list[str] = []
    for tag, i1, i2, j1, j2 in codes:
        old_part, new_part = escape("".join(old_tokens[i1:i2])), escape("".join(new_tokens[j1:j2]))
        if tag == "equal":
            left.append(old_part)
            right.append(new_part)
            continue
        if old_part:
            left.append(f"<del>{old_part}</del>")
        if new_part:
            right.append(f"<ins>{new_part}</ins>")
    return "".join(left), "".join(right)


def template_diff(old: str, new: str) -> str:
    old_lines, new_lines = old.splitlines(), new.splitlines()
    rows: list[str] = []
    added = removed = 0

    def row(kind: str, old_no: int | None, new_no: int | None, text: str) -> None:
        mark = {"ctx": " ", "del": "−", "add": "+"}[kind]
        rows.append(
            f'<tr class="{kind}"><td class="ln">{"" if old_no is None else old_no + 1}</td>'
            f'<td class="ln">{"" if new_no is None else new_no + 1}</td><td class="mk">{mark}</td>'
            f"<td>{text or '&nbsp;'}</td></tr>"
        )

    for tag, i1, i2, j1, j2 in _opcodes(old_lines, new_lines):
        if tag == "equal":
            for offset in range(i2 - i1):
                row("ctx", i1 + offset, j1 + offset, escape(old_lines[i1 + offset]))
            continue
        removed += i2 - i1
        added += j2 - j1
        pairs = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        lefts: list[str] = []
        rights: list[str] = []
        for offset in range(pairs):
            left, right = word_diff(old_lines[i1 + offset], new_lines[j1 + offset])
            lefts.append(left)
            rights.append(right)
        lefts += [f"<del>{escape(line)}</del>" for line in old_lines[i1 + pairs : i2]]
        rights += [f"<ins>{escape(line)}</ins>" for line in new_lines[j1 + pairs : j2]]
        for offset, text in enumerate(lefts):
            row("del", i1 + offset, None, text)
        for offset, text in enumerate(rights):
            row("add", None, j1 + offset, text)
    stats = (
        f'<p class="muted"><span class="worse">{plural(removed, "line")} removed</span> · '
        f'<span class="better">{plural(added, "line")} added</span></p>'
    )
    return f'{stats}<table class="tdiff"><tbody>{"".join(rows)}</tbody></table>'
