"""playbooks/provision.yml (roles edgejar_facts and edgejar_base) on the simulated cluster's four hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ansible_runner
import pytest

from tests.integration import runs
from tests.integration.conftest import Sim, ansible_env
from tests.integration.runs import Run, private_dir

pytestmark = pytest.mark.integration

HOSTS = {"jetson": "jetson", "rpi1": "rpi", "rpi2": "rpi", "host": "x86"}


def provision(
    sim: Sim, runner_dir: Path, name: str, extravars: dict[str, Any] | None = None, **kwargs: Any
) -> Run:
    return runs.provision(sim, runner_dir, name, dict(extravars or {}), **kwargs)


def node_state(sim: Sim, runner_dir: Path) -> dict[str, str]:
    """host -> stdout of a few stat/getent commands, as root."""
    r = ansible_runner.run(
        private_data_dir=str(private_dir(runner_dir, "provision-state")),
        host_pattern="edgejar_nodes",
        module="ansible.builtin.shell",
        module_args=(
            "getent passwd edgejar-run; "
            "stat -c '%n %U %G %a' /opt/edgejar /var/lib/edgejar /etc/ansible/facts.d/edgejar.fact; "
            "/opt/edgejar/venv/bin/python -c 'import sys; print(\"venv\", sys.prefix)'"
        ),
        inventory=str(sim.inventory),
        envvars=ansible_env(),
        extravars={"ansible_become": True},
        quiet=True,
    )
    assert r.status == "successful", r.stats
    return {
        e["event_data"]["host"]: e["event_data"]["res"]["stdout"]
        for e in r.events
        if e["event"] == "runner_on_ok"
    }


@pytest.fixture(scope="module")
def fresh_check(provisioned_runs: dict[str, Run]) -> Run:
    """provision.yml --check on the new hosts, before anything was provisioned (the session's shared
    provisioning, tests/integration/conftest.py, whichever module asks for it first)."""
    return provisioned_runs["fresh_check"]


@pytest.fixture(scope="module")
def provisioned(provisioned_runs: dict[str, Run]) -> tuple[Run, Run]:
    """provision.yml, run twice (after the --check run on the new hosts)."""
    return provisioned_runs["first"], provisioned_runs["second"]


def test_provision_runs_on_all_hosts(provisioned: tuple[Run, Run]) -> None:
    first, _ = provisioned
    assert first.status == "successful", (first.stats, first.failures())
    assert set(first.stats["ok"]) == set(HOSTS)
    assert not first.stats.get("failures") and not first.stats.get("dark"), first.stats


def test_facts_per_host(provisioned: tuple[Run, Run]) -> None:
    published = provisioned[0].results("Publish the hardware facts for later roles (edgejar_hw)")
    assert set(published) == set(HOSTS)
    for host, kind in HOSTS.items():
        hw = published[host]["ansible_facts"]["edgejar_hw"]
        assert hw["kind"] == kind, (host, hw)
        assert hw["memory_cgroup"] is True, (host, hw)
        assert hw["gpu"] is (kind == "jetson"), (host, hw)
        assert hw["l4t_release"] == ("R36.4.0" if kind == "jetson" else ""), (host, hw)
        assert hw["cpu_count"] == {"jetson": 12, "rpi": 4, "x86": 8}[kind], (host, hw)
        assert hw["mem_total_mb"] == {"jetson": 62827, "rpi": 8052, "x86": 32046}[kind], (host, hw)
        assert hw["swap_total_mb"] >= 0, (host, hw)
    assert published["jetson"]["ansible_facts"]["edgejar_hw"]["model"].startswith("NVIDIA Jetson AGX Orin")
    assert published["rpi1"]["ansible_facts"]["edgejar_hw"]["model"].startswith("Raspberry Pi 5")
    assert published["host"]["ansible_facts"]["edgejar_hw"]["model"] == ""


def test_inventory_agrees_with_the_hardware(provisioned: tuple[Run, Run]) -> None:
    first, _ = provisioned
    assert not first.results("Warn when the inventory disagrees with the hardware")


def test_user_dirs_and_venv(provisioned: tuple[Run, Run], sim: Sim, runner_dir: Path) -> None:
    state = node_state(sim, runner_dir)
    assert set(state) == set(HOSTS)
    for host, out in state.items():
        lines = out.splitlines()
        user = lines[0].split(":")
        assert user[0] == "edgejar-run" and user[6] == "/usr/sbin/nologin", (host, out)
        assert int(user[2]) < 1000, (host, out)  # a system user
        assert "/opt/edgejar root root 755" in lines, (host, out)
        assert "/var/lib/edgejar edgejar-run edgejar-run 750" in lines, (host, out)
        assert "/etc/ansible/facts.d/edgejar.fact root root 755" in lines, (host, out)
        assert "venv /opt/edgejar/venv" in lines, (host, out)


def test_second_run_changes_nothing(provisioned: tuple[Run, Run]) -> None:
    _, second = provisioned
    assert second.status == "successful", (second.stats, second.failures())
    assert set(second.stats["ok"]) == set(HOSTS)
    assert not any(second.stats.get("changed", {}).values()), second.stats["changed"]


def test_check_mode_on_new_hosts_succeeds(fresh_check: Run) -> None:
    assert fresh_check.status == "successful", (fresh_check.stats, fresh_check.failures())
    assert set(fresh_check.stats["ok"]) == set(HOSTS)


def test_check_mode_succeeds(provisioned: tuple[Run, Run], sim: Sim, runner_dir: Path) -> None:
    check = provision(sim, runner_dir, "provision-check", cmdline="--check")
    assert check.status == "successful", (check.stats, check.failures())
    assert set(check.stats["ok"]) == set(HOSTS)
    assert not any(check.stats.get("changed", {}).values()), check.stats["changed"]


def test_declared_ram_mismatch_fails_in_strict_mode(
    provisioned: tuple[Run, Run], sim: Sim, runner_dir: Path
) -> None:
    run = provision(
        sim,
        runner_dir,
        "provision-strict",
        cmdline="-e node_ram_gb=64 -e edgejar_facts_strict=true",
        limit="rpi1",
    )
    assert run.status == "failed", run.stats
    failed = run.failures()
    assert set(failed) == {"rpi1"}, failed
    msg = failed["rpi1"]["msg"]
    assert "rpi1" in msg and "node_ram_gb" in msg and "64" in msg and "8052" in msg, msg


def test_declared_ram_mismatch_warns_by_default(
    provisioned: tuple[Run, Run], sim: Sim, runner_dir: Path
) -> None:
    run = provision(sim, runner_dir, "provision-warn", cmdline="-e node_ram_gb=64", limit="rpi1")
    assert run.status == "successful", (run.stats, run.failures())
    warned = run.results("Warn when the inventory disagrees with the hardware")
    assert "rpi1" in warned
    assert "node_ram_gb" in str(warned["rpi1"]), warned
