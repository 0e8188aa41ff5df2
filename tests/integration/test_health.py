"""Health and the monitor on the simulated cluster: a real poll over real SSH fills the table, a node whose
sshd is stopped turns UNAVAILABLE only after the grace period (and HEALTHY again when sshd is back), and
the monitor driven by run_test fills its tables and follows a real instance's journal."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from runner.health import ssh
from runner.health.cluster import HealthService
from runner.health.model import Status
from runner.health.status import Thresholds
from runner.monitor.app import MonitorApp
from tests.integration import runs
from tests.integration.conftest import ROOT, Sim

GRACE_S = 4.0
INSTANCE = "hc-probe"
# A second stand-in that sorts first on jetson, so the monitor test follows a row that is not the first one
# (a refilled table highlights its first row; the journal must stay with the selected one).
STAND_INS = ("hc-first", INSTANCE)
UNITS = " ".join(f"edgejar-instance@{i}.service" for i in STAND_INS)
UNIT_FILES = " ".join(f"/run/systemd/system/edgejar-instance@{i}.service" for i in STAND_INS)


@pytest.fixture(scope="module")
def service(sim: Sim) -> Iterator[HealthService]:
    svc = HealthService.from_inventory(sim.inventory, Thresholds(grace_s=GRACE_S), timeout_s=10)
    # Stand-in instance units: the real runtime is not needed to see a unit's state and its memory against
    # MemoryMax. Instance-specific unit files in /run win over a deployed edgejar-instance@ template, and
    # leave nothing in /etc.
    install = (
        f"u=$(cat) && for f in {UNIT_FILES}; do printf '%s\\n' \"$u\" > $f; done"
        f" && systemctl daemon-reload && systemctl start {UNITS}"
    )
    unit = "[Unit]\nDescription=edgejar health test stand-in\n[Service]\nExecStart=/bin/sleep infinity\nMemoryMax=64M"
    started = svc.poller.run("jetson", ["sudo", "-n", "sh", "-c", install], stdin=unit, timeout_s=60)
    assert started.returncode == 0, started.stderr
    try:
        yield svc
    finally:
        svc.poller.run(
            "jetson",
            [
                "sudo",
                "-n",
                "sh",
                "-c",
                f"systemctl stop {UNITS}; rm -f {UNIT_FILES}; systemctl daemon-reload",
            ],
            timeout_s=60,
        )
        svc.close()


def test_a_real_poll_fills_the_table(service: HealthService) -> None:
    health = service.poll()
    nodes = health.by_name()
    assert set(nodes) == {"jetson", "rpi1", "rpi2", "host"}
    for n in nodes.values():
        assert n.sample is not None, n.reasons
        assert n.status in (Status.HEALTHY, Status.DEGRADED), n.reasons
        assert not any("unreachable" in r for r in n.reasons)
        assert n.sample.memory_cgroup
    # The hosts' memory is their cgroup ceiling (2048 / 1024 / 1536 MiB by default), not /proc/meminfo.
    assert nodes["jetson"].sample.mem_total_bytes == 2048 * 1024**2
    assert nodes["rpi1"].sample.mem_total_bytes == 1024 * 1024**2
    rows = {i.instance: i for i in nodes["jetson"].instances}
    assert rows[INSTANCE].state == "active/running"
    assert rows[INSTANCE].memory_max_bytes == 64 * 1024**2
    assert rows[INSTANCE].memory_bytes is not None
    # Other test modules share the cluster and may have instances there too: the stand-in is counted.
    assert nodes["jetson"].running >= 1


def test_the_cli_prints_json_for_the_cluster(sim: Sim) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "health", "-i", str(sim.inventory), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    statuses = {n["node"]: n["status"] for n in doc["nodes"]}
    assert set(statuses) == {"jetson", "rpi1", "rpi2", "host"}
    assert "UNAVAILABLE" not in statuses.values()
    assert proc.returncode == (0 if set(statuses.values()) == {"HEALTHY"} else 1)


def test_a_node_without_sshd_is_unavailable_only_after_the_grace_period(
    sim: Sim, service: HealthService
) -> None:
    assert service.poll().by_name()["rpi2"].status != Status.UNAVAILABLE
    runs.sshd(sim, "rpi2", "stop")
    try:
        ssh.close_master(service.poller.control("rpi2"))  # the open connection would outlive sshd
        seen: list[tuple[float, Status]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            node = service.poll().by_name()["rpi2"]
            since = service.links["rpi2"].failing_since
            assert since is not None, node.reasons  # every poll fails while sshd is down
            seen.append((service.clock() - since, node.status))
            assert any(r.startswith("unreachable for") for r in node.reasons)
            if node.status == Status.UNAVAILABLE:
                break
            time.sleep(0.5)
        assert seen[-1][1] == Status.UNAVAILABLE, seen
        for down_for, st in seen:
            assert st == (Status.UNAVAILABLE if down_for >= GRACE_S else Status.DEGRADED), seen
        assert seen[0][1] == Status.DEGRADED  # the first failure never moves a node straight to UNAVAILABLE
        assert service.poll().by_name()["jetson"].status != Status.UNAVAILABLE  # the others are unaffected
    finally:
        runs.sshd(sim, "rpi2", "start")
    back = service.poll().by_name()["rpi2"]
    assert back.status != Status.UNAVAILABLE and service.links["rpi2"].failing_since is None


def test_the_monitor_fills_its_tables_from_a_real_poll(service: HealthService) -> None:
    async def drive() -> tuple[dict[str, str], list[str], list[str]]:
        app = MonitorApp(service, interval_s=3600)
        async with app.run_test(size=(160, 45)) as pilot:
            for _ in range(300):
                if app.poll_count:
                    break
                await pilot.pause(0.05)
            nodes = {str(k.value): str(app.nodes_table.get_row(k)[2]) for k in app.nodes_table.rows}
            instances = [str(k.value) for k in app.instances_table.rows]
            row = instances.index(f"jetson/{INSTANCE}")
            app.instances_table.focus()
            app.instances_table.move_cursor(row=row)
            for _ in range(200):  # the journal follower is a worker reading over SSH
                if any(INSTANCE in line and "Started" in line for line in app.log_pane.text_lines):
                    break
                await pilot.pause(0.05)
            return nodes, instances, list(app.log_pane.text_lines)

    nodes, instances, log = asyncio.run(drive())
    assert set(nodes) == {"jetson", "rpi1", "rpi2", "host"}
    assert "UNAVAILABLE" not in nodes.values()
    assert f"jetson/{INSTANCE}" in instances
    assert any(INSTANCE in line and "Started" in line for line in log), log
