"""The page around the sections: style sheet, the few lines of script, and `render_html()`."""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from ..._version import __version__
from ._format import escape, side_label
from ._records import PAGE_SIZE, records_section
from ._sections import (
    candidate_anchor,
    candidates_section,
    facts_section,
    gates_list,
    metrics_section,
    prompt_section,
    verdict_section,
)

if TYPE_CHECKING:
    from .._result import RecordResult, ReplayResult

DETAIL_LIMIT: Final = 200
"""Records (largest changes first) rendered with a full word-level diff."""
MAX_CHARS: Final = 4000
"""Characters of each output shown in a detailed record; the rest is cut with a note."""


_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

_CSS: Final = """
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff;--better:#15803d;--worse:#b91c1c;
--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:20px;margin:0 0 4px;font-weight:600}
h2{font-size:17px;margin:28px 0 10px;font-weight:600}
h3{font-size:14px;margin:0 0 6px;font-weight:600}
h4{font-size:12px;margin:0 0 4px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
code,pre{font-family:var(--mono);font-size:12.5px}
code{background:#f1f5f9;border-radius:4px;padding:0 4px}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
a{color:#1d4ed8}
.muted{color:var(--muted)}.small{font-size:12px}
.better{color:var(--better)}.worse{color:var(--worse)}.same{color:var(--muted)}
.delta.better,.delta.worse{font-weight:600}.delta.weak{font-weight:400}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px}
nav{display:flex;gap:16px;font-size:13px;margin:0 0 12px}nav a{text-decoration:none}
.verdict{display:flex;gap:20px;align-items:flex-start;border-radius:10px;padding:18px 22px;border:1px solid}
.verdict.pass{background:#ecfdf5;border-color:#6ee7b7}.verdict.fail{background:#fef2f2;border-color:#fca5a5}
.cand{margin-top:40px;padding-top:8px;border-top:3px solid var(--line)}.candhead{font-size:19px}
.verdict .big{font-size:40px;font-weight:800;letter-spacing:.04em;line-height:1;padding:6px 18px;border-radius:8px;
color:#fff;flex:none}
.verdict.pass .big{background:#059669}.verdict.fail .big{background:#dc2626}
.vbody{min-width:0}.lead{margin:0 0 2px}.tally{margin:0 0 8px;color:#334155}
.gates{list-style:none;margin:0;padding:0}
.gate{display:flex;gap:8px;align-items:baseline;padding:3px 0;flex-wrap:wrap}
.gate .mk{font-weight:700;width:14px}.gate.fail .mk{color:var(--worse)}.gate.ok .mk{color:var(--better)}
.gate.fail code{background:#fee2e2}.gate.ok{color:#334155}.gate .detail{color:#334155}
.alert{background:#fff7ed;border:1px solid #fdba74;border-radius:6px;padding:6px 10px;margin:6px 0}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:8px 20px;margin:0}
.facts dt{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.facts dd{margin:0;overflow-wrap:anywhere}
#facts .facts{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:12px;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line)}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.sub,.ci{font-size:11px;color:var(--muted);font-weight:400}
.tablecard{padding:4px 8px;overflow-x:auto}.tablecard tbody tr:last-child>*{border-bottom:0}
.extra{font-size:12px;color:#334155}.gatecell .ok{color:var(--better)}.gatecell .fail{color:var(--worse);font-weight:600}
.note{margin:6px 10px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(372px,1fr));gap:12px;margin-top:12px}
.plot{display:block;max-width:100%;height:auto}.plot text{font-size:10px;fill:#64748b;font-family:inherit}
.legend{display:flex;gap:6px;align-items:center;font-size:12px;margin:2px 0}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-left:6px}
del{background:#fee2e2;color:#991b1b;text-decoration:line-through;text-decoration-color:#f87171}
ins{background:#dcfce7;color:#166534;text-decoration:none}
.tdiff td{border:0;padding:1px 8px;font-family:var(--mono);font-size:12.5px;white-space:pre-wrap;overflow-wrap:anywhere}
.tdiff .ln{color:#94a3b8;text-align:right;width:1%;white-space:nowrap;user-select:none}
.tdiff .mk{width:1%;color:#94a3b8}
.tdiff tr.del{background:#fef2f2}.tdiff tr.add{background:#f0fdf4}
.tdiff tr.del del,.tdiff tr.add ins{background:#fecaca}.tdiff tr.add ins{background:#bbf7d0}
.tpl{background:#f8fafc;border:1px solid var(--line);border-radius:6px;padding:10px;max-height:480px;overflow:auto}
.toolbar{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin:0 0 10px}
.toolbar input[type=search]{flex:1;min-width:220px;padding:6px 10px;border:1px solid #cbd5e1;border-radius:6px;font:inherit}
button{font:inherit;font-size:13px;padding:5px 10px;border:1px solid #cbd5e1;border-radius:6px;background:#fff;cursor:pointer}
button:hover{background:#f1f5f9}
.reclist{border:1px solid var(--line);border-radius:8px;background:var(--card);overflow:hidden}
.rec{border-bottom:1px solid var(--line)}.rec:last-child{border-bottom:0}
.rec>summary{display:flex;gap:10px;align-items:baseline;padding:6px 12px;cursor:pointer;list-style:none;
white-space:nowrap}
.rec>summary::-webkit-details-marker{display:none}
.rec>summary::before{content:"▸";color:#94a3b8;width:10px;flex:none}.rec[open]>summary::before{content:"▾"}
.rec>summary:hover{background:#f8fafc}.rec[open]>summary{background:#f1f5f9;border-bottom:1px solid var(--line)}
.rank{color:#94a3b8;font-size:12px;width:40px;text-align:right;flex:none;font-variant-numeric:tabular-nums}
.rid{font-family:var(--mono);font-size:12.5px;max-width:200px;overflow:hidden;text-overflow:ellipsis;flex:none}
.kd{font-weight:600;width:64px;text-align:right;flex:none;font-variant-numeric:tabular-nums}
.od{font-size:12px;flex:none;display:flex;gap:8px}
.pv{color:var(--muted);overflow:hidden;text-overflow:ellipsis;min-width:0;flex:1}
.badge{font-size:11px;border-radius:10px;padding:0 8px;flex:none}
.badge.err{background:#fee2e2;color:#991b1b}.badge.berr{background:#ffedd5;color:#9a3412}
.body{padding:12px 16px 16px}
.cbody .out::before{display:block;font-size:11px;font-weight:600;color:var(--muted);text-transform:uppercase;
letter-spacing:.04em}
.cbody .out:first-child::before{content:"Baseline"}.cbody .out:last-child::before{content:"Candidate"}
.sbs{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.out{background:#f8fafc;border:1px solid var(--line);border-radius:6px;padding:8px 10px;max-height:420px;overflow:auto;
font-size:13px;line-height:1.5}
.none{color:#94a3b8;font-style:italic}
.cut{display:block;color:#94a3b8;font-style:italic;font-size:12px;margin-top:4px}
.errbox{margin-top:10px;background:#fef2f2;border:1px solid #fecaca;border-radius:6px;padding:6px 10px;color:#991b1b}
.meta{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px;margin-top:12px}
.scores td,.scores th{padding:3px 8px;font-size:12.5px}.reason{color:var(--muted);font-size:12px}
.json{background:#f8fafc;border:1px solid var(--line);border-radius:6px;padding:8px 10px;max-height:360px;overflow:auto}
details.more{margin-top:6px}details.more>summary{cursor:pointer;color:#1d4ed8;font-size:12.5px}
.body .facts{margin-top:12px}
footer{margin-top:32px;color:var(--muted);font-size:12px}
@media (max-width:800px){.sbs,.meta{grid-template-columns:1fr}.od{display:none}}
"""

