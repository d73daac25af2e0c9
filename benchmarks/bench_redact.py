"""The cost of redacting one string: promptops' default rules against the detect-secrets scanner (issue 11).

Run with `.venv/bin/python benchmarks/bench_redact.py` (detect-secrets comes with the `bench` extra). Issue 11
asked whether a maintained detector's rule set should replace the hand-written list; this measures what its
scanner costs per value on the hot path. promptops takes the token formats from the detect-secrets and
gitleaks rule sets but keeps its own gated patterns.

Each figure is the median over repeats of the per-call time of a batch (`time.perf_counter_ns()` around a
plain `for` loop); the contenders run interleaved. Texts: a 200-character prose input (the common value: no
secret), the same with a colon-heavy header, and a line holding an API key.
"""

from __future__ import annotations

import argparse
import statistics
import sys

# The set-up (environment, import path, the 200-character prose, the batch timer) is bench_values.py's.
from bench_values import PROSE, per_call_ns

from promptops._redact import Redactor

TEXTS = {
    "200-char prose": PROSE,
    "prose with 'Note:' headers": ("Note: " + PROSE[:94] + " Key: ") * 2,
    "a line with an API key": "export OPENAI_API_KEY=sk-proj-AbCdEfGhIjKlMnOpQrStUv0123456789",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--number", type=int, default=2_000)
    args = parser.parse_args()
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import default_settings

    redactor = Redactor()
    print(f"{'text':30s} {'promptops':>12s} {'detect-secrets':>15s} {'ratio':>7s}")
    with default_settings():
        for name, text in TEXTS.items():
            ours: list[float] = []
            theirs: list[float] = []
            scan_number = max(args.number // 20, 10)
            for _ in range(args.repeats):
                ours.append(per_call_ns(lambda text=text: redactor.redact_text(text), args.number))
                theirs.append(per_call_ns(lambda text=text: list(scan_line(text)), scan_number))
            a, b = statistics.median(ours), statistics.median(theirs)
            print(f"{name:30s} {a / 1000:9.2f} µs {b / 1000:12.2f} µs {b / a:6.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
