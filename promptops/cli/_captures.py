"""`promptops captures ...`: list, show, export and prune the calls captured into the capture store.

The store is the `capture` setting (`PROMPTOPS_CAPTURE`, `[tool.promptops]`, default
`sqlite:///.promptops/captures.db`) unless `--store URL` names another. Reading commands never create a store:
a missing SQLite file is reported (a mistyped path would otherwise list nothing).
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from .._atomic import atomic_path
from .._moments import DURATION_FORMS, parse_duration, parse_moment
from ._app import CliError, State
from ._text import json_text, visible

if TYPE_CHECKING:
    from ..capture import CaptureRecord, CaptureStore

__all__ = ["captures_app", "parse_moment"]

captures_app = typer.Typer(
    name="captures",
    help="List, show, export and prune the calls captured by @promptops.track.",
    no_args_is_help=True,
)

_PREVIEW_CHARS = 40

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL",
        help="Capture store URL (sqlite:///path.db, postgresql+psycopg://...). Default: the capture setting "
        "(PROMPTOPS_CAPTURE, the tool.promptops table in pyproject.toml), else sqlite:///.promptops/captures.db.",
        show_default=False,
    ),
]
FunctionOption = Annotated[
    str | None, typer.Option("--function", metavar="MODULE:QUALNAME", help="Only calls of this tracked function.")
]
PromptOption = Annotated[str | None, typer.Option("--prompt", metavar="NAME", help="Only calls using this prompt.")]
VersionOption = Annotated[
    int | None, typer.Option("--version", metavar="N", min=0, help="Only calls using this prompt version.")
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="Only calls started at or after WHEN: a duration ago (90s, 30m, 24h, 7d, 2w) or an ISO timestamp "
        "(2026-01-31, 2026-01-31T12:00:00+02:00; UTC when no offset).",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", metavar="WHEN", help="Only calls started before WHEN (same forms as --since)."),
]


def _open_store(ctx: typer.Context, store_option: str | None) -> CaptureStore:
    """The capture store to read: `--store`, else the `capture` setting. Never creates a SQLite file."""
    import sqlalchemy.exc

    from ..capture import CaptureStore
    from ..capture._store import display_url, sqlite_path

    if store_option is not None:
        url = store_option.strip()
        if not url:
            raise CliError("--store is empty; pass a URL such as sqlite:///.promptops/captures.db")
    else:
        configured = State.of(ctx).settings.capture
        if configured is None:
            raise CliError(
                "capture is disabled (the capture setting is none); pass --store URL or set PROMPTOPS_CAPTURE to "
                "the store's URL, e.g. sqlite:///.promptops/captures.db"
            )
        url = configured
    shown = display_url(url)
    try:
        path = sqlite_path(url)
    except sqlalchemy.exc.ArgumentError:
        raise CliError(
            f"invalid capture store URL {url!r}; use e.g. sqlite:///.promptops/captures.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    if path is not None and not Path(path).is_file():
        raise CliError(
            f"no capture store at {path} ({shown}); nothing has been captured there yet: pass --store URL or "
            "set PROMPTOPS_CAPTURE"
        )
    try:
        store = CaptureStore.open(url)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise CliError(
            f"cannot open the capture store {shown}: {detail[0] if detail else type(exc).__name__}"
        ) from None
    ctx.call_on_close(store.close)
    return store


class _Filters:
    """The filter options of one command, parsed."""

    def __init__(
        self,
        function: str | None,
        prompt: str | None,
        version: int | None,
        since: str | None,
        until: str | None,
    ) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        self.function = function
        self.prompt = prompt
        self.version = version
        self.since = parse_moment(since, option="--since", now=now) if since is not None else None
        self.until = parse_moment(until, option="--until", now=now) if until is not None else None

    def records(self, store: CaptureStore, limit: int | None) -> Iterable[CaptureRecord]:
        """The matching records, oldest first; with `limit`, only the `limit` most recent of them."""
        return store.query(
            function=self.function,
            prompt=self.prompt,
            version=self.version,
            since=self.since,
            until=self.until,
            latest=limit,
        )

    def count(self, store: CaptureStore) -> int:
        """How many records match."""
        return store.count(
            function=self.function, prompt=self.prompt, version=self.version, since=self.since, until=self.until
        )


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


def _prompt_label(record: CaptureRecord) -> str:
    if record.prompt_name is None:
        return "-"
    if record.prompt_version is None:
        return record.prompt_name
    return f"{record.prompt_name}@{record.prompt_version}"


@captures_app.command("list")
def list_captures(
    ctx: typer.Context,
    function: FunctionOption = None,
    prompt: PromptOption = None,
    version: VersionOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", min=1, help="Show the N most recent matching calls.")
    ] = 50,
    store_url: StoreOption = None,
) -> None:
    """A table of captured calls, oldest first: id, time, function, prompt@version, latency, error, previews."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    filters = _Filters(function, prompt, version, since, until)
    store = _open_store(ctx, store_url)
    records = list(filters.records(store, limit))
    # On a terminal the table fits its width (ids and times stay whole, previews shrink); piped, lines are
    # wide enough to keep every column, for grep and friends.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
    if not records:
        console.print("no captured calls match", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=36)
    table.add_column("TIME (UTC)", no_wrap=True, min_width=19)
    table.add_column("FUNCTION", overflow="ellipsis", no_wrap=True, min_width=12)
    table.add_column("PROMPT", overflow="ellipsis", no_wrap=True, min_width=8)
    table.add_column("LATENCY", justify="right", no_wrap=True, min_width=9)
    table.add_column("ERROR", overflow="ellipsis", no_wrap=True, min_width=5)
    table.add_column("INPUTS", overflow="ellipsis", no_wrap=True, min_width=8)
    table.add_column("OUTPUT", overflow="ellipsis", no_wrap=True, min_width=8)
    for record in records:
        cells = (
            record.id,
            record.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
            record.function,
            _prompt_label(record),
            f"{record.latency_ms:.1f} ms",
            record.error_type or "",
            _preview(record.inputs),
            "" if record.error_type is not None and record.output is None else _preview(record.output),
        )
        # Text: captured values are never read as markup; visible(): nor as terminal escape sequences
        table.add_row(*(Text(visible(cell)) for cell in cells))
    console.print(table)
    total = filters.count(store)
    if total > len(records):
        console.print(f"showing the {len(records)} most recent of {total} matching calls (--limit)", markup=False)


