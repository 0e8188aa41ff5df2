"""Runtime tests: real `python -m runner.node` processes with real llama.cpp on the tiny model, on loopback.

Without llama_cpp they skip, unless EDGEJAR_REQUIRE_LLAMA=1 (CI), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.modelfile.tiny import write_tiny_model
from tests.runtime.cluster import Cluster


@pytest.fixture(autouse=True)
def _need_llama() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        reason = f"llama_cpp (llama-cpp-python) is not importable ({exc}): runtime tests need real inference"
        if os.environ.get("EDGEJAR_REQUIRE_LLAMA") == "1":
            pytest.fail(f"{reason} (EDGEJAR_REQUIRE_LLAMA=1)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.gguf"
    write_tiny_model(path, seed=0)
    return path


@pytest.fixture
def cluster(tmp_path: Path, tiny_model: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, tiny_model)
    try:
        yield c
    finally:
        c.kill_all()
