"""The decorator on every kind of callable, against a real local MLflow registry."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import promptops
from promptops import Prompt
from tests.conftest import Registry


@pytest.fixture
def name(local_registry: Registry, prompt_name: str) -> str:
    """A prompt with v1 (alias production), v2 (alias staging), v3 (no alias)."""
    local_registry.register(prompt_name, "v1 {{text}}", alias="production")
    local_registry.register(prompt_name, "v2 {{text}}", alias="staging")
    local_registry.register(prompt_name, "v3 {{text}}")
    return prompt_name


def test_injects_the_production_prompt(name: str) -> None:
    @promptops.track(prompt=name)
    def summarize(text: str, *, prompt: Prompt) -> str:
        return prompt.format(text=text)

    assert summarize("hello") == "v1 hello"
    first, second = [], []

    @promptops.track(prompt=name)
    def sources(*, prompt: Prompt) -> tuple[str, int, str | None]:
        return prompt.source, prompt.version, prompt.alias

    first.append(sources())
    second.append(sources())
    assert first == [("cache", 1, "production")]  # resolved by summarize() already
    assert second == first


def test_first_resolution_says_registry(name: str) -> None:
    @promptops.track(prompt=name, version=3)
    def f(*, prompt: Prompt) -> str:
        return prompt.source

    assert f() == "registry"
    assert f() == "cache"


def test_current_prompt_without_a_prompt_parameter(name: str) -> None:
    @promptops.track(prompt=name)
    def f(text: str) -> str:
        current = promptops.current_prompt()
        assert current is not None
        return current.format(text=text)

    assert promptops.current_prompt() is None
    assert f("x") == "v1 x"
    assert promptops.current_prompt() is None


def test_resolution_order(name: str, local_registry: Registry) -> None:
    @promptops.track(prompt=name)
    def default(*, prompt: Prompt) -> int:
        return prompt.version

    @promptops.track(prompt=name, alias="staging")
    def by_alias(*, prompt: Prompt) -> int:
        return prompt.version

    @promptops.track(prompt=name, version=3)
    def by_version(*, prompt: Prompt) -> int:
        return prompt.version

    assert (default(), by_alias(), by_version()) == (1, 2, 3)
    promptops.configure(tracking_uri=local_registry.uri, pins={name: "staging"})
    assert (default(), by_alias(), by_version()) == (2, 2, 3)  # a pin beats the default alias only
    promptops.configure(pins={name: 3})
    assert default() == 3
    with promptops.use_prompt(name, version=1):  # an override beats everything
        assert (default(), by_alias(), by_version()) == (1, 1, 1)
        with promptops.use_prompt(name, alias="staging"):
            assert by_version() == 2
        assert by_version() == 1
    assert by_version() == 3
    promptops.configure(pins={}, default_alias="staging")
    assert default() == 2


def test_use_prompt_of_another_name_does_not_apply(name: str) -> None:
    @promptops.track(prompt=name)
    def f(*, prompt: Prompt) -> int:
        return prompt.version

    with promptops.use_prompt("something-else", version=2):
        assert f() == 1


def test_use_prompt_rejects_ambiguous_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one"), promptops.use_prompt("x"):
        pass
    with pytest.raises(ValueError, match="exactly one"), promptops.use_prompt("x", version=1, alias="a"):
        pass


def test_track_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not both"):
        promptops.track(prompt="x", version=1, alias="a")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="registry name"):
        promptops.track(prompt="")
    with pytest.raises(ValueError, match="alias="):
        promptops.track(prompt="x", version="staging")  # type: ignore[arg-type]


def test_signature_and_metadata_are_kept() -> None:
    @promptops.track(prompt="anything")
    def summarize(text: str, max_words: int = 50, *, prompt: Prompt) -> str:
        """Summarize text."""
        return text

    assert summarize.__name__ == "summarize"
    assert summarize.__doc__ == "Summarize text."
    assert summarize.__qualname__.endswith("summarize")
    assert str(inspect.signature(summarize)) == "(text: 'str', max_words: 'int' = 50, *, prompt: 'Prompt') -> 'str'"
    assert summarize.__wrapped__.__name__ == "summarize"  # type: ignore[attr-defined]


def test_user_exceptions_pass_through_untouched(name: str) -> None:
    class Boom(Exception):
        pass

    raised = Boom("bad")

    @promptops.track(prompt=name)
    def f(*, prompt: Prompt) -> None:
        raise raised

    with pytest.raises(Boom) as info:
        f()
    assert info.value is raised
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "f"  # the user's own frame is where it was raised
    assert promptops.current_prompt() is None  # and the context was restored


def test_caller_supplied_prompt_is_respected() -> None:
    # No registry configured: a prompt passed by the caller (e.g. in the user's own unit tests) is used as is.
    given = Prompt(name="p", version=9, template="T {{x}}", source="fallback")

    @promptops.track(prompt="p")
    def f(x: str, prompt: Prompt) -> tuple[Any, Any]:
        return prompt.format(x=x), promptops.current_prompt()

    assert f("a", prompt=given) == ("T a", given)
    assert f("a", given) == ("T a", given)


async def test_async_function(name: str) -> None:
    @promptops.track(prompt=name)
    async def f(text: str, *, prompt: Prompt) -> str:
        await asyncio.sleep(0)
        current = promptops.current_prompt()
        assert current is prompt
        return prompt.format(text=text)

    assert inspect.iscoroutinefunction(f)
    assert await f("a") == "v1 a"
    assert promptops.current_prompt() is None


async def test_use_prompt_is_per_task(name: str) -> None:
    @promptops.track(prompt=name)
    async def f(*, prompt: Prompt) -> int:
        await asyncio.sleep(0.01)
        return prompt.version

    async def under(version: int) -> int:
        with promptops.use_prompt(name, version=version):
            await asyncio.sleep(0)
            return await f()

    results = await asyncio.gather(under(1), under(2), under(3), f())
    assert results == [1, 2, 3, 1]


def test_use_prompt_is_per_thread(name: str) -> None:
    @promptops.track(prompt=name)
    def f(*, prompt: Prompt) -> int:
        return prompt.version

    results: dict[str, int] = {}
    with promptops.use_prompt(name, version=3):
        plain = threading.Thread(target=lambda: results.__setitem__("plain", f()))
        context = contextvars.copy_context()
        copied = threading.Thread(target=lambda: results.__setitem__("copied", context.run(f)))
        plain.start(), copied.start()
        plain.join(), copied.join()
        results["here"] = f()
    assert results == {"plain": 1, "copied": 3, "here": 3}


def test_generator(name: str) -> None:
    closed: list[bool] = []

    @promptops.track(prompt=name)
    def stream(n: int, *, prompt: Prompt) -> Iterator[tuple[int, int]]:
        try:
            for i in range(n):
                current = promptops.current_prompt()
                assert current is not None
                received = yield i, current.version
                if received is not None:
                    yield -1, received
        finally:
            closed.append(True)

    assert inspect.isgeneratorfunction(stream.__wrapped__)  # type: ignore[attr-defined]
    assert list(stream(3)) == [(0, 1), (1, 1), (2, 1)]
    assert closed == [True]

    with promptops.use_prompt(name, version=2):
        later = stream(5)  # resolved at call time
    assert next(later) == (0, 2)
    assert promptops.current_prompt() is None  # not leaked between steps
    assert later.send(42) == (-1, 42)
    later.close()
    assert closed == [True, True]


def test_generator_throw_and_early_break(name: str) -> None:
    seen: list[str] = []

    @promptops.track(prompt=name)
    def stream(*, prompt: Prompt) -> Iterator[int]:
        try:
            yield 1
            yield 2
        except KeyError:
            seen.append("caught")
            yield 99
        finally:
            seen.append("finally")

    gen = stream()
    assert next(gen) == 1
    assert gen.throw(KeyError("k")) == 99
    for _ in stream():
        break
    assert seen == ["caught", "finally"]  # the abandoned loop's generator was closed
    del gen
    import gc

    gc.collect()
    assert seen.count("finally") == 2


async def test_async_generator(name: str) -> None:
    @promptops.track(prompt=name)
    async def stream(n: int, *, prompt: Prompt) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            current = promptops.current_prompt()
            assert current is prompt
            yield prompt.version * 10 + i

    assert inspect.isasyncgenfunction(stream.__wrapped__)  # type: ignore[attr-defined]
    assert [item async for item in stream(3)] == [10, 11, 12]
    with promptops.use_prompt(name, version=3):
        later = stream(2)
    assert [item async for item in later] == [30, 31]


async def test_async_generator_aclose(name: str) -> None:
    finished: list[str] = []

    @promptops.track(prompt=name)
    async def stream(*, prompt: Prompt) -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            finished.append("closed")

    gen = stream()
    assert await gen.__anext__() == 1
    await gen.aclose()  # type: ignore[attr-defined]
    assert finished == ["closed"]


class Service:
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    @promptops.track(prompt="method-prompt", fallback="F {{x}}")
    def method(self, x: str, *, prompt: Prompt) -> str:
        return prompt.format(x=x) + self.suffix

    @promptops.track(prompt="method-prompt", fallback="F {{x}}")
    @classmethod
    def outer_classmethod(cls, x: str, *, prompt: Prompt) -> str:
        return f"{cls.__name__}:{prompt.format(x=x)}"

    @classmethod
    @promptops.track(prompt="method-prompt", fallback="F {{x}}")
    def inner_classmethod(cls, x: str, *, prompt: Prompt) -> str:
        return f"{cls.__name__}:{prompt.format(x=x)}"

    @promptops.track(prompt="method-prompt", fallback="F {{x}}")
    @staticmethod
    def outer_static(x: str, *, prompt: Prompt) -> str:
        return prompt.format(x=x)

    @staticmethod
    @promptops.track(prompt="method-prompt", fallback="F {{x}}")
    def inner_static(x: str, prompt: Prompt) -> str:
        return prompt.format(x=x)


def test_methods_classmethods_staticmethods(local_registry: Registry) -> None:
    local_registry.register("method-prompt", "M {{x}}", alias="production")
    service = Service("!")
    assert service.method("a") == "M a!"
    assert Service.method(service, "b") == "M b!"
    assert Service.outer_classmethod("c") == "Service:M c"
    assert service.outer_classmethod("c") == "Service:M c"
    assert Service.inner_classmethod("d") == "Service:M d"
    assert Service.outer_static("e") == "M e"
    assert service.inner_static("f") == "M f"
    assert str(inspect.signature(service.method)) == "(x: 'str', *, prompt: 'Prompt') -> 'str'"
    assert str(inspect.signature(Service.outer_classmethod)) == "(x: 'str', *, prompt: 'Prompt') -> 'str'"


def test_fallback_when_prompt_is_missing(local_registry: Registry, prompt_name: str) -> None:
    @promptops.track(prompt=prompt_name, fallback="fallback {{text}}")
    def f(text: str, *, prompt: Prompt) -> tuple[str, str, int]:
        return prompt.format(text=text), prompt.source, prompt.version

    assert f("x") == ("fallback x", "fallback", 0)


def test_missing_prompt_raises_not_found(local_registry: Registry, prompt_name: str) -> None:
    @promptops.track(prompt=prompt_name)
    def f(*, prompt: Prompt) -> str:
        return prompt.source

    with pytest.raises(promptops.PromptNotFoundError) as info:
        f()
    message = str(info.value)
    assert prompt_name in message and "alias 'production'" in message and local_registry.uri in message
    assert "promptops prompts register" in message
    assert info.value.name == prompt_name
