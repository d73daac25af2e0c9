from __future__ import annotations

from pathlib import Path

import pytest

import promptops
from promptops import _config
from tests.conftest import Registry


def test_defaults_without_any_configuration(tmp_path: Path) -> None:
    settings = promptops.get_settings()
    # MLflow's default, made absolute as mlflow.get_tracking_uri() does, so a later chdir changes nothing.
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert settings.default_alias == "production"
    assert settings.pins == {}
    assert settings.cache_ttl == 60.0
    assert settings.registry_timeout == 2.0
    assert settings.cache_dir == tmp_path.resolve() / ".promptops"


def test_mlflow_tracking_uri_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    _config.reset()
    assert promptops.get_settings().tracking_uri == "http://127.0.0.1:5999"
    monkeypatch.setenv("PROMPTOPS_TRACKING_URI", "sqlite:////data/ours.db")
    _config.reset()
    assert promptops.get_settings().tracking_uri == "sqlite:////data/ours.db"


def test_precedence_configure_over_env_over_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.promptops]\ndefault_alias = "from-pyproject"\ncache_ttl = 5\n'
        '[tool.promptops.pins]\nsummarize = "staging"\nclassify = 3\n'
    )
    _config.reset()
    settings = promptops.get_settings()
    assert settings.default_alias == "from-pyproject"
    assert settings.cache_ttl == 5.0
    assert settings.pins == {"summarize": ("alias", "staging"), "classify": ("version", 3)}

    monkeypatch.setenv("PROMPTOPS_DEFAULT_ALIAS", "from-env")
    monkeypatch.setenv("PROMPTOPS_PINS", "summarize=7")
    _config.reset()
    assert promptops.get_settings().default_alias == "from-env"
    assert promptops.get_settings().pins == {"summarize": ("version", 7)}

    settings = promptops.configure(default_alias="from-configure")
    assert settings.default_alias == "from-configure"
    assert settings.cache_ttl == 5.0  # untouched settings keep their source


def test_pyproject_found_in_a_parent_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.promptops]\ndefault_alias = "parent"\n')
    child = tmp_path / "src" / "app"
    child.mkdir(parents=True)
    monkeypatch.chdir(child)
    _config.reset()
    assert promptops.get_settings().default_alias == "parent"


def test_configure_calls_accumulate() -> None:
    promptops.configure(cache_ttl=3)
    settings = promptops.configure(pins={"a": "staging"})
    assert settings.cache_ttl == 3.0
    assert settings.pins == {"a": ("alias", "staging")}


def test_pins_accept_json_and_digits_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPS_PINS", '{"a": 2, "b": "canary", "c": "4"}')
    _config.reset()
    assert promptops.get_settings().pins == {"a": ("version", 2), "b": ("alias", "canary"), "c": ("version", 4)}


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("PROMPTOPS_CACHE_TTL", "soon", "cache_ttl from PROMPTOPS_CACHE_TTL"),
        ("PROMPTOPS_REGISTRY_TIMEOUT", "-1", "registry_timeout"),
        ("PROMPTOPS_PINS", "summarize", "NAME=VERSION_OR_ALIAS"),
        ("PROMPTOPS_PINS", "summarize=0", "versions start at 1"),
    ],
)
def test_bad_values_name_the_setting_and_source(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    _config.reset()
    with pytest.raises(promptops.ConfigError, match=fragment):
        promptops.get_settings()


def test_relative_paths_in_pyproject_are_relative_to_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 17: from a subdirectory, `cache_dir = ".promptops"` meant a second cache under the subdirectory.
    root = tmp_path.resolve()
    (root / "pyproject.toml").write_text(
        '[tool.promptops]\ncache_dir = ".cache/promptops"\ntracking_uri = "sqlite:///registry/mlflow.db"\n'
        'capture = "sqlite:///data/captures.db"\n'
    )
    child = root / "src" / "app"
    child.mkdir(parents=True)
    for where in (root, child):
        monkeypatch.chdir(where)
        _config.reset()
        settings = promptops.get_settings()
        assert settings.cache_dir == root / ".cache" / "promptops"
        assert settings.tracking_uri == f"sqlite:///{root}/registry/mlflow.db"
        assert settings.capture == f"sqlite:///{root}/data/captures.db"
    # Absolute paths and other URIs are kept; the environment and configure() stay relative to the working
    # directory, like any path a process is given.
    (root / "pyproject.toml").write_text(
        '[tool.promptops]\ncache_dir = "/var/cache/app"\ntracking_uri = "http://127.0.0.1:5999"\n'
        'capture = "postgresql+psycopg://u@127.0.0.1/db"\n'
    )
    _config.reset()
    settings = promptops.get_settings()
    assert (settings.cache_dir, settings.tracking_uri) == (Path("/var/cache/app"), "http://127.0.0.1:5999")
    assert settings.capture == "postgresql+psycopg://u@127.0.0.1/db"
    monkeypatch.setenv("PROMPTOPS_CACHE_DIR", "here")
    assert promptops.configure(capture="sqlite:///c.db").capture == f"sqlite:///{child}/c.db"
    assert promptops.get_settings().cache_dir == child / "here"


def test_unknown_pyproject_key_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.promptops]\ncache_tll = 5\n")
    _config.reset()
    with pytest.raises(promptops.ConfigError, match="cache_tll"):
        promptops.get_settings()


