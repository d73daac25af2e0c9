"""`promptops prompts ...`: list, show, diff, register and alias prompts in the MLflow Prompt Registry."""

from __future__ import annotations

import difflib
import json
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import urlsplit

import typer

from .._config import Selector, parse_selector
from .._errors import ConfigError
from ..prompts import Prompt, parse_reference
from ..prompts._registry import RegistryError, prompt_from_version
from ._app import CliError, State, is_mlflow_exception
from ._text import json_text, visible

__all__ = ["prompts_app"]

T = TypeVar("T")

prompts_app = typer.Typer(
    name="prompts",
    help="List, show, compare, register and alias prompts in the MLflow Prompt Registry.",
    no_args_is_help=True,
)

_CONNECTION_MARKERS = (
    "Connection refused",
    "Failed to establish a new connection",
    "NewConnectionError",
    "Name or service not known",
    "nodename nor servname",
    "Temporary failure in name resolution",
    "ConnectTimeout",
    "Read timed out",
    "timed out",
    "Connection reset",
    "RemoteDisconnected",
)


def _console() -> Any:
    from rich.console import Console

    # soft_wrap: long template lines are printed as they are, never re-wrapped into the output.
    return Console(soft_wrap=True, highlight=False)


# --------------------------------------------------------------------------------------------------- registry


def translate_mlflow_error(exc: BaseException, uri: str) -> CliError:
    """One line for an MLflow error: an unreachable server, an unusable tracking URI, else MLflow's first line.

    Args:
        exc: An `MlflowException`.
        uri: The tracking URI, as it may be shown (password redacted).
    """
    message = str(getattr(exc, "message", None) or exc)
    if any(marker in message for marker in _CONNECTION_MARKERS):
        if "refused" in message:
            reason, fix = "connection refused", "start it"
        elif "resolve" in message or "Name or service" in message or "name resolution" in message:
            reason, fix = "unknown host name", "check the host name"
        else:
            timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
            reason, fix = f"no answer within {timeout} s", "check that it is up and answering"
        return CliError(
            f"cannot reach the MLflow server at {uri} ({reason}); {fix}, or point --tracking-uri or "
            f"PROMPTOPS_TRACKING_URI at a running one"
        )
    if "unsupported URI" in message or type(exc).__name__.startswith("Unsupported"):
        return CliError(
            f"unsupported tracking URI {uri!r}: use sqlite:///path.db, postgresql://, mysql://, "
            f"http(s)://host:port or databricks; pass --tracking-uri or set PROMPTOPS_TRACKING_URI"
        )
    if "filesystem tracking backend" in message:
        return CliError(
            f"tracking URI {uri!r} is a file store, which has no prompt registry; use a database such as "
            f"sqlite:///mlflow.db (migrate with `mlflow migrate-filestore`)"
        )
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return CliError(f"{first} (tracking URI {uri})")


