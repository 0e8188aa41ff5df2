"""Shared fixtures: a throwaway copy of the example inventory and experiments."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_module(path: Path, name: str) -> ModuleType:
    """A Python file that is not in a package (a role's filter plugin, a script) as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


LLAMA_FILTERS = ROOT / "roles" / "edgejar_llama" / "filter_plugins" / "edgejar_llama.py"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repo's inventory, group_vars and experiments in a temp dir (the cwd of the test)."""
    for name in ("inventory", "ansible.cfg"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "group_vars", tmp_path / "group_vars")
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEJAR_INVENTORY", raising=False)
    return tmp_path


def filled(value: object) -> bool:
    """Every value present: not None, not empty, and a dict not empty with every value filled."""
    if isinstance(value, dict):
        return bool(value) and all(filled(v) for v in value.values())
    return value is not None and value != ""
