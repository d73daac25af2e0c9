"""promptops declares every third-party package it imports, with floors that exclude known-vulnerable versions.

Issue 11: `datasets import` reads untrusted Parquet while `pyarrow>=14` admitted 14.0.0 (CVE-2023-47248, arbitrary
code execution when reading a file); Jinja2 renders registry templates in its sandbox but was not declared, so
any version could be installed, including those whose sandbox can be escaped (CVE-2024-56326, CVE-2025-27516).
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
DECLARED = {
    canonicalize_name(req.name): req
    for req in map(Requirement, [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["semantic"]])
}

# The lowest version each may have: the first without the named vulnerability, raised to a version the suite
# has been run against (pyarrow 16.1.0: tests/unit/test_datasets_files.py and the Parquet CLI tests pass on it).
FLOORS = {
    "pyarrow": Version("16.1.0"),  # CVE-2023-47248 fixed in 14.0.1
    "jinja2": Version("3.1.6"),  # sandbox escapes CVE-2024-56326 (3.1.5) and CVE-2025-27516 (3.1.6)
}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_floor_excludes_the_vulnerable_versions(name: str) -> None:
    requirement = DECLARED.get(name)
    assert requirement is not None, f"{name} is used but not declared in pyproject.toml"
    lowest = min((Version(spec.version) for spec in requirement.specifier if spec.operator == ">="), default=None)
    assert lowest is not None and lowest >= FLOORS[name], f"{requirement} admits versions below {FLOORS[name]}"
    assert Version(importlib.metadata.version(name)) in requirement.specifier


def _imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "promptops").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    # pytest: only pytest_plugin.py imports it, and only pytest loads that module.
    return names - set(sys.stdlib_module_names) - {"promptops", "__future__", "pytest"}


def test_every_imported_package_is_declared() -> None:
    providers = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in sorted(_imported_top_level_modules()):
        distributions = {canonicalize_name(name) for name in providers.get(module, [module])}
        if not distributions & DECLARED.keys():
            undeclared[module] = sorted(distributions)
    assert undeclared == {}, f"imported by promptops but not declared in pyproject.toml: {undeclared}"
