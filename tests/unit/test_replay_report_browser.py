"""The HTML report's script in a real browser (issue 15): headless Chromium pages through and filters 1,000 records.

Skipped where no `chromium` is installed (`apt-get install chromium`); `benchmarks/bench_report.py` measures the same
page at 20,000 records.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from promptops.replay._report import PAGE_SIZE, render_html
from tests.unit.test_replay_report import record, sample_result

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# After the page's own script: two clicks on "Next", then a filter; what the page shows is written into its title.
PROBE = """<script>addEventListener('load',function(){
var s=document.querySelector('section.records'),seen=[];
function look(){seen.push(s.querySelector('.pageno').textContent+' '+s.querySelector('.shown').textContent+' '+
[].map.call(s.querySelectorAll('.reclist details.rec .rid'),function(r){return r.textContent;}).join(','));}
look();s.querySelector('.next').click();s.querySelector('.next').click();look();
var q=s.querySelector('.q');q.value='rec-0007';q.dispatchEvent(new Event('input'));look();
q.value='';s.querySelector('.only-err').click();look();
document.title=seen.join('|');});</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="needs a headless chromium (apt-get install chromium)")
def test_the_report_pages_through_and_filters_every_record_in_chromium(tmp_path: Path) -> None:
    records = [
        record(f"rec-{i:04d}", f"old {i}", f"new {i}", -i / 10_000, error="RuntimeError: boom" if i == 70 else None)
        for i in range(1_000)
    ]
    page = tmp_path / "report.html"
    page.write_text(render_html(sample_result(records)).replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
    assert CHROMIUM is not None
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"<title>([^<]*)</title>", dom)
    assert found is not None
    first, third, filtered, errors = found.group(1).split("|")
    order = [f"rec-{i:04d}" for i in range(999, -1, -1)]  # worst change first
    assert first == f"1 / 10 1,000 {','.join(order[:PAGE_SIZE])}"
    assert third == f"3 / 10 1,000 {','.join(order[2 * PAGE_SIZE : 3 * PAGE_SIZE])}"  # from the data, not the DOM
    assert filtered == "1 / 1 1 rec-0007"  # found in the data: it is on the last page
    assert errors == "1 / 1 1 rec-0070"
