"""Rendering Jinja2 prompt templates in a sandbox, bounded in output size and time.

Templates come from the registry, that is from outside the code: one stored by mistake or by someone hostile must
not take the application's memory or CPU (issue 11 measured 785 MB and 7 s for one `format()`). On top of
Jinja2's `SandboxedEnvironment` (no `__class__`, `__globals__` and the like, `range()` capped), a render:

* produces at most `MAX_RENDER_CHARS` characters of output, and no value it builds on the way (`*`, `+`, `~`,
  `%`, `str.format`, `join`, `replace`, `center`, ...) may exceed that size: the size is checked *before* the
  value is built, so nothing large is ever allocated;
* ends at `MAX_RENDER_SECONDS`: every loop iteration, call and filter checks the clock.

Either raises `RenderLimitError`. Compiled templates are cached (by text), so a prompt is compiled once.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["MAX_RENDER_CHARS", "MAX_RENDER_SECONDS", "RenderLimitError", "render"]

MAX_RENDER_CHARS = 10_000_000
MAX_RENDER_SECONDS = 2.0
_TICK = "promptops_tick"
_CACHE_SIZE = 128

_local = threading.local()


class RenderLimitError(SecurityError):
    """A template went over the output size or time a render is allowed."""


def _deadline_check() -> None:
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise RenderLimitError(f"rendering took longer than {MAX_RENDER_SECONDS:g}s")


def _size(value: Any, budget: int = MAX_RENDER_CHARS) -> int:
    """The characters `value` would take as text, counted only up to just past `budget` (containers included)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, Mapping):
        value = [*value.keys(), *value.values()]  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
    if isinstance(value, (list, tuple, set, frozenset)):
        total = 0
        for item in value:  # pyright: ignore[reportUnknownVariableType]
            total += 1 + _size(item, budget - total)
            if total > budget:
                break
        return total
    return 8  # a number, None, a bool: small whatever it is


def _refuse_over(size: int, what: str) -> None:
    if size > MAX_RENDER_CHARS:
        raise RenderLimitError(f"{what} would exceed {MAX_RENDER_CHARS:,} characters")


_PERCENT_FIELD = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d*))?")
_BRACE_FIELD = re.compile(r"\{[^{}]*:([^{}]*)\}")
_DIGITS = re.compile(r"\d+")


def _check_format_string(text: str) -> None:
    """Refuse a %-format or str.format string whose width or precision alone would exceed the limit."""
    widths = [int(group) for match in _PERCENT_FIELD.finditer(text) for group in match.groups() if group]
    widths += [int(digits) for spec in _BRACE_FIELD.findall(text) for digits in _DIGITS.findall(spec)]
    if any(width > MAX_RENDER_CHARS for width in widths):
        raise RenderLimitError(f"a format width over {MAX_RENDER_CHARS:,} characters")


