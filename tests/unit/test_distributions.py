"""The two distributions: names free of the unrelated `promptops` on the package index, and version ranges in step.

`pip install promptops` installs someone else's project (issue 17), and a `promptops>=0.1,<0.2` requirement is
satisfied by it: a dependency-confusion hazard. The SDK is `mlflow-promptops`, the integration
`mlflow-promptops-langchain`, and the integration must require the SDK by that name, with a range that holds the
SDK's own version (they are released in step: the integration reuses promptops' internals).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
SDK = "mlflow-promptops"
INTEGRATION = "mlflow-promptops-langchain"
# Names on the package index that belong to other projects: never ours, never required.
FOREIGN = {"promptops", "promptops-sdk", "promptops-langchain"}


def _pyproject(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))["project"]


def _version(path: Path) -> Version:
    namespace: dict[str, Any] = {}
    exec(path.read_text(encoding="utf-8"), namespace)
    return Version(namespace["__version__"])


SDK_PROJECT = _pyproject(ROOT / "pyproject.toml")
INTEGRATION_PROJECT = _pyproject(ROOT / "integrations" / "langchain" / "pyproject.toml")
SDK_VERSION = _version(ROOT / "promptops" / "_version.py")
INTEGRATION_VERSION = _version(ROOT / "integrations" / "langchain" / "promptops_langchain" / "_version.py")


def _requirements(project: dict[str, Any]) -> list[Requirement]:
    extras = [req for reqs in project.get("optional-dependencies", {}).values() for req in reqs]
    return [Requirement(text) for text in [*project["dependencies"], *extras]]


def test_names() -> None:
    assert SDK_PROJECT["name"] == SDK
    assert INTEGRATION_PROJECT["name"] == INTEGRATION
    # The import package and the command keep the short name.
    assert SDK_PROJECT["scripts"] == {"promptops": "promptops.cli:main"}


def test_the_integration_requires_the_sdk_by_its_name_and_in_step() -> None:
    requirements = _requirements(INTEGRATION_PROJECT)
    on_sdk = [req for req in requirements if canonicalize_name(req.name) == SDK]
    assert len(on_sdk) == 1, f"{INTEGRATION} must require {SDK} once, found {[str(req) for req in on_sdk]}"
    specifier = on_sdk[0].specifier
    # The range holds the SDK's version and the whole minor series it belongs to, and nothing past it.
    series = f"{SDK_VERSION.major}.{SDK_VERSION.minor}"
    assert SDK_VERSION in specifier
    assert Version(f"{series}.0") in specifier
    assert Version(f"{SDK_VERSION.major}.{SDK_VERSION.minor + 1}.0") not in specifier
    assert Version(f"{SDK_VERSION.major + 1}.0.0") not in specifier
    assert (INTEGRATION_VERSION.major, INTEGRATION_VERSION.minor) == (SDK_VERSION.major, SDK_VERSION.minor)


@pytest.mark.parametrize("project", [SDK_PROJECT, INTEGRATION_PROJECT], ids=[SDK, INTEGRATION])
def test_no_requirement_on_a_foreign_name(project: dict[str, Any]) -> None:
    names = {canonicalize_name(req.name) for req in _requirements(project)}
    assert not names & FOREIGN


def test_installed_metadata_matches() -> None:
    """What `make install` put in the environment is these distributions (a stale one: run `make install`)."""
    assert importlib.metadata.version(SDK) == str(SDK_VERSION)
    assert importlib.metadata.version(INTEGRATION) == str(INTEGRATION_VERSION)
    required = [Requirement(text) for text in importlib.metadata.requires(INTEGRATION) or []]
    assert SDK in {canonicalize_name(req.name) for req in required}
    files = importlib.metadata.files(SDK) or []
    entry_points = importlib.metadata.distribution(SDK).entry_points
    assert {(ep.group, ep.name) for ep in entry_points} >= {("console_scripts", "promptops"), ("pytest11", "promptops")}
    assert files, f"{SDK} lists no files"
