"""`import promptops` stays light: the hot path never pulls in MLflow, the CLI, HTTP or ML libraries (issue 2).

A property checked in a fresh interpreter, not a timing: `benchmarks/run.py` measures the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Importing any of these costs from tens of milliseconds (httpx, rich) to seconds (mlflow, torch), and MLflow's
# heap slows every garbage collection of the application. They are imported on first use, never by the import.
HEAVY = ("mlflow", "typer", "rich", "torch", "httpx", "sentence_transformers", "ssl")  # ssl: 10-20 ms (issue 16)

PROBE = """
import json, sys
import promptops
import promptops.prompts
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in {heavy!r})))
"""


def _loaded_after(code: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROMPTOPS_")}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_promptops_leaves_heavy_modules_out() -> None:
    assert _loaded_after(PROBE.format(heavy=set(HEAVY))) == []


def test_probe_detects_a_heavy_import() -> None:
    # The same probe sees a heavy module when one is imported, so the test above can fail.
    code = PROBE.format(heavy=set(HEAVY)).replace("import promptops\n", "import promptops\nimport rich\n", 1)
    assert "rich" in _loaded_after(code)


def test_decorating_and_configuring_stay_light() -> None:
    # Decoration and configuration are import-time work in an application: they must not import MLflow either.
    code = PROBE.format(heavy=set(HEAVY)).replace(
        "import promptops.prompts\n",
        "import promptops.prompts\n"
        "promptops.configure(tracking_uri='http://127.0.0.1:9', cache_dir='.promptops-probe')\n"
        "@promptops.track(prompt='summarize', fallback='Summarize {{ text }}')\n"
        "def summarize(text, *, prompt):\n"
        "    return prompt.format(text=text)\n",
        1,
    )
    assert _loaded_after(code) == []


def test_rollouts_and_redaction_patterns_wait_for_their_first_use() -> None:
    # Issue 16: the rollout package (imported by the first decoration, its feedback worker by the first feedback) and
    # the redaction patterns (compiled by the first value that needs one) are no part of `import promptops`.
    code = (
        "import json, sys\n"
        "import promptops, promptops._redact as redact\n"
        "def state():\n"
        "    return [sorted(m for m in sys.modules if m.startswith('promptops.rollout')), redact._compiled is not None]\n"
        "states = [state()]\n"
        "@promptops.track(prompt='summarize', fallback='Summarize {{ text }}')\n"
        "def summarize(text, *, prompt):\n"
        "    return prompt.format(text=text)\n"
        "states.append(state())\n"
        "redact.redact_with_defaults('mail me at someone@example.com')\n"
        "promptops.feedback\n"
        "states.append(state())\n"
        "print(json.dumps(states))\n"
    )
    decorated = [
        "promptops.rollout",
        "promptops.rollout._assign",
        "promptops.rollout._cache",
        "promptops.rollout._state",
    ]
    assert _loaded_after(code) == [
        [[], False],
        [decorated, False],
        [sorted([*decorated, "promptops.rollout._feedback"]), True],
    ]
