"""roles/edgejar_network on the simulated cluster's four hosts.

What runs for real here: the skip without an address, backend detection from facts (the sim hosts run
none of netplan, NetworkManager, dhcpcd or networkd, so auto mode must refuse clearly), the rendered
configuration of each file backend (check mode with diff), and the whole apply orchestration with the
networkd backend forced: previous file kept, rollback script, rollback timer and apply as transient
systemd units, reconnect, confirm, idempotent second run, and the failure path (no answer on a new
address, the node's timer rolls the file back, the message names host and addresses).
What does not run here: the backends' own apply commands (`netplan apply`, `nmcli`, `dhcpcd`,
`networkctl`) - the sim hosts run no network service (systemd-networkd stays inactive), so no address
really moves. Those run on VM hosts with their own kernel, tests/vm/test_kernel_paths.py (NetworkManager,
networkd, netplan, the rollback timer; dhcpcd's apply runs nowhere).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

from tests.integration.conftest import PLAYBOOKS, Sim, ansible_env
from tests.integration.runs import Run, private_dir

pytestmark = pytest.mark.integration

HOSTS = ("jetson", "rpi1", "rpi2", "host")
NETWORKD_FILE = "/etc/systemd/network/10-edgejar-eth0.network"


def env(runner_dir: Path) -> dict[str, str]:
    # A private fact cache: the role must not rely on cached facts of another cluster's hosts of the same name.
    return {**ansible_env(), "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(runner_dir / "network-facts")}


def play(sim: Sim, runner_dir: Path, name: str, extravars: dict[str, Any], **kwargs: Any) -> Run:
    r = ansible_runner.run(
        private_data_dir=str(private_dir(runner_dir, name)),
        project_dir=str(PLAYBOOKS),
        playbook="network_role.yml",
        inventory=str(sim.inventory),
        envvars=env(runner_dir),
        extravars=extravars,
        quiet=True,
        **kwargs,
    )
    return Run.of(r)


def shell(sim: Sim, runner_dir: Path, name: str, cmd: str, hosts: str = "edgejar_nodes") -> dict[str, str]:
    r = ansible_runner.run(
        private_data_dir=str(private_dir(runner_dir, name)),
        host_pattern=hosts,
        module="ansible.builtin.shell",
        module_args=cmd,
        inventory=str(sim.inventory),
        envvars=env(runner_dir),
        extravars={"ansible_become": True},
        quiet=True,
    )
    assert r.status == "successful", r.stats
    return {
        e["event_data"]["host"]: e["event_data"]["res"]["stdout"]
        for e in r.events
        if e["event"] == "runner_on_ok"
    }


def addresses(sim: Sim) -> dict[str, str]:
    """host -> its sim address (the inventory's ansible_host)."""
    data = yaml.safe_load(sim.inventory.read_text())
    out: dict[str, str] = {}
    for group in data["all"]["children"]["edgejar_nodes"]["children"].values():
        for host, hv in group["hosts"].items():
            out[host] = hv["ansible_host"]
    return out


def diffs(run: Run, task_prefix: str) -> dict[str, str]:
    """host -> the 'after' text of the diff of the first task whose name starts with task_prefix."""
    out: dict[str, str] = {}
    for e in run.events:
        data = e.get("event_data", {})
        if e["event"] == "runner_on_ok" and str(data.get("task", "")).startswith(task_prefix):
            diff = data["res"].get("diff")
            diff = diff[0] if isinstance(diff, list) else diff
            if diff:
                out.setdefault(data["host"], diff.get("after", ""))
    return out


def test_no_address_skips_on_all_hosts(sim: Sim, runner_dir: Path) -> None:
    for name, kwargs in (("net-skip", {}), ("net-skip-check", {"cmdline": "--check"})):
        run = play(sim, runner_dir, name, {}, **kwargs)
        assert run.status == "successful", (run.stats, run.failures())
        assert set(run.stats["ok"]) == set(HOSTS)
        assert not any(run.stats.get("changed", {}).values()), run.stats
        said = run.results("Say that no static address is set")
        assert set(said) == set(HOSTS)


def test_auto_backend_refuses_a_node_without_one(sim: Sim, runner_dir: Path) -> None:
    run = play(sim, runner_dir, "net-auto", {"edgejar_test_addresses": {"rpi1": "10.231.99.5"}}, limit="rpi1")
    assert run.status == "failed"
    msg = run.failures()["rpi1"]["msg"]
    assert "rpi1" in msg and "10.231.99.5/24" in msg and "eth0" in msg and "edgejar_network_backend" in msg, (
        msg
    )


def test_bad_address_is_refused(sim: Sim, runner_dir: Path) -> None:
    run = play(sim, runner_dir, "net-bad", {"edgejar_test_addresses": {"rpi1": "10.231.300.5"}}, limit="rpi1")
    assert run.status == "failed"
    msg = run.failures()["rpi1"]["msg"]
    assert "rpi1" in msg and "10.231.300.5" in msg, msg


@pytest.mark.parametrize(
    ("backend", "task", "expected"),
    [
        (
            "netplan",
            "Write /etc/netplan/90-edgejar-eth0.yaml",
            [
                "eth0:",
                "dhcp4: false",
                "- 10.231.99.5/24",
                "via: 10.231.99.1",
                "addresses: [9.9.9.9, 1.1.1.1]",
            ],
        ),
        (
            "networkd",
            f"Write {NETWORKD_FILE}",
            ["Name=eth0", "Address=10.231.99.5/24", "Gateway=10.231.99.1", "DNS=9.9.9.9\nDNS=1.1.1.1"],
        ),
        (
            "dhcpcd",
            "Write the static block in /etc/dhcpcd.conf",
            [
                "# BEGIN edgejar static address\ninterface eth0\nstatic ip_address=10.231.99.5/24",
                "static routers=10.231.99.1",
                "static domain_name_servers=9.9.9.9 1.1.1.1",
            ],
        ),
    ],
)
def test_rendered_configuration_per_backend(
    sim: Sim, runner_dir: Path, backend: str, task: str, expected: list[str]
) -> None:
    """Rendering only (check mode, diff): the apply path of this backend is not exercised here."""
    extravars = {
        "edgejar_test_addresses": {"rpi1": "10.231.99.5"},
        "edgejar_network_backend": backend,
        "edgejar_network_gateway": "10.231.99.1",
        "edgejar_network_dns": ["9.9.9.9", "1.1.1.1"],
    }
    run = play(sim, runner_dir, f"net-render-{backend}", extravars, limit="rpi1", cmdline="--check --diff")
    assert run.status == "successful", (run.stats, run.failures())
    after = diffs(run, task)["rpi1"]
    for text in expected:
        assert text in after, (text, after)
    assert not run.results("Arm the rollback timer, seconds 120")  # nothing applied in check mode


@pytest.fixture(scope="module")
def networkd_runs(sim: Sim, runner_dir: Path):  # type: ignore[no-untyped-def]
    """The networkd backend with every host's current address: check, apply, re-run; cleaned up after."""
    extravars = {"edgejar_test_addresses": addresses(sim), "edgejar_network_backend": "networkd"}
    try:
        check = play(sim, runner_dir, "net-nd-check", extravars, cmdline="--check")
        first = play(sim, runner_dir, "net-nd-1", extravars)
        second = play(sim, runner_dir, "net-nd-2", extravars)
        yield check, first, second
    finally:
        shell(sim, runner_dir, "net-nd-clean", f"rm -rf {NETWORKD_FILE} /var/lib/edgejar-network")


def test_apply_reconnects_and_confirms(
    networkd_runs: tuple[Run, Run, Run], sim: Sim, runner_dir: Path
) -> None:
    check, first, _ = networkd_runs
    assert check.status == "successful", (check.stats, check.failures())
    assert first.status == "successful", (first.stats, first.failures())
    assert set(first.stats["ok"]) == set(HOSTS)
    waited = {
        e["event_data"]["host"]
        for e in first.events
        if e["event"] == "runner_on_ok"
        and str(e["event_data"].get("task", "")).startswith("Wait for the node on")
    }
    assert waited == set(HOSTS)
    state = shell(
        sim,
        runner_dir,
        "net-nd-state",
        f"cat {NETWORKD_FILE}; ls /var/lib/edgejar-network; systemctl is-active edgejar-network-rollback.timer || true",
    )
    for host, address in addresses(sim).items():
        out = state[host]
        assert f"Address={address}/24" in out, (host, out)
        assert "rollback.sh" in out and "previous.absent" in out, (host, out)
        assert out.splitlines()[-1] == "inactive", (host, out)  # confirmed: the timer is disarmed


def test_second_run_changes_nothing(networkd_runs: tuple[Run, Run, Run]) -> None:
    _, _, second = networkd_runs
    assert second.status == "successful", (second.stats, second.failures())
    assert set(second.stats["ok"]) == set(HOSTS)
    assert not any(second.stats.get("changed", {}).values()), second.stats["changed"]


def test_no_answer_on_new_address_rolls_back(
    networkd_runs: tuple[Run, Run, Run], sim: Sim, runner_dir: Path
) -> None:
    """A new address the node never takes (no network service runs here): reconnect fails, the node's timer
    restores."""
    new = "10.231.99.7"
    extravars = {
        "edgejar_test_addresses": {"rpi2": new},
        "edgejar_network_backend": "networkd",
        "edgejar_network_reconnect_timeout": 8,
        "edgejar_network_rollback_seconds": 15,
    }
    run = play(sim, runner_dir, "net-nd-fail", extravars, limit="rpi2")
    assert run.status == "failed"
    msg = run.failures()["rpi2"]["msg"]
    old = addresses(sim)["rpi2"]
    assert "rpi2" in msg and new in msg and old in msg and "answers on" in msg, msg
    deadline = time.monotonic() + 60
    while True:
        out = shell(sim, runner_dir, "net-nd-after", f"cat {NETWORKD_FILE}; true", hosts="rpi2")["rpi2"]
        if new not in out or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert new not in out and f"Address={old}/24" in out, out  # the previous file is back
    assert new not in (sim.state_dir / "known_hosts").read_text()  # the keys recorded for it are gone again
