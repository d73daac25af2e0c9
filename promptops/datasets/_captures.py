"""`from_captures()`: a dataset from the calls `@promptops.track` captured, selected and sampled reproducibly."""

from __future__ import annotations

import datetime
import random
from typing import TYPE_CHECKING, Any

from ._errors import DatasetError
from ._model import Dataset, DatasetRecord
from ._storage import open_store, store_url

if TYPE_CHECKING:
    from ..capture import CaptureRecord, CaptureStore

__all__ = ["from_captures", "record_from_capture"]


def record_from_capture(capture: CaptureRecord) -> DatasetRecord:
    """The dataset record of one captured call: its inputs, its output as the baseline, the rest as metadata.

    Args:
        capture: The captured call.

    Returns:
        A record with the capture's id; `metadata` holds every other field of the capture (the timestamp in
        ISO 8601), so a non-replayable capture stays recognisable (`replayable` false, `replay_reason`).
    """
    metadata = capture.to_dict()
    for key in ("id", "inputs", "output"):
        del metadata[key]
    return DatasetRecord(id=capture.id, inputs=capture.inputs, output=capture.output, metadata=metadata)


def _moment(value: datetime.datetime | datetime.timedelta | None, now: datetime.datetime) -> datetime.datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return now - value
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.timezone.utc)


def _positive(value: int | None, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise DatasetError(f"{what} must be a whole number of at least 1, not {value!r}")
    return value


def _select(
    store: CaptureStore,
    filters: dict[str, Any],
    *,
    limit: int | None,
    sample: int | None,
    seed: int,
    dedupe: bool,
) -> list[CaptureRecord]:
    """Dedupe (first call per input hash), then the `limit` most recent, then `sample` of those; oldest first.

    The database filters, dedupes, orders and cuts, and only ids travel until the sample is drawn: at a million
    captures, reading and decoding every matching record to keep 500 would take seconds and hundreds of MB.
    """
    ids = store.ids(**filters, dedupe=dedupe, latest=limit)
    if sample is not None and sample < len(ids):
        # Indices drawn by a generator of its own: the same captures and seed give the same sample anywhere.
        chosen = random.Random(seed).sample(range(len(ids)), sample)
        ids = [ids[index] for index in sorted(chosen)]
    return store.fetch(ids)


def from_captures(
    *,
    store: str | CaptureStore | None = None,
    function: str | None = None,
    prompt: str | None = None,
    version: int | None = None,
    since: datetime.datetime | datetime.timedelta | None = None,
    until: datetime.datetime | datetime.timedelta | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    dedupe: bool = False,
    name: str = "captures",
) -> Dataset:
    """A dataset of captured calls (not saved: pass it to `create()` to keep it).

    The steps, in order: the filters; `dedupe` (the first call per distinct inputs); `limit` (the most recent
    N); `sample` (N of those at random, the same N for the same captures and `seed`). Records stay oldest first.
    Calls whose inputs could not be captured faithfully stay in, with `replayable` false, so that a replay can
    count them.

    ```{.python test="skip" reason="reads the captures of an application that has been running"}
    from promptops import datasets

    recent = datasets.from_captures(function="app.llm:summarize", since=datetime.timedelta(days=7), sample=200)
    ```

    Args:
        store: A capture store URL or `CaptureStore`; default the `capture` setting.
        function: Only calls of this tracked function (`module:qualname`).
        prompt: Only calls that used this prompt.
        version: Only calls that used this prompt version.
        since: Only calls started at or after this instant (a `timedelta`: that long ago; naive: UTC).
        until: Only calls started before this instant.
        limit: Only the `limit` most recent matching calls.
        sample: Draw this many calls at random (all of them when fewer match).
        seed: The random seed of `sample`.
        dedupe: Keep only the first (oldest) call per distinct inputs (`input_hash`).
        name: The dataset's name until it is saved.

    Returns:
        The dataset: `source` `"captures"`, `filters` the options given (and the store), records oldest first.

    Raises:
        DatasetError: a bad option, capture disabled, no store at that path, or the store cannot be read.
    """
    import sqlalchemy.exc

    from ..capture._store import display_url

    _positive(limit, "limit")
    _positive(sample, "sample")
    if isinstance(seed, bool) or not isinstance(seed, int):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise DatasetError(f"seed must be a whole number, not {seed!r}")
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = _moment(since, now), _moment(until, now)
    with open_store(store, create=False) as opened:
        if opened is None:
            url = store_url(store if isinstance(store, str) else None)
            raise DatasetError(
                f"no capture store at {display_url(url)}; nothing has been captured there yet: pass store=URL or "
                "set PROMPTOPS_CAPTURE"
            )
        where = display_url(opened.url)
        try:
            filters = {"function": function, "prompt": prompt, "version": version, "since": start, "until": end}
            captures = _select(opened, filters, limit=limit, sample=sample, seed=seed, dedupe=dedupe)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise DatasetError(
                f"cannot read captures from {where}: {detail[0] if detail else type(exc).__name__}"
            ) from None
    options: dict[str, Any] = {
        "function": function,
        "prompt": prompt,
        "version": version,
        "since": start.isoformat() if start is not None else None,
        "until": end.isoformat() if end is not None else None,
        "limit": limit,
        "sample": sample,
        "seed": seed if sample is not None else None,
        "dedupe": dedupe or None,
    }
    filters = {"store": where, **{key: value for key, value in options.items() if value is not None}}
    return Dataset(
        name=name,
        records=tuple(record_from_capture(capture) for capture in captures),
        source="captures",
        created_at=now,
        filters=filters,
    )