class _Registry:
    """The MLflow client for one command, translating MLflow's errors into one-line `CliError`s.

    Against a tracking server, every registry call ends within the command's timeout (`registry_timeout`, at
    least 5 s) however slowly the server answers: MLflow's HTTP timeout applies to each socket read, so a server
    dripping its answer would hold the command for minutes (issue 11). The call runs in a daemon thread, which is
    left behind when the command reports the timeout and exits.
    """

    def __init__(self, ctx: typer.Context, *, must_exist: bool) -> None:
        self.state = State.of(ctx)
        self.uri = self.state.tracking_uri
        if must_exist:
            self._check_local_store()
        self._remote = self.uri.startswith(("http://", "https://"))
        self.timeout = max(5, math.ceil(self.state.settings.registry_timeout))
        self._client: Any = self._call(lambda: self.state.client(ctx))

    def _run(self, call: Callable[[], T]) -> T:
        """`call()`, within the timeout against a tracking server (a local store answers or fails by itself)."""
        if not self._remote:
            return call()
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append((True, call()))
            except BaseException as exc:  # handed to the command's thread, which raises it
                outcome.append((False, exc))

        worker = threading.Thread(target=run, name="promptops-cli-registry", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not outcome:
            raise CliError(
                f"cannot reach the MLflow server at {self.state.display_uri} (no complete answer within "
                f"{self.timeout} s); check that it is up and answering, or point --tracking-uri or "
                "PROMPTOPS_TRACKING_URI at a running one"
            )
        succeeded, value = outcome[0]
        if not succeeded:
            raise value
        return value

    def _check_local_store(self) -> None:
        # MLflow silently creates a missing sqlite database (and its folders): a mistyped URI would then list
        # nothing instead of saying it is wrong. Reading commands refuse; `register` may create the store.
        if not self.uri.startswith("sqlite:///"):
            return
        path = urlsplit(self.uri).path
        if self.uri.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
        else:
            path = path[1:] if path.startswith("/") else path
        if path in ("", ":memory:") or Path(path).exists():
            return
        raise CliError(
            f"no MLflow database at {path} (tracking URI {self.state.display_uri}); pass --tracking-uri, set "
            f"PROMPTOPS_TRACKING_URI, or create the store by registering a prompt: "
            f"{self.state.command('prompts', 'register', 'NAME', '--template-file', 'FILE')}"
        )

    def _call(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except Exception as exc:
            if is_mlflow_exception(exc):
                raise self._translate(exc) from None
            raise

    def _translate(self, exc: BaseException) -> CliError:
        return translate_mlflow_error(exc, self.state.display_uri)

    @staticmethod
    def _is_not_found(exc: BaseException) -> bool:
        code = getattr(exc, "error_code", None)
        return code == "RESOURCE_DOES_NOT_EXIST" or (
            code == "INVALID_PARAMETER_VALUE" and "not found" in str(getattr(exc, "message", exc))
        )

    def exists(self, name: str) -> bool:
        """Whether the registry has a prompt called `name`."""
        try:
            return self._run(lambda: self._client.get_prompt(name)) is not None
        except Exception as exc:
            if is_mlflow_exception(exc) and self._is_not_found(exc):
                return False
            if is_mlflow_exception(exc):
                raise self._translate(exc) from None
            raise

    def no_such_prompt(self, name: str) -> CliError:
        """The error for an unknown prompt name."""
        return CliError(
            f"no prompt {name!r} at {self.state.display_uri}; list prompts with: {self.state.command('prompts', 'list')}"
        )

    def versions(self, name: str) -> list[int]:
        """Every version number of `name`, ascending (empty when the prompt does not exist)."""
        found: list[int] = []
        token: str | None = None
        while True:
            try:
                page: Any = self._run(lambda: self._client.search_prompt_versions(name, page_token=token))
            except Exception as exc:
                if is_mlflow_exception(exc) and self._is_not_found(exc):
                    return []
                if is_mlflow_exception(exc):
                    raise self._translate(exc) from None
                raise
            found.extend(int(version.version) for version in page)
            token = getattr(page, "token", None)
            if not token:
                return sorted(set(found))

    def aliases(self, name: str) -> dict[str, int] | None:
        """Alias to version for `name`, or `None` where the store cannot say.

        MLflow's public client reports a version's aliases only when it was fetched by alias; the registered
        model behind the prompt (OSS sqlite/SQL and REST stores) holds all of them.
        """
        try:
            store: Any = getattr(self._client, "_get_registry_client")().store
            raw: Any = self._run(lambda: store.get_registered_model(name).aliases)
            mapping = _mapping(raw)
            return {alias: int(cast(Any, version)) for alias, version in (mapping or {}).items()}
        except CliError:
            raise  # the server did not answer in time: asking again would only wait again
        except Exception:
            return None

    def get(self, name: str, selector: Selector) -> Prompt:
        """The prompt version `selector` selects; a `CliError` naming what is missing and how to look."""
        kind, value = selector
        try:
            if kind == "alias":
                found: Any = self._run(lambda: self._client.get_prompt_version_by_alias(name, str(value)))
            else:
                found = self._run(lambda: self._client.get_prompt_version(name, str(value)))
        except Exception as exc:
            if not is_mlflow_exception(exc):
                raise
            if not self._is_not_found(exc):
                raise self._translate(exc) from None
            found = None
        if found is None:
            raise self._missing(name, selector)
        try:
            return prompt_from_version(found, name=name, alias=str(value) if kind == "alias" else None)
        except RegistryError as exc:
            raise CliError(f"{exc} (tracking URI {self.state.display_uri}); register a fixed version") from None

    def _missing(self, name: str, selector: Selector) -> CliError:
        if not self.exists(name):
            return self.no_such_prompt(name)
        kind, value = selector
        show = self.state.command("prompts", "show", name)
        if kind == "alias":
            return CliError(
                f"prompt {name!r} has no alias {value!r} at {self.state.display_uri}; list aliases with: {show}"
            )
        versions = self.versions(name)
        latest = f" (latest is {versions[-1]})" if versions else ""
        return CliError(
            f"prompt {name!r} has no version {value}{latest} at {self.state.display_uri}; list versions with: {show}"
        )

    def search(self, filter_string: str | None) -> list[Any]:
        """Every prompt matching `filter_string`, following pages."""
        found: list[Any] = []
        token: str | None = None
        while True:
            page: Any = self._call(
                lambda: self._run(lambda: self._client.search_prompts(filter_string=filter_string, page_token=token))
            )
            found.extend(page)
            token = getattr(page, "token", None)
            if not token:
                return found

    def register(self, name: str, template: Any, *, message: str | None, model_config: dict[str, Any] | None) -> int:
        """Register a new version of `name` and return its number."""
        try:
            if model_config is not None:
                # MLflow creates the prompt before it validates the model config, so an invalid config would
                # leave an empty prompt behind: validate first, with MLflow's own model.
                from mlflow.entities.model_registry.prompt_version import PromptModelConfig

                PromptModelConfig.from_dict(model_config)
            created: Any = self._call(
                lambda: self._client.register_prompt(
                    name=name, template=template, commit_message=message, model_config=model_config
                )
            )
        except ValueError as exc:  # pydantic's ValidationError of MLflow's PromptModelConfig
            raise CliError(f"invalid --model-config: {_validation_message(exc)}") from None
        return int(created.version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point `alias` of `name` at `version`."""
        try:
            self._run(lambda: self._client.set_prompt_alias(name, alias, version))
        except Exception as exc:
            if not is_mlflow_exception(exc):
                raise
            if self._is_not_found(exc):
                raise self._missing(name, ("version", version)) from None
            if getattr(exc, "error_code", None) == "INVALID_PARAMETER_VALUE" and "alias" in str(exc).lower():
                raise CliError(
                    f"cannot use alias {alias!r}: {getattr(exc, 'message', exc)} Choose a name of letters, digits, "
                    f"'_' and '-' other than 'latest' and v<number>"
                ) from None
            raise self._translate(exc) from None


def _validation_message(exc: ValueError) -> str:
    """A pydantic ValidationError as `field: problem; ...` without its documentation links."""
    errors: Any = getattr(exc, "errors", None)
    try:
        details: list[Any] = list(cast(Any, errors)()) if callable(errors) else []
        parts = [f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in details]
    except Exception:
        parts = []
    return "; ".join(parts) if parts else str(exc)


# --------------------------------------------------------------------------------------------------- parsing


def _mapping(value: object) -> dict[str, object] | None:
    """`value` as a dict with string keys, or `None` when it is not a mapping."""
    if not isinstance(value, Mapping):
        return None
    return {str(key): item for key, item in cast(Mapping[object, object], value).items()}


def _reference(reference: str) -> tuple[str, Selector | None]:
    try:
        return parse_reference(reference.strip())
    except ValueError as exc:
        raise CliError(
            f"malformed prompt reference {reference!r} ({exc}); use NAME, NAME@ALIAS or NAME/VERSION, "
            f"e.g. summarize@production or summarize/3"
        ) from None


def _selector(value: str, *, what: str) -> Selector:
    try:
        return parse_selector(value, what=what)
    except ConfigError as exc:
        raise CliError(f"{exc}; use a version number such as 3 or an alias such as @production") from None


def _read_text(path: str, *, option: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"cannot read {option} {path}: not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CliError(f"cannot read {option} {path}: {reason}; pass a readable file to {option}") from None


def _structured(text: str, path: str, *, option: str) -> Any:
    """Parse JSON, or YAML for `.yaml`/`.yml` files."""
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            return yaml.safe_load(text)  # pyright: ignore[reportUnknownMemberType]
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"malformed JSON in {option} {path}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            raise CliError(f"malformed YAML in {option} {path}: {exc}") from None
        raise


def _template_from_file(path: str) -> str | list[dict[str, Any]]:
    text = _read_text(path, option="--template-file")
    if not path.endswith((".json", ".yaml", ".yml")):
        text = text[:-1] if text.endswith("\n") else text  # the newline editors add at the end of a file
        if not text.strip():
            raise CliError(f"template file {path} is empty; write the prompt text into it")
        return text
    data = _structured(text, path, option="--template-file")
    example = '[{"role": "system", "content": "..."}, {"role": "user", "content": "{{question}}"}]'
    if not isinstance(data, list) or not data:
        raise CliError(f"{path} must hold a non-empty list of chat messages, e.g. {example}")
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(cast(list[object], data)):
        message = _mapping(item) or {}
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role or not isinstance(content, str):
            raise CliError(
                f"message {index} in {path} needs a string 'role' and a string 'content', got {item!r}; e.g. {example}"
            )
        messages.append({"role": role, "content": content})
    return messages


def _model_config(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if value.lstrip().startswith("{"):
        where = "--model-config"
        try:
            data: Any = json.loads(value)
        except json.JSONDecodeError as exc:
            raise CliError(f"malformed JSON in --model-config: {exc}") from None
    else:
        where = f"--model-config {value}"
        data = _structured(_read_text(value, option="--model-config"), value, option="--model-config")
    config = _mapping(data)
    if config is None:
        raise CliError(f'{where} must be a JSON object, e.g. {{"model_name": "gpt-4o-mini", "temperature": 0.2}}')
    return config


# --------------------------------------------------------------------------------------------------- rendering


def _template_lines(template: Any) -> list[str]:
    """A template as lines of text; chat messages become `[role]` headers followed by their content."""
    if isinstance(template, str):
        return template.splitlines()
    lines: list[str] = []
    for item in cast(list[object], template):
        message = _mapping(item)
        if message is not None:
            lines.append(f"[{message.get('role', '?')}]")
            content = message.get("content")
            lines.extend(content.splitlines() if isinstance(content, str) else [json.dumps(content)])
        else:
            lines.append(json.dumps(item))
    return lines


def _json_lines(value: Mapping[str, Any] | None) -> list[str]:
    return [] if value is None else json.dumps(dict(value), indent=2, sort_keys=True).splitlines()


def _label(prompt: Prompt) -> str:
    return f"{prompt.name}/{prompt.version}" + (f" (@{prompt.alias})" if prompt.alias else "")


def _aliases_text(aliases: Mapping[str, int]) -> str:
    return ", ".join(f"{alias} → {version}" for alias, version in sorted(aliases.items())) or "(none)"


# --------------------------------------------------------------------------------------------------- commands


@prompts_app.command("list")
def list_prompts(
    ctx: typer.Context,
    name_filter: Annotated[
        str | None,
        typer.Option("--filter", metavar="TEXT", help="Only prompts whose name contains TEXT."),
    ] = None,
) -> None:
    """List the prompts in the registry with their latest version and aliases."""
    from rich.table import Table
    from rich.text import Text

    registry = _Registry(ctx, must_exist=True)
    filter_string = None
    if name_filter:
        filter_string = "name LIKE '%{}%'".format(name_filter.replace("'", "''"))
    found = sorted(registry.search(filter_string), key=lambda prompt: str(prompt.name))
    console = _console()
    if not found:
        console.print(f"no prompts at {registry.state.display_uri}", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("NAME", no_wrap=True)
    table.add_column("LATEST", justify="right", no_wrap=True)
    table.add_column("ALIASES", no_wrap=True)
    table.add_column("DESCRIPTION", overflow="ellipsis", no_wrap=True)
    for prompt in found:
        name = str(prompt.name)
        versions = registry.versions(name)
        aliases = registry.aliases(name)
        cells = (
            name,
            str(versions[-1]) if versions else "-",
            _aliases_text(aliases) if aliases is not None else "?",
            str(prompt.description or ""),
        )
        table.add_row(*(Text(visible(cell)) for cell in cells))  # registry text: no markup, no escape sequences
    console.print(table)


@prompts_app.command("show")
def show(
    ctx: typer.Context,
    reference: Annotated[
        str,
        typer.Argument(
            metavar="NAME[@ALIAS|/VERSION]",
            help="The prompt, optionally with an alias (summarize@staging) or a version (summarize/3). Default: "
            "the pin configured for it, else the default alias; if that alias does not exist, the latest version.",
            show_default=False,
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the version as JSON instead.")] = False,
) -> None:
    """Show one version of a prompt: version, aliases, model config and template."""
    name, selector = _reference(reference)
    registry = _Registry(ctx, must_exist=True)
    note = None
    if selector is not None:
        prompt = registry.get(name, selector)
    else:
        settings = registry.state.settings
        pin = settings.pins.get(name)
        if pin is not None:
            prompt = registry.get(name, pin)
        else:
            versions = registry.versions(name)
            if not versions:
                raise registry.no_such_prompt(name)
            aliases = registry.aliases(name) or {}
            if settings.default_alias in aliases:
                prompt = registry.get(name, ("alias", settings.default_alias))
            else:
                prompt = registry.get(name, ("version", versions[-1]))
                note = f"no alias {settings.default_alias!r} (the default alias): showing the latest version"
    aliases = registry.aliases(name)
    versions = registry.versions(name)
    if as_json:
        data = prompt.to_dict()
        del data["source"]
        data["aliases"] = sorted(alias for alias, version in (aliases or {}).items() if version == prompt.version)
        data["all_aliases"] = aliases
        data["versions"] = versions
        typer.echo(json_text(data, indent=2))
        return
    _print_prompt(prompt, aliases=aliases, versions=versions, note=note)


def _print_prompt(prompt: Prompt, *, aliases: Mapping[str, int] | None, versions: list[int], note: str | None) -> None:
    from rich.text import Text

    console = _console()
    title = Text()
    title.append(visible(prompt.name), style="bold")
    title.append(f"  version {prompt.version}", style="bold cyan")
    if prompt.alias:
        title.append(f"  (@{visible(prompt.alias)})", style="green")
    console.print(title)
    if note:
        console.print(Text(note, style="yellow"))
    rows: list[tuple[str, str]] = []
    if aliases is not None:
        here = sorted(alias for alias, version in aliases.items() if version == prompt.version)
        rows.append(("aliases", ", ".join(f"@{alias}" for alias in here) or "(none on this version)"))
        rows.append(("all aliases", _aliases_text(aliases)))
    if versions:
        rows.append(("versions", f"{len(versions)} (latest {versions[-1]})"))
    if prompt.commit_message:
        rows.append(("message", prompt.commit_message))
    rows.append(("model config", json.dumps(dict(prompt.model_config)) if prompt.model_config else "(none)"))
    if prompt.response_format:
        rows.append(("response format", json.dumps(dict(prompt.response_format))))
    rows.append(("variables", ", ".join(sorted(prompt.variables)) or "(none)"))
    if prompt.tags:
        rows.append(("tags", ", ".join(f"{key}={value}" for key, value in sorted(prompt.tags.items()))))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:  # plain lines rather than a table: nothing is re-wrapped or padded when piped
        console.print(Text.assemble((key.ljust(width), "dim"), "  ", visible(value)))
    console.print()
    if isinstance(prompt.template, str):
        console.print(Text("template (text):", style="bold"))
        console.print(Text(visible(prompt.template, keep_lines=True)))
        return
    console.print(Text(f"template (chat, {len(prompt.template)} messages):", style="bold"))
    for message in prompt.template:
        console.print(Text(visible(str(message.get("role", "?"))), style="bold magenta"))
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        console.print(Text(visible("\n".join("  " + line for line in text.splitlines()), keep_lines=True) or "  "))


@prompts_app.command("diff")
def diff(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The prompt to compare versions of.")],
    old: Annotated[str, typer.Argument(metavar="A", help="The old side: a version number (3) or an alias (@staging).")],
    new: Annotated[
        str, typer.Argument(metavar="B", help="The new side: a version number (4) or an alias (@production).")
    ],
    context_lines: Annotated[
        int, typer.Option("--context", "-U", min=0, help="Lines of context around each change.")
    ] = 3,
) -> None:
    """Show a unified diff of two versions' templates and model configs (coloured on a terminal)."""
    from rich.text import Text

    prompt_name, selector = _reference(name)
    if selector is not None:
        raise CliError(f"diff takes a bare prompt name, got {name!r}; give the versions as A and B")
    registry = _Registry(ctx, must_exist=True)
    left = registry.get(prompt_name, _selector(old, what=f"version A {old!r}"))
    right = registry.get(prompt_name, _selector(new, what=f"version B {new!r}"))
    sections = (
        ("template", _template_lines(left.template), _template_lines(right.template)),
        ("model config", _json_lines(left.model_config), _json_lines(right.model_config)),
        ("response format", _json_lines(left.response_format), _json_lines(right.response_format)),
    )
    console = _console()
    changed = False
    for section, before, after in sections:
        lines = list(
            difflib.unified_diff(
                before,
                after,
                fromfile=f"{_label(left)} {section}",
                tofile=f"{_label(right)} {section}",
                n=context_lines,
                lineterm="",
            )
        )
        if not lines:
            continue
        changed = True
        for line in lines:
            style = ""
            if line.startswith(("---", "+++")):
                style = "bold"
            elif line.startswith("@@"):
                style = "cyan"
            elif line.startswith("+"):
                style = "green"
            elif line.startswith("-"):
                style = "red"
            console.print(Text(visible(line), style=style))
    if not changed:
        console.print(Text(visible(f"no differences between {_label(left)} and {_label(right)}")))


@prompts_app.command("register")
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The prompt's name; created if new.")],
    template_file: Annotated[
        str,
        typer.Option(
            "--template-file",
            "-f",
            metavar="FILE",
            help="The template: a text file (one trailing newline is dropped), or a .json/.yaml file holding a "
            'list of chat messages [{"role": ..., "content": ...}]. "-" reads text from stdin. Variables are '
            "written {{ name }}.",
            show_default=False,
        ),
    ],
    alias: Annotated[
        list[str] | None,
        typer.Option("--alias", "-a", metavar="ALIAS", help="Point this alias at the new version (repeatable)."),
    ] = None,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Commit message stored with the version.")
    ] = None,
    model_config: Annotated[
        str | None,
        typer.Option(
            "--model-config",
            metavar="JSON|FILE",
            help='Model configuration stored with the version: inline JSON such as {"model_name": "gpt-4o-mini", '
            '"temperature": 0.2}, or a .json/.yaml file.',
        ),
    ] = None,
) -> None:
    """Register a new version of a prompt from a file, optionally moving aliases to it."""
    prompt_name, selector = _reference(name)
    if selector is not None:
        hint = f"--alias {selector[1]}" if selector[0] == "alias" else "no version (versions are numbered for you)"
        raise CliError(f"register takes a bare prompt name, got {name!r}; use {hint}")
    aliases = [_alias_name(value) for value in alias or []]
    template = _template_from_file(template_file)
    config = _model_config(model_config)
    registry = _Registry(ctx, must_exist=False)
    version = registry.register(prompt_name, template, message=message, model_config=config)
    console = _console()
    console.print(f"registered {prompt_name} version {version}", markup=False)
    for value in aliases:
        registry.set_alias(prompt_name, value, version)
        console.print(f"@{value} → {prompt_name}/{version}", markup=False)


def _alias_name(value: str) -> str:
    text = value.strip().lstrip("@")
    if not text:
        raise CliError(f"empty alias {value!r}; give an alias name such as production")
    if text.isdigit():
        raise CliError(f"alias {value!r} is a number, which would read as a version; use a name such as production")
    return text


@prompts_app.command("alias")
def set_alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The prompt.")],
    alias: Annotated[str, typer.Argument(metavar="ALIAS", help="The alias to set or move, e.g. production.")],
    version: Annotated[int, typer.Argument(metavar="VERSION", help="The version number the alias will point at.")],
) -> None:
    """Point an alias of a prompt at a version (creating or moving it)."""
    prompt_name, selector = _reference(name)
    if selector is not None:
        raise CliError(f"alias takes a bare prompt name, got {name!r}; e.g. promptops prompts alias NAME ALIAS 3")
    alias_name = _alias_name(alias)
    if version < 1:
        raise CliError(f"prompt versions start at 1, got {version}")
    registry = _Registry(ctx, must_exist=True)
    before = (registry.aliases(prompt_name) or {}).get(alias_name)
    registry.set_alias(prompt_name, alias_name, version)
    moved = f" (was {before})" if before is not None and before != version else ""
    _console().print(f"@{alias_name} → {prompt_name}/{version}{moved}", markup=False)
