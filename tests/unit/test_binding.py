"""Argument binding (`promptops._binding`): parameter names for a call's arguments, as spans and records show them."""

from __future__ import annotations

import inspect
from typing import Any

from promptops._binding import ArgumentBinder, bind_arguments
from promptops._redact import Redactor
from promptops._serialize import dumps_for_span

REDACTOR = Redactor()


def plain(text: str, n: int = 3, *, flag: bool = False, prompt: object = None) -> None: ...


def variadic(first: Any, /, *args: Any, prompt: object = None, **kwargs: Any) -> None: ...


class Service:
    def method(self, text: str, prompt: object = None) -> None: ...

    @classmethod
    def build(cls, text: str) -> None: ...


def test_bind_positional_and_keyword_arguments() -> None:
    signature = inspect.signature(plain)
    assert bind_arguments(signature, ("hi",), {}) == {"text": "hi"}  # defaults are not recorded
    assert bind_arguments(signature, ("hi", 5), {"flag": True, "prompt": "P"}) == {"text": "hi", "n": 5, "flag": True}
    assert bind_arguments(signature, (), {"n": 1, "text": "x"}) == {"n": 1, "text": "x"}
    assert bind_arguments(signature, ("hi",), {"prompt": "P"}, exclude=()) == {"text": "hi", "prompt": "P"}


def test_bind_variadic_arguments_keep_their_names() -> None:
    signature = inspect.signature(variadic)
    assert bind_arguments(signature, (1, 2, 3), {"k": 4, "prompt": "P"}) == {
        "first": 1,
        "args": (2, 3),
        "kwargs": {"k": 4},
    }


def test_bind_drops_self_and_cls() -> None:
    service = Service()
    assert bind_arguments(inspect.signature(Service.method), (service, "hi"), {}) == {"text": "hi"}
    assert bind_arguments(inspect.signature(Service.build.__func__), (Service, "hi"), {}) == {"text": "hi"}
    assert bind_arguments(inspect.signature(service.method), ("hi",), {}) == {"text": "hi"}  # already bound


def test_the_excluded_prompt_is_left_out_however_it_is_passed() -> None:
    signature = inspect.signature(Service.method)  # `prompt` may come positionally here
    service = Service()
    assert bind_arguments(signature, (service, "hi", "P"), {}) == {"text": "hi"}
    assert bind_arguments(signature, (service, "hi"), {"prompt": "P"}) == {"text": "hi"}
    assert bind_arguments(signature, (service, "hi", "P"), {"prompt": "Q"}) == {  # twice: the call will raise
        "args": [service, "hi", "P"],
        "kwargs": {},
    }


def test_bind_falls_back_when_the_arguments_do_not_fit() -> None:
    signature = inspect.signature(plain)
    assert bind_arguments(signature, (1, 2, 3), {}) == {"args": [1, 2, 3], "kwargs": {}}
    assert bind_arguments(signature, ("hi",), {"text": "again", "prompt": "P"}) == {
        "args": ["hi"],
        "kwargs": {"text": "again"},
    }
    assert bind_arguments(signature, (), {"unknown": 1}) == {"args": [], "kwargs": {"unknown": 1}}


def test_binder_and_span_text_together() -> None:
    binder = ArgumentBinder(inspect.signature(plain))
    text = dumps_for_span(binder(("summarise this", 2), {"prompt": "P"}), max_chars=200, redactor=REDACTOR)
    assert text == '{"text":"summarise this","n":2}'
