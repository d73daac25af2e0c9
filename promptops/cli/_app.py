"""The `promptops` command: the typer app, its global options, and one-line errors with exit code 2.

Expected failures (unknown prompt, bad tracking URI, unreadable file, unreachable server, ...) are printed as a
single `error: ...` line on stderr naming the problem and the fix, and exit with code 2; typer's own usage
errors exit 2 as well. Anything else is a bug in promptops and keeps its traceback.

MLflow is imported inside the commands that need it, so `promptops --help` stays fast.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .._config import Settings, get_settings
from .._errors import PromptopsError
from .._mlflow_env import mlflow_environment
from .._version import __version__
from ..prompts._registry import redact_uri
from ._text import visible

__all__ = ["EXIT_USAGE", "CliError", "State", "app", "error_line", "is_expected", "main"]

EXIT_USAGE = 2


class CliError(PromptopsError):
    """Bad usage or input. Printed as one `error:` line on stderr; the command exits with code 2."""


def _mlflow_exception_type() -> type[BaseException] | None:
    # Only if MLflow was imported: an MlflowException cannot have been raised otherwise.
    module = sys.modules.get("mlflow.exceptions")
    found: object = getattr(module, "MlflowException", None) if module is not None else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def is_mlflow_exception(exc: BaseException) -> bool:
    """Whether `exc` is an `mlflow.exceptions.MlflowException` (without importing MLflow)."""
    mlflow_exception = _mlflow_exception_type()
    return mlflow_exception is not None and isinstance(exc, mlflow_exception)


def is_expected(exc: BaseException) -> bool:
    """Whether `exc` is bad input or an unavailable service, reported as one line, rather than a bug."""
    if isinstance(exc, BrokenPipeError):
        return False  # handled by main(): the reader went away, nothing to report
    return isinstance(exc, (PromptopsError, OSError)) or is_mlflow_exception(exc)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_line(exc: BaseException) -> str:
    """The single line reported for an expected exception, without the `error:` prefix."""
    if isinstance(exc, CliError):
        return _one_line(str(exc))
    if is_mlflow_exception(exc):
        message = str(getattr(exc, "message", None) or exc)
        first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        return _one_line(first)
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return _one_line(f"{exc.strerror}{where}")
    return _one_line(str(exc) or type(exc).__name__)


def report(exc: BaseException) -> None:
    """Print `error: ...` for an expected exception as a single line on stderr (red on a terminal)."""
    prefix = typer.style("error:", fg="red", bold=True)
    # The message may quote input from outside (a file's line, a record id, a registry answer): no escapes.
    typer.echo(f"{prefix} {visible(error_line(exc))}", err=True)


class _Group(TyperGroup):
    """The root command group: turns expected exceptions raised by any command into one line and exit 2."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not is_expected(exc):
                raise
            report(exc)
            raise typer.Exit(EXIT_USAGE) from None


class State:
    """What the global options selected; commands reach it through `State.of(ctx)`.

    Attributes:
        tracking_uri_option: The `--tracking-uri` given on the command line, if any.
    """

    def __init__(self, tracking_uri_option: str | None) -> None:
        """Create the state for one invocation.

        Args:
            tracking_uri_option: The `--tracking-uri` given on the command line, if any.
        """
        self.tracking_uri_option = tracking_uri_option
        self._settings: Settings | None = None
        self._client: Any = None

    @classmethod
    def of(cls, ctx: typer.Context) -> State:
        """The state of this invocation (an empty one when a sub-app runs without the root callback)."""
        return ctx.find_root().ensure_object(cls)

    @property
    def settings(self) -> Settings:
        """The promptops settings (environment, `[tool.promptops]`), read once per invocation."""
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    @property
    def tracking_uri(self) -> str:
        """`--tracking-uri`, else promptops' `tracking_uri` setting."""
        if self.tracking_uri_option is not None:
            uri = self.tracking_uri_option.strip()
            if not uri:
                raise CliError("--tracking-uri is empty; pass a URI such as sqlite:///mlflow.db or http://host:5000")
            return uri
        return self.settings.tracking_uri

    @property
    def display_uri(self) -> str:
        """The tracking URI without a password, for messages."""
        return redact_uri(self.tracking_uri)

    def command(self, *args: str) -> str:
        """A `promptops ...` command line to suggest, repeating `--tracking-uri` when it was given."""
        parts = ["promptops"]
        if self.tracking_uri_option is not None:
            parts += ["--tracking-uri", redact_uri(self.tracking_uri_option)]
        return shlex.join([*parts, *args])

    def client(self, ctx: typer.Context) -> Any:
        """An `mlflow.MlflowClient` for the tracking URI, importing MLflow on first use.

        MLflow's HTTP defaults (120 s timeout, up to 7 retries) would leave an unreachable server hanging for minutes:
        unless the user set them, `MLFLOW_HTTP_REQUEST_MAX_RETRIES` is 0 and `MLFLOW_HTTP_REQUEST_TIMEOUT` a
        few seconds for the duration of the command.
        """
        if self._client is None:
            uri = self.tracking_uri
            timeout = max(5, math.ceil(self.settings.registry_timeout))
            ctx.find_root().with_resource(mlflow_environment(timeout))
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self._client


app = typer.Typer(
    cls=_Group,
    name="promptops",
    help="Treat LLM prompts like code: pinned versions in the MLflow Prompt Registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold credentials
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"promptops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            metavar="URI",
            help="MLflow tracking/registry URI (sqlite:///mlflow.db, http://host:5000, ...). Default: promptops "
            "settings (PROMPTOPS_TRACKING_URI, MLFLOW_TRACKING_URI, the tool.promptops table in pyproject.toml), "
            "else sqlite:///mlflow.db.",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the promptops version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    """Treat LLM prompts like code: pinned versions in the MLflow Prompt Registry."""
    ctx.obj = State(tracking_uri)


def main() -> int:
    """Run the `promptops` command line. Returns the exit code (typer usually exits the process itself)."""
    try:
        app(prog_name="promptops")
    except BrokenPipeError:
        # `promptops prompts list | head`: the reader left. Point stdout at devnull so the interpreter's final
        # flush does not fail again (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not is_expected(exc):
            raise
        report(exc)
        return EXIT_USAGE
    return 0
