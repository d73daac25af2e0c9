"""`promptops datasets ...`: create, list, show, import, export, push, pull and delete datasets.

Datasets live in the capture store (the `capture` setting, or `--store URL`), next to the captures they are
made from. They are immutable: `create`, `import` and `pull` refuse a name that exists and suggest a free one.
`create` and the reading commands need an existing store; `import` and `pull` create it if needed.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import CliError, State, is_mlflow_exception
from ._captures import (
    FunctionOption,
    PromptOption,
    SinceOption,
    StoreOption,
    UntilOption,
    VersionOption,
    _open_store,  # pyright: ignore[reportPrivateUsage]
    parse_moment,
)
from ._prompts import translate_mlflow_error
from ._text import json_text, visible

if TYPE_CHECKING:
    from ..capture import CaptureStore
    from ..datasets import Dataset, DatasetRecord

__all__ = ["datasets_app"]

datasets_app = typer.Typer(
    name="datasets",
    help="Create, inspect, import, export and share datasets: the records replay runs on.",
    no_args_is_help=True,
)

_PREVIEW_CHARS = 40
_NAME_RULE = "letters, digits, '.', '_' or '-'"

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The dataset's name (promptops datasets list).")]


def _writable_store(ctx: typer.Context, store_option: str | None) -> CaptureStore:
    """Like `_open_store`, but a missing SQLite file is created (import and pull may start a new store)."""
    import sqlalchemy.exc

    from ..capture import CaptureStore
    from ..capture._store import display_url, sqlite_path

    url = store_option.strip() if store_option is not None else State.of(ctx).settings.capture
    if url:
        try:
            path = sqlite_path(url)
        except sqlalchemy.exc.ArgumentError:
            path = None  # _open_store reports the invalid URL
        if path is not None and not Path(path).is_file():
            try:
                CaptureStore.open(url).close()
            except sqlalchemy.exc.SQLAlchemyError as exc:
                detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
                raise CliError(
                    f"cannot create the capture store {display_url(url)}: {detail[0] if detail else type(exc).__name__}"
                ) from None
    return _open_store(ctx, store_option)


def _name(name: str, *, hint: str) -> str:
    from ..datasets._model import check_name

    return check_name(name.strip(), hint=hint)


def _save(name: str, dataset: Dataset, store: CaptureStore, *, retry: str) -> Dataset:
    """`datasets.create`, with a taken name reported as the command to run instead."""
    from ..datasets import DatasetExistsError, create

    try:
        return create(name, dataset, store=store)
    except DatasetExistsError as exc:
        from ..capture._store import display_url

        raise CliError(
            f"dataset {name!r} already exists in {display_url(store.url)}; datasets are immutable: "
            f"{retry.format(suggestion=exc.suggestion)}"
        ) from None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _summary(dataset: Dataset) -> str:
    blocked = sum(1 for record in dataset.records if not record.replayable)
    text = _plural(len(dataset.records), "record")
    return f"{text} ({blocked} not replayable)" if blocked else text


@datasets_app.command("create")
def create(
    ctx: typer.Context,
    name: NameArgument,
    from_captures: Annotated[
        bool, typer.Option("--from-captures", help="Make the dataset from captured calls (the filters below).")
    ] = False,
    function: FunctionOption = None,
    prompt: PromptOption = None,
    version: VersionOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", metavar="N", min=1, help="Only the N most recent matching calls.")
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option("--sample", metavar="N", min=1, help="N calls drawn at random (reproducible with --seed)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="The random seed of --sample.")] = 0,
    dedupe: Annotated[
        bool, typer.Option("--dedupe", help="Keep only the first call per distinct inputs (input hash).")
    ] = False,
    store_url: StoreOption = None,
) -> None:
    """Save captured calls as a new dataset (immutable: a taken NAME is refused)."""
    from ..datasets import from_captures as select

    dataset_name = _name(name, hint="")
    if not from_captures:
        raise CliError(
            f"nothing to create {dataset_name} from: pass --from-captures (with filters such as --function, "
            f"--since 7d), or import a file with: promptops datasets import FILE --name {dataset_name}"
        )
    start = parse_moment(since, option="--since") if since is not None else None
    end = parse_moment(until, option="--until") if until is not None else None
    store = _open_store(ctx, store_url)
    dataset = select(
        store=store,
        function=function,
        prompt=prompt,
        version=version,
        since=start,
        until=end,
        limit=limit,
        sample=sample,
        seed=seed,
        dedupe=dedupe,
        name=dataset_name,
    )
    if not dataset.records:
        given = {"--function": function, "--prompt": prompt, "--version": version, "--since": since, "--until": until}
        used = ", ".join(f"{option} {value}" for option, value in given.items() if value is not None)
        raise CliError(
            f"no captured calls match{f' ({used})' if used else ''}; nothing to save as {dataset_name}: widen the "
            "filters, or see what was captured with: promptops captures list"
        )
    saved = _save(dataset_name, dataset, store, retry="choose another NAME, e.g. {suggestion}")
    typer.echo(f"created dataset {saved.name}: {_summary(saved)} from captures, fingerprint {saved.fingerprint[:12]}")


def _table() -> Any:
    from rich.table import Table

    return Table(box=None, pad_edge=False, header_style="bold")


def _console() -> Any:
    from rich.console import Console

    # Piped, lines are wide enough to keep every column (as `captures list`).
    return Console(highlight=False, width=None if sys.stdout.isatty() else 240)


@datasets_app.command("list")
def list_datasets(ctx: typer.Context, store_url: StoreOption = None) -> None:
    """A table of the datasets: name, records, source, creation time and fingerprint."""
    from rich.text import Text

    from ..datasets import list_datasets as stored

    store = _open_store(ctx, store_url)
    found = stored(store=store)
    console = _console()
    if not found:
        console.print("no datasets yet; create one with: promptops datasets create NAME --from-captures", markup=False)
        return
    table = _table()
    table.add_column("NAME", no_wrap=True)
    table.add_column("RECORDS", justify="right", no_wrap=True)
    table.add_column("SOURCE", overflow="ellipsis", no_wrap=True)
    table.add_column("CREATED (UTC)", no_wrap=True, min_width=19)
    table.add_column("FINGERPRINT", no_wrap=True)
    for info in found:
        cells = (
            info.name,
            str(info.count),
            info.source,
            info.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            info.fingerprint[:12],
        )
        table.add_row(*(Text(visible(cell)) for cell in cells))
    console.print(table)


def _preview(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


def _prompt_label(record: DatasetRecord) -> str:
    name = record.metadata.get("prompt_name")
    if not isinstance(name, str):
        return "-"
    version = record.prompt_version
    return name if version is None else f"{name}@{version}"


@datasets_app.command("show")
def show(
    ctx: typer.Context,
    name: NameArgument,
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", min=1, help="Show the first N records.")] = 20,
    store_url: StoreOption = None,
) -> None:
    """A dataset's provenance, then a table of its first records."""
    from rich.text import Text

    from ..datasets import load

    store = _open_store(ctx, store_url)
    dataset = load(name.strip(), store=store)
    console = _console()
    header = _table()
    header.add_column(style="bold", no_wrap=True)
    header.add_column()
    for label, value in (
        ("dataset", dataset.name),
        ("source", dataset.source),
        ("created", dataset.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("records", _summary(dataset)),
        ("fingerprint", dataset.fingerprint),
        ("filters", json.dumps(dataset.filters, ensure_ascii=False)),
    ):
        header.add_row(Text(label), Text(visible(value)))
    console.print(header)
    console.print()
    table = _table()
    table.add_column("ID", no_wrap=True, overflow="ellipsis", min_width=4)
    table.add_column("PROMPT", overflow="ellipsis", no_wrap=True, min_width=8)
    table.add_column("LATENCY", justify="right", no_wrap=True)
    table.add_column("REPLAY", no_wrap=True)
    table.add_column("ERROR", overflow="ellipsis", no_wrap=True, min_width=5)
    table.add_column("INPUTS", overflow="ellipsis", no_wrap=True, min_width=8)
    table.add_column("OUTPUT", overflow="ellipsis", no_wrap=True, min_width=8)
    table.add_column("EXPECTED", overflow="ellipsis", no_wrap=True, min_width=8)
    shown = dataset.records[:limit]
    for record in shown:
        latency = record.latency_ms
        error_type = record.metadata.get("error_type")
        cells = (
            record.id,
            _prompt_label(record),
            f"{latency:.1f} ms" if latency is not None else "",
            "yes" if record.replayable else "no",
            error_type if isinstance(error_type, str) else "",
            _preview(record.inputs),
            _preview(record.output),
            _preview(record.expected),
        )
        # Text: record values are never read as markup; visible(): nor as terminal escape sequences
        table.add_row(*(Text(visible(cell)) for cell in cells))
    console.print(table)
    if len(dataset.records) > len(shown):
        console.print(f"showing the first {len(shown)} of {len(dataset.records)} records (--limit)", markup=False)


@datasets_app.command("import")
def import_file(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="A .jsonl or .parquet file.")],
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="The dataset's name. Default: the file's stem.")
    ] = None,
    store_url: StoreOption = None,
) -> None:
    """Save the records of a JSONL or Parquet file as a new dataset (all or nothing)."""
    from ..datasets import read_file

    path = Path(file)
    if name is not None:
        dataset_name = _name(name, hint="")
    else:
        dataset_name = _name(path.stem, hint=f"; the name comes from the file name: pass --name NAME ({_NAME_RULE})")
    if not path.is_file():
        raise CliError(f"no file {file}; give a .jsonl or .parquet file")
    dataset = read_file(path)
    store = _writable_store(ctx, store_url)
    saved = _save(dataset_name, dataset, store, retry="import under a new name with --name {suggestion}")
    typer.echo(f"imported {_plural(len(saved.records), 'record')} from {file} as dataset {saved.name}")


