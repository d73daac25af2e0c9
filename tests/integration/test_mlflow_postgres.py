"""MLflow's tracking server on PostgreSQL (issue 15): how teams run the registry, tested as a first-class set-up.

One real `mlflow server --backend-store-uri postgresql+psycopg://...` subprocess for the module, on a database
of its own on the PostgreSQL at 127.0.0.1:5432 (created here, dropped afterwards). Through it, as an application
and a CI job would use it: prompt resolution and an alias moved by another client, tracing with prompt links,
a replay run logged to MLflow, and dataset push/pull.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import promptops
from tests.conftest import Registry
from tests.unit.test_replay import ECHO_APP, PRODUCTION, App, check_logged_run

from .capture_support import pg_url, postgres_database, psql
from .conftest import MlflowServer
from .test_datasets_mlflow import check_push_and_pull
from .test_mlflow_links import check_server_links
from .test_server_reads import tracked, wait_for


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with postgres_database() as database:
        # The first start creates MLflow's schema in PostgreSQL (its migrations): slower than on sqlite.
        server = MlflowServer(
            tmp_path_factory.mktemp("mlflow-pg"), backend_store_uri=pg_url(database), start_timeout=180
        )
        try:
            server.start()
            yield server
        finally:
            server.stop()


def test_the_server_keeps_its_data_in_postgresql(pg_server: MlflowServer, prompt_name: str) -> None:
    # A positive control for every test below: what the server stores lands in PostgreSQL, not in a sqlite file.
    pg_server.register(prompt_name, "Summarize {{ text }}", alias="production")
    database = pg_server.backend_store_uri.rsplit("/", 1)[1]
    assert psql(f"SELECT count(*) FROM registered_models WHERE name = '{prompt_name}'", database=database) == "1"
    assert not list(pg_server.root.glob("*.db"))


def test_resolution_and_an_alias_moved_by_another_client(pg_server: MlflowServer, prompt_name: str) -> None:
    pg_server.register(prompt_name, "one {{ text }}", alias="production")
    pg_server.register(prompt_name, "two {{ text }}")
    promptops.configure(tracking_uri=pg_server.url, cache_ttl=0.3, trace_exporter="none", capture=False)
    call = tracked(prompt_name)
    first = call()
    assert (first.version, first.source, first.template) == (1, "registry", "one {{ text }}")

    pg_server.set_alias(prompt_name, "production", 2)
    wait_for(lambda: call().version == 2, timeout=60)
    assert call().template == "two {{ text }}"
    with promptops.use_prompt(prompt_name, version=1):
        assert call().version == 1  # a pin still wins over the alias


def test_every_trace_is_linked_to_its_prompt_version(pg_server: MlflowServer, prompt_name: str) -> None:
    check_server_links(pg_server, prompt_name)


def test_a_replay_run_is_logged_with_params_metrics_and_report(
    pg_server: MlflowServer, prompt_name: str, tmp_path: Path
) -> None:
    promptops.configure(tracking_uri=pg_server.url, trace_exporter="none", capture=False)
    application = App(Registry(pg_server.url), prompt_name, tmp_path, ECHO_APP)
    application.register("v1", PRODUCTION, alias="production")
    application.register("bad", "TL;DR.")
    check_logged_run(application, tmp_path)


def test_datasets_push_and_pull(pg_server: MlflowServer) -> None:
    check_push_and_pull(pg_server.url, f"ds-{uuid.uuid4().hex[:10]}")
