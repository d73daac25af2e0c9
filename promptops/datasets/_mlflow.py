"""`push()` and `pull()`: datasets to and from MLflow evaluation datasets (`mlflow.genai.datasets`).

How a record maps (and maps back unchanged):

| promptops      | MLflow dataset record                                                   |
|----------------|-------------------------------------------------------------------------|
| `inputs`       | `inputs`                                                                |
| `output`       | `outputs`                                                               |
| `expected`     | `expectations` `{"expected_response": expected}` (none when `None`)      |
| `id`, order    | tags `promptops.id`, `promptops.index`                                  |
| `metadata`     | tag `promptops.metadata` (JSON text)                                    |

The dataset's provenance goes into the MLflow dataset's tags (`promptops.name`, `promptops.source`,
`promptops.fingerprint`, `promptops.created_at`, `promptops.filters`).

MLflow keeps one record per distinct inputs (it merges records whose inputs are equal): `push` sends the first
record of each and counts the others in `PushResult.skipped`. `mlflow.genai.datasets` works against MLflow's
global tracking URI; it is set to the one asked for during the call and restored after (under a lock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import threading
from collections.abc import Generator
from typing import Any

from .._config import get_settings
from ._errors import DatasetError, DatasetExistsError, DatasetNotFoundError
from ._model import Dataset, DatasetRecord

__all__ = ["PushResult", "pull", "push"]

_lock = threading.Lock()
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_EXPECTED = "expected_response"  # the expectation name mlflow.genai's built-in scorers read


@dataclasses.dataclass(frozen=True, slots=True)
class PushResult:
    """What `push()` did.

    Attributes:
        mlflow_name: The MLflow dataset's name.
        dataset_id: Its MLflow id (`d-...`).
        tracking_uri: Where it lives (password hidden).
        pushed: How many records it holds.
        skipped: Records left out because their inputs equal an earlier record's (MLflow merges those).
        experiment_ids: The experiments it is linked to.
    """

    mlflow_name: str
    dataset_id: str
    tracking_uri: str
    pushed: int
    skipped: int
    experiment_ids: list[str]


@contextlib.contextmanager
def _tracking(uri: str) -> Generator[None]:
    """MLflow's global tracking URI set to `uri` for the block, then put back as it was (environment included)."""
    from mlflow.tracking._tracking_service import utils  # pyright: ignore[reportMissingTypeStubs]

    with _lock:
        before = os.environ.get("MLFLOW_TRACKING_URI")
        try:
            with utils._use_tracking_uri(uri):  # pyright: ignore[reportPrivateUsage, reportUnknownMemberType]
                yield
        finally:
            # Restoring an unset URI unsets MLFLOW_TRACKING_URI too, even when the user had set it.
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before


def _uri(tracking_uri: str | None) -> str:
    if tracking_uri is not None:
        if not tracking_uri.strip():
            raise DatasetError("the tracking URI is empty; pass one such as sqlite:///mlflow.db or http://host:5000")
        return tracking_uri.strip()
    return get_settings().tracking_uri


def _error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, str) else None