def _check_ints(args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_RENDER_CHARS:
            raise RenderLimitError(f"a size argument over {MAX_RENDER_CHARS:,}")


def _estimate(name: str, subject: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse a call (filter or str method) known to multiply its input before it runs."""
    _check_ints([*args, *kwargs.values()])
    if not isinstance(subject, str):
        if name == "join":
            items: Any = subject
            if isinstance(items, (list, tuple, set, frozenset, dict)):
                separator = args[0] if args and isinstance(args[0], str) else ""
                _refuse_over(_size(items) + len(separator) * len(items), "join()")  # pyright: ignore[reportUnknownArgumentType]
        return
    text = subject
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        slots = len(text) + 1 if not old else text.count(old)
        _refuse_over(len(text) + slots * len(new), "replace()")
    elif name == "join" and args:
        # "sep".join(items), or the join filter on a text (its characters joined by the separator)
        _refuse_over(_size(args[0]) * (len(text) + 1), "join()")
    elif name == "wordwrap":
        width = next((arg for arg in [*args, *kwargs.values()] if isinstance(arg, int)), 79)
        wrap = next((arg for arg in [*args[1:], *kwargs.values()] if isinstance(arg, str)), "\n")
        _refuse_over(len(text) + (len(text) // max(width, 1) + 1) * max(len(wrap), 1), "wordwrap()")
    elif name in ("center", "ljust", "rjust", "zfill", "indent", "expandtabs"):
        width = next((arg for arg in [*args, *kwargs.values()] if isinstance(arg, int)), 0)
        lines = text.count("\n") + text.count("\t") + 1
        _refuse_over(len(text) + lines * width, f"{name}()")
    elif name == "format" or name == "format_map":
        _check_format_string(text)


class _Generator(CodeGenerator):
    """Jinja2's code generator, with a clock check at the top of every loop iteration and a checked `~`."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        tick = nodes.ExprStmt(nodes.Call(nodes.Name(_TICK, "load"), [], [], None, None))
        node.body = [tick, *node.body]
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.promptops_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Environment(SandboxedEnvironment):
    """The sandbox with size checks on the operators, calls and filters that can build large values."""

    code_generator_class = _Generator
    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def __init__(self) -> None:
        # optimized=False: no constant folding at compile time, where no limit applies.
        super().__init__(undefined=StrictUndefined, optimized=False, autoescape=False)
        globals_: dict[str, Any] = self.globals
        globals_[_TICK] = _deadline_check
        self.filters = {name: _checked_filter(name, function) for name, function in self.filters.items()}

    def promptops_concat(self, parts: Iterable[Any]) -> str:
        """`a ~ b`: joined as Jinja2 does, once the result is known to fit."""
        texts = [str(part) for part in parts]
        _refuse_over(sum(len(text) for text in texts), "a ~ concatenation")
        return "".join(texts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """`*`, `**`, `+` and `%`, refused when the result would be too large."""
        _deadline_check()
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(count, int) and isinstance(sequence, (str, list, tuple)):
                    _refuse_over(_size(sequence) * max(count, 0), "a * repetition")  # pyright: ignore[reportUnknownArgumentType]
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
                if abs(left).bit_length() * right > 64 * 1024:  # a number of more than about 20,000 digits
                    raise RenderLimitError("a ** result too large")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                _refuse_over(_size(left) + _size(right), "a + concatenation")  # pyright: ignore[reportUnknownArgumentType]
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left)
            _check_ints(right if isinstance(right, tuple) else [right])  # pyright: ignore[reportUnknownArgumentType]
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """A call from the template: the clock is checked, and str methods that multiply their input are sized."""
        _deadline_check()
        subject = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(subject, (str, list, tuple)) and isinstance(name, str):
            _estimate(name, subject, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format`/`format_map` in the sandbox, with widths checked first."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_format_string(value.__self__)
        return wrapped


def _checked_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _deadline_check()
        # Filters receive (value, ...) or, when marked pass_context/pass_environment, that object first.
        values = [arg for arg in args if not isinstance(arg, (SandboxedEnvironment,)) and not _is_context(arg)]
        if values:
            _estimate(name, values[0], tuple(values[1:]), kwargs)
        result: Any = function(*args, **kwargs)
        _refuse_over(_size(result), f"the {name} filter's result")
        return result

    return checked


def _is_context(value: Any) -> bool:
    return type(value).__name__ in ("Context", "EvalContext")


_environment_lock = threading.Lock()
_environment: _Environment | None = None


def _compiled(source: str) -> Any:
    global _environment
    with _environment_lock:
        if _environment is None:
            _environment = _Environment()
        environment = _environment
    return _compile(environment, source)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(environment: _Environment, source: str) -> Any:
    return environment.from_string(source)


def render(source: str, variables: Mapping[str, Any]) -> str:
    """Render `source` with `variables` in the bounded sandbox.

    Raises:
        RenderLimitError: the output or a value built on the way would exceed `MAX_RENDER_CHARS`, or rendering
            took longer than `MAX_RENDER_SECONDS`.
        jinja2.exceptions.SecurityError: the template reached for something the sandbox forbids.
        jinja2.exceptions.UndefinedError: a variable the template uses was not given.
        jinja2.exceptions.TemplateSyntaxError: the template is not valid Jinja2.
    """
    template = _compiled(source)
    outer = getattr(_local, "deadline", None)  # a template rendered from inside another keeps the outer clock
    if outer is None:
        _local.deadline = time.monotonic() + MAX_RENDER_SECONDS
    try:
        parts: list[str] = []
        size = 0
        for part in template.generate(**variables):
            size += len(part)
            _refuse_over(size, "the rendered prompt")
            parts.append(part)
        return "".join(parts)
    finally:
        if outer is None:
            _local.deadline = None
