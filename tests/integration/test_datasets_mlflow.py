"""Datasets to and from MLflow evaluation datasets: a real sqlite tracking store, and a real `mlflow server`."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from promptops import datasets
from promptops.cli import app
from promptops.datasets import Dataset, DatasetExistsError, DatasetNotFoundError, DatasetRecord
from tests.conftest import Registry
from tests.unit.test_datasets import awkward_dataset

from .conftest import MlflowServer

runner = CliRunner()


@pytest.fixture
def uri(registry: Registry) -> str:
    """The session's sqlite MLflow tracking store (datasets get unique names)."""
    return registry.uri


@pytest.fixture
def name() -> str:
    return f"ds-{uuid.uuid4().hex[:10]}"


def mlflow_records(uri: str, mlflow_name: str) -> list[Any]:
    """The records as MLflow holds them, read with MLflow's own client."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.genai import datasets as genai

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        found = genai.get_dataset(name=mlflow_name)
        return sorted(
            MlflowClient(uri).get_dataset(found.dataset_id).records, key=lambda r: int(r.tags["promptops.index"])
        )
    finally:
        mlflow.set_tracking_uri(before)


def test_push_then_pull_gives_the_same_dataset(uri: str, name: str) -> None:
    dataset = awkward_dataset(name)
    result = datasets.push(dataset, tracking_uri=uri)
    assert (result.mlflow_name, result.pushed, result.skipped, result.tracking_uri) == (name, len(dataset), 0, uri)
    assert result.dataset_id.startswith("d-") and result.experiment_ids == ["0"]
    pulled = datasets.pull(name, tracking_uri=uri)
    assert pulled.records == dataset.records and pulled.fingerprint == dataset.fingerprint
    assert pulled.name == name and pulled.source == f"mlflow:{name}"
    assert pulled.filters == {
        "mlflow_name": name,
        "mlflow_dataset_id": result.dataset_id,
        "tracking_uri": uri,
        "pushed_name": name,
        "pushed_fingerprint": dataset.fingerprint,
    }
    saved = datasets.create("pulled", pulled, store=f"sqlite:///{Path.cwd() / 'captures.db'}")
    assert saved.fingerprint == dataset.fingerprint


def test_what_mlflow_sees(uri: str, name: str) -> None:
    record = DatasetRecord(
        "cap-1", {"text": "hello"}, output="a summary", expected="the summary", metadata={"latency_ms": 3.5}
    )
    datasets.push(Dataset(name, [record, DatasetRecord("cap-2", {"text": "bye"})], source="captures"), tracking_uri=uri)
    first, second = mlflow_records(uri, name)
    assert (first.inputs, first.outputs, first.expectations) == (
        {"text": "hello"},
        "a summary",
        {"expected_response": "the summary"},
    )
    assert first.tags["promptops.id"] == "cap-1" and first.tags["promptops.metadata"] == '{"latency_ms":3.5}'
    assert second.outputs is None and not second.expectations


def test_repeated_inputs_are_left_out_and_counted(uri: str, name: str) -> None:
    records = [DatasetRecord(str(i), {"q": i % 3}, output=f"answer {i}") for i in range(7)]
    result = datasets.push(Dataset(name, records), tracking_uri=uri)
    assert (result.pushed, result.skipped) == (3, 4)
    pulled = datasets.pull(name, tracking_uri=uri)
    assert [r.id for r in pulled.records] == ["0", "1", "2"]  # the first of each
    assert [r.output for r in pulled.records] == ["answer 0", "answer 1", "answer 2"]


def test_names_are_never_reused(uri: str, name: str) -> None:
    datasets.push(awkward_dataset(name), tracking_uri=uri)
    with pytest.raises(
        DatasetExistsError,
        match=rf"an MLflow dataset named '{name}' already exists at {uri}; .* --mlflow-name {name}-2",
    ):
        datasets.push(Dataset("other", [DatasetRecord("1", {"q": 1})]), tracking_uri=uri, mlflow_name=name)
    assert len(datasets.pull(name, tracking_uri=uri)) == len(awkward_dataset())
    with pytest.raises(DatasetNotFoundError, match=rf"no MLflow dataset named 'nope-{name}' at {uri}"):
        datasets.pull(f"nope-{name}", tracking_uri=uri)


def test_experiment_is_linked(uri: str, name: str) -> None:
    from mlflow import MlflowClient

    result = datasets.push(awkward_dataset(name), tracking_uri=uri, experiment=f"exp-{name}", mlflow_name=f"{name}-x")
    experiment = MlflowClient(uri).get_experiment_by_name(f"exp-{name}")
    assert experiment is not None and result.experiment_ids == [experiment.experiment_id]
    again = datasets.push(awkward_dataset(name), tracking_uri=uri, experiment=f"exp-{name}", mlflow_name=f"{name}-y")
    assert again.experiment_ids == [experiment.experiment_id]


def test_a_refused_push_leaves_nothing(uri: str, name: str) -> None:
    from mlflow.exceptions import MlflowException

    # MLflow refuses inputs that mix its session fields with others: after the dataset was created.
    bad = Dataset(name, [DatasetRecord("1", {"goal": "x", "other": 1})])
    with pytest.raises(MlflowException, match="cannot mix session fields"):
        datasets.push(bad, tracking_uri=uri)
    with pytest.raises(DatasetNotFoundError):
        datasets.pull(name, tracking_uri=uri)


def test_mlflow_global_state_is_restored(uri: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    mlflow.set_tracking_uri("sqlite:///elsewhere.db")
    try:
        datasets.push(awkward_dataset(name), tracking_uri=uri)
        datasets.pull(name, tracking_uri=uri)
        assert mlflow.get_tracking_uri() == "sqlite:///elsewhere.db"
    finally:
        mlflow.set_tracking_uri(None)  # pyright: ignore[reportArgumentType]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    datasets.pull(name, tracking_uri=uri)
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///from-env.db"
    assert not Path("elsewhere.db").exists() and not Path("from-env.db").exists()


def test_pull_a_dataset_made_outside_promptops(uri: str, name: str) -> None:
    import mlflow
    from mlflow.genai import datasets as genai

    mlflow.set_tracking_uri(uri)
    try:
        made = genai.create_dataset(name=name, tags={"team": "qa"})
        made.merge_records(
            [
                {"inputs": {"q": "one"}, "expectations": {"expected_response": "1"}, "tags": {"owner": "ada"}},
                {"inputs": {"q": "two"}, "expectations": {"accuracy": 0.9, "expected_response": "2"}},
                {"inputs": {"q": "three"}, "outputs": {"answer": 3}},
            ]
        )
    finally:
        mlflow.set_tracking_uri(None)  # pyright: ignore[reportArgumentType]
    pulled = datasets.pull(name, tracking_uri=uri, name="outside")
    by_input = {r.inputs["q"]: r for r in pulled.records}
    assert pulled.name == "outside" and set(by_input) == {"one", "two", "three"}
    assert by_input["one"].expected == "1" and by_input["one"].metadata == {"owner": "ada"}
    assert by_input["one"].output is None and by_input["one"].id.startswith("dr-")
    assert by_input["two"].expected == {"accuracy": 0.9, "expected_response": "2"}
    assert by_input["three"].output == {"answer": 3} and by_input["three"].expected is None
    assert "pushed_fingerprint" not in pulled.filters


def test_cli_push_and_pull(uri: str, name: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'captures.db'}"
    records = [DatasetRecord(str(i), {"q": i % 2}) for i in range(3)]
    datasets.create(name, Dataset("x", records), store=store)
    result = runner.invoke(
        app, ["--tracking-uri", uri, "datasets", "push", name, "--experiment", f"exp-{name}", "--store", store]
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.startswith(f"pushed 2 records of dataset {name} to MLflow dataset {name} (d-")
    assert result.stderr == (
        "note: 1 record left out: same inputs as an earlier record (MLflow keeps one record per distinct inputs)\n"
    )
    result = runner.invoke(app, ["--tracking-uri", uri, "datasets", "push", name, "--store", store])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: an MLflow dataset named '{name}' already exists")
    result = runner.invoke(app, ["--tracking-uri", uri, "datasets", "pull", name, "--store", store])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: dataset '{name}' already exists in {store}; datasets are immutable: pull under a new name with "
        f"--name {name}-2\n"
    )
    result = runner.invoke(app, ["--tracking-uri", uri, "datasets", "pull", name, "--name", "back", "--store", store])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout == f"pulled 2 records from MLflow dataset {name} as dataset back\n"
    assert [r.id for r in datasets.load("back", store=store).records] == ["0", "1"]
    result = runner.invoke(app, ["--tracking-uri", uri, "datasets", "pull", "no-such-dataset", "--store", store])
    assert result.exit_code == 2 and result.stderr == (
        f"error: no MLflow dataset named 'no-such-dataset' at {uri}; check the name (MLflow UI, Datasets tab) or the "
        "tracking URI (--tracking-uri)\n"
    )


def check_push_and_pull(url: str, name: str) -> None:
    """A dataset pushed through a tracking server comes back the same, and its name is not reused."""
    dataset = awkward_dataset(name)
    result = datasets.push(dataset, tracking_uri=url, experiment=f"exp-{name}")
    assert result.pushed == len(dataset) and result.tracking_uri == url
    pulled = datasets.pull(name, tracking_uri=url)
    assert pulled.records == dataset.records and pulled.fingerprint == dataset.fingerprint
    with pytest.raises(DatasetExistsError):
        datasets.push(dataset, tracking_uri=url)


def test_push_and_pull_through_a_tracking_server(server: MlflowServer, name: str) -> None:
    check_push_and_pull(server.url, name)
