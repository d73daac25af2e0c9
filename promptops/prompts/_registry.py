"""Reading prompt versions from the MLflow Prompt Registry.

Two backends, chosen by the tracking URI:

* `http(s)://` tracking server: `RestRegistry` reads MLflow's REST API with httpx and promptops' own timeout,
  no retries. The MLflow client would wait up to 120 s per attempt with up to 7 retries, and importing it
  costs about 1.5 s and a heap that slows every garbage collection of the application. The timeout is a total
  deadline for the request (connect, headers, body), and the response is capped at `MAX_RESPONSE_BYTES`:
  httpx's own timeouts are per socket operation, so a server that drips a byte a second would otherwise hold
  a fetch forever (issue 11).
* anything else (`sqlite:///...`, `databricks`, ...): `MlflowRegistry` uses the MLflow client, imported on
  first use, in the resolver's background thread.

Prompts are stored by MLflow as registered models tagged `mlflow.prompt.is_prompt`, their versions as model
versions whose tags hold the template (`mlflow.prompt.text`) and its type, model config and response format.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from .._config import Selector
from .._uri import redact_uri as redact_uri  # moved there (issue 11); importers here keep working
from ._prompt import Prompt, template_problem

if TYPE_CHECKING:
    import httpx

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MlflowRegistry",
    "Registry",
    "RegistryError",
    "RegistryNotFound",
    "RestRegistry",
    "make_registry",
]

_IS_PROMPT = "mlflow.prompt.is_prompt"
_TEXT = "mlflow.prompt.text"
_TYPE = "_mlflow_prompt_type"
_RESPONSE_FORMAT = "_mlflow_prompt_response_format"
_MODEL_CONFIG = "_mlflow_prompt_model_config"
_RESERVED = {_IS_PROMPT, _TEXT, _TYPE, _RESPONSE_FORMAT, _MODEL_CONFIG}

# MLflow caps a model version tag at 100,000 characters (MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH); a prompt version is
# a few such tags. 4 MiB leaves room for JSON escaping and user tags, and stops a hostile or broken server from
# filling the application's memory.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024

logger = logging.getLogger("promptops")
EMPTY_STORE_HINT = (
    "run from the directory that holds your mlflow.db, or set MLFLOW_TRACKING_URI (or tracking_uri in "
    "[tool.promptops]) to the store that has your prompts"
)


def _missing_sqlite_file(uri: str) -> str | None:
    """The file of a `sqlite:///` URI when it does not exist yet (opening it makes MLflow create it empty)."""
    prefix = "sqlite:///"
    path = uri[len(prefix) :].split("?", 1)[0] if uri.startswith(prefix) else ""
    if not path or path.startswith(":memory:") or os.path.exists(path):
        return None
    return path


class RegistryError(Exception):
    """The registry could not be asked (unreachable, timed out, refused our credentials, answered garbage)."""


class RegistryNotFound(RegistryError):
    """The registry answered: no such prompt, version or alias."""


class Registry(Protocol):
    """Reads one prompt version. Implementations raise `RegistryNotFound` or `RegistryError`, nothing else."""

    uri: str

    @property
    def ready(self) -> bool:
        """Whether the first fetch will be a plain round trip (no client still to import)."""
        ...

    def fetch(self, name: str, selector: Selector) -> Prompt:
        """Fetch `name` at `selector` (`("version", 3)` or `("alias", "production")`)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def describe(selector: Selector) -> str:
    """`alias 'production'` or `version 3`, for messages."""
    kind, value = selector
    return f"alias {value!r}" if kind == "alias" else f"version {value}"


def _checked(
    name: str,
    version: object,
    template: object,
    *,
    alias: str | None,
    model_config: object,
    response_format: object,
    tags: Mapping[str, str],
    commit_message: object,
) -> Prompt:
    """A registry `Prompt`, or `RegistryError` when the version is malformed.

    A malformed version is then treated as unavailable: the last-known-good copy or `fallback=` is used rather
    than failing in the user's function (issue 11).
    """
    problem = template_problem(template)
    if problem is None:
        for field, value in (("model config", model_config), ("response format", response_format)):
            if value is not None and not isinstance(value, dict):
                problem = f"the {field} is {type(value).__name__}, not an object"
    try:
        number = int(str(version))
    except ValueError:
        problem = problem or f"the version number is {str(version)[:40]!r}"
        number = 0
    if problem is not None:
        raise RegistryError(f"{name!r} version {str(version)[:40]} is malformed: {problem}")
    return Prompt(
        name=name,
        version=number,
        template=template,  # pyright: ignore[reportArgumentType]
        alias=alias,
        source="registry",
        model_config=model_config,  # pyright: ignore[reportArgumentType]
        response_format=response_format,  # pyright: ignore[reportArgumentType]
        tags=tags,
        commit_message=str(commit_message) if commit_message else None,
    )


