"""The test suite's own guard: a timed-out subprocess's children are found by an environment marker and killed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from tests.support import kill_marked


def test_kill_marked_kills_a_grandchild_in_a_session_of_its_own() -> None:
    marker = uuid.uuid4().hex
    # The child starts a grandchild in a new session (as examples/demo.py starts its mlflow server), prints its
    # pid and exits: killing the child would not reach it.
    code = (
        "import subprocess, sys; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(p.pid)"
    )
    env = {**os.environ, "PROMPTOPS_TEST_MARKER": marker}
    grandchild = int(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout)
    os.kill(grandchild, 0)  # running
    assert kill_marked("PROMPTOPS_TEST_MARKER", marker) == 1
    assert _gone(grandchild)


def _gone(pid: int) -> bool:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(")")[-1].split()[0] == "Z":  # a zombie (its parent, init, reaps it later)
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False
