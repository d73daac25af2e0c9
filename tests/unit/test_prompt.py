from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptops import Prompt, PromptFormatError
from promptops.prompts._prompt import _VARIABLE  # pyright: ignore[reportPrivateUsage]


def make(template: object, **kwargs: object) -> Prompt:
    return Prompt(name="summarize", version=3, template=template, **kwargs)  # type: ignore[arg-type]


def test_text_template_variables_and_format() -> None:
    prompt = make("Summarize in {{ n }} words:\n{{text}}")
    assert prompt.variables == {"n", "text"}
    assert prompt.format(text="hello", n=5, unused=1) == "Summarize in 5 words:\nhello"
    assert not prompt.is_chat
    assert prompt.uri == "prompts:/summarize/3"


def test_missing_variables_are_named() -> None:
    prompt = make("{{a}} {{ b }} {{c}}")
    with pytest.raises(PromptFormatError) as info:
        prompt.format(a=1)
    message = str(info.value)
    assert "'summarize'" in message and "b, c" in message and "version 3" in message
    assert isinstance(info.value, KeyError)


def test_chat_template_format() -> None:
    prompt = make([{"role": "system", "content": "Be {{tone}}."}, {"role": "user", "content": "{{question}}"}])
    assert prompt.is_chat
    assert prompt.variables == {"tone", "question"}
    assert prompt.format(tone="brief", question="Why?") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why?"},
    ]


def test_values_containing_braces_are_not_reinterpreted() -> None:
    prompt = make("A {{x}} B {{y}}")
    assert prompt.format(x="{{y}}", y="1") == "A {{y}} B 1"


def test_jinja_templates_render_in_a_sandbox() -> None:
    prompt = make("{% for item in items %}- {{ item }}\n{% endfor %}")
    assert prompt.is_jinja and not make("Summarize {{ text }}").is_jinja
    assert prompt.format(items=["a", "b"]) == "- a\n- b\n"
    with pytest.raises(PromptFormatError, match="items"):
        prompt.format()


@pytest.mark.parametrize(
    "escape",
    [
        "{% if 1 %}{{ ''.__class__.__mro__[1].__subclasses__() }}{% endif %}",  # every class of the interpreter
        "{% if 1 %}{{ cycler.__init__.__globals__.os.getcwd() }}{% endif %}",  # a module's globals, then os
        "{% if 1 %}{{ items.pop() }}{% endif %}",  # fine: a list method, not an escape (positive control)
    ],
)
def test_the_jinja_sandbox_refuses_to_leave_the_template(escape: str) -> None:
    # Issue 16: swapping SandboxedEnvironment for Environment kept this file green. Under a plain Environment the
    # first two render the interpreter's classes and the working directory.
    prompt = make(escape)
    if "pop" in escape:
        assert prompt.format(items=[1, 2]) == "2"
        return
    with pytest.raises(PromptFormatError, match="unsafe template refused by the sandbox"):
        prompt.format(items=[])


def test_a_broken_jinja_template_names_the_prompt() -> None:
    for template in ("{% for x in %}{% endfor %}", "{% if x %}{{ 1 + 'a' }}{% endif %}"):
        with pytest.raises(PromptFormatError, match="prompt 'summarize' version 3: the Jinja2 template failed"):
            make(template).format(x=True)


def test_single_brace_format_escapes_literal_braces() -> None:
    prompt = make('Return JSON like {"summary": "..."} for {{ text }}')
    converted = prompt.to_single_brace_format()
    assert converted == 'Return JSON like {{"summary": "..."}} for {text}'
    # LangChain's f-string formatting is str.format: the conversion must round-trip.
    assert isinstance(converted, str)
    assert converted.format(text="T") == 'Return JSON like {"summary": "..."} for T'


def test_single_brace_format_chat() -> None:
    prompt = make([{"role": "user", "content": "{{q}} {x}"}])
    assert prompt.to_single_brace_format() == [{"role": "user", "content": "{q} {{x}}"}]


def test_dict_round_trip() -> None:
    prompt = make(
        [{"role": "user", "content": "{{q}}"}],
        alias="production",
        model_config={"model_name": "gpt", "temperature": 0.1},
        tags={"team": "search"},
        commit_message="first",
    )
    assert Prompt.from_dict(prompt.to_dict()) == prompt


@given(
    # Any text that does not itself contain a {{ variable }}: stray braces, "{{ not closed", JSON...
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60).filter(
        lambda s: not _VARIABLE.search(s + s)
    ),
    st.text(alphabet="abcdefghij_", min_size=1, max_size=8).filter(lambda s: not s[0].isdigit()),
)
def test_single_brace_conversion_round_trips_any_text(literal: str, variable: str) -> None:
    prompt = make(literal + "{{ " + variable + " }}" + literal)
    converted = prompt.to_single_brace_format()
    assert isinstance(converted, str)
    # str.format sees exactly one field; literal text comes back verbatim.
    assert converted.format(**{variable: "<V>"}) == literal + "<V>" + literal
