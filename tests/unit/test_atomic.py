"""All-or-nothing file writes (`promptops._atomic.atomic_path`): a write that fails part-way leaves the old file
intact and no partial file behind (issue 16: deleting the failure-branch cleanup kept the suite green)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptops import datasets
from promptops._atomic import atomic_path
from promptops.datasets import Dataset, DatasetRecord


class Interrupted(Exception):
    pass


def test_success_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    with atomic_path(target) as partial:
        assert partial.parent == tmp_path and partial != target
        partial.write_text("new\n", encoding="utf-8")
        assert target.read_text(encoding="utf-8") == "old\n"  # untouched until the block succeeds
    assert target.read_text(encoding="utf-8") == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


@pytest.mark.parametrize("error", [Interrupted("disk full half-way"), KeyboardInterrupt()])
def test_a_write_that_fails_part_way_keeps_the_old_file_and_leaves_no_partial(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(type(error)), atomic_path(target) as partial, partial.open("w", encoding="utf-8") as out:
        out.write("half of the new\n")
        out.flush()
        assert partial.exists()  # something was written before the failure
        raise error
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_a_new_file_that_fails_part_way_is_not_created(tmp_path: Path) -> None:
    target = tmp_path / "new.jsonl"
    with pytest.raises(Interrupted), atomic_path(target) as partial:
        partial.write_text("half", encoding="utf-8")
        raise Interrupted
    assert list(tmp_path.iterdir()) == []


def test_a_failed_replacement_leaves_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("keep", encoding="utf-8")  # a non-empty folder: a file cannot replace it
    with pytest.raises(OSError), atomic_path(target) as partial:
        partial.write_text("new", encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (target / "inside").read_text(encoding="utf-8") == "keep"


FULL_DISK_CHILD = """
import resource, signal, sys
from promptops import datasets
from promptops.datasets import Dataset, DatasetError, DatasetRecord
# A real write failure part-way: files may not grow past 4 KiB (EFBIG, as on a full disk), after the first records.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
records = [DatasetRecord(str(i), {"text": "new record " * 10}) for i in range(1000)]
try:
    datasets.write_file(Dataset("d", records), sys.argv[1])
except DatasetError as exc:
    print(exc)
else:
    print("written")
"""


def test_dataset_file_that_fails_part_way_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    datasets.write_file(Dataset("d", [DatasetRecord("a", {"text": "old"})]), path)
    before = path.read_bytes()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROMPTOPS_")}
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(path)], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith(f"cannot write {path}: File too large"), done.stdout + done.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]
