"""A full disk and a read-only directory under the capture store: the application never notices, the loss is
counted and said (issue 10).

A full disk is a file-size limit (`RLIMIT_FSIZE`) set in the application's process once its store exists: a
write past it fails as on a full disk (SQLite: "database or disk is full"), for any user, without a tmpfs. A
read-only directory is `chmod 0555`, which binds every user but root; root gets a read-only tmpfs mount where
the machine allows one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import app, count, run_child

CALLS = 2000
CALLS_AND_STATS = f"""
import json
results = [summarize(f"call {{i}}") for i in range({CALLS})]
assert results == [f"Summarize call {{i}}" for i in range({CALLS})], "a result changed"
promptops.flush(2)
print(json.dumps(promptops.stats()), flush=True)
"""

DISK_FULL = """
import resource
assert summarize("first") == "Summarize first"
assert promptops.flush(60)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
"""


def run_app(tmp_path: Path, store: Path, prepare: str) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    result = run_child(app(tmp_path, prepare + CALLS_AND_STATS, db=store), tmp_path)
    assert result.returncode == 0, result.stderr  # nothing reached the caller, no result changed
    assert "Traceback" not in result.stderr
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def exit_report(stderr: str) -> int:
    """The number in the one exit line that says how many captured calls are lost."""
    lines = [line for line in stderr.splitlines() if "before this process exited and are lost" in line]
    assert len(lines) == 1, stderr
    return int(lines[0].split(" captured calls")[0].rsplit(" ", 1)[-1])


def test_a_full_disk_is_counted_and_said_never_raised(tmp_path: Path) -> None:
    store = tmp_path / "captures.db"
    result, stats = run_app(tmp_path, store, DISK_FULL)
    # The writer's warning names the cause: SQLite says "disk I/O error" for a write cut by the size limit,
    # "database or disk is full" on a full file system.
    assert re.search(r"is unavailable \(OperationalError: (disk I/O error|database or disk is full)\)", result.stderr)
    written = count(f"sqlite:///{store}")
    assert written == stats["captures_written"] < CALLS + 1  # what is counted as written is in the store
    # Every call is accounted for: written, dropped by reason, or still queued when the exit said so.
    assert stats["captures_written"] + stats["captures_dropped"] + stats["captures_queued"] == CALLS + 1
    assert exit_report(result.stderr) == stats["captures_queued"] > 0


@pytest.fixture
def read_only_directory(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "read-only"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"root here cannot mount a read-only tmpfs ({mounted.stderr.decode().strip()}), and chmod binds only other users"
        )
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=False)


def test_a_read_only_directory_is_counted_and_said_never_raised(tmp_path: Path, read_only_directory: Path) -> None:
    store = read_only_directory / "captures.db"
    result, stats = run_app(tmp_path, store, "")
    assert not store.exists()
    # The writer's warning names the cause: EROFS on a read-only mount, EACCES for chmod 0555.
    assert re.search(r"captures.db is unavailable \(\w+Error: \[Errno (30|13)\] (Read-only|Permission)", result.stderr)
    assert stats["captures_written"] == 0
    assert stats["captures_dropped"] + stats["captures_queued"] == CALLS
    assert exit_report(result.stderr) == stats["captures_queued"] > 0
