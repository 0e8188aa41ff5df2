"""Fail over on the simulated cluster: split brain runs with B on rpi2, rpi2's sshd is stopped (the node is
gone as far as the controller can tell), `python -m runner failover --yes` finds it UNAVAILABLE after the
grace period, moves only B, deploys and launches it on another node, where its unit is active and its port
answers; A keeps its node and port. When rpi2 is back, launch.yml removes B's stale unit there.

Run only with a slot of your own: EDGEJAR_TEST_SIM_SLOT=N python -m pytest tests/integration/test_failover.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner import inventory
from runner.health import ssh
from runner.health.cluster import HealthService
from runner.health.status import Thresholds
from tests.integration import runs
from tests.integration.conftest import ROOT, Sim, ansible_env, assert_provisioned

pytestmark = pytest.mark.integration

DEAD = "rpi2"
MOVED = "split_brain_B"
STAYS = "split_brain_A"


def quick(path: Path) -> None:
    """Make a seed experiment run until stopped, lightly (as tests/integration/test_launch.py does)."""
    data = yaml.safe_load(path.read_text())
    data.update({"cycles": 0, "max_tokens": 16, "n_ctx": 512, "cycle_delay_s": 2.0})
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def active_units(sim: Sim, runner_dir: Path, name: str, hosts: str = "edgejar_nodes") -> dict[str, set[str]]:
    """host -> ids of the running instance units."""
    out = runs.shell(
        sim,
        runner_dir,
        name,
        "systemctl list-units --plain --no-legend --state=active 'edgejar-instance@*.service' | cut -d' ' -f1",
        hosts,
    )
    return {
        host: {line.split("@", 1)[1].removesuffix(".service") for line in text.split() if "@" in line}
        for host, text in out.items()
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployable paths with a light copy of split brain (runs until stopped, few tokens)."""
    src = tmp_path_factory.mktemp("failover-project")
    for name in ("runner", "experiments"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    quick(src / "experiments" / "split_brain.yml")
    return src


def cli(sim: Sim, project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`python -m runner ...` in the project directory (experiment_file paths are relative to it)."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "runner", *args],  # -P: ROOT's runner, not the copy in cwd
        cwd=project,
        env={**os.environ, **ansible_env(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def launched(
    sim: Sim, runner_dir: Path, project: Path, provisioned_runs: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Provision, tiny model, place split brain with B pinned to rpi2, deploy and launch: `place --json`.
    Every instance is stopped afterwards (later test modules share the cluster)."""
    assert_provisioned(provisioned_runs)
    subprocess.run(
        [sys.executable, "-m", "runner", "model", "tiny"], cwd=ROOT, capture_output=True, check=True
    )
    out = cli(sim, project, "place", "-i", str(sim.inventory), "--json", "experiments/split_brain.yml",
              "--pin", f"{MOVED}={DEAD}")  # fmt: skip
    assert out.returncode == 0, out.stderr
    placed: dict[str, Any] = json.loads(out.stdout)
    assert placed["placements"][MOVED] == DEAD
    src = {"edgejar_deploy_src_dir": str(project)}
    for book in ("deploy.yml", "launch.yml"):
        run, _ = runs.playbook(sim, runner_dir, f"failover-{book}", book, src)
        assert run.status == "successful", (book, run.stats, run.errors())
    assert MOVED in active_units(sim, runner_dir, "failover-units-before")[DEAD]
    try:
        yield placed
    finally:
        stop, _ = runs.playbook(sim, runner_dir, "failover-stop", "stop.yml", {"edgejar_stop_all": True})
        assert stop.status == "successful", (stop.stats, stop.errors())


@pytest.fixture(scope="module")
def failed_over(
    sim: Sim, project: Path, launched: dict[str, Any]
) -> Iterator[tuple[subprocess.CompletedProcess[str], dict[str, str]]]:
    """sshd stopped on rpi2, then `runner failover --yes` (every UNAVAILABLE node); sshd back afterwards."""
    runs.sshd(sim, DEAD, "stop")
    service = HealthService.from_inventory(sim.inventory, Thresholds())
    try:
        # An SSH master opened earlier would outlive sshd and keep answering.
        ssh.close_master(service.poller.control(DEAD))
        result = cli(sim, project, "failover", "-i", str(sim.inventory), "--yes", "--grace", "3", "--json",
                     "-e", f"edgejar_deploy_src_dir={project}")  # fmt: skip
        yield result, inventory.load(sim.inventory).current()
    finally:
        service.close()
        runs.sshd(sim, DEAD, "start")


def test_failover_moves_only_the_dead_nodes_instance(
    launched: dict[str, Any], failed_over: tuple[subprocess.CompletedProcess[str], dict[str, str]]
) -> None:
    result, after = failed_over
    assert result.returncode == 0, result.stderr[-4000:]
    doc = json.loads(result.stdout)
    assert doc["dead"] == [DEAD], doc
    assert [(m["instance"], m["source"]) for m in doc["moves"]] == [(MOVED, DEAD)], doc["moves"]
    assert after[MOVED] not in (DEAD, after[STAYS]), after
    assert after[STAYS] == launched["placements"][STAYS]
    assert doc["ports"][STAYS] == launched["ports"][STAYS]
    assert DEAD not in doc["playbooks"]["launch.yml"]["failed_hosts"] and not doc["failed_hosts"], doc
    assert f"{MOVED}" in result.stderr and "stale units are removed by launch.yml" in result.stderr


def test_the_moved_instance_runs_on_its_new_node(
    sim: Sim, runner_dir: Path, failed_over: tuple[subprocess.CompletedProcess[str], dict[str, str]]
) -> None:
    _, after = failed_over
    units = active_units(sim, runner_dir, "failover-units-after", f"edgejar_nodes:!{DEAD}")
    assert MOVED in units[after[MOVED]], units
    assert STAYS in units[after[STAYS]], units


def test_launch_removes_the_stale_unit_when_the_node_is_back(
    sim: Sim, runner_dir: Path, failed_over: tuple[subprocess.CompletedProcess[str], dict[str, str]]
) -> None:
    # failed_over restores sshd when the module ends; here it is started again already (idempotent).
    runs.sshd(sim, DEAD, "start")
    run, _ = runs.playbook(sim, runner_dir, "failover-launch-back", "launch.yml", limit=DEAD)
    assert run.status == "successful", (run.stats, run.errors())
    assert active_units(sim, runner_dir, "failover-units-back")[DEAD] == set()
