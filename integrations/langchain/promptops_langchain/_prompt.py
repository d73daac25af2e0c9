"""`pinned_prompt()`: a LangChain prompt template that is the pinned MLflow prompt version, resolved at invoke time.

The template is not fixed when the chain is built: every invocation resolves the prompt the way
`@promptops.track` does (a `use_prompt()` override, else `version=`/`alias=`, else a configured pin, else the
default alias; from memory, the registry, the last-known-good disk copy, then `fallback=`). So a long-lived
chain follows alias moves, and replay can override the version. The resolved version is reported to every
`PromptOpsCallbackHandler` of the run, which puts it on the spans and the capture record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import BasePromptTemplate, ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.utils.pydantic import TypeBaseModel
from pydantic import PrivateAttr
from typing_extensions import override

import promptops
from promptops import PromptFormatError, PromptopsError, PromptUnavailableError
from promptops.prompts import Prompt, Template, resolver, selector_for

from ._internals import log_internal_error

if TYPE_CHECKING:
    from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun

__all__ = ["PinnedPrompt", "pinned_prompt"]

Selector = tuple[str, "int | str"]

# LangChain templates built per resolved prompt object: the memory cache hands every call the same object, so
# a warm invocation costs a dict lookup. Bounded: fallbacks and overrides make new objects now and then.
_templates: dict[int, tuple[Prompt, _Converted]] = {}
_MAX_TEMPLATES = 256
# MLflow's variable syntax, as promptops.Prompt reads it (dots allowed).
_VARIABLE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\s*\}\}")


class _Converted(NamedTuple):
    template: BasePromptTemplate[Any]
    # LangChain's f-strings reject dotted names (`{{ user.name }}` is valid in MLflow): such variables get a
    # plain name in the template, and the input's dotted key is passed under it. {template name: input key}.
    renamed: dict[str, str]


def to_langchain_template(prompt: Prompt) -> BasePromptTemplate[Any]:
    """The LangChain template for a prompt version: `PromptTemplate` for text, `ChatPromptTemplate` for chat.

    MLflow's `{{ variable }}` becomes LangChain's `{variable}` and literal braces are doubled
    (`Prompt.to_single_brace_format()`); a template with Jinja2 control flow (`{% ... %}`) is kept as it is,
    with `template_format="jinja2"`. Chat messages keep their roles (`system`, `user`, `assistant`, and
    `placeholder` for a `MessagesPlaceholder`). A dotted variable (`{{ user.name }}`), which LangChain's
    f-strings reject, is named `user_dot_name` in the template; `pinned_prompt()` passes it the input's
    `"user.name"`.

    Args:
        prompt: A resolved prompt.

    Returns:
        The template (cached per prompt object).
    """
    return _convert(prompt).template


def _convert(prompt: Prompt) -> _Converted:
    cached = _templates.get(id(prompt))
    if cached is not None and cached[0] is prompt:
        return cached[1]
    original = prompt
    jinja = prompt.is_jinja
    renamed: dict[str, str] = {}
    if not jinja and any("." in name for name in prompt.variables):

        def plain(match: re.Match[str]) -> str:
            name = match.group(1)
            if "." not in name:
                return match.group(0)
            safe = name.replace(".", "_dot_")
            renamed[safe] = name
            return "{{ " + safe + " }}"

        texts = prompt.template
        prompt = dataclasses.replace(
            prompt,
            template=_VARIABLE.sub(plain, texts)
            if isinstance(texts, str)
            else [
                {**message, "content": _VARIABLE.sub(plain, message["content"])}
                if isinstance(message.get("content"), str)
                else message
                for message in texts
            ],
        )
    source = prompt.template if jinja else prompt.to_single_brace_format()
    template: BasePromptTemplate[Any]
    if isinstance(source, str):
        template = PromptTemplate.from_template(source, template_format="jinja2" if jinja else "f-string")
    else:
        template = ChatPromptTemplate.from_messages(
            [(str(message.get("role", "user")), message.get("content", "")) for message in source],
            template_format="jinja2" if jinja else "f-string",
        )
    converted = _Converted(template, renamed)
    if len(_templates) >= _MAX_TEMPLATES:
        _templates.clear()
    _templates[id(original)] = (original, converted)
    return converted


def _variables(prompt: Prompt, converted: _Converted, value: Any) -> dict[str, Any]:
    """The template's variables from the run's input (as LangChain's prompt templates read it)."""
    renamed = converted.renamed
    names = [renamed.get(name, name) for name in converted.template.input_variables]
    if not isinstance(value, dict):
        if len(names) == 1:
            value = {names[0]: value}
        else:
            raise TypeError(
                f"prompt {prompt.name!r} version {prompt.version} takes a dict of its variables "
                f"({', '.join(names) or 'none'}), got {type(value).__name__}"
            )
    given: dict[str, Any] = value  # pyright: ignore[reportUnknownVariableType]
    missing = sorted(set(names) - given.keys())
    if missing:
        raise PromptFormatError(
            f"prompt {prompt.name!r} version {prompt.version} needs variable(s) {', '.join(missing)}; pass them in "
            f"the chain input, e.g. {{{missing[0]!r}: ...}} (got {sorted(map(str, given)) or 'no keys'})"
        )
    if renamed:
        given = {**given, **{safe: given[name] for safe, name in renamed.items()}}
    return given


def _announce(run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun, prompt: Prompt) -> None:
    """Tell the run's promptops handlers which version served it (they record it on the span and the capture)."""
    try:
        for handler in run_manager.handlers:
            used = getattr(handler, "promptops_prompt_used", None)
            if used is not None:
                used(run_manager.run_id, prompt)
    except Exception:
        log_internal_error("langchain prompt report")


class PinnedPrompt(RunnableSerializable[dict[str, Any], PromptValue]):
    """A prompt template resolved from the MLflow Prompt Registry at every invocation; build it with `pinned_prompt()`.

    It formats its input into a `PromptValue` as LangChain's own `PromptTemplate` or `ChatPromptTemplate` would
    (a single-variable template also takes the bare value). Replay finds it in a chain by its `promptops_prompt`
    attribute.

    Attributes:
        promptops_prompt: The prompt's registry name.
        version: The version it always uses (unless a `use_prompt()` block overrides it), if given.
        alias: The alias it uses instead of a configured pin or the default alias, if given.
        fallback: The template used when neither the registry nor the disk copy can be had.
    """

    promptops_prompt: str
    version: int | None = None
    alias: str | None = None
    fallback: Template | None = None

    _fallback_prompt: Prompt | None = PrivateAttr(default=None)

    @override
    def model_post_init(self, context: Any, /) -> None:
        """Build the fallback prompt once."""
        if self.fallback is not None:
            self._fallback_prompt = Prompt(
                name=self.promptops_prompt, version=0, template=self.fallback, alias=None, source="fallback"
            )

    @property
    def promptops_selector(self) -> Selector | None:
        """`("version", n)` or `("alias", name)` as given to `pinned_prompt()`, else `None` (pins, default alias)."""
        if self.version is not None:
            return ("version", self.version)
        if self.alias is not None:
            return ("alias", self.alias)
        return None

    @property
    @override
    def InputType(self) -> type[dict[str, Any]]:
        """A dict of the template's variables."""
        return dict[str, Any]

    @property
    @override
    def OutputType(self) -> type[PromptValue]:
        """A `PromptValue` (text for text templates, messages for chat templates)."""
        return PromptValue

    @override
    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        """`PinnedPrompt<name>`, the run name LangChain shows, unless a name was set."""
        return super().get_name(suffix, name=name or self.name or f"PinnedPrompt<{self.promptops_prompt}>")

    @override
    def get_input_schema(self, config: RunnableConfig | None = None) -> TypeBaseModel:
        """The variables of the version resolved now; any dict when no copy of the prompt can be had."""
        try:
            converted = _convert(self.resolve())
        except PromptopsError:
            return super().get_input_schema(config)
        if converted.renamed:  # the template's names are not the input's keys
            return super().get_input_schema(config)
        return converted.template.get_input_schema(config)

    def selector(self) -> Selector:
        """Which version an invocation would ask for now: override > `version=`/`alias=` > pin > default alias."""
        return selector_for(self.promptops_prompt, self.promptops_selector, promptops.get_settings())

    def resolve(self) -> Prompt:
        """The prompt version an invocation would use now (from memory when cached; else at most one registry trip).

        Returns:
            The prompt.

        Raises:
            PromptUnavailableError: no copy can be had (registry, disk, `fallback=`).
        """
        return self._resolve(self.selector())

    async def aresolve(self) -> Prompt:
        """`resolve()` for async code: a cache miss waits for the registry in a thread, not on the event loop.

        Returns:
            The prompt.
        """
        selector = self.selector()
        try:
            cached = resolver().cached(self.promptops_prompt, selector)
        except Exception:
            log_internal_error("prompt cache lookup")
            cached = None
        if cached is not None:
            return cached
        return await asyncio.to_thread(self._resolve, selector)

    def _resolve(self, selector: Selector) -> Prompt:
        try:
            return resolver().resolve(self.promptops_prompt, selector, self._fallback_prompt)
        except PromptUnavailableError:
            raise
        except Exception:
            log_internal_error("prompt resolution")
            if self._fallback_prompt is not None:
                return self._fallback_prompt
            raise PromptUnavailableError(
                f"prompt {self.promptops_prompt!r} could not be resolved because of an internal error in promptops "
                "(logged above); pass fallback= to pinned_prompt() to keep serving meanwhile",
                name=self.promptops_prompt,
                selector=str(selector),
                uri=promptops.get_settings().tracking_uri,
            ) from None

    def _format(self, value: Any, run_manager: CallbackManagerForChainRun) -> PromptValue:
        prompt = self.resolve()
        _announce(run_manager, prompt)
        converted = _convert(prompt)
        return converted.template.format_prompt(**_variables(prompt, converted, value))

    async def _aformat(self, value: Any, run_manager: AsyncCallbackManagerForChainRun) -> PromptValue:
        prompt = await self.aresolve()
        _announce(run_manager, prompt)
        converted = _convert(prompt)
        return await converted.template.aformat_prompt(**_variables(prompt, converted, value))

    @override
    def invoke(self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> PromptValue:
        """Resolve the prompt and format it with `input`, as a `prompt` run.

        Args:
            input: The template's variables (or the bare value for a single-variable template).
            config: The run's config.
            **kwargs: Ignored, as by LangChain's prompt templates.

        Returns:
            The formatted prompt.
        """
        return self._call_with_config(self._format, input, config, run_type="prompt")

    @override
    async def ainvoke(self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> PromptValue:
        """Async `invoke`.

        Args:
            input: The template's variables (or the bare value for a single-variable template).
            config: The run's config.
            **kwargs: Ignored, as by LangChain's prompt templates.

        Returns:
            The formatted prompt.
        """
        return await self._acall_with_config(self._aformat, input, config, run_type="prompt")


def pinned_prompt(
    name: str,
    *,
    version: int | None = None,
    alias: str | None = None,
    fallback: Template | None = None,
) -> PinnedPrompt:
    """A LangChain prompt template that serves the pinned version of a registry prompt, resolved at each invocation.

    Text prompts format like a `PromptTemplate`, chat prompts like a `ChatPromptTemplate`; MLflow's
    `{{ variable }}` placeholders are converted. Resolution follows `@promptops.track`: a `use_prompt()`
    override, else `version=`/`alias=`, else a configured pin, else the default alias; the copy comes from
    memory, the registry, the last-known-good disk copy, then `fallback=`.

    ```python
    from langchain_core.output_parsers import StrOutputParser
    from promptops_langchain import pinned_prompt

    chain = pinned_prompt("summarize", fallback="Summarize: {{ text }}") | chat_model | StrOutputParser()
    ```

    Args:
        name: The prompt's name in the MLflow Prompt Registry.
        version: Always use this version (unless overridden by `use_prompt`).
        alias: Use this alias instead of the configured pin or default alias.
        fallback: A template (MLflow `{{ variable }}` syntax, text or chat messages) used when no registry or
            disk copy can be had; the run then reports version 0, source `fallback`.

    Returns:
        The runnable.

    Raises:
        ValueError: no name, both `version` and `alias`, a version below 1, or a malformed fallback.
    """
    if not isinstance(name, str) or not name:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError("pinned_prompt() needs the prompt's registry name")
    if version is not None and alias is not None:
        raise ValueError(f"pinned_prompt({name!r}): give version= or alias=, not both")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(
            f"pinned_prompt({name!r}, version={version!r}): a version is a number from 1; use alias= for names"
        )
    if alias is not None and not alias.strip("@ "):
        raise ValueError(f"pinned_prompt({name!r}, alias={alias!r}): an alias needs a name")
    if fallback is not None and not isinstance(fallback, (str, list)):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"pinned_prompt({name!r}, fallback=...): expected a template string or chat messages")
    return PinnedPrompt(
        promptops_prompt=name,
        version=version,
        alias=alias.strip().lstrip("@") if alias is not None else None,
        fallback=fallback,
    )
