"""The last-known-good disk cache: every prompt resolved from the registry, so a restart survives an outage.

One JSON file per (registry, prompt, selector) under `<cache_dir>/prompts/<registry-hash>/`, created with the
`file_mode` setting (default 0600, directories 0700) and holding the registry URI without credentials. Writes are atomic
(a temporary file in the same directory, fsynced, then `os.replace`), so a reader never sees half a file. A
corrupt or truncated file is ignored with a warning, never raised: the cache must not be the reason a call
fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

from .._config import Selector
from .._files import file_mode, make_private_directories
from .._uri import redact_uri
from ._prompt import Prompt

__all__ = ["DiskCache"]

logger = logging.getLogger("promptops")
_FORMAT = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _slug(text: str) -> str:
    # Prompt names are [A-Za-z0-9_.-]; aliases may hold more. Keep names readable, make them unambiguous.
    safe = _UNSAFE.sub("_", text)
    if safe != text or safe.startswith("."):
        safe = f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return safe


class DiskCache:
    """Last-known-good prompt copies for one registry URI."""

    def __init__(self, cache_dir: Path, uri: str) -> None:
        # Files hold, and the directory is named after, the URI without credentials (issue 11): a cache file
        # must not hold the registry password, nor a short hash of it that a dictionary attack would undo.
        self.uri = redact_uri(uri)
        digest = hashlib.sha256(self.uri.encode()).hexdigest()[:12]
        self.root = cache_dir / "prompts" / digest

    def path(self, name: str, selector: Selector) -> Path:
        """Where the copy of `name` at `selector` lives."""
        kind, value = selector
        return self.root / _slug(name) / f"{kind}-{_slug(str(value))}.json"

    def load(self, name: str, selector: Selector) -> tuple[Prompt, float] | None:
        """The stored copy and when it was saved (epoch seconds), or `None` if there is no usable copy."""
        path = self.path(name, selector)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("cannot read cached prompt %s (%s); ignoring it", path, exc)
            return None
        try:
            data = json.loads(raw)
            if data.get("format") != _FORMAT or data.get("uri") != self.uri:
                raise ValueError("written for another format or registry")
            prompt = Prompt.from_dict(data["prompt"])
            if prompt.name != name:
                raise ValueError(f"holds prompt {prompt.name!r}")
            return prompt, float(data["saved_at"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("ignoring corrupt cached prompt %s (%s)", path, exc)
            return None

    def save(self, prompt: Prompt, selector: Selector) -> None:
        """Atomically store `prompt` as the last-known-good copy for its name and `selector`."""
        path = self.path(prompt.name, selector)
        mode = file_mode()
        make_private_directories(path.parent, mode)
        payload = json.dumps(
            {"format": _FORMAT, "uri": self.uri, "saved_at": time.time(), "prompt": prompt.to_dict()},
            ensure_ascii=False,
            indent=1,
        ).encode()
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)  # created 0600
        try:
            if mode != 0o600:
                os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as file:
                file.write(payload)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
