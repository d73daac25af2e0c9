"""Issue 11: credentials never written or shown, and the files promptops creates are private to their owner.

Real files, a real SQLite capture store (WAL), the real prompt disk cache and real dataset files.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path

import pytest

import promptops
from promptops import Prompt, datasets
from promptops._uri import redact_uri
from promptops.capture import CallCapture
from promptops.prompts._disk import DiskCache

PASSWORD = "S3cretRegPw"
TOKEN = "ghTokenCanary0123"


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (f"http://alice:{PASSWORD}@registry.example.com:5000/api", "http://alice:***@registry.example.com:5000/api"),
        (f"https://{TOKEN}@registry.example.com", "https://***@registry.example.com"),
        (f"postgresql+psycopg://svc:{PASSWORD}@db:5432/app", "postgresql+psycopg://svc:***@db:5432/app"),
        (f"https://h/api?access_token={TOKEN}&page=2", "https://h/api?access_token=***&page=2"),
        (f"https://h/blob?sig={TOKEN}", "https://h/blob?sig=***"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        ("http://localhost:5000", "http://localhost:5000"),
        ("databricks", "databricks"),
    ],
)
def test_uris_are_shown_without_credentials(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown


def test_the_settings_repr_hides_the_registry_password_and_the_capture_password() -> None:
    settings = promptops.configure(
        tracking_uri=f"http://alice:{PASSWORD}@registry.example.com:5000",
        capture=f"postgresql+psycopg://svc:{PASSWORD}@db/app",
    )
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert "alice:***@registry.example.com" in repr(settings)
    assert settings.tracking_uri.startswith(f"http://alice:{PASSWORD}@")  # the real value is still used


def test_the_prompt_cache_file_holds_no_password(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "cache", f"http://alice:{PASSWORD}@registry.example.com:5000")
    prompt = Prompt(name="greet", version=3, template="Hi {{name}}", source="registry")
    cache.save(prompt, ("alias", "production"))
    files = [path for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert files
    for path in files:
        assert PASSWORD not in path.read_text()
        assert PASSWORD not in str(path)
    loaded = DiskCache(tmp_path / "cache", f"http://alice:{PASSWORD}@registry.example.com:5000").load(
        "greet", ("alias", "production")
    )
    assert loaded is not None and loaded[0].template == "Hi {{name}}"


def test_an_unavailable_prompt_error_names_the_registry_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    # A registry nobody answers at (a closed port on loopback), no disk copy, no fallback.
    promptops.configure(
        tracking_uri=f"http://alice:{PASSWORD}@127.0.0.1:9", registry_timeout=0.5, trace_exporter="none"
    )

    @promptops.track(prompt="missing")
    def answer(*, prompt: Prompt) -> str:
        return "never"

    with caplog.at_level(logging.DEBUG), pytest.raises(promptops.PromptUnavailableError) as raised:
        answer()
    assert PASSWORD not in str(raised.value)
    assert PASSWORD not in raised.value.uri
    assert PASSWORD not in caplog.text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_capture_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "new" / "dir" / "captures.db"
    promptops.configure(capture=f"sqlite:///{db}", trace_exporter="none")
    capture = CallCapture(lambda text: text)
    prompt = Prompt(name="p", version=1, template="x", source="registry")
    now = time.perf_counter_ns()
    capture.submit(prompt, ("hello",), {}, bound=False, output="out", started_ns=now, ended_ns=now + 1)
    assert promptops.flush(timeout=30)
    files = [path for path in db.parent.iterdir() if path.name.startswith("captures.db")]
    assert {path.name for path in files} >= {"captures.db", "captures.db-wal", "captures.db-shm"}
    for path in files:
        assert mode(path) == 0o600, (path.name, oct(mode(path)))
    assert mode(db.parent) == 0o700
    assert mode(db.parent.parent) == 0o700
    assert mode(tmp_path) != 0o700 or os.getuid() == tmp_path.stat().st_uid  # existing directories untouched


def test_the_prompt_cache_is_private(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / ".promptops", "sqlite:///mlflow.db")
    cache.save(Prompt(name="greet", version=1, template="Hi", source="registry"), ("version", 1))
    path = cache.path("greet", ("version", 1))
    assert mode(path) == 0o600
    directory = path.parent
    while directory != tmp_path:
        assert mode(directory) == 0o700, directory
        directory = directory.parent


def test_dataset_files_are_private(tmp_path: Path) -> None:
    dataset = datasets.Dataset("d", [datasets.DatasetRecord("1", {"q": "a"}, output="b")])
    for name in ("d.jsonl", "d.parquet"):
        datasets.write_file(dataset, tmp_path / name)
        assert mode(tmp_path / name) == 0o600, name


def test_a_replaced_dataset_file_keeps_the_permission_its_owner_gave_it(tmp_path: Path) -> None:
    dataset = datasets.Dataset("d", [datasets.DatasetRecord("1", {"q": "a"}, output="b")])
    path = tmp_path / "shared.jsonl"
    path.write_text("")
    path.chmod(0o644)
    datasets.write_file(dataset, path)
    assert mode(path) == 0o644
    assert json.loads(path.read_text().splitlines()[0])["output"] == "b"


def test_the_file_mode_setting_shares_files_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPS_FILE_MODE", "640")
    assert promptops.get_settings().file_mode == 0o640
    cache = DiskCache(tmp_path / "c", "sqlite:///mlflow.db")
    cache.save(Prompt(name="greet", version=1, template="Hi", source="registry"), ("version", 1))
    path = cache.path("greet", ("version", 1))
    assert mode(path) == 0o640
    assert mode(path.parent) == 0o750


@pytest.mark.parametrize("value", ["abc", "777777", "400", "0o044"])
def test_an_invalid_file_mode_is_refused_with_the_setting_named(value: str) -> None:
    with pytest.raises(promptops.ConfigError, match="file_mode"):
        promptops.configure(file_mode=value)
