"""`python -m runner sim ...` without a running cluster: errors, exit statuses, preflight messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli import main
from runner.errors import EdgejarError
from runner.sim import preflight
from runner.sim.config import build_config
from runner.sim.state import StateDir


def test_inventory_when_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "inventory", "--state-dir", str(tmp_path / "none")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "not up" in err and "python -m runner sim up" in err


def test_inventory_prints_only_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = StateDir(tmp_path)
    state.save(build_config(), "up")
    state.inventory.write_text("all: {}\n")
    assert main(["sim", "inventory", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"{state.inventory}\n"


def test_status_when_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "status", "--state-dir", str(tmp_path)]) == 1
    assert "down" in capsys.readouterr().out


def test_env_selects_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGEJAR_SIM_DIR", str(tmp_path / "elsewhere"))
    assert main(["sim", "inventory"]) == 1
    assert str(tmp_path / "elsewhere") in capsys.readouterr().err


def test_bad_input_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "up", "--hosts", "a:toaster"]) == 2
    assert "unknown host kind 'toaster'" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["up", "down"])
def test_needs_root(
    action: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    assert main(["sim", action, "--state-dir", str(tmp_path)]) == 1
    assert f"`sim {action}` needs root" in capsys.readouterr().err


def test_missing_tools_name_their_debian_packages() -> None:
    have = {"ip", "mount"}
    missing = preflight.missing_tools(
        ["systemd-nspawn", "ip", "dpkg-scanpackages", "ssh"], lambda t: t if t in have else None
    )
    assert missing == {
        "systemd-nspawn": "systemd-container",
        "dpkg-scanpackages": "dpkg-dev",
        "ssh": "openssh-client",
    }
    message = preflight.missing_tools_message(missing)
    assert "systemd-nspawn (package systemd-container)" in message
    assert message.endswith("apt-get install -y dpkg-dev openssh-client systemd-container")


def test_state_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "sim")
    with state.lock(), pytest.raises(EdgejarError, match="another `sim up` or `sim down`"), state.lock():
        pass