def prompt_from_tags(
    name: str,
    version: int | str,
    tags: Mapping[str, str],
    *,
    alias: str | None,
    description: str | None = None,
) -> Prompt:
    """Build a `Prompt` from a model version's tags, as MLflow stores prompt versions.

    Raises:
        RegistryNotFound: the version is a registered model, not a prompt.
        RegistryError: the version is malformed (a tag that is not JSON, a chat template that is not a list of
            messages, ...).
    """
    if tags.get(_IS_PROMPT) != "true" or _TEXT not in tags:
        raise RegistryNotFound(f"{name!r} version {version} is a registered model, not a prompt")
    text = tags[_TEXT]
    try:
        template: Any = json.loads(text) if tags.get(_TYPE) == "chat" else text
        model_config = json.loads(tags[_MODEL_CONFIG]) if _MODEL_CONFIG in tags else None
        response_format = json.loads(tags[_RESPONSE_FORMAT]) if _RESPONSE_FORMAT in tags else None
    except (ValueError, RecursionError) as exc:
        raise RegistryError(f"{name!r} version {version} has a malformed prompt tag: {exc}") from None
    return _checked(
        name,
        version,
        template,
        alias=alias,
        model_config=model_config,
        response_format=response_format,
        tags={key: value for key, value in tags.items() if key not in _RESERVED},
        commit_message=description,
    )


def prompt_from_version(found: Any, *, name: str, alias: str | None) -> Prompt:
    """Our `Prompt` from an MLflow `PromptVersion` (what the MLflow client returns).

    Raises:
        RegistryError: the version is malformed (see `prompt_from_tags`).
    """
    try:
        template: Any = found.template
        model_config: Any = found.model_config
        response_format: Any = found.response_format
    except Exception as exc:  # MLflow parses the tags when asked: a malformed one fails here
        raise RegistryError(f"{name!r} version {found.version} is malformed: {type(exc).__name__}: {exc}") from None
    return _checked(
        name,
        found.version,
        template,
        alias=alias,
        model_config=model_config,
        response_format=response_format,
        tags=dict(found.tags or {}),
        commit_message=found.commit_message,
    )