_JS: Final = """
(function(){
[].forEach.call(document.querySelectorAll('section.records'),function(sec){
var list=sec.querySelector('.reclist'),q=sec.querySelector('.q'),err=sec.querySelector('.only-err'),
chg=sec.querySelector('.only-chg'),shown=sec.querySelector('.shown'),pager=sec.querySelector('.pager'),
pageno=sec.querySelector('.pageno'),index=sec.querySelector('script.recindex'),nojs=sec.querySelector('.nojs'),
chunks=sec.querySelectorAll('script.recpage'),cache={};
if(!list||!q)return;
var size=+list.getAttribute('data-page')||100,page=0;
var first=[].map.call(list.querySelectorAll('details.rec'),function(r){return r.outerHTML;});
var items=[].map.call(list.querySelectorAll('details.rec'),function(r){
return [r.querySelector('summary').textContent.toLowerCase(),
(r.hasAttribute('data-err')?1:0)|(r.hasAttribute('data-chg')?2:0)];});
if(index)items=items.concat(JSON.parse(index.textContent));
if(nojs)nojs.hidden=true;
function html(k){if(k<first.length)return first[k];var j=k-first.length,p=Math.floor(j/size);
if(!cache[p])cache[p]=JSON.parse(chunks[p].textContent);return cache[p][j%size];}
var all=items.map(function(x,k){return k;}),match=all;
function render(){var n=Math.max(1,Math.ceil(match.length/size));if(page>=n)page=n-1;if(page<0)page=0;
list.innerHTML=match.slice(page*size,(page+1)*size).map(html).join('')||'<p class="muted">No record matches.</p>';
shown.textContent=match.length.toLocaleString();pageno.textContent=(page+1).toLocaleString()+' / '+n.toLocaleString();
pager.hidden=n<2;}
function apply(){var s=q.value.trim().toLowerCase();
match=all.filter(function(k){var x=items[k];
return(!s||x[0].indexOf(s)>=0)&&(!err.checked||x[1]&1)&&(!chg.checked||x[1]&2);});
page=0;render();}
q.addEventListener('input',apply);err.addEventListener('change',apply);chg.addEventListener('change',apply);
sec.querySelector('.prev').addEventListener('click',function(){page--;render();});
sec.querySelector('.next').addEventListener('click',function(){page++;render();});
sec.querySelector('.open-all').addEventListener('click',function(){
[].forEach.call(list.querySelectorAll('details.rec'),function(r){r.open=true;});});
sec.querySelector('.close-all').addEventListener('click',function(){
[].forEach.call(list.querySelectorAll('details.rec'),function(r){r.open=false;});});
if(index){pageno.textContent='1 / '+Math.ceil(items.length/size).toLocaleString();pager.hidden=false;}
});
})();
"""


