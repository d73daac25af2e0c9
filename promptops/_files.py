"""Files and directories promptops creates: private to their owner unless the `file_mode` setting says otherwise.

Captured inputs and cached prompts are production data (issue 11): the capture database (SQLite gives its
`-wal` and `-shm` files the database file's permission), the prompt cache and dataset files are created with
`file_mode` (default `0o600`), directories with the matching search bits (`0o700`). Files and directories that
already exist keep their permission: promptops does not change what it did not create.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["create_private_file", "directory_mode", "file_mode", "make_private_directories"]


def file_mode() -> int:
    """The configured permission for new files (the `file_mode` setting)."""
    from ._config import peek_settings

    return peek_settings().file_mode


def directory_mode(mode: int) -> int:
    """The permission for directories matching a file permission: each read bit gains its search bit."""
    return mode | ((mode & 0o444) >> 2)


def make_private_directories(path: Path, mode: int | None = None) -> None:
    """Create `path` and its missing parents with `directory_mode(file_mode())`; existing ones are left as they are.

    Args:
        path: The directory.
        mode: The file permission the directory permission derives from; default the setting.

    Raises:
        OSError: a directory cannot be created.
    """
    if path.is_dir():
        return
    permission = directory_mode(file_mode() if mode is None else mode)
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:  # created meanwhile by another thread or process: theirs
            continue
        os.chmod(directory, permission)  # exactly the setting, whatever the umask


def create_private_file(path: Path, mode: int | None = None) -> None:
    """Create `path` empty with `file_mode()` if it does not exist yet (its directory too); else do nothing.

    Args:
        path: The file.
        mode: The permission; default the setting.

    Raises:
        OSError: the file or its directory cannot be created.
    """
    permission = file_mode() if mode is None else mode
    make_private_directories(path.parent, permission)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, permission)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, permission)  # exactly the setting, whatever the umask
    finally:
        os.close(fd)
