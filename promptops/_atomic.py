"""Files written all or nothing: exports and dataset files never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from pathlib import Path

from ._files import file_mode

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: Path) -> Generator[Path]:
    """A temporary file next to `path` (`.<name>.partial`) that replaces `path` when the block succeeds.

    When the block or the replacement raises, the temporary file is removed and the exception propagates. The
    temporary file exists, empty, when the block starts: with the permission of the file it replaces, or the
    `file_mode` setting for a new file (issue 11), so its content is never readable by others meanwhile.

    Args:
        path: The file to write.

    Yields:
        The temporary file to write to.
    """
    partial = path.with_name(f".{path.name}.partial")
    try:
        _create(partial, path)
        yield partial
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _create(partial: Path, path: Path) -> None:
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = file_mode()
    partial.unlink(missing_ok=True)  # left by a crash, with whatever permission it had
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # exactly that, whatever the umask
    finally:
        os.close(fd)