@datasets_app.command("export")
def export(
    ctx: typer.Context,
    name: NameArgument,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="The .jsonl or .parquet file to write (replaced if it exists); - for JSONL on stdout."
        ),
    ],
    store_url: StoreOption = None,
) -> None:
    """Write a dataset's records to a JSONL or Parquet file (the format follows the extension)."""
    from ..datasets import load, write_file

    if file != "-":
        suffix = Path(file).suffix.lower()
        if suffix not in (".jsonl", ".parquet"):
            kind = repr(Path(file).suffix) if suffix else "no extension"
            raise CliError(f"cannot export to {file} ({kind}); name a .jsonl or .parquet file, or - for stdout")
    store = _open_store(ctx, store_url)
    dataset = load(name.strip(), store=store)
    if file == "-":
        for record in dataset.records:
            sys.stdout.write(json_text(record.to_dict(), separators=(",", ":")) + "\n")
        sys.stdout.flush()
        return
    write_file(dataset, file)
    typer.echo(f"exported {_plural(len(dataset.records), 'record')} of dataset {dataset.name} to {file}", err=True)


@contextlib.contextmanager
def _mlflow_errors(state: State) -> Generator[None]:
    """MLflow's errors as one line: an unreachable server says so and what to do, as `prompts` does (issue 17)."""
    try:
        yield
    except Exception as exc:
        if is_mlflow_exception(exc):
            raise translate_mlflow_error(exc, state.display_uri) from None
        raise