def _find(genai: Any, name: str) -> Any | None:
    """The MLflow dataset named `name`, or `None`; several of that name raise MLflow's own error."""
    from mlflow.exceptions import MlflowException

    try:
        return genai.get_dataset(name=name)
    except MlflowException as exc:
        if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _experiment_id(client: Any, experiment: str, shown: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return str(client.create_experiment(experiment))
    if getattr(found, "lifecycle_stage", "active") != "active":
        raise DatasetError(
            f"the MLflow experiment {experiment!r} at {shown} is deleted; restore it (mlflow experiments restore) or "
            "pass another --experiment"
        )
    return str(found.experiment_id)


def _mlflow_records(dataset: Dataset) -> tuple[list[dict[str, Any]], int]:
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    skipped = 0
    for index, record in enumerate(dataset.records):
        # MLflow's own key: sha256 of json.dumps(inputs, sort_keys=True); equal text, one record.
        key = json.dumps(record.inputs, sort_keys=True)
        if key in seen:
            skipped += 1
            continue
        seen.add(key)
        item: dict[str, Any] = {
            "inputs": record.inputs,
            "outputs": record.output,
            "tags": {
                "promptops.id": record.id,
                "promptops.index": str(index),
                "promptops.metadata": _canonical(record.metadata),
            },
        }
        if record.expected is not None:
            item["expectations"] = {_EXPECTED: record.expected}
        records.append(item)
    # Records with a non-empty object as output go first: MLflow 3.17's schema inference
    # (SqlAlchemyStore._update_dataset_schema) fails with "'str' object does not support item assignment" when
    # a text (or number) output precedes an object one. The order is kept in the `promptops.index` tags.
    records.sort(key=lambda item: not (isinstance(item["outputs"], dict) and item["outputs"]))
    return records, skipped


def push(
    dataset: Dataset,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    mlflow_name: str | None = None,
) -> PushResult:
    """Copy a dataset into a new MLflow evaluation dataset (for `mlflow.genai.evaluate` and the MLflow UI).

    ```python
    from promptops import datasets

    greetings = datasets.Dataset("greetings", [datasets.DatasetRecord("1", {"name": "Ada"}, expected="Hello, Ada!")])
    result = datasets.push(greetings, experiment="greetings")  # to the tracking_uri setting
    print(result.dataset_id, result.pushed, result.skipped)  # d-... 1 0
    assert datasets.pull("greetings").fingerprint == greetings.fingerprint
    ```

    Args:
        dataset: The dataset (e.g. from `load()`).
        tracking_uri: The MLflow tracking URI; default promptops' `tracking_uri` setting.
        experiment: Link the dataset to this experiment (by name; created if missing). Default: MLflow's
            current experiment.
        mlflow_name: The MLflow dataset's name; default the dataset's name.

    Returns:
        What was pushed where.

    Raises:
        DatasetExistsError: an MLflow dataset of that name exists (MLflow datasets can be merged into;
            promptops datasets stay immutable, so push under a new name).
        DatasetError: the dataset is empty, or the experiment is deleted.
        mlflow.exceptions.MlflowException: MLflow refused (unreachable server, invalid inputs); nothing is left
            behind then.
    """
    from ..prompts._registry import redact_uri

    uri = _uri(tracking_uri)
    shown = redact_uri(uri)
    target = mlflow_name if mlflow_name is not None else dataset.name
    if not target.strip():
        raise DatasetError("the MLflow dataset name is empty; pass mlflow_name= (--mlflow-name)")
    if not dataset.records:
        raise DatasetError(f"dataset {dataset.name!r} has no records; there is nothing to push")
    records, skipped = _mlflow_records(dataset)
    tags = {
        "promptops.name": dataset.name,
        "promptops.source": dataset.source,
        "promptops.fingerprint": dataset.fingerprint,
        "promptops.created_at": dataset.created_at.isoformat(),
        "promptops.filters": _canonical(dataset.filters),
    }
    with _tracking(uri):
        from mlflow import MlflowClient
        from mlflow.genai import datasets as genai

        if _find(genai, target) is not None:
            raise DatasetExistsError(
                f"an MLflow dataset named {target!r} already exists at {shown}; promptops datasets are immutable: "
                f"push under a new name, e.g. --mlflow-name {target}-2",
                name=target,
                suggestion=f"{target}-2",
            )
        client: Any = MlflowClient(tracking_uri=uri)
        experiment_ids = [_experiment_id(client, experiment, shown)] if experiment is not None else None
        created: Any = genai.create_dataset(name=target, experiment_id=experiment_ids, tags=tags)
        try:
            created.merge_records(records)
        except BaseException:
            # All or nothing: no half-filled dataset left behind under the name.
            with contextlib.suppress(Exception):
                genai.delete_dataset(dataset_id=created.dataset_id)
            raise
        return PushResult(
            mlflow_name=target,
            dataset_id=str(created.dataset_id),
            tracking_uri=shown,
            pushed=len(records),
            skipped=skipped,
            experiment_ids=[str(value) for value in list(created.experiment_ids or [])],  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
        )


def _expected(expectations: Any) -> Any:
    if not expectations:
        return None
    if isinstance(expectations, dict):
        named: dict[str, Any] = expectations  # pyright: ignore[reportUnknownVariableType]
        if list(named) == [_EXPECTED]:
            return named[_EXPECTED]
        return named
    return expectations  # several named expectations (made outside promptops): all of them


def _record(entity: Any) -> tuple[int | None, DatasetRecord]:
    tags: dict[str, Any] = dict(entity.tags or {})
    inputs: dict[str, Any] = dict(entity.inputs or {})
    if "promptops.id" in tags:  # pushed by promptops: everything comes back as it was
        index = tags.get("promptops.index")
        return (
            int(index) if isinstance(index, str) and index.isdigit() else None,
            DatasetRecord(
                id=str(tags["promptops.id"]),
                inputs=inputs,
                output=entity.outputs,
                expected=_expected(entity.expectations),
                metadata=json.loads(tags.get("promptops.metadata") or "{}"),
            ),
        )
    output = entity.outputs
    return None, DatasetRecord(
        id=str(entity.dataset_record_id),
        inputs=inputs,
        # MLflow stores `{}` for a record merged without outputs: no output known.
        output=None if output == {} else output,
        expected=_expected(entity.expectations),
        metadata={key: value for key, value in tags.items() if not key.startswith("mlflow.")},
    )


def pull(mlflow_name: str, *, tracking_uri: str | None = None, name: str | None = None) -> Dataset:
    """A dataset from an MLflow evaluation dataset (not saved: pass it to `create()` to keep it).

    A dataset pushed by promptops comes back with the same records (ids, order, metadata), so the same
    fingerprint. Others: ids are MLflow's record ids, `expected` the `expected_response` expectation (or all the
    expectations when there are several), metadata the record's tags.

    Args:
        mlflow_name: The MLflow dataset's name.
        tracking_uri: The MLflow tracking URI; default promptops' `tracking_uri` setting.
        name: The dataset's name; default `mlflow_name`.

    Returns:
        The dataset: `source` `"mlflow:<mlflow_name>"`, `filters` the MLflow dataset's id and tracking URI (and,
        for one pushed by promptops, the name and fingerprint it was pushed with).

    Raises:
        DatasetNotFoundError: no MLflow dataset has that name.
        mlflow.exceptions.MlflowException: MLflow cannot be reached, or several datasets have that name.
    """
    from ..prompts._registry import redact_uri

    uri = _uri(tracking_uri)
    shown = redact_uri(uri)
    with _tracking(uri):
        from mlflow import MlflowClient
        from mlflow.genai import datasets as genai

        found: Any = _find(genai, mlflow_name)
        if found is None:
            raise DatasetNotFoundError(
                f"no MLflow dataset named {mlflow_name!r} at {shown}; check the name (MLflow UI, Datasets tab) or "
                "the tracking URI (--tracking-uri)"
            )
        dataset_id = str(found.dataset_id)
        dataset_tags: dict[str, Any] = dict(found.tags or {})
        # The client's entity gives the records as MLflow stored them; `to_df()` would let pandas turn a column
        # of numbers and nulls into floats and NaN.
        entity: Any = MlflowClient(tracking_uri=uri).get_dataset(dataset_id)
        entities: list[Any] = list(entity.records)
    pairs = [_record(entity) for entity in entities]
    if pairs and all(index is not None for index, _ in pairs):
        pairs.sort(key=lambda pair: pair[0] or 0)
    filters: dict[str, Any] = {"mlflow_name": mlflow_name, "mlflow_dataset_id": dataset_id, "tracking_uri": shown}
    if "promptops.fingerprint" in dataset_tags:
        filters["pushed_name"] = dataset_tags.get("promptops.name")
        filters["pushed_fingerprint"] = dataset_tags["promptops.fingerprint"]
    return Dataset(
        name=name if name is not None else mlflow_name,
        records=tuple(record for _, record in pairs),
        source=f"mlflow:{mlflow_name}",
        created_at=datetime.datetime.now(datetime.timezone.utc),
        filters=filters,
    )
