"""The HTML report at scale (issue 15): how long a browser takes to open a 20,000-record report.

Run with `.venv/bin/python benchmarks/bench_report.py [--records 20000] [--repeats 5]`. Needs a headless
Chromium (`apt-get install chromium`; `--chromium PATH` names another).

One synthetic result of N records (outputs of about 400 characters that differ, inputs, trace ids, two metrics),
rendered twice in the same run:

* **paged** (what `render_html` writes): the worst `PAGE_SIZE` records in the document, the others as JSON data
  that the page's script shows a page at a time;
* **one list** (`page_size=N`: every record in the document, as before issue 15).

For each file: its size, the Python rendering time, and the wall time of `chromium --headless --screenshot`
(start, parse, run the page's script, lay out, paint the viewport, exit), as the median of `--repeats` runs,
minus the median for an empty page (the browser's own start and exit). A second timing reads the page's own
`performance` clock at its load event, after its script ran and a forced layout, written into the title by a
small script and read with `--dump-dom`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from promptops.replay import GateResult, MetricSummary, RecordResult, ReplayResult, VersionInfo  # noqa: E402
from promptops.replay._report import PAGE_SIZE, render_html  # noqa: E402

SENTENCE = "The quarterly report shows revenue growth of {n} percent across all regions, driven by demand. "
# At the load event (after the page's own script ran), force a layout and note the page's clock.
PROBE = (
    "<script>addEventListener('load',function(){var h=document.body.offsetHeight;"
    "document.title='LOADED '+Math.round(performance.now());});</script>"
)


def result(records: int) -> ReplayResult:
    rows = [
        RecordResult(
            id=f"cap-{i:06d}",
            inputs={"text": SENTENCE * 3, "user": {"id": i, "locale": "de-CH"}},
            baseline_output=SENTENCE.format(n=i % 17) * 4,
            candidate_output=SENTENCE.format(n=(i * 7) % 17) * 4 + ("Extra line." if i % 3 else ""),
            scores={"rougeL": 1 - ((i * 37) % 101) / 100, "latency": 100.0 + i % 50},
            baseline_scores={"rougeL": 1.0, "latency": 100.0},
            deltas={"rougeL": -((i * 37) % 101) / 100, "latency": float(i % 50)},
            latency_ms=100.0 + i % 50,
            baseline_latency_ms=100.0,
            trace_id=f"{i:032x}",
        )
        for i in range(records)
    ]
    return ReplayResult(
        target="myapp.llm:summarize",
        prompt_name="summarize",
        candidate=VersionInfo("5", 5, "Summarize briefly: {{ text }}"),
        baseline=VersionInfo("captured", 4, "Summarize: {{ text }}", [4]),
        dataset="bench",
        scorers=["rougeL", "latency"],
        gates=[GateResult("rougeL noninferior 0.05", False, -0.5, "delta -0.5")],
        metrics={
            "rougeL": MetricSummary("rougeL", True, records, 1.0, 0.5, -0.5, -0.52, -0.48),
            "latency": MetricSummary("latency", False, records, 100.0, 124.5, 24.5, 24.0, 25.0),
        },
        records=rows,
        passed=False,
        mlflow_run_id="bench",
    )


def browse(chromium: str, page: Path, repeats: int) -> tuple[float, float]:
    """Median wall seconds of a headless screenshot of `page`, and the page's own load time in ms."""
    walls: list[float] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as profile:
        base = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-extensions",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1280,1000",
        ]
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(
                [*base, f"--screenshot={profile}/shot.png", page.as_uri()],
                check=True,
                capture_output=True,
                timeout=300,
            )
            walls.append(time.perf_counter() - started)
            dom = subprocess.run(
                [*base, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=300
            ).stdout
            marker = dom.find("<title>LOADED ")
            if marker >= 0:
                loads.append(float(dom[marker + 14 : dom.index("<", marker + 14)]))
    return statistics.median(walls), statistics.median(loads) if loads else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description="The HTML report at scale: open it in headless Chromium.")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "")
    options = parser.parse_args()
    if not options.chromium:
        raise SystemExit("no chromium found: apt-get install chromium, or pass --chromium PATH")
    print(
        f"# bench_report {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {options.records:,} records, "
        f"median of {options.repeats}"
    )
    replayed = result(options.records)
    with tempfile.TemporaryDirectory() as directory:
        empty = Path(directory) / "empty.html"
        empty.write_text(f"<!DOCTYPE html><html><head><title>x</title></head><body>{PROBE}</body></html>")
        start_exit, _ = browse(options.chromium, empty, options.repeats)
        print(f"empty page: {start_exit:.2f} s (subtracted below)")
        print(
            "| layout | file | render (Python) | open in Chromium (wall, minus empty page) | load + layout (page clock) |"
        )
        print("|---|---|---|---|---|")
        for label, size in (("paged", PAGE_SIZE), ("one list", options.records)):
            started = time.perf_counter()
            html = render_html(replayed, page_size=size)
            rendered = time.perf_counter() - started
            page = Path(directory) / f"{label.replace(' ', '_')}.html"
            page.write_text(html.replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
            wall, load = browse(options.chromium, page, options.repeats)
            print(
                f"| {label} | {page.stat().st_size / 1e6:.1f} MB | {rendered:.2f} s | {wall - start_exit:.2f} s | "
                f"{load / 1000:.2f} s |"
            )


if __name__ == "__main__":
    main()
