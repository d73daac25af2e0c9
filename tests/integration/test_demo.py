"""`make demo` runs examples/demo.py: it must keep telling the story it tells."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import kill_marked

DEMO = Path(__file__).parents[2] / "examples" / "demo.py"


def test_demo_runs_end_to_end_offline(tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "PROMPTOPS_DEMO_DIR": str(tmp_path)}
    try:
        done = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=400, env=env)
    finally:  # on a timeout the demo is killed, not its mlflow server: that one would run on for good
        kill_marked("PROMPTOPS_DEMO_DIR", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {
        line.split("->")[0].strip(): line.split("->", 1)[1].strip()
        for line in done.stdout.splitlines()
        if "->" in line and line.startswith("  ")
    }
    assert lines["first call"].startswith("version 1 (source: registry)")
    assert lines["second call"].startswith("version 1 (source: cache)")
    assert lines["after the TTL (1 s), no restart"].startswith("version 2 (source: cache)")
    assert lines["inside use_prompt('summarize', version=1)"].startswith("version 1")
    assert lines["this process, registry down"].startswith("version 2 (source: cache)")
    assert lines["a restarted process, registry down"] == "version 2 (source: disk)"
    assert "PromptUnavailableError" in lines["preload() of something never cached"]
    traced, linked = lines["traces in MLflow (one span per call)"].split(", ")
    assert int(traced) >= 10 and linked.startswith(traced + " linked")
    assert int(lines["spans not exportable while MLflow is down"].split()[0]) > 0
    captured, versions = lines["captured calls of summarize()"].split(", served by versions ")
    assert int(captured) >= 5 and versions == "[1, 2]"
    assert lines["captured support tickets"] == "234"
    assert lines["replay of version 2 (reworded)"] == "exit 0, PASSED"
    assert lines["replay of version 3 (drops details)"] == "exit 1, FAILED"
    assert "FAIL rougeL noninferior 0.05: delta -0." in done.stdout
    for report in ("replay-reworded.html", "replay-drop-details.html"):
        assert str(tmp_path / report) in done.stdout and (tmp_path / report).stat().st_size > 10_000
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}" in done.stdout
    assert "Traceback" not in done.stderr
    # Issue 12: MLflow's own prompt filter finds the calls served by version 2, and the demo says where to click.
    assert int(lines['MLflow filter prompt = "summarize/2"'].split()[0]) >= 2
    assert "Experiments -> Default -> Traces" in done.stdout