@captures_app.command("show")
def show(
    ctx: typer.Context,
    record_id: Annotated[str, typer.Argument(metavar="ID", help="The capture's id, as `captures list` shows it.")],
    store_url: StoreOption = None,
) -> None:
    """Print one captured call in full, as JSON."""
    from ..capture._store import display_url

    store = _open_store(ctx, store_url)
    record = store.get(record_id.strip())
    if record is None:
        raise CliError(
            f"no captured call with id {record_id!r} in {display_url(store.url)}; list ids with: "
            "promptops captures list"
        )
    typer.echo(json_text(record.to_dict(), indent=2))


def _lines(records: Iterable[CaptureRecord]) -> Iterator[str]:
    for record in records:
        yield json_text(record.to_dict()) + "\n"


def _write_lines(out: TextIO, lines: Iterable[str]) -> int:
    written = 0
    for line in lines:
        out.write(line)
        written += 1
    return written


@captures_app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(metavar="FILE", help="The JSONL file to write (replaced if it exists); - for stdout."),
    ],
    function: FunctionOption = None,
    prompt: PromptOption = None,
    version: VersionOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", metavar="N", min=1, help="Only the N most recent matching calls.")
    ] = None,
    store_url: StoreOption = None,
) -> None:
    """Write the matching captured calls as JSON Lines, one record per line, oldest first."""
    filters = _Filters(function, prompt, version, since, until)
    store = _open_store(ctx, store_url)
    lines = _lines(filters.records(store, limit))
    if file == "-":
        written = _write_lines(sys.stdout, lines)
        sys.stdout.flush()
        # The count goes to stderr, as for a file, so a pipe gets only the records (issue 17).
        typer.echo(f"exported {written} captured call{'s' if written != 1 else ''} to stdout", err=True)
        return
    try:
        with atomic_path(Path(file)) as partial, partial.open("w", encoding="utf-8", newline="\n") as out:
            written = _write_lines(out, lines)
    except OSError as exc:
        raise CliError(f"cannot write {file}: {exc.strerror or exc}") from None
    typer.echo(f"exported {written} captured call{'s' if written != 1 else ''} to {file}", err=True)


@captures_app.command("prune")
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help=f"Delete the calls started at least this long ago: {DURATION_FORMS}.",
            show_default=False,
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say how many calls would be deleted; delete nothing.")
    ] = False,
    store_url: StoreOption = None,
) -> None:
    """Delete old captured calls, except those a saved dataset was made from. Safe while applications capture."""
    import sqlalchemy.exc

    from ..capture._retention import prune as prune_store
    from ..capture._store import display_url

    age = parse_duration(older_than, option="--older-than")
    store = _open_store(ctx, store_url)
    try:
        result = prune_store(store, age, dry_run=dry_run)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise CliError(
            f"cannot prune the capture store {display_url(store.url)}: {detail[0] if detail else type(exc).__name__}"
        ) from None
    calls = f"{result.deleted} captured call{'s' if result.deleted != 1 else ''}"
    before = f"started before {result.cutoff:%Y-%m-%d %H:%M:%S} UTC"
    line = f"would delete {calls} {before}" if dry_run else f"deleted {calls} {before}"
    if result.kept:
        line += f"; kept {result.kept} older one{'s' if result.kept != 1 else ''} that saved datasets were made from"
    typer.echo(line)
