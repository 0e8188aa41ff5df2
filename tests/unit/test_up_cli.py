"""`runner up/down/collect`: bad input exits 2 before anything runs or is written; the ansible-runner event
handler's per-host progress and failure reasons (events as ansible-runner delivers them)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from runner.ansible_bridge import PlaybookResult, Progress
from runner.cli import main
from runner.errors import EdgejarError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """The example inventory with its group_vars, in a directory of its own (host_vars land there)."""
    shutil.copy(ROOT / "inventory", tmp_path / "inventory")
    shutil.copytree(ROOT / "group_vars", tmp_path / "group_vars")
    return tmp_path / "inventory"


def test_up_with_a_missing_experiment_file_exits_2(
    inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["up", "-i", str(inventory), "experiments/nope.yml"]) == 2
    assert "experiments/nope.yml" in capsys.readouterr().err
    assert not (inventory.parent / "host_vars").exists()


def test_up_with_a_malformed_experiment_exits_2_naming_the_file(
    inventory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\nmode: no_such_mode\ninstances: []\n")
    assert main(["up", "-i", str(inventory), str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
    assert not (inventory.parent / "host_vars").exists()


def test_up_with_an_impossible_placement_exits_2_and_writes_nothing(
    inventory: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether deploy.yml/launch.yml exist in this checkout does not matter here: placement fails first.
    monkeypatch.setattr("runner.ansible_bridge.playbook_path", lambda name: ROOT / "playbooks" / name)
    seeds = sorted(str(p) for p in (ROOT / "experiments").glob("*.yml"))  # 10 instances, 8 slots
    assert main(["up", "-i", str(inventory), *seeds]) == 2
    assert "error: no feasible placement" in capsys.readouterr().err
    assert not list(inventory.parent.glob("host_vars/*/placement.yml"))


@pytest.mark.parametrize("value", ["novalue", "1x=2", "k=[unclosed"])
def test_bad_extra_vars_exit_2(inventory: Path, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["down", "-i", str(inventory), "-e", value]) == 2
    assert f"-e {value}" in capsys.readouterr().err


def test_down_rejects_odd_names(inventory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["down", "-i", str(inventory), "--experiment", "a b"]) == 2
    assert "'a b'" in capsys.readouterr().err


def test_collect_with_a_file_as_results_dir_exits_2(tmp_path: Path, inventory: Path) -> None:
    (tmp_path / "f").write_text("")
    assert main(["collect", "-i", str(inventory), "--results", str(tmp_path / "f")]) == 2


def event(kind: str, host: str = "", task: str = "t", **res: object) -> dict[str, object]:
    return {"event": kind, "event_data": {"host": host, "task": task, "play": "p", "res": res}}


def test_progress_counts_per_host_and_names_failures() -> None:
    out = io.StringIO()
    progress = Progress(out=out, tty=False)
    for e in [
        event("playbook_on_play_start"),
        event("runner_on_ok", "rpi1", "a", changed=True),
        event("runner_on_ok", "jetson", "a", changed=False),
        event("runner_on_skipped", "rpi1", "b"),
        event("runner_on_failed", "rpi1", "c", msg="boom\n  twice"),
        event("runner_on_unreachable", "ghost", "a", msg="ssh: connect timed out"),
        event("playbook_on_stats"),
    ]:
        assert progress(e) is True
    text = out.getvalue()
    assert "play: p" in text
    assert "rpi1: failed at task 'c': boom twice" in text
    assert "ghost: unreachable at task 'a': ssh: connect timed out" in text
    last = text.splitlines()[-3:]
    assert last[0].split()[:3] == ["ghost", "task", "1"] and "unreachable=1" in last[0]
    assert "ok=1 changed=0 failed=0" in last[1] and last[1].startswith("jetson")
    assert "ok=1 changed=1 failed=1 unreachable=0 skipped=1  FAILED" in last[2]
    result = PlaybookResult("deploy.yml", "failed", 2, progress.hosts)
    assert result.failed_hosts == {
        "ghost": "unreachable at task 'a': ssh: connect timed out",
        "rpi1": "failed at task 'c': boom twice",
    }
    with pytest.raises(EdgejarError, match=r"deploy.yml failed on 2 host\(s\): ghost, rpi1"):
        result.raise_for_failures()


def test_ignored_errors_do_not_count_as_failures() -> None:
    progress = Progress(out=io.StringIO(), tty=False)
    ignored = event("runner_on_failed", "rpi1", "probe", msg="no")
    ignored["event_data"]["ignore_errors"] = True  # type: ignore[index]
    progress(ignored)
    assert PlaybookResult("x.yml", "successful", 0, progress.hosts).ok


def test_terminal_block_is_redrawn_in_place() -> None:
    out = io.StringIO()
    progress = Progress(out=out, tty=True)
    progress(event("runner_on_ok", "rpi1", "a"))
    progress(event("runner_on_ok", "rpi2", "a"))
    progress(event("runner_on_ok", "rpi1", "b"))
    assert "\x1b[2F" in out.getvalue()  # moved up over the two host lines to redraw them
