"""The monitor's UI logic driven headless by App.run_test() and the pilot, with a fake poller (no SSH) and a
hand-moved clock. The real poll of the simulated cluster is in tests/integration/test_health.py."""

from __future__ import annotations

import asyncio
import subprocess
import threading

import yaml

from runner import inventory
from runner.health.cluster import HealthService
from runner.health.model import Status
from runner.health.status import Thresholds
from runner.monitor.app import MonitorApp
from runner.monitor.widgets import ConfirmScreen
from tests.unit.test_health_fixtures import Clock, FakePoller, down, ok, unit, write_inventory

PLACED = {"jetson": [{"id": "brain_a"}, {"id": "brain_b"}], "rpi1": [{"id": "pi_solo"}]}


def make_app(tmp_path, grace_s: float = 10.0) -> tuple[MonitorApp, FakePoller, Clock]:
    clock = Clock()
    cluster = inventory.load(write_inventory(tmp_path, PLACED))
    poller = FakePoller([cn.node.name for cn in cluster.nodes], clock)
    poller.script["jetson"] = [
        lambda t: ok("jetson", t, units=[unit("brain_a"), unit("stray", "failed", "failed")])
    ]
    service = HealthService(cluster, poller, Thresholds(grace_s=grace_s), clock=clock)
    app = MonitorApp(service, interval_s=3600, wall_clock=lambda: 1_700_000_000.0, follow_logs=False)
    return app, poller, clock


async def wait_polls(app: MonitorApp, pilot, count: int) -> None:
    for _ in range(200):
        if app.poll_count >= count:
            return
        await pilot.pause(0.02)
    raise AssertionError(f"only {app.poll_count} polls completed")


async def poll(app: MonitorApp, pilot) -> None:
    before = app.poll_count
    await pilot.press("p")
    await wait_polls(app, pilot, before + 1)


def cells(app: MonitorApp, table: str) -> dict[str, list[str]]:
    t = app.query_one(table)
    return {str(k.value): [str(c) for c in t.get_row(k)] for k in t.rows}


async def _tables_fill_from_a_poll(tmp_path):
    app, _, _ = make_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_polls(app, pilot, 1)
        nodes = cells(app, "#nodes")
        assert list(nodes) == ["jetson", "rpi1"]
        assert nodes["jetson"][2] == "HEALTHY" and nodes["jetson"][5] == "1/4"
        assert "2.0/64 GiB" in nodes["jetson"][3]  # used memory against node_ram_gb
        inst = cells(app, "#instances")
        assert list(inst) == ["jetson/brain_a", "jetson/brain_b", "jetson/stray", "rpi1/pi_solo"]
        assert inst["jetson/brain_a"][2] == "active/running"
        assert inst["jetson/brain_b"][2] == "not loaded"  # placed, no unit yet
        assert "100/512M" in inst["jetson/brain_a"][6]  # RSS against its MemoryMax
        assert "poll #1" in str(app.query_one("#poll-status").render())


async def _a_node_that_stops_answering_turns_unavailable_only_after_the_grace(tmp_path):
    app, poller, clock = make_app(tmp_path, grace_s=10)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_polls(app, pilot, 1)
        poller.script["rpi1"] = [lambda t: down("rpi1", t)]
        clock.now += 2
        await poll(app, pilot)
        row = cells(app, "#nodes")["rpi1"]
        assert row[2] == "DEGRADED" and "unreachable for 0 s (grace 10 s)" in row[7]
        clock.now += 9.9
        await poll(app, pilot)
        assert cells(app, "#nodes")["rpi1"][2] == "DEGRADED"
        clock.now += 0.1
        await poll(app, pilot)
        assert cells(app, "#nodes")["rpi1"][2] == "UNAVAILABLE"
        assert cells(app, "#nodes")["rpi1"][6] == "12 s ago"  # last answer, shown as stale
        assert cells(app, "#instances")["rpi1/pi_solo"][2] == "not loaded"
        poller.script["jetson"] = [lambda t: down("jetson", t)]
        await poll(app, pilot)
        assert cells(app, "#instances")["jetson/brain_a"][2] == "stale: active/running"
        assert cells(app, "#nodes")["jetson"][5] == "0/4"  # not counted as running while unknown
        messages = [n.message for n in app._notifications]
        assert "rpi1: HEALTHY -> DEGRADED" in messages and "rpi1: DEGRADED -> UNAVAILABLE" in messages


async def _restart_runs_only_after_confirmation(tmp_path):
    app, poller, _ = make_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_polls(app, pilot, 1)
        app.query_one("#instances").focus()
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert poller.commands == []
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("y")
        for _ in range(100):
            if poller.commands:
                break
            await pilot.pause(0.02)
        assert poller.commands == [
            ("jetson", ["sudo", "-n", "systemctl", "stop", "edgejar-instance@brain_a.service"])
        ]


async def _maintenance_is_written_to_host_vars_and_shown(tmp_path):
    app, _, _ = make_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_polls(app, pilot, 1)
        table = app.query_one("#nodes")
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_polls(app, pilot, 2)
        path = tmp_path / "host_vars" / "rpi1" / "maintenance.yml"
        assert yaml.safe_load(path.read_text()) == {"node_maintenance": True}
        assert cells(app, "#nodes")["rpi1"][2] == "MAINTENANCE"
        assert app.service.assess().by_name()["rpi1"].status == Status.MAINTENANCE
        await pilot.press("m")
        await pilot.pause()
        await pilot.press("y")
        await wait_polls(app, pilot, 3)
        assert yaml.safe_load(path.read_text()) == {"node_maintenance": False}
        assert cells(app, "#nodes")["rpi1"][2] == "HEALTHY"


