"""The monitor's fail over action (`f`), driven by App.run_test() and the pilot: a fake poller (no SSH) turns
rpi2 UNAVAILABLE after the grace period, the real planner re-places from real experiment files, and the
playbooks are a stand-in that reports per-host events the way ansible-runner does (recorded, not run).
The real deploy and launch are in tests/integration/test_failover.py."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from ansible.plugins.vars import host_group_vars

from runner import inventory
from runner.ansible_bridge import PlaybookResult, Progress
from runner.cli import main
from runner.health.cluster import HealthService
from runner.health.status import Thresholds
from runner.monitor.app import LogStream, MonitorApp
from runner.monitor.widgets import ConfirmScreen
from runner.planning import failover
from tests.unit.test_health_fixtures import Clock, FakePoller, down

ROOT = Path(__file__).resolve().parents[2]


class Playbooks:
    """Stands in for ansible_bridge.run_playbook: feeds the progress handler one ok event per live host."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, name: str, inventory_path: Path, **kw: Any) -> PlaybookResult:
        self.calls.append((name, kw.get("limit")))
        progress: Progress = kw["progress"]
        hosts = [h for h in ("jetson", "rpi1", "host") if f"!{h}" not in (kw.get("limit") or "")]
        progress({"event": "playbook_on_play_start", "event_data": {"play": name}})
        for h in hosts:
            progress(
                {"event": "runner_on_ok", "event_data": {"host": h, "task": "t", "res": {"changed": True}}}
            )
        progress({"event": "playbook_on_stats", "event_data": {}})
        return PlaybookResult(name, "successful", 0, dict(progress.hosts))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    shutil.copy(ROOT / "inventory", tmp_path / "inventory")
    shutil.copytree(ROOT / "group_vars", tmp_path / "group_vars")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(host_group_vars, "CANONICAL_PATHS", {})  # see test_failover_core.project
    return tmp_path


def make_app(project: Path, prom: Path | None = None) -> tuple[MonitorApp, FakePoller, Clock, Playbooks]:
    clock = Clock()
    cluster = inventory.load(project / "inventory")
    poller = FakePoller([cn.node.name for cn in cluster.nodes], clock)
    service = HealthService(cluster, poller, Thresholds(grace_s=10), clock=clock)
    books = Playbooks()
    fail = failover.Failover(project / "inventory", root=project, run_playbook=books)
    app = MonitorApp(
        service,
        interval_s=3600,
        wall_clock=lambda: 1_700_000_000.0,
        follow_logs=False,
        failover=fail,
        prom=prom,
    )
    return app, poller, clock, books


async def until(pilot: Any, check: Any, what: str) -> None:
    for _ in range(400):
        if check():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def rpi2_unavailable(app: MonitorApp, poller: FakePoller, clock: Clock, pilot: Any) -> None:
    await until(pilot, lambda: app.poll_count >= 1, "the first poll")
    poller.script["rpi2"] = [lambda t: down("rpi2", t)]
    for step in (1, 11):
        clock.now += step
        before = app.poll_count
        await pilot.press("p")
        await until(pilot, lambda b=before: app.poll_count > b, "a poll")
    assert app.health is not None and app.health.by_name()["rpi2"].status.value == "UNAVAILABLE"
    app.nodes_table.focus()
    app.nodes_table.move_cursor(row=app.nodes_table.get_row_index("rpi2"))


def messages(app: MonitorApp) -> list[str]:
    return [n.message for n in app._notifications]


async def _fail_over_moves_the_instance_after_a_confirmation(project: Path) -> None:
    assert main(["place", "-i", str(project / "inventory"), "experiments/split_brain.yml", "--pin",
                 "split_brain_B=rpi2"]) == 0  # fmt: skip
    app, poller, clock, books = make_app(project)
    async with app.run_test(size=(160, 45)) as pilot:
        await rpi2_unavailable(app, poller, clock, pilot)
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert isinstance(app.screen, ConfirmScreen)
        assert "split_brain_B: rpi2 ->" in app.screen.question
        await pilot.press("n")  # declined: nothing written, nothing run
        await pilot.pause(0.1)
        assert (
            books.calls == [] and inventory.load(project / "inventory").current()["split_brain_B"] == "rpi2"
        )
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: any("done" in m for m in messages(app)), "the fail over")
        assert books.calls == [("deploy.yml", "all:!rpi2"), ("launch.yml", "all:!rpi2")]
        log = list(app.log_pane.text_lines)
        assert any(line.startswith("move split_brain_B: rpi2 ->") for line in log), log
        assert any(line.startswith("jetson") and "changed=1" in line for line in log), (
            log
        )  # per-host progress
        where = inventory.load(project / "inventory").current()["split_brain_B"]
        assert where not in ("rpi2", "jetson")
        await until(
            pilot, lambda: "split_brain_B" in app.service.cluster.by_name()[where].placed[0]["id"], "reload"
        )


def test_fail_over_moves_the_instance_after_a_confirmation(project: Path) -> None:
    asyncio.run(_fail_over_moves_the_instance_after_a_confirmation(project))


async def _only_an_unavailable_node_is_failed_over(project: Path) -> None:
    assert main(["place", "-i", str(project / "inventory"), "experiments/split_brain.yml"]) == 0
    app, _, _, books = make_app(project)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.poll_count >= 1, "the first poll")
        app.nodes_table.focus()
        app.nodes_table.move_cursor(row=app.nodes_table.get_row_index("rpi1"))
        await pilot.press("f")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("rpi1 is HEALTHY: only an UNAVAILABLE node" in m for m in messages(app))
        assert books.calls == []


def test_only_an_unavailable_node_is_failed_over(project: Path) -> None:
    asyncio.run(_only_an_unavailable_node_is_failed_over(project))


async def _no_room_is_counted_as_a_placement_failure(project: Path, prom: Path) -> None:
    assert main(["place", "-i", str(project / "inventory"), "experiments/prisoners_dilemma.yml"]) == 0
    before = (project / "host_vars" / "rpi2" / "placement.yml").read_text()
    app, poller, clock, books = make_app(project, prom)
    async with app.run_test(size=(160, 45)) as pilot:
        await rpi2_unavailable(app, poller, clock, pilot)
        assert "edgejar_placement_failures_total 0" in prom.read_text()
        await pilot.press("f")
        await until(pilot, lambda: any("no room" in m for m in messages(app)), "the verdict")
        assert not isinstance(app.screen, ConfirmScreen) and books.calls == []
        assert app.placement_failures == 1
        assert any("cannot be placed on the remaining nodes" in line for line in app.log_pane.text_lines)
        before_polls = app.poll_count
        await pilot.press("p")
        await until(pilot, lambda: app.poll_count > before_polls, "a poll")
        assert "edgejar_placement_failures_total 1" in prom.read_text()
    assert (project / "host_vars" / "rpi2" / "placement.yml").read_text() == before


def test_no_room_is_counted_as_a_placement_failure(project: Path, tmp_path: Path) -> None:
    asyncio.run(_no_room_is_counted_as_a_placement_failure(project, tmp_path / "edgejar.prom"))


def test_log_stream_emits_whole_lines() -> None:
    got: list[str] = []
    stream = LogStream(got.append)
    stream.write("a\nb")
    stream.write("c\n\n")
    stream.write("d")
    stream.flush()
    assert got == ["a", "bc", "", "d"] and not stream.isatty()
