"""Files written all or nothing: exports and dataset files never leave a half-written file behind."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: Path) -> Generator[Path]:
    """A temporary file next to `path` (`.<name>.partial`) that replaces `path` when the block succeeds.

    When the block or the replacement raises, the temporary file is removed and the exception propagates.

    Args:
        path: The file to write.

    Yields:
        The temporary file to write to.
    """
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