async def _action_without_selection_only_warns(tmp_path):
    clock = Clock()
    cluster = inventory.load(write_inventory(tmp_path))  # nothing placed, no units: no instance rows
    poller = FakePoller([cn.node.name for cn in cluster.nodes], clock)
    app = MonitorApp(
        HealthService(cluster, poller, Thresholds(), clock=clock), interval_s=3600, follow_logs=False
    )
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_polls(app, pilot, 1)
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert poller.commands == []


def test_tables_fill_from_a_poll(tmp_path):
    asyncio.run(_tables_fill_from_a_poll(tmp_path))


def test_a_node_that_stops_answering_turns_unavailable_only_after_the_grace(tmp_path):
    asyncio.run(_a_node_that_stops_answering_turns_unavailable_only_after_the_grace(tmp_path))


def test_restart_runs_only_after_confirmation(tmp_path):
    asyncio.run(_restart_runs_only_after_confirmation(tmp_path))


def test_maintenance_is_written_to_host_vars_and_shown(tmp_path):
    asyncio.run(_maintenance_is_written_to_host_vars_and_shown(tmp_path))


def test_action_without_selection_only_warns(tmp_path):
    asyncio.run(_action_without_selection_only_warns(tmp_path))


async def _new_placements_and_bad_metrics_path_do_not_stop_polling(tmp_path):
    app, _, _ = make_app(tmp_path)
    app.reload_inventory_s = 0  # re-read the inventory before every poll
    (tmp_path / "a-file").write_text("")
    app.prom = tmp_path / "a-file" / "edgejar.prom"  # cannot be written
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_polls(app, pilot, 1)
        (tmp_path / "host_vars" / "rpi1" / "placement.yml").write_text(
            '{"edgejar_instances": [{"id": "new_one"}]}'
        )
        await poll(app, pilot)
        assert "rpi1/new_one" in cells(app, "#instances")
        assert any("metrics not written" in n.message for n in app._notifications)


def test_new_placements_and_bad_metrics_path_do_not_stop_polling(tmp_path):
    asyncio.run(_new_placements_and_bad_metrics_path_do_not_stop_polling(tmp_path))


async def _the_journal_followed_is_the_selected_rows_and_a_poll_keeps_it(tmp_path):
    app, _, _ = make_app(tmp_path)
    app.follow_logs = True
    followed: list[str] = []
    app.start_journal = lambda row: followed.append(f"{row.node}/{row.instance}")  # no SSH here
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_polls(app, pilot, 1)
        app.instances_table.focus()
        app.instances_table.move_cursor(row=3)  # rpi1/pi_solo, before the first fill's highlight is handled
        await pilot.pause(0.1)
        assert followed[-1] == "rpi1/pi_solo", followed
        count = len(followed)
        for _ in range(3):  # each poll clears and refills the table, and its first row posts a highlight
            await poll(app, pilot)
            await pilot.pause(0.1)
        assert followed[count:] == [], followed  # the follower was not restarted (nor moved to row 0)
        assert app._selected_key(app.instances_table) == "rpi1/pi_solo"
        app.instances_table.move_cursor(row=1)
        await pilot.pause(0.1)
        assert followed[-1] == "jetson/brain_b", followed


def test_the_journal_followed_is_the_selected_rows_and_a_poll_keeps_it(tmp_path):
    asyncio.run(_the_journal_followed_is_the_selected_rows_and_a_poll_keeps_it(tmp_path))


class StreamingPoller(FakePoller):
    """popen runs a local endless writer in place of `ssh node journalctl -f` (SSH itself is exercised in
    tests/integration/test_health.py); every process it started is kept, to see that each one is stopped."""

    def __init__(self, nodes: list[str], clock) -> None:
        super().__init__(nodes, clock)
        self.started: list[subprocess.Popen[str]] = []

    def popen(self, node: str, remote: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["sh", "-c", f"i=0; while :; do i=$((i+1)); echo {node} line $i; sleep 0.01; done"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.started.append(proc)
        return proc


async def _journal_followers_stop_when_switched_and_when_the_app_exits(tmp_path, poller_box):
    clock = Clock()
    cluster = inventory.load(write_inventory(tmp_path, PLACED))
    poller = StreamingPoller([cn.node.name for cn in cluster.nodes], clock)
    poller_box.append(poller)
    service = HealthService(cluster, poller, Thresholds(grace_s=10), clock=clock)
    app = MonitorApp(service, interval_s=3600, wall_clock=lambda: 1_700_000_000.0)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_polls(app, pilot, 1)
        app.instances_table.focus()
        for row in (0, 3, 1):  # jetson/brain_a, rpi1/pi_solo, jetson/brain_b
            app.instances_table.move_cursor(row=row)
            await pilot.pause()
        for _ in range(500):
            if any("line" in line for line in app.log_pane.text_lines):
                break
            await pilot.pause(0.02)
        assert any(line.startswith("jetson line") for line in app.log_pane.text_lines), (
            app.log_pane.text_lines
        )
    # leaving run_test returned although lines kept coming: nothing waits on the stopped loop


def test_journal_followers_stop_when_switched_and_when_the_app_exits(tmp_path):
    box: list[StreamingPoller] = []
    done = threading.Event()

    def drive() -> None:
        asyncio.run(_journal_followers_stop_when_switched_and_when_the_app_exits(tmp_path, box))
        done.set()

    t = threading.Thread(target=drive, daemon=True)
    t.start()
    t.join(120)  # a bound for a hang, not a speed measure: this takes about a second
    assert done.is_set(), "the monitor did not exit while its journal follower was streaming"
    (poller,) = box
    assert len(poller.started) >= 1
    for proc in poller.started:  # every follower's process is stopped: none is left streaming
        assert proc.wait(timeout=30) is not None