def _candidate_part(result: ReplayResult, position: int, records: Callable[..., Iterator[str]]) -> Iterator[str]:
    """A later candidate's own verdict, metrics, prompt diff and records (issue 13: every candidate's detail)."""
    from .._result import VersionInfo

    chosen = result.candidates[position]
    view = dataclasses.replace(
        result,
        candidate=VersionInfo(chosen.label, chosen.version, chosen.template, [chosen.version]),
        gates=chosen.gates,
        metrics=chosen.metrics,
        records=chosen.records,
        passed=chosen.passed,
    )
    candidate, baseline = side_label(view.candidate), side_label(view.baseline)
    suffix = f"-{position}"
    mark = "PASS" if chosen.passed else "FAIL"
    yield (
        f'<div class="cand" id="{candidate_anchor(position)}"><h2 class="candhead">Candidate {escape(candidate)}: '
        f'<span class="{"better" if chosen.passed else "worse"}">{mark}</span></h2>{gates_list(chosen.gates)}'
        f"{metrics_section(view, candidate, baseline, suffix)}{prompt_section(view, suffix)}"
    )
    yield from records(view, labels=(baseline, candidate), suffix=suffix)
    yield "</div>"


def render_html(
    result: ReplayResult,
    *,
    trace_url: Callable[[str], str] | None = None,
    detail_limit: int = DETAIL_LIMIT,
    max_chars: int = MAX_CHARS,
    page_size: int = PAGE_SIZE,
) -> str:
    """The self-contained HTML report of a replay.

    Args:
        result: The replay's result.
        trace_url: Maps a trace id to a link (e.g. the MLflow UI's trace view); without it trace ids are shown
            as text. Only `http(s)://` and relative links are made clickable.
        detail_limit: How many records (largest changes first) get a word-level output diff; the others show
            an excerpt. Keeps the file small for thousands of records.
        max_chars: Characters of each output shown in a detailed record.
        page_size: Records per page of the records list: the first page is in the document, the others are
            data the page's script shows a page at a time (a browser lays out a page, not 20,000 records).

    Returns:
        One HTML document that loads nothing from the network.
    """
    return "".join(
        iter_html(result, trace_url=trace_url, detail_limit=detail_limit, max_chars=max_chars, page_size=page_size)
    )


def iter_html(
    result: ReplayResult,
    *,
    shown: Callable[[RecordResult], RecordResult] | None = None,
    trace_url: Callable[[str], str] | None = None,
    detail_limit: int = DETAIL_LIMIT,
    max_chars: int = MAX_CHARS,
    page_size: int = PAGE_SIZE,
) -> Iterator[str]:
    """`render_html()`'s document in pieces, rendered a record at a time: write them as they come (issue 15).

    Args:
        result: The replay's result.
        shown: Applied to each record as it is rendered (`redaction()`: what the reports show).
        trace_url: As for `render_html()`.
        detail_limit: As for `render_html()`.
        max_chars: As for `render_html()`.
        page_size: As for `render_html()`.

    Yields:
        Pieces of one HTML document that loads nothing from the network.
    """
    candidate, baseline = side_label(result.candidate), side_label(result.baseline)
    verdict = "PASS" if result.passed else "FAIL"
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    records = functools.partial(
        records_section,
        trace_url=trace_url,
        detail_limit=max(detail_limit, 0),
        max_chars=max(max_chars, 1),
        page_size=max(page_size, 1),
        shown=shown,
    )
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{verdict} · promptops replay · {escape(result.target)}</title><style>{_CSS}</style></head>"
        "<body><main>"
    )
    yield verdict_section(result, candidate, baseline)
    yield (
        '<nav><a href="#facts">Run</a><a href="#metrics">Metrics</a><a href="#prompt">Prompt diff</a>'
        f'<a href="#records">Records ({len(result.records):,})</a></nav>'
    )
    yield candidates_section(result)
    yield facts_section(result)
    yield metrics_section(result, candidate, baseline)
    yield prompt_section(result)
    yield from records(result, labels=(baseline, candidate))
    for position in range(1, len(result.candidates)):
        yield from _candidate_part(result, position, records)
    yield (
        f"<footer>Generated by promptops {escape(__version__)} on {generated}. This file is self-contained: it loads "
        f"nothing from the network.</footer></main><script>{_JS}</script></body></html>\n"
    )