def test_broken_pyproject_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.promptops\n")
    _config.reset()
    with pytest.raises(promptops.ConfigError, match="pyproject.toml"):
        promptops.get_settings()


def test_every_param_has_doc_type_and_env() -> None:
    names = [param.name for param in _config.PARAMS]
    assert len(names) == len(set(names))
    for param in _config.PARAMS:
        assert param.doc and param.type_doc
        assert param.env == f"PROMPTOPS_{param.name.upper()}"
    # configure() takes exactly the table's settings, keyword-only.
    import inspect

    parameters = inspect.signature(promptops.configure).parameters
    assert list(parameters) == names
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())


# -- None is a value where it means something (issue 12) ---------------------------------------------------


def test_capture_none_disables_capture_over_env_and_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.promptops]\ncapture = "sqlite:///from-pyproject.db"\n')
    monkeypatch.setenv("PROMPTOPS_CAPTURE", "sqlite:///from-env.db")
    assert promptops.get_settings().capture is not None
    assert promptops.configure(capture=None).capture is None
    assert promptops.configure(sample_rate=0.5).capture is None  # a later configure() keeps it off


def test_capture_none_means_no_record_is_written(tmp_path: Path, registry: Registry, prompt_name: str) -> None:
    # The contract, end to end: a user who turned capture off for privacy has nothing written to disk.
    registry.register(prompt_name, "Summarize {{ text }}", alias="production")
    promptops.configure(tracking_uri=registry.uri, trace_exporter="none", capture=None)

    @promptops.track(prompt=prompt_name)
    def summarize(text: str, *, prompt: promptops.Prompt) -> str:
        return prompt.format(text=text)

    before = promptops.stats()["captures_written"]
    summarize("my private words")
    assert promptops.flush(10)
    assert promptops.stats()["captures_written"] == before
    assert not any(tmp_path.rglob("*.db")), list(tmp_path.rglob("*.db"))


def test_app_version_none_stores_no_version_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPS_APP_VERSION", "1.2.3")
    assert promptops.get_settings().app_version == "1.2.3"
    assert promptops.configure(app_version=None).app_version is None


def test_redact_none_adds_no_rules_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPS_REDACT", '["secret-[0-9]+"]')
    assert len(promptops.get_settings().redact) == 1
    assert promptops.configure(redact=None).redact == ()


@pytest.mark.parametrize(
    ("name", "env", "value"),
    [
        ("tracking_uri", "MLFLOW_TRACKING_URI", "http://127.0.0.1:1"),
        ("experiment_name", "MLFLOW_EXPERIMENT_NAME", "from-env"),
    ],
)
def test_none_forgets_an_earlier_configure_value(
    monkeypatch: pytest.MonkeyPatch, name: str, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    configured = promptops.configure(**{name: "http://127.0.0.1:2" if name == "tracking_uri" else "configured"})
    assert getattr(configured, name) != value
    assert getattr(promptops.configure(**{name: None}), name) == value  # the environment applies again


@pytest.mark.parametrize("name", [param.name for param in _config.PARAMS if not param.none])
def test_none_is_refused_where_it_means_nothing(name: str) -> None:
    promptops.configure(cache_ttl=5.0)
    with pytest.raises(promptops.ConfigError, match=f"{name} cannot be None"):
        promptops.configure(**{name: None})
    assert promptops.get_settings().cache_ttl == 5.0  # nothing changed


def test_leaving_a_keyword_out_keeps_its_value() -> None:
    promptops.configure(capture=None, app_version="9")
    settings = promptops.configure(cache_ttl=3.0)
    assert (settings.capture, settings.app_version, settings.cache_ttl) == (None, "9", 3.0)
