"""Reading prompt versions from the MLflow Prompt Registry.

Two backends, chosen by the tracking URI:

* `http(s)://` tracking server: `RestRegistry` reads MLflow's REST API with httpx and promptops' own timeout,
  no retries. The MLflow client would wait up to 120 s per attempt with up to 7 retries, and importing it
  costs about 1.5 s and a heap that slows every garbage collection of the application.
* anything else (`sqlite:///...`, `databricks`, ...): `MlflowRegistry` uses the MLflow client, imported on
  first use, in the resolver's background thread.

Prompts are stored by MLflow as registered models tagged `mlflow.prompt.is_prompt`, their versions as model
versions whose tags hold the template (`mlflow.prompt.text`) and its type, model config and response format.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from .._config import Selector
from .._uri import redact_uri as redact_uri  # moved there (issue 11); importers here keep working
from ._prompt import Prompt

if TYPE_CHECKING:
    import httpx

__all__ = ["MlflowRegistry", "Registry", "RegistryError", "RegistryNotFound", "RestRegistry", "make_registry"]

_IS_PROMPT = "mlflow.prompt.is_prompt"
_TEXT = "mlflow.prompt.text"
_TYPE = "_mlflow_prompt_type"
_RESPONSE_FORMAT = "_mlflow_prompt_response_format"
_MODEL_CONFIG = "_mlflow_prompt_model_config"
_RESERVED = {_IS_PROMPT, _TEXT, _TYPE, _RESPONSE_FORMAT, _MODEL_CONFIG}


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


def prompt_from_tags(
    name: str,
    version: int | str,
    tags: Mapping[str, str],
    *,
    alias: str | None,
    description: str | None = None,
) -> Prompt:
    """Build a `Prompt` from a model version's tags, as MLflow stores prompt versions."""
    if tags.get(_IS_PROMPT) != "true" or _TEXT not in tags:
        raise RegistryNotFound(f"{name!r} version {version} is a registered model, not a prompt")
    text = tags[_TEXT]
    try:
        template: Any = json.loads(text) if tags.get(_TYPE) == "chat" else text
        model_config = json.loads(tags[_MODEL_CONFIG]) if _MODEL_CONFIG in tags else None
        response_format = json.loads(tags[_RESPONSE_FORMAT]) if _RESPONSE_FORMAT in tags else None
    except ValueError as exc:
        raise RegistryError(f"{name!r} version {version} has a malformed prompt tag: {exc}") from None
    return Prompt(
        name=name,
        version=int(version),
        template=template,
        alias=alias,
        source="registry",
        model_config=model_config,
        response_format=response_format,
        tags={key: value for key, value in tags.items() if key not in _RESERVED},
        commit_message=description or None,
    )


def prompt_from_version(found: Any, *, name: str, alias: str | None) -> Prompt:
    """Our `Prompt` from an MLflow `PromptVersion` (what the MLflow client returns)."""
    return Prompt(
        name=name,
        version=int(found.version),
        template=found.template,
        alias=alias,
        source="registry",
        model_config=found.model_config,
        response_format=found.response_format,
        tags=dict(found.tags or {}),
        commit_message=found.commit_message or None,
    )


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
        secure = parts.scheme == "https"
        # Building a verifying client loads the CA bundle (40-70 ms, benchmarks/run.py): only for https. A plain
        # http client never follows a redirect, so it cannot be led to an unverified https host.
        verify: bool | str = secure
        if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            verify = False
        elif secure and (cert := os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")):
            verify = cert
        self._client: httpx.Client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout),
            verify=verify,
            follow_redirects=secure,
            trust_env=False,  # a proxy from the environment must not reroute registry reads
        )
        self._httpx = httpx

    @property
    def ready(self) -> bool:
        """Always: httpx is imported by the constructor."""
        return True

    def fetch(self, name: str, selector: Selector) -> Prompt:
        """Fetch one prompt version. See `Registry.fetch`."""
        kind, value = selector
        if kind == "alias":
            path, params = "/api/2.0/mlflow/registered-models/alias", {"name": name, "alias": str(value)}
        else:
            path, params = "/api/2.0/mlflow/model-versions/get", {"name": name, "version": str(value)}
        try:
            response = self._client.get(self._base + path, params=params)
        except self._httpx.TimeoutException:
            raise RegistryError("timed out") from None
        except self._httpx.HTTPError as exc:
            raise RegistryError(f"{type(exc).__name__}: {exc}") from None
        try:
            decoded: Any = response.json()
        except ValueError:
            decoded = None
        body: dict[str, Any] = decoded if isinstance(decoded, dict) else {}  # pyright: ignore[reportUnknownVariableType]
        if response.status_code != 200 or not body:
            error_code, message = body.get("error_code"), body.get("message")
            if response.status_code == 404 or _is_not_found(error_code, message):
                raise RegistryNotFound(str(message or f"no prompt {name!r} with {describe(selector)}"))
            if response.is_redirect:
                location = response.headers.get("location", "?")
                raise RegistryError(f"HTTP {response.status_code}: redirected to {location}; use that as tracking_uri")
            detail = str(message or response.text[:200] or response.reason_phrase)
            raise RegistryError(f"HTTP {response.status_code}: {detail}")
        found: Any = body.get("model_version")
        if not isinstance(found, dict):
            raise RegistryError("the response has no model_version")
        version: dict[str, Any] = found  # pyright: ignore[reportUnknownVariableType]
        raw_tags: list[dict[str, Any]] = version.get("tags") or []
        tags = {str(tag.get("key")): str(tag.get("value")) for tag in raw_tags}
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

    @property
    def ready(self) -> bool:
        """Whether the MLflow client has been imported and built."""
        return self._client is not None

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
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
                raise RegistryNotFound(getattr(exc, "message", str(exc))) from None
            raise RegistryError(f"{type(exc).__name__}: {exc}") from None
        if found is None:
            raise RegistryNotFound(f"no prompt {name!r} with {describe(selector)}")
        return prompt_from_version(found, name=name, alias=str(value) if kind == "alias" else None)

    def close(self) -> None:
        """Nothing to release: the MLflow client keeps no connection of its own here."""


def make_registry(uri: str, *, timeout: float) -> Registry:
    """The backend for a tracking URI: REST for `http(s)://`, the MLflow client for everything else."""
    if uri.startswith(("http://", "https://")):
        return RestRegistry(uri, timeout=timeout)
    return MlflowRegistry(uri, timeout=timeout)
