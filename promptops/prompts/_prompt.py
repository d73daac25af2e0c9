"""`Prompt`: one resolved version of a registry prompt, and where this copy came from."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from .._errors import PromptFormatError

__all__ = ["Message", "Prompt", "Source", "Template", "template_problem"]

Source = Literal["registry", "cache", "disk", "fallback"]
Message = dict[str, Any]  # {"role": "user", "content": "..."}, as MLflow stores chat prompts
Template = str | list[Message]

# MLflow's variable syntax: {{ name }} (dots allowed, as in MLflow's PROMPT_TEMPLATE_VARIABLE_PATTERN).
_VARIABLE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\s*\}\}")


def template_problem(template: object) -> str | None:
    """Why `template` is not a usable template (a text, or a list of `{"role": str, "content": ...}` messages).

    `None` when it is usable. A registry or a cache file can hold anything: a template that is neither would fail
    inside the user's function at `format()` (issue 11), so where one comes from outside the code it is checked.
    """
    if isinstance(template, str):
        return None
    if not isinstance(template, list):
        return f"the template is {type(template).__name__}, not text or a list of chat messages"
    for index, message in enumerate(template):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        if not isinstance(message, dict):
            return f"chat message {index} is {type(message).__name__}, not an object with role and content"  # pyright: ignore[reportUnknownArgumentType]
        if not isinstance(message.get("role"), str):  # pyright: ignore[reportUnknownMemberType]
            return f"chat message {index} has no role"
        if "content" not in message:
            return f"chat message {index} has no content"
    return None


def _texts(template: Template) -> list[str]:
    if isinstance(template, str):
        return [template]
    return [message["content"] for message in template if isinstance(message.get("content"), str)]


def _is_jinja(template: Template) -> bool:
    return any("{%" in text and "%}" in text for text in _texts(template))


def _single_brace(text: str) -> str:
    # Literal braces must be doubled for LangChain's f-string templates (MLflow's own conversion forgets this,
    # so a JSON example inside a prompt breaks LangChain); variables become {name}.
    out: list[str] = []
    last = 0
    for match in _VARIABLE.finditer(text):
        out.append(text[last : match.start()].replace("{", "{{").replace("}", "}}"))
        out.append("{" + match.group(1) + "}")
        last = match.end()
    out.append(text[last:].replace("{", "{{").replace("}", "}}"))
    return "".join(out)


@dataclasses.dataclass(frozen=True, eq=True)
class Prompt:
    """One version of a prompt from the MLflow Prompt Registry, as resolved for a call.

    Attributes:
        name: Registry name of the prompt.
        version: Version number in the registry (`0` for a `fallback=` template that never came from it).
        template: The text template, or a list of chat messages (`{"role": ..., "content": ...}`), with
            MLflow's `{{ variable }}` placeholders.
        alias: The alias this copy was resolved through (`"production"`), or `None` when asked by version.
        source: Where this copy came from: `"registry"` (fetched for this call), `"cache"` (memory),
            `"disk"` (last-known-good copy, the registry being unreachable) or `"fallback"` (the decorator's
            `fallback=`).
        model_config: The model configuration stored with the version (model name, temperature, ...), if any.
        response_format: The response schema stored with the version, if any.
        tags: The version's user tags.
        commit_message: The version's commit message, if any.
        rollout_id: The rollout this call took part in (`promptops rollout start`), if any.
        rollout_arm: Its arm in that rollout, `"baseline"` or `"candidate"`.
    """

    name: str
    version: int
    template: Template
    alias: str | None = None
    source: Source = "registry"
    model_config: Mapping[str, Any] | None = None
    response_format: Mapping[str, Any] | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict[str, str])
    commit_message: str | None = None
    rollout_id: str | None = None  # set only on the copies a rollout hands out (issue 14)
    rollout_arm: str | None = None

    @property
    def variables(self) -> frozenset[str]:
        """The names of the template's `{{ variables }}`."""
        return frozenset(name for text in _texts(self.template) for name in _VARIABLE.findall(text))

    @property
    def is_chat(self) -> bool:
        """Whether the template is a list of chat messages rather than one text."""
        return not isinstance(self.template, str)

    @property
    def is_jinja(self) -> bool:
        """Whether the template has Jinja2 control flow (`{% ... %}`): `format()` then renders it with Jinja2."""
        return _is_jinja(self.template)

    @property
    def uri(self) -> str:
        """The MLflow URI of this version, `prompts:/name/version`."""
        return f"prompts:/{self.name}/{self.version}"

    def format(self, **variables: Any) -> Template:
        """Fill the template's variables.

        Values are converted with `str()`. Extra keyword arguments are ignored, so a dict of inputs can be
        passed whole. Templates using Jinja2 control flow (`{% ... %}`) render in Jinja2's sandbox, as MLflow does.

        Args:
            **variables: A value for every variable in `variables`.

        Returns:
            The formatted text, or the list of chat messages with each message's content formatted.

        Raises:
            PromptFormatError: some variables are missing (the message names them and the prompt), or a Jinja2
                template failed, reached outside the sandbox, or went over its bounds in output size or time
                (see the Resilience page).
        """
        missing = self.variables - variables.keys()
        if missing and not self.is_jinja:
            raise PromptFormatError(
                f"prompt {self.name!r} version {self.version} needs variable(s) {', '.join(sorted(missing))}; "
                f"pass them to format(), e.g. format({sorted(missing)[0]}=...)"
            )
        if self.is_jinja:
            return self._format_jinja(variables)

        def fill(text: str) -> str:
            return _VARIABLE.sub(lambda match: str(variables[match.group(1)]), text)

        if isinstance(self.template, str):
            return fill(self.template)
        return [
            {**message, "content": fill(message["content"])} if isinstance(message.get("content"), str) else message
            for message in self.template
        ]

    def _format_jinja(self, variables: Mapping[str, Any]) -> Template:
        # Bounded in size and time and sandboxed: the template comes from the registry (issue 11).
        from jinja2.exceptions import SecurityError, UndefinedError

        from ._jinja import RenderLimitError, render

        try:
            if isinstance(self.template, str):
                return render(self.template, variables)
            return [
                {**message, "content": render(message["content"], variables)}
                if isinstance(message.get("content"), str)
                else message
                for message in self.template
            ]
        except UndefinedError as exc:
            raise PromptFormatError(f"prompt {self.name!r} version {self.version}: {exc.message}") from None
        except RenderLimitError as exc:
            raise PromptFormatError(
                f"prompt {self.name!r} version {self.version}: the template was stopped: {exc.message}; fix the "
                "template in the registry"
            ) from None
        except SecurityError as exc:
            raise PromptFormatError(
                f"prompt {self.name!r} version {self.version}: unsafe template refused by the sandbox: {exc.message}"
            ) from None
        except Exception as exc:  # a broken template (syntax, a type error in an expression): name the prompt
            raise PromptFormatError(
                f"prompt {self.name!r} version {self.version}: the Jinja2 template failed: {type(exc).__name__}: {exc}"
            ) from None

    def to_single_brace_format(self) -> Template:
        """The template in LangChain's single-brace format: `{{ var }}` becomes `{var}`, literal braces are doubled."""
        if isinstance(self.template, str):
            return _single_brace(self.template)
        return [
            {**message, "content": _single_brace(message["content"])}
            if isinstance(message.get("content"), str)
            else message
            for message in self.template
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of this prompt (the disk cache stores this)."""
        return {
            "name": self.name,
            "version": self.version,
            "template": self.template,
            "alias": self.alias,
            "source": self.source,
            "model_config": dict(self.model_config) if self.model_config is not None else None,
            "response_format": dict(self.response_format) if self.response_format is not None else None,
            "tags": dict(self.tags),
            "commit_message": self.commit_message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prompt:
        """Rebuild a prompt from `to_dict()` output. Raises `ValueError` on anything malformed."""
        template = data["template"]
        problem = template_problem(template)
        if problem is not None:
            raise ValueError(problem)
        version = data["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError("version must be an integer")
        return cls(
            name=str(data["name"]),
            version=version,
            template=template,  # pyright: ignore[reportUnknownArgumentType]
            alias=data.get("alias"),
            source=data.get("source", "registry"),
            model_config=data.get("model_config"),
            response_format=data.get("response_format"),
            tags=dict(data.get("tags") or {}),
            commit_message=data.get("commit_message"),
        )

    def __str__(self) -> str:
        return self.template if isinstance(self.template, str) else json.dumps(self.template)