def _read_capped(response: httpx.Response) -> bytes | None:
    """The response body, or `None` as soon as it is known to exceed `MAX_RESPONSE_BYTES`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _is_not_found(error_code: object, message: object) -> bool:
    # MLflow answers a missing alias with INVALID_PARAMETER_VALUE (HTTP 400), "Registered model alias X not found."
    text = str(message)
    return error_code == "RESOURCE_DOES_NOT_EXIST" or (
        error_code == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text
    )


class RestRegistry:
    """Reads prompts from an MLflow tracking server over its REST API, bounded by our own timeout.

    Credentials follow MLflow's conventions: `MLFLOW_TRACKING_TOKEN` (bearer), `MLFLOW_TRACKING_USERNAME` and
    `MLFLOW_TRACKING_PASSWORD` (basic), or a `user:password@` in the URI; `MLFLOW_TRACKING_INSECURE_TLS=true`
    skips certificate checks and `MLFLOW_TRACKING_SERVER_CERT_PATH` names a CA bundle.
    """

    def __init__(self, uri: str, *, timeout: float) -> None:
        import httpx

        from ._http import deadline, deadline_client, tls_context

        parts = urlsplit(uri)
        headers = {"User-Agent": "promptops"}
        username, password = parts.username, parts.password
        username = os.environ.get("MLFLOW_TRACKING_USERNAME", username or "")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD", password or "")
        if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
            headers["Authorization"] = f"Bearer {token}"
        elif username or password:
            basic = base64.b64encode(f"{username}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self.uri = uri
        self._base = urlunsplit(parts._replace(netloc=netloc)).rstrip("/")
        self._timeout = timeout
        secure = parts.scheme == "https"
        # Building a verifying context loads the CA bundle (40-70 ms, benchmarks/run.py): only for https, when the
        # first connection is made. A plain http client never follows a redirect, so it cannot be led to an
        # unverified https host.
        self._client: httpx.Client = deadline_client(
            headers=headers,
            timeout=timeout,
            ssl_context=tls_context() if secure else None,
            follow_redirects=secure,
        )
        self._httpx = httpx
        self._deadline = deadline

    @property
    def ready(self) -> bool:
        """Always: httpx is imported by the constructor."""
        return True

    def fetch(self, name: str, selector: Selector) -> Prompt:
        """Fetch one prompt version. See `Registry.fetch`.

        The whole request (connect, headers, body) ends within the timeout, and a body over `MAX_RESPONSE_BYTES`
        is refused: both raise `RegistryError`.
        """
        kind, value = selector
        if kind == "alias":
            path, params = "/api/2.0/mlflow/registered-models/alias", {"name": name, "alias": str(value)}
        else:
            path, params = "/api/2.0/mlflow/model-versions/get", {"name": name, "version": str(value)}
        started = time.monotonic()
        try:
            with (
                self._deadline(self._timeout),
                self._client.stream("GET", self._base + path, params=params) as response,
            ):
                content = _read_capped(response)
        except self._httpx.TimeoutException:
            raise RegistryError(f"no complete answer within {self._timeout:g}s") from None
        except self._httpx.HTTPError as exc:
            raise RegistryError(f"{type(exc).__name__}: {exc}") from None
        if content is None:
            raise RegistryError(
                f"the response is larger than {MAX_RESPONSE_BYTES // (1024 * 1024)} MiB after "
                f"{time.monotonic() - started:.1f}s; refused"
            )
        try:
            decoded: Any = json.loads(content)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
            decoded = None
        body: dict[str, Any] = decoded if isinstance(decoded, dict) else {}  # pyright: ignore[reportUnknownVariableType]
        if response.status_code != 200 or not body:
            error_code, message = body.get("error_code"), body.get("message")
            if response.status_code == 404 or _is_not_found(error_code, message):
                raise RegistryNotFound(str(message or f"no prompt {name!r} with {describe(selector)}"))
            if response.is_redirect:
                location = response.headers.get("location", "?")
                raise RegistryError(f"HTTP {response.status_code}: redirected to {location}; use that as tracking_uri")
            text = content[:200].decode("utf-8", "replace")
            detail = str(message or text or response.reason_phrase)
            raise RegistryError(f"HTTP {response.status_code}: {detail}")
        found: Any = body.get("model_version")
        if not isinstance(found, dict):
            raise RegistryError("the response has no model_version")
        version: dict[str, Any] = found  # pyright: ignore[reportUnknownVariableType]
        raw_tags: Any = version.get("tags") or []
        if not isinstance(raw_tags, list) or not all(isinstance(tag, dict) for tag in raw_tags):  # pyright: ignore[reportUnknownVariableType]
            raise RegistryError("the response's tags are not a list of key/value objects")
        pairs: list[dict[str, Any]] = raw_tags  # pyright: ignore[reportUnknownVariableType]
        tags = {str(tag.get("key")): str(tag.get("value")) for tag in pairs}
        return prompt_from_tags(
            name,
            version.get("version", value),
            tags,
            alias=str(value) if kind == "alias" else None,
            description=version.get("description"),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


class MlflowRegistry:
    """Reads prompts through the MLflow client (local stores, Databricks). Imports MLflow on first use."""

    def __init__(self, uri: str, *, timeout: float) -> None:
        self.uri = uri
        self._timeout = timeout
        self._lock = threading.Lock()
        self._client: Any = None
        self._created_empty: str | None = None  # the sqlite file MLflow created on first use, if it did

    @property
    def ready(self) -> bool:
        """Whether the MLflow client has been imported and built."""
        return self._client is not None

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                # Issue 17: run from a subdirectory, the default `sqlite:///mlflow.db` is a new, empty store there.
                self._created_empty = _missing_sqlite_file(self.uri)
                if self._created_empty is not None:
                    logger.warning(
                        "no MLflow store at %s: MLflow creates it empty, so it has no prompts; %s",
                        self._created_empty,
                        EMPTY_STORE_HINT,
                    )
                from mlflow import MlflowClient

                self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            return self._client

    def fetch(self, name: str, selector: Selector) -> Prompt:
        """Fetch one prompt version. See `Registry.fetch`."""
        kind, value = selector
        try:
            client = self._get_client()
            if kind == "alias":
                found: Any = client.get_prompt_version_by_alias(name, str(value))
            else:
                found = client.get_prompt_version(name, str(value))
        except Exception as exc:
            if _is_not_found(getattr(exc, "error_code", None), getattr(exc, "message", exc)):
                raise RegistryNotFound(self._not_found(getattr(exc, "message", str(exc)))) from None
            raise RegistryError(f"{type(exc).__name__}: {exc}") from None
        if found is None:
            raise RegistryNotFound(self._not_found(f"no prompt {name!r} with {describe(selector)}"))
        return prompt_from_version(found, name=name, alias=str(value) if kind == "alias" else None)

    def _not_found(self, message: str) -> str:
        if self._created_empty is None:
            return message
        return f"{message} (the store {self._created_empty} did not exist and was created empty: {EMPTY_STORE_HINT})"

    def close(self) -> None:
        """Nothing to release: the MLflow client keeps no connection of its own here."""


def make_registry(uri: str, *, timeout: float) -> Registry:
    """The backend for a tracking URI: REST for `http(s)://`, the MLflow client for everything else."""
    if uri.startswith(("http://", "https://")):
        return RestRegistry(uri, timeout=timeout)
    return MlflowRegistry(uri, timeout=timeout)
