"""Replay: re-run captured traffic on a candidate prompt version, score it against the baseline, and gate on it.

```{.python test="skip" reason="needs the application's module and a saved dataset"}
from promptops import replay

result = replay.run("myapp.llm:summarize", candidate=5, dataset="summarize-nov", scorers=["rougeL", "semantic"],
                    gates=["semantic.mean >= 0.85", "rougeL noninferior 0.03"])
result.passed; result.metrics["rougeL"].delta; result.to_html("report.html")
```

Not imported by `import promptops`: it brings numpy and the scorers' libraries.
"""

from ._gates import GateError, default_gates, parse_gates
from ._result import GateResult, MetricSummary, RecordResult, ReplayResult, VersionInfo
from ._run import DEFAULT_SCORERS, run
from ._settings import ReplaySettings
from ._target import ReplayError

__all__ = [
    "DEFAULT_SCORERS",
    "GateError",
    "GateResult",
    "MetricSummary",
    "RecordResult",
    "ReplayError",
    "ReplayResult",
    "ReplaySettings",
    "VersionInfo",
    "default_gates",
    "parse_gates",
    "run",
]