@datasets_app.command("push")
def push(
    ctx: typer.Context,
    name: NameArgument,
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", metavar="NAME", help="Link it to this MLflow experiment (created if missing)."),
    ] = None,
    mlflow_name: Annotated[
        str | None,
        typer.Option("--mlflow-name", metavar="NAME", help="The MLflow dataset's name. Default: the dataset's name."),
    ] = None,
    store_url: StoreOption = None,
) -> None:
    """Copy a dataset into a new MLflow evaluation dataset, at the tracking URI (--tracking-uri)."""
    from ..datasets import load
    from ..datasets import push as send

    state = State.of(ctx)
    store = _open_store(ctx, store_url)
    dataset = load(name.strip(), store=store)
    state.client(ctx)  # bounds MLflow's HTTP retries and timeout for this command, and quiets its logging
    with _mlflow_errors(state):
        result = send(dataset, tracking_uri=state.tracking_uri, experiment=experiment, mlflow_name=mlflow_name)
    typer.echo(
        f"pushed {_plural(result.pushed, 'record')} of dataset {dataset.name} to MLflow dataset "
        f"{result.mlflow_name} ({result.dataset_id}) at {result.tracking_uri}"
    )
    if result.skipped:
        typer.echo(
            f"note: {_plural(result.skipped, 'record')} left out: same inputs as an earlier record (MLflow keeps one "
            "record per distinct inputs)",
            err=True,
        )


@datasets_app.command("pull")
def pull(
    ctx: typer.Context,
    mlflow_name: Annotated[str, typer.Argument(metavar="MLFLOW_NAME", help="The MLflow evaluation dataset's name.")],
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="The dataset's name. Default: MLFLOW_NAME.")
    ] = None,
    store_url: StoreOption = None,
) -> None:
    """Save an MLflow evaluation dataset (at --tracking-uri) as a new dataset."""
    from ..datasets import pull as fetch

    if name is not None:
        dataset_name = _name(name, hint="")
    else:
        dataset_name = _name(mlflow_name, hint=f"; pass --name NAME ({_NAME_RULE})")
    state = State.of(ctx)
    state.client(ctx)
    with _mlflow_errors(state):
        dataset = fetch(mlflow_name, tracking_uri=state.tracking_uri, name=dataset_name)
    if not dataset.records:
        raise CliError(f"the MLflow dataset {mlflow_name!r} has no records; nothing to save")
    store = _writable_store(ctx, store_url)
    saved = _save(dataset_name, dataset, store, retry="pull under a new name with --name {suggestion}")
    typer.echo(
        f"pulled {_plural(len(saved.records), 'record')} from MLflow dataset {mlflow_name} as dataset {saved.name}"
    )


@datasets_app.command("delete")
def delete(ctx: typer.Context, name: NameArgument, store_url: StoreOption = None) -> None:
    """Delete a dataset and its records (to clean up; datasets are never modified)."""
    from ..datasets import delete as remove

    store = _open_store(ctx, store_url)
    count = remove(name.strip(), store=store)
    typer.echo(f"deleted dataset {name.strip()} ({_plural(count, 'record')})")
