"""The sim's state directory holds root's SSH key and known_hosts under a predictable name in /var/tmp:
one that someone else made, that others may write, or that is a symlink is refused, never reused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.errors import EdgejarError
from runner.sim.state import StateDir


def test_a_missing_directory_is_made_private_to_writes(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "parent" / "sim")
    state.ensure_root()
    assert (state.root.stat().st_mode & 0o777) == 0o755
    state.ensure_root()  # ours already: accepted again


def test_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "sim"
    root.mkdir()
    root.chmod(0o777)
    with pytest.raises(EdgejarError, match="writable by others"):
        StateDir(root).ensure_root()


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "sim").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(EdgejarError, match="not a directory"):
        StateDir(tmp_path / "sim").ensure_root()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user owns needs root")
def test_a_directory_someone_else_owns_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "sim"
    root.mkdir()
    os.chown(root, 65534, 65534)
    with pytest.raises(EdgejarError, match="belongs to uid 65534"):
        StateDir(root).ensure_root()
