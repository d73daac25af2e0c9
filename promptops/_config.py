"""Settings: one table defines every setting once; `configure()`, the environment and pyproject read it.

Precedence, highest first: keyword arguments to `configure()`, `PROMPTOPS_<NAME>` environment variables
(then the standard variable a setting falls back to, e.g. `MLFLOW_TRACKING_URI`), `[tool.promptops]` in the
nearest `pyproject.toml`, then the default. The docs' settings page is generated from `PARAMS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from ._prices import Price, parse_prices

__all__ = ["PARAMS", "Param", "Settings", "configure", "get_settings", "parse_selector"]

# Pins and overrides select a prompt version either by number or by alias.
Selector = tuple[str, "int | str"]  # ("version", 3) or ("alias", "production")


def parse_selector(value: object, *, what: str) -> Selector:
    """Turn a pin value (`3`, `"3"`, `"staging"`) into a selector; reject anything else with a clear message."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a version number or an alias name, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{what}: prompt versions start at 1, got {value}")
        return ("version", value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return parse_selector(int(text), what=what)
        return ("alias", text.lstrip("@"))
    raise ConfigError(f"{what}: expected a version number or an alias name, got {value!r}")


def _to_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number, got {value!r}")
    number = float(value)
    if number < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return number


def _to_str(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    raise ValueError(f"expected a string, got {value!r}")


def _to_optional_str(value: object) -> str | None:
    return None if value is None or value == "" else _to_str(value)


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    raise ValueError(f"expected true or false, got {value!r}")


def _to_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a whole number, got {value!r}")
    number = int(value)
    if number < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return number


TRACE_EXPORTERS = ("mlflow", "otlp", "console", "none")


def _to_exporter(value: object) -> str:
    text = _to_str(value).strip().lower()
    if text not in TRACE_EXPORTERS:
        raise ValueError(f"expected one of {', '.join(TRACE_EXPORTERS)}, got {value!r}")
    return text


def _to_redact(value: object) -> tuple[Any, ...]:
    """Extra redaction rules: regex strings (from anywhere) and callables (from `configure()` only)."""
    if value is None:
        return ()
    given: Any = value
    if isinstance(given, str):
        text = given.strip()
        given = json.loads(text) if text.startswith("[") else [text] if text else []
    if callable(given) or isinstance(given, re.Pattern):
        given = [given]
    if not isinstance(given, (list, tuple)):
        raise ValueError(f"expected a list of regular expressions or callables, got {value!r}")
    items: list[object] = list(given)  # pyright: ignore[reportUnknownArgumentType]
    rules: list[Any] = []
    for rule in items:
        if isinstance(rule, str):
            try:
                rules.append(re.compile(rule))
            except re.error as exc:
                raise ValueError(f"invalid regular expression {rule!r}: {exc}") from None
        elif isinstance(rule, re.Pattern) or callable(rule):
            rules.append(rule)
        else:
            raise ValueError(f"expected a regular expression or a callable, got {rule!r}")
    return tuple(rules)


def _to_file_mode(value: object) -> int:
    """An octal permission: `0o600`, `"600"` or `"0o600"` (environment and pyproject give text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        text = _to_str(value).strip().lower().removeprefix("0o")
        try:
            mode = int(text, 8)
        except ValueError:
            raise ValueError(f"expected an octal permission such as 600 or 640, got {value!r}") from None
    if not 0 <= mode <= 0o777 or not mode & 0o600 == 0o600:
        raise ValueError(f"expected a permission between 600 and 777 that the owner can read and write, got {value!r}")
    return mode


def _to_rate(value: object) -> float:
    rate = _to_float(value)
    if rate > 1:
        raise ValueError(f"expected a fraction between 0 and 1, got {value!r}")
    return rate


def _to_capture(value: object) -> str | None:
    if value is None or value is False:
        return None
    text = _to_str(value).strip()
    if text.lower() in {"", "none", "off", "false", "0"}:
        return None
    if "://" not in text:
        raise ValueError(f"expected a SQLAlchemy URL such as sqlite:///.promptops/captures.db, or none; got {value!r}")
    return text


def _to_retention(value: object) -> float | None:
    """Seconds to keep captured calls: a duration (`30d`, `12h`, `90s`), a number of seconds, or none."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = _to_str(value).strip()
        if text.lower() in {"", "none", "off"}:
            return None
        from ._moments import DURATION_FORMS, parse_duration

        try:
            seconds = (
                float(text) if re.fullmatch(r"\d+(?:\.\d+)?", text) else parse_duration(text, option="").total_seconds()
            )
        except ValueError:
            raise ValueError(f"expected a duration such as {DURATION_FORMS}, or none; got {value!r}") from None
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"expected a duration longer than zero, got {value!r}")
    return seconds


def _to_pins(value: object) -> dict[str, Selector]:
    """Pins come as a mapping, JSON (`{"summarize": 3}`) or `summarize=3,classify=staging` from the environment."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            value = json.loads(text)
        else:
            pairs: dict[str, str] = {}
            for item in filter(None, (part.strip() for part in text.split(","))):
                name, sep, pin = item.partition("=")
                if not sep or not name.strip():
                    raise ValueError(f"expected NAME=VERSION_OR_ALIAS, got {item!r}")
                pairs[name.strip()] = pin.strip()
            value = pairs
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of prompt name to version or alias, got {value!r}")
    items: Mapping[object, object] = value  # pyright: ignore[reportUnknownVariableType]
    return {str(name): parse_selector(pin, what=f"pin for prompt {name!r}") for name, pin in items.items()}


@dataclasses.dataclass(frozen=True)
class Param:
    """One setting: its default, how a raw value is converted, where it is read from and what it means."""

    name: str
    default: Any
    convert: Callable[[Any], Any]
    type_doc: str
    doc: str
    env_fallbacks: tuple[str, ...] = ()
    none: str = ""  # what `configure(name=None)` means; empty: None is refused (issue 12)
    none_unsets: bool = False  # None forgets an earlier configure() value instead of being a value itself
    shown_default: str | None = None  # how the docs write the default, when not as JSON (`0o600`, not `384`)

    @property
    def env(self) -> str:
        """The `PROMPTOPS_*` environment variable for this setting."""
        return f"PROMPTOPS_{self.name.upper()}"


PARAMS: tuple[Param, ...] = (
    Param(
        "tracking_uri",
        None,
        _to_optional_str,
        "str | None",
        "Where the MLflow Prompt Registry lives: `http(s)://` for a tracking server (read over REST with "
        "promptops' own timeouts), or any store URI MLflow accepts (`sqlite:///mlflow.db`, `databricks`). "
        "Unset: `MLFLOW_TRACKING_URI`, else MLflow's own default `sqlite:///mlflow.db`.",
        env_fallbacks=("MLFLOW_TRACKING_URI",),
        none="forget an earlier `configure()` value: the environment, pyproject or the default applies",
        none_unsets=True,
    ),
    Param(
        "default_alias",
        "production",
        _to_str,
        "str",
        "The alias a tracked function resolves when nothing more specific (override, decorator, pin) applies.",
    ),
    Param(
        "pins",
        {},
        _to_pins,
        "dict[str, int | str]",
        'Per-prompt pins: prompt name to a version number or an alias, e.g. `{"summarize": 3}`. In the '
        "environment: `summarize=3,classify=staging` or JSON.",
    ),
    Param(
        "cache_ttl",
        60.0,
        _to_float,
        "float",
        "Seconds a resolved alias stays fresh in memory. After that the stale copy is still served while one "
        "background refresh per prompt fetches the new one. Versions never change, so they never expire.",
    ),
    Param(
        "registry_timeout",
        2.0,
        _to_float,
        "float",
        "Time budget in seconds for one registry round trip. A caller never waits longer than this for the "
        "registry; past it, the last-known-good disk copy or the decorator's `fallback=` is used.",
    ),
    Param(
        "cache_dir",
        ".promptops",
        _to_str,
        "str",
        "Directory for the last-known-good copy of every resolved prompt (under `prompts/`), so a restart "
        "while the registry is down still finds its prompts.",
    ),
    Param(
        "trace_exporter",
        "mlflow",
        _to_exporter,
        "str",
        "Where promptops' spans go when the application has not set its own OpenTelemetry `TracerProvider` "
        '(if it has, spans always go there): `"mlflow"` (the tracking store of `tracking_uri`), `"otlp"` '
        '(OTLP/HTTP, configured by the standard `OTEL_EXPORTER_OTLP_*` variables), `"console"` or `"none"`.',
    ),
    Param(
        "experiment_name",
        None,
        _to_optional_str,
        "str | None",
        "The MLflow experiment traces are logged to with the `mlflow` exporter. Unset: "
        "`MLFLOW_EXPERIMENT_NAME`, else MLflow's `Default` experiment.",
        env_fallbacks=("MLFLOW_EXPERIMENT_NAME",),
        none="forget an earlier `configure()` value: the environment, pyproject or the default applies",
        none_unsets=True,
    ),
    Param(
        "record_values",
        True,
        _to_bool,
        "bool",
        "Record each call's inputs and output on its span (redacted, truncated). `false` keeps only the prompt, "
        "timing and error attributes.",
    ),
    Param(
        "max_value_chars",
        8192,
        _to_int,
        "int",
        "Longest recorded value (the inputs' JSON, the output's JSON), in characters; longer values are "
        "truncated with a marker saying how much was cut.",
    ),
    Param(
        "capture_max_value_chars",
        100_000,
        _to_int,
        "int",
        "Longest value stored in a capture record (each string, and a record's inputs or output as a whole up to "
        "ten times it), in characters. Larger than `max_value_chars` so long documents stay replayable; a "
        "truncated record is stored as non-replayable, with the reason.",
    ),
    Param(
        "capture",
        "sqlite:///.promptops/captures.db",
        _to_capture,
        "str | None",
        "Where captured calls are written: any SQLAlchemy URL (`sqlite:///...`, "
        "`postgresql+psycopg://...`). `None` (or `none`, `off`, `false` in the environment) disables capture.",
        none="disables capture, whatever the environment or pyproject say",
    ),
    Param(
        "sample_rate",
        1.0,
        _to_rate,
        "float",
        "Fraction of calls captured (0 to 1); `track(sample_rate=...)` overrides it per function.",
    ),
    Param(
        "app_version",
        None,
        _to_optional_str,
        "str | None",
        "A version string of the application, stored with every captured record.",
        none="no version is stored, whatever the environment or pyproject say",
    ),
    Param(
        "capture_queue_size",
        50_000,
        _to_int,
        "int",
        "Most captured calls waiting for the background writer. When the queue is full (the store is slow or "
        "down) new records are dropped and counted in `promptops.stats()`; the application never waits.",
    ),
    Param(
        "capture_retention",
        None,
        _to_retention,
        "str | float | None",
        "How long captured calls are kept: a duration (`30d`, `12h`, `90s`) or seconds. Each capture writer "
        "deletes older calls in the background (every 10 minutes, in small batches), except those a saved "
        "dataset was made from. `None` keeps them until `promptops captures prune` deletes them.",
        none="keeps captured calls until you delete them, whatever the environment or pyproject say",
    ),
    Param(
        "redact",
        (),
        _to_redact,
        "list[str | Callable]",
        "Extra redaction rules on top of the defaults: regular expressions (matches are masked) and, from "
        "`configure()`, callables `(key, value) -> value`. In the environment: a JSON list of expressions.",
        none="no extra rules (the defaults still apply), whatever the environment or pyproject say",
    ),
    Param(
        "file_mode",
        0o600,
        _to_file_mode,
        "int",
        "Permission of the files promptops creates: the capture database (and its `-wal`/`-shm`), the prompt "
        "cache and dataset files. Octal; directories it creates get the matching search bits (600 gives 700). "
        "The default keeps captured inputs and cached prompts to their owner; 640 or 644 shares them.",
        shown_default="0o600",
    ),
    Param(
        "prices",
        {},
        parse_prices,
        "dict[str, dict[str, float]]",
        "Model prices in USD per million tokens, on top of the shipped table of common models: e.g. "
        '`{"my-model": {"input": 0.5, "output": 1.5}}`. Replay uses them for the `cost` metric and `--max-cost`. '
        "In the environment: JSON.",
    ),
)

_PARAMS_BY_NAME = {param.name: param for param in PARAMS}


class _NotGiven:
    """`configure()`'s default for every keyword: "not given", so that `None` can mean something (issue 12)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Any = _NotGiven()
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The effective settings. Read them with `promptops.get_settings()`; change them with `configure()`."""

    tracking_uri: str
    default_alias: str
    pins: Mapping[str, Selector]
    cache_ttl: float
    registry_timeout: float
    cache_dir: Path
    trace_exporter: str = "mlflow"
    experiment_name: str | None = None
    record_values: bool = True
    max_value_chars: int = 8192
    capture_max_value_chars: int = 100_000
    capture: str | None = "sqlite:///.promptops/captures.db"
    sample_rate: float = 1.0
    app_version: str | None = None
    capture_queue_size: int = 50_000
    capture_retention: float | None = None  # seconds
    redact: tuple[Any, ...] = ()
    file_mode: int = 0o600
    prices: Mapping[str, Price] = dataclasses.field(default_factory=dict[str, Price])
    generation: int = 0  # bumped by every configure(); caches keyed on settings compare it

    def __repr__(self) -> str:
        # The URIs may carry a password or a token (issue 11): shown without them, like everywhere else.
        from ._uri import redact_uri

        shown = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        shown["tracking_uri"] = redact_uri(self.tracking_uri)
        if self.capture is not None:
            shown["capture"] = redact_uri(self.capture)
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in shown.items())})"


def _absolute_sqlite(uri: str) -> str:
    # Like mlflow.get_tracking_uri(): a relative sqlite path is taken from the working directory *now*, so a
    # later chdir neither moves the registry nor splits us from MLflow's own (absolute) default.
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith(("/", ":memory:")) and len(uri) > len(prefix):
        return prefix + os.path.abspath(uri[len(prefix) :])
    return uri


def _anchor_paths(values: dict[str, Any], names: set[str], base: Path) -> None:
    """Make relative paths from `[tool.promptops]` relative to pyproject.toml's directory, not the working one.

    A project's settings then mean the same files from any subdirectory (issue 17: `cache_dir = ".promptops"`
    read from `src/` put a second cache there). Only values read from pyproject: environment variables and
    `configure()` arguments are relative to the working directory, like every other path a process is given.
    """
    prefix = "sqlite:///"
    for name in names & {"tracking_uri", "capture"}:
        uri = values[name]
        if isinstance(uri, str) and uri.startswith(prefix) and not uri[len(prefix) :].startswith(("/", ":memory:")):
            if len(uri) > len(prefix):
                values[name] = prefix + str(base / uri[len(prefix) :])
    if "cache_dir" in names and not Path(values["cache_dir"]).is_absolute():
        values["cache_dir"] = str(base / values["cache_dir"])


def _find_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _read_pyproject(start: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    path = _find_pyproject((start or Path.cwd()).resolve())
    if path is None:
        return {}, None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read [tool.promptops] from {path}: {exc}") from None
    table: object = data.get("tool", {}).get("promptops", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.promptops] in {path} must be a table")
    return table, path  # pyright: ignore[reportUnknownVariableType]


def _resolve(overrides: Mapping[str, Any], environ: Mapping[str, str], generation: int) -> Settings:
    unknown = set(overrides) - set(_PARAMS_BY_NAME)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}; known: {', '.join(_PARAMS_BY_NAME)}")
    pyproject, pyproject_path = _read_pyproject()
    unknown = set(pyproject) - set(_PARAMS_BY_NAME)
    if unknown:
        raise ConfigError(f"unknown key(s) in [tool.promptops] of {pyproject_path}: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    from_pyproject: set[str] = set()
    for param in PARAMS:
        origin: str
        if param.name in overrides:
            raw, origin = overrides[param.name], f"configure({param.name}=...)"
        elif param.env in environ:
            raw, origin = environ[param.env], param.env
        elif fallback := next((name for name in param.env_fallbacks if environ.get(name)), None):
            raw, origin = environ[fallback], fallback
        elif param.name in pyproject:
            raw, origin = pyproject[param.name], f"[tool.promptops] {param.name} in {pyproject_path}"
            from_pyproject.add(param.name)
        else:
            values[param.name] = param.default
            continue
        try:
            values[param.name] = param.convert(raw)
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid value for {param.name} from {origin}: {exc}") from None
    if pyproject_path is not None:
        _anchor_paths(values, from_pyproject, pyproject_path.parent)
    return Settings(
        tracking_uri=_absolute_sqlite(values["tracking_uri"] or DEFAULT_TRACKING_URI),
        default_alias=values["default_alias"],
        pins=dict(values["pins"]),
        cache_ttl=values["cache_ttl"],
        registry_timeout=values["registry_timeout"],
        cache_dir=Path(values["cache_dir"]).absolute(),
        trace_exporter=values["trace_exporter"],
        experiment_name=values["experiment_name"],
        record_values=values["record_values"],
        max_value_chars=values["max_value_chars"],
        capture_max_value_chars=values["capture_max_value_chars"],
        capture=_absolute_sqlite(values["capture"]) if values["capture"] else None,
        sample_rate=values["sample_rate"],
        app_version=values["app_version"],
        capture_queue_size=values["capture_queue_size"],
        capture_retention=values["capture_retention"],
        redact=values["redact"],
        file_mode=values["file_mode"],
        prices=dict(values["prices"]),
        generation=generation,
    )


_lock = threading.Lock()
_settings: Settings | None = None
current: Settings | None = None  # the same object as _settings, read by @track's fast path
_overrides: dict[str, Any] = {}
_listeners: list[Callable[[Settings | None], None]] = []


def get_settings() -> Settings:
    """Return the effective settings, reading the environment and pyproject on first use."""
    settings = _settings
    if settings is None:
        with _lock:
            settings = _settings or _install(_resolve(_overrides, os.environ, generation=0))
    return settings


def peek_settings() -> Settings:
    """The effective settings without installing them, for code below the public API (file creation).

    Unlike `get_settings()`, a first read here does not freeze the environment for later callers.
    """
    settings = _settings
    return settings if settings is not None else _resolve(dict(_overrides), os.environ, generation=0)


def _install(settings: Settings) -> Settings:
    global _settings, current
    _settings = current = settings
    for listener in list(_listeners):
        listener(settings)
    return settings


def on_change(listener: Callable[[Settings | None], None]) -> None:
    """Call `listener` with the new settings whenever they change, `None` on reset (caches drop stale state)."""
    _listeners.append(listener)


def configure(
    *,
    tracking_uri: str | None = NOT_GIVEN,
    default_alias: str = NOT_GIVEN,
    pins: Mapping[str, int | str] = NOT_GIVEN,
    cache_ttl: float = NOT_GIVEN,
    registry_timeout: float = NOT_GIVEN,
    cache_dir: str | os.PathLike[str] = NOT_GIVEN,
    trace_exporter: str = NOT_GIVEN,
    experiment_name: str | None = NOT_GIVEN,
    record_values: bool = NOT_GIVEN,
    max_value_chars: int = NOT_GIVEN,
    capture_max_value_chars: int = NOT_GIVEN,
    capture: str | bool | None = NOT_GIVEN,
    sample_rate: float = NOT_GIVEN,
    app_version: str | None = NOT_GIVEN,
    capture_queue_size: int = NOT_GIVEN,
    capture_retention: str | float | datetime.timedelta | None = NOT_GIVEN,
    redact: Sequence[str | re.Pattern[str] | Callable[[str, Any], Any]] | None = NOT_GIVEN,
    file_mode: int | str = NOT_GIVEN,
    prices: Mapping[str, Mapping[str, float] | Sequence[float]] = NOT_GIVEN,
) -> Settings:
    """Configure promptops for this process. Optional: every setting also reads env vars and pyproject.

    Each keyword left out keeps its value from an earlier `configure()` call, else from
    `PROMPTOPS_<NAME>`, else `[tool.promptops]` in `pyproject.toml`, else the default. See the settings
    reference in the docs for what each one does. `None` is a value, accepted where it means something:
    `capture=None` disables capture, `app_version=None` stores no version, `redact=None` adds no rules (each
    wins over the environment and pyproject), and `tracking_uri=None` / `experiment_name=None` forget an
    earlier `configure()` value. Any other setting refuses `None`.

    Args:
        tracking_uri: MLflow tracking/registry URI (`http://host:5000`, `sqlite:///mlflow.db`, ...).
        default_alias: Alias resolved when no override, decorator argument or pin applies.
        pins: Prompt name to version number or alias, e.g. `{"summarize": 3, "classify": "staging"}`.
        cache_ttl: Seconds an alias stays fresh in memory before a background refresh.
        registry_timeout: Time budget in seconds for one registry round trip.
        cache_dir: Directory for the last-known-good disk copies of resolved prompts.
        trace_exporter: `"mlflow"`, `"otlp"`, `"console"` or `"none"`; used only when the application has not
            set its own OpenTelemetry tracer provider.
        experiment_name: MLflow experiment for traces exported with `"mlflow"`.
        record_values: Whether spans record the call's (redacted, truncated) inputs and output.
        max_value_chars: Longest recorded value in characters before truncation.
        capture_max_value_chars: Longest value stored in a capture record, in characters.
        capture: SQLAlchemy URL of the capture store; `None`, `"none"` or `False` disables capture.
        sample_rate: Fraction of calls captured, 0 to 1.
        app_version: Version string of the application, stored with captured records.
        capture_queue_size: Most captured calls waiting for the background writer before new ones are dropped.
        capture_retention: How long captured calls are kept (`"30d"`, or seconds); `None` keeps them.
        redact: Extra redaction rules: regular expressions, or callables `(key, value) -> value`.
        file_mode: Permission of the files promptops creates (default `0o600`, owner only).
        prices: Model name to `{"input": USD, "output": USD}` per million tokens, on top of the shipped prices.

    Returns:
        The effective settings.

    Raises:
        ConfigError: a value cannot be used; the message names the setting, where it came from and why.
    """
    given = {
        "tracking_uri": tracking_uri,
        "default_alias": default_alias,
        "pins": pins,
        "cache_ttl": cache_ttl,
        "registry_timeout": registry_timeout,
        "cache_dir": cache_dir,
        "trace_exporter": trace_exporter,
        "experiment_name": experiment_name,
        "record_values": record_values,
        "max_value_chars": max_value_chars,
        "capture_max_value_chars": capture_max_value_chars,
        "capture": capture,
        "sample_rate": sample_rate,
        "app_version": app_version,
        "capture_queue_size": capture_queue_size,
        "capture_retention": capture_retention,
        "redact": redact,
        "file_mode": file_mode,
        "prices": prices,
    }
    with _lock:
        merged = dict(_overrides)
        for key, value in given.items():
            if value is NOT_GIVEN:
                continue
            if value is None:
                param = _PARAMS_BY_NAME[key]
                if not param.none:
                    raise ConfigError(f"{key} cannot be None; leave it out to keep its current value")
                if param.none_unsets:
                    merged.pop(key, None)
                    continue
            merged[key] = value
        previous = _settings.generation if _settings is not None else 0
        settings = _resolve(merged, os.environ, generation=previous + 1)
        _overrides.clear()
        _overrides.update(merged)
        return _install(settings)


@contextlib.contextmanager
def overridden(**values: Any) -> Generator[Settings]:
    """`configure(**values)` for the block, then the configuration as it was before (the testing helpers)."""
    with _lock:
        saved = dict(_overrides)
    try:
        yield configure(**values)
    finally:
        with _lock:
            _overrides.clear()
            _overrides.update(saved)
            generation = _settings.generation + 1 if _settings is not None else 0
            _install(_resolve(_overrides, os.environ, generation=generation))


def reset() -> None:
    """Forget `configure()` calls; the environment and pyproject are read again on next use (tests use this)."""
    global _settings, current
    with _lock:
        _overrides.clear()
        _settings = current = None
        for listener in list(_listeners):
            listener(None)
