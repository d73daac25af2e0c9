"""Jinja2 templates come from the registry: rendering is bounded in size and time (issue 11).

Each hostile template below took seconds and hundreds of megabytes before (the issue measured 785 MB and 7 s for
one of them); now each is stopped with a `PromptFormatError`, quickly and without allocating its result. The
peak memory is measured with tracemalloc, which sees every str, list and int the render allocates.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from promptops import Prompt, PromptFormatError
from promptops.prompts._jinja import MAX_RENDER_CHARS, MAX_RENDER_SECONDS

HOSTILE = {
    "repetition": "{{ 'x' * 800000000 }}",
    "nested repetition": "{% set a = 'x' * 1000000 %}{{ a * 1000 }}",
    "list repetition": "{{ ([1, 2, 3] * 300000000)|length }}",
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "loops over text": "{% for a in text %}{% for b in text %}{% for c in text %}{% endfor %}{% endfor %}{% endfor %}",
    "output flood": "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
    "doubling": "{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "plus doubling": "{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "center filter": "{{ 'x'|center(900000000) }}",
    "str method": "{{ 'x'.ljust(900000000) }}",
    "replace": "{% set s = 'x' * 100000 %}{{ s.replace('', s)|length }}",
    "replace filter": "{% set s = 'x' * 100000 %}{{ s|replace('', s)|length }}",
    "join": "{% set s = 'x' * 100000 %}{{ ([s] * 1000)|join|length }}",
    "percent format": "{{ '%0900000000d' % 1 }}",
    "format filter": "{{ '%0900000000d'|format(1) }}",
    "str.format": "{{ '{:>900000000}'.format(1) }}",
    "power": "{{ (7 ** 999999999) > 0 }}",
    "recursive macro": "{% macro f(n) %}{{ f(n + 1) }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "expandtabs": "{% set s = '\\t' * 100000 %}{{ s.expandtabs(10000)|length }}",
    "wordwrap": "{% set s = 'x ' * 100000 %}{{ s|wordwrap(1, wrapstring='y' * 100000)|length }}",
}


def jinja(template: str) -> str:
    """The template, with a `{% ... %}` tag so that `format()` renders it with Jinja2 (else `{{ }}` is MLflow's)."""
    return template if "{%" in template else "{% if true %}" + template + "{% endif %}"


@pytest.mark.parametrize("template", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_template_is_stopped_quickly_and_small(template: str) -> None:
    prompt = Prompt(name="evil", version=7, template=jinja(template))
    assert prompt.is_jinja
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(PromptFormatError, match="prompt 'evil' version 7"):
            prompt.format(text="x" * 2000)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounds the behaviour needs, with room for a loaded machine: the render stops at its deadline at the latest,
    # and never holds more than a few copies of the largest value it may build (10 million characters).
    assert elapsed < MAX_RENDER_SECONDS + 10
    assert peak < 200 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


def test_the_time_limit_is_what_stops_a_busy_template() -> None:
    prompt = Prompt(name="evil", version=7, template=HOSTILE["nested loops"])
    with pytest.raises(PromptFormatError, match=f"longer than {MAX_RENDER_SECONDS:g}s"):
        prompt.format()


def test_the_size_limit_is_what_stops_a_large_result() -> None:
    prompt = Prompt(name="evil", version=7, template=jinja(HOSTILE["repetition"]))
    with pytest.raises(PromptFormatError, match=f"exceed {MAX_RENDER_CHARS:,} characters"):
        prompt.format()


def test_ordinary_templates_render_as_before() -> None:
    prompt = Prompt(
        name="ok",
        version=1,
        template="{% for doc in docs %}[{{ loop.index }}] {{ doc|trim|title }}\n{% endfor %}"
        "{{ 'Answer in %d words' % n }} {{ '{:>5}'.format(n) }} {{ (sep * 3) ~ '!' }} {{ items|join(', ') }}",
    )
    rendered = prompt.format(docs=[" a doc ", "b"], n=50, sep="-", items=["x", "y"])
    assert rendered == "[1] A Doc\n[2] B\nAnswer in 50 words    50 ---! x, y"


def test_a_large_but_allowed_value_renders() -> None:
    document = "word " * 1_000_000  # 5 million characters: a long document in a prompt is fine
    prompt = Prompt(name="ok", version=1, template="{% if doc %}Summarize:\n{{ doc }}{% endif %}")
    assert prompt.format(doc=document) == "Summarize:\n" + document


def test_the_limits_reset_between_renders() -> None:
    prompt = Prompt(name="ok", version=1, template="{% for i in range(1000) %}{{ i }}{% endfor %}")
    for _ in range(3):
        assert prompt.format().endswith("999")
