"""The roles' kernel-level paths, for real, on VM hosts (QEMU guests with their own Debian kernel).

What a container cannot show, each asserted where the kernel shows it:
- swap: the file backend (x86 host) and the Pi's dphys-swapfile (the real Debian package, installed the
  way Raspberry Pi OS ships it) are on (`swapon --show`) at the asked size, stay on across a reboot, a
  second run changes nothing, and `edgejar_swap_state: absent` takes the file backend's swap off;
- the Pi's memory cgroup options in cmdline.txt reboot the host (a new boot id) and provisioning goes on
  after it (the rest of the play and the next play run);
- an instance over its MemoryMax is killed by the kernel's OOM killer and recorded as `oom-kill` (not
  `signal:KILL`, which is all a cgroup v1 container host can tell), in the node's records;
- static addresses: NetworkManager (the Pi), systemd-networkd and netplan (the x86 host) move the
  address on eth0 (the old one is gone, SSH answers on the new one), and an address the controller cannot
  reach is rolled back by the node's own timer, which brings it back on its old address.
Not here: rpi-swap (Raspberry Pi OS trixie's package, not in Debian) and dhcpcd's apply (Raspberry Pi
OS bookworm's older images); both are rendered and checked in check mode in tests/integration.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

from runner.sim import host as sim_host
from runner.sim.cluster import ssh_command
from runner.sim.state import StateDir
from tests.integration import runs
from tests.integration.conftest import PLAYBOOKS, Sim, ansible_env
from tests.integration.runs import Run

SWAP_MB = 256
DPHYS_CONF = "# as Raspberry Pi OS ships it\nCONF_SWAPSIZE=100\n"


def address(sim: Sim, name: str) -> str:
    cfg = StateDir(sim.state_dir).config()
    assert cfg is not None
    return cfg.host(name).address


def moved(sim: Sim, name: str, last_octet: int) -> str:
    return address(sim, name).rsplit(".", 1)[0] + f".{last_octet}"


def ssh(sim: Sim, name: str, command: str, at: str | None = None) -> subprocess.CompletedProcess[str]:
    """A command on a host as the sim user (sudo where it says so), at its address or at `at`."""
    cfg = StateDir(sim.state_dir).config()
    assert cfg is not None
    spec = cfg.host(name)
    if at is not None:
        spec = dataclasses.replace(spec, address=at)
    cmd = ssh_command(cfg, StateDir(sim.state_dir), spec, command)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def out(sim: Sim, name: str, command: str, at: str | None = None) -> str:
    proc = ssh(sim, name, command, at)
    assert proc.returncode == 0, (name, command, proc.stderr)
    return proc.stdout.strip()


def connect_at(sim: Sim, name: str, at: str | None) -> None:
    """Where Ansible reaches a host from now on (a host_vars file outranks the inventory's ansible_host;
    the role's own set_fact still outranks it, so the role can follow a move); None: the inventory's."""
    f = sim.inventory.parent / "host_vars" / name / "vm-test-address.yml"
    if at is None:
        f.unlink(missing_ok=True)
        return
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(yaml.safe_dump({"ansible_host": at}))


def swaps(sim: Sim, name: str) -> dict[str, int]:
    """swapon --show: device or file -> size in MiB (rounded: the kernel counts the space after the swap
    header page, 4 KiB short of the file)."""
    text = out(sim, name, "/sbin/swapon --show=NAME,SIZE --bytes --noheadings")
    return {
        line.split()[0]: round(int(line.split()[1]) / 2**20) for line in text.splitlines() if line.strip()
    }


def boot_id(sim: Sim, name: str, at: str | None = None) -> str:
    return out(sim, name, "cat /proc/sys/kernel/random/boot_id", at)


def ipv4(sim: Sim, name: str, at: str) -> list[str]:
    """The IPv4 addresses on eth0 (the kernel's view), asked over SSH at `at`."""
    data = json.loads(out(sim, name, "ip -j -4 addr show dev eth0", at))
    return [f"{a['local']}/{a['prefixlen']}" for link in data for a in link.get("addr_info", [])]


def provision(sim: Sim, runner_dir: Path, name: str, tags: str, extravars: dict[str, Any], **kw: Any) -> Run:
    return runs.provision(sim, runner_dir, name, extravars, tags=tags, **kw)


def network(sim: Sim, runner_dir: Path, name: str, limit: str, extravars: dict[str, Any]) -> Run:
    r = ansible_runner.run(
        private_data_dir=str(runs.private_dir(runner_dir, name)),
        project_dir=str(PLAYBOOKS),
        playbook="network_role.yml",
        inventory=str(sim.inventory),
        envvars=ansible_env(sim.state_dir),
        extravars=extravars,
        limit=limit,
        quiet=True,
    )
    return Run.of(r)


def ran(run: Run, host: str, task_prefix: str) -> bool:
    return any(
        e["event"] in ("runner_on_ok", "runner_on_changed")
        and e["event_data"].get("host") == host
        and str(e["event_data"].get("task", "")).startswith(task_prefix)
        for e in run.events
    )


# --- the machines -----------------------------------------------------------------------------------
def test_each_host_runs_its_own_kernel_and_its_board_network_service(vm_sim: Sim) -> None:
    for name, service in (("rpi1", "NetworkManager"), ("host", "systemd-networkd")):
        text = out(
            vm_sim, name, f"systemd-detect-virt; stat -fc %T /sys/fs/cgroup; systemctl is-active {service}"
        )
        virt, cgroup_fs, active = text.splitlines()
        assert virt in ("qemu", "kvm"), (name, virt)  # a machine of its own, not systemd-nspawn
        assert cgroup_fs == "cgroup2fs", (name, cgroup_fs)  # Debian 12's unified hierarchy
        assert active == "active", (name, service, active)
    assert (
        out(vm_sim, "rpi1", "tr -d '\\0' < /sys/firmware/devicetree/base/model")
        == "Raspberry Pi 5 Model B Rev 1.0"
    )


# --- swap and the Pi's memory cgroup (one provision of both hosts at once) ----------------------------
@pytest.fixture(scope="module")
def swap_runs(vm_sim: Sim, runner_dir: Path) -> dict[str, Any]:
    """dphys-swapfile on the Pi as Raspberry Pi OS has it (its 100 MB default, on), then provision.yml
    --tags swap,memcg,network on both hosts: --check, a run, a second run."""
    install = (
        f"printf {shlex.quote(DPHYS_CONF)} > /etc/dphys-swapfile && apt-get update -qq && "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold dphys-swapfile"
    )
    out(vm_sim, "rpi1", f"sudo sh -c {shlex.quote(install)}")
    before = {name: boot_id(vm_sim, name) for name in ("rpi1", "host")}
    swaps_before = {name: swaps(vm_sim, name) for name in ("rpi1", "host")}
    extravars = {"edgejar_swap_size_mb": SWAP_MB}
    check = provision(vm_sim, runner_dir, "vm-swap-check", "swap,memcg,network", extravars, cmdline="--check")
    after_check = {name: (boot_id(vm_sim, name), swaps(vm_sim, name)) for name in ("rpi1", "host")}
    first = provision(vm_sim, runner_dir, "vm-swap-1", "swap,memcg,network", extravars)
    after_first = {name: boot_id(vm_sim, name) for name in ("rpi1", "host")}
    second = provision(vm_sim, runner_dir, "vm-swap-2", "swap,memcg,network", extravars)
    return {
        "before": before,
        "swaps_before": swaps_before,
        "check": check,
        "after_check": after_check,
        "first": first,
        "after_first": after_first,
        "second": second,
    }


def test_check_mode_changes_nothing_on_the_machines(swap_runs: dict[str, Any]) -> None:
    check = swap_runs["check"]
    assert check.status == "successful", (check.stats, check.errors())
    for name in ("rpi1", "host"):
        assert swap_runs["after_check"][name] == (swap_runs["before"][name], swap_runs["swaps_before"][name])


def test_dphys_swapfile_was_on_with_the_pi_default(swap_runs: dict[str, Any]) -> None:
    assert swap_runs["swaps_before"]["rpi1"] == {"/var/swap": 100}, swap_runs["swaps_before"]
    assert swap_runs["swaps_before"]["host"] == {}


def test_swap_is_on_at_the_asked_size_with_each_backend(vm_sim: Sim, swap_runs: dict[str, Any]) -> None:
    first = swap_runs["first"]
    assert first.status == "successful", (first.stats, first.errors())
    assert swaps(vm_sim, "host") == {"/swapfile": SWAP_MB}  # the file backend
    assert swaps(vm_sim, "rpi1") == {"/var/swap": SWAP_MB}  # dphys-swapfile, resized by its own service
    assert f"CONF_SWAPSIZE={SWAP_MB}" in out(vm_sim, "rpi1", "cat /etc/dphys-swapfile")


def test_the_pi_memory_cgroup_change_reboots_it_and_provisioning_goes_on(
    vm_sim: Sim, swap_runs: dict[str, Any]
) -> None:
    first, before, after = swap_runs["first"], swap_runs["before"], swap_runs["after_first"]
    assert after["rpi1"] != before["rpi1"]  # a new boot: the kernel restarted
    assert after["host"] == before["host"]  # not a Pi: not rebooted
    assert ran(first, "rpi1", "Reboot for the kernel command line")
    assert ran(first, "rpi1", "Re-read the local facts after the reboot")  # the play went on after it
    assert ran(first, "rpi1", "Say that no static address is set")  # and the next play ran
    cmdline = out(vm_sim, "rpi1", "cat /boot/firmware/cmdline.txt")
    assert cmdline.endswith("cgroup_enable=memory cgroup_memory=1"), cmdline
    # Swap configured before the reboot came back on by itself at boot (dphys-swapfile's service).
    assert swaps(vm_sim, "rpi1") == {"/var/swap": SWAP_MB}


def test_a_second_run_changes_nothing_and_does_not_reboot(vm_sim: Sim, swap_runs: dict[str, Any]) -> None:
    second = swap_runs["second"]
    assert second.status == "successful", (second.stats, second.errors())
    assert not any(second.stats.get("changed", {}).values()), second.stats
    assert boot_id(vm_sim, "rpi1") == swap_runs["after_first"]["rpi1"]


def test_state_absent_takes_the_swap_file_off(
    vm_sim: Sim, runner_dir: Path, swap_runs: dict[str, Any]
) -> None:
    run = provision(
        vm_sim, runner_dir, "vm-swap-absent", "swap", {"edgejar_swap_state": "absent"}, limit="host"
    )
    assert run.status == "successful", (run.stats, run.errors())
    assert swaps(vm_sim, "host") == {}
    assert out(vm_sim, "host", "test -e /swapfile && echo present || echo gone") == "gone"
    assert "/swapfile" not in out(vm_sim, "host", "cat /etc/fstab")


# --- OOM: the kernel's verdict in the node's records ---------------------------------------------------
OOM_EXPERIMENT = {
    "name": "oom_probe",
    "mode": "isolated",
    "description": "One instance whose ballast exceeds its memory ceiling at cycle 3: OOM-killed, restarted.",
    "model": "tiny",
    "n_ctx": 256,
    "max_tokens": 8,
    "cycles": 0,
    "cycle_delay_s": 2.0,
    "interventions": [{"type": "resource_pressure", "at": 3, "ballast_mib": 512}],
    "instances": [{"id": "oom_probe", "memory_gb": 0.25, "node": "host"}],
}


@pytest.fixture(scope="module")
def oom_host(vm_sim: Sim, runner_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The x86 host provisioned (base, llama: the node venv from a wheelhouse of its own), the probe
    placed there, deployed and launched."""
    tmp = tmp_path_factory.mktemp("vm-oom")
    run = provision(
        vm_sim, runner_dir, "vm-oom-provision", "base,llama", {"edgejar_llama_wheelhouse": str(tmp / "wheelhouse")},
        limit="host",
    )  # fmt: skip
    assert run.status == "successful", (run.stats, run.errors())
    return runs.launch_probe(vm_sim, runner_dir, OOM_EXPERIMENT, tmp / "project", limit="host")


def test_an_instance_over_its_memory_max_is_recorded_as_oom_kill(
    vm_sim: Sim, runner_dir: Path, oom_host: Path
) -> None:
    sql = "SELECT cause FROM life_ends WHERE instance_id = 'oom_probe'"
    deaths: list[Any] = []
    for _ in range(60):
        deaths = runs.query(vm_sim, runner_dir, "vm-oom-deaths", sql, hosts="host")["host"]
        if deaths:
            break
        time.sleep(5)
    assert deaths and {cause for (cause,) in deaths} == {"oom-kill"}, deaths
    exits = runs.query(
        vm_sim, runner_dir, "vm-oom-exits",
        "SELECT cause, service_result FROM exit_reports WHERE instance_id = 'oom_probe'", "host",
    )["host"]  # fmt: skip
    assert exits and {tuple(row) for row in exits} == {("oom-kill", "oom-kill")}, exits
    kernel = out(vm_sim, "host", "sudo journalctl -k --no-pager -g 'Memory cgroup out of memory' -o cat")
    assert "Killed process" in kernel, kernel
    stop = runs.playbook(
        vm_sim, runner_dir, "vm-oom-stop", "stop.yml", {"edgejar_stop_experiment": "oom_probe"}, limit="host"
    )[0]
    assert stop.status == "successful", (stop.stats, stop.errors())


# --- static addresses ----------------------------------------------------------------------------------
def test_networkmanager_moves_the_pi_to_a_new_address(vm_sim: Sim, runner_dir: Path) -> None:
    old, new = address(vm_sim, "rpi1"), moved(vm_sim, "rpi1", 111)
    run = network(vm_sim, runner_dir, "vm-net-nm", "rpi1", {"edgejar_test_addresses": {"rpi1": new}})
    assert run.status == "successful", (run.stats, run.errors())
    connect_at(vm_sim, "rpi1", new)
    assert ipv4(vm_sim, "rpi1", new) == [f"{new}/24"]  # the old address is gone from eth0
    assert not sim_host.port_open(old, 22)
    assert out(vm_sim, "rpi1", "nmcli -g ipv4.addresses connection show edgejar-sim", new) == f"{new}/24"


def test_an_unreachable_address_is_rolled_back_by_the_node_timer(vm_sim: Sim, runner_dir: Path) -> None:
    at, unreachable = moved(vm_sim, "rpi1", 111), "10.231.99.7"
    extravars = {
        "edgejar_test_addresses": {"rpi1": unreachable},
        "edgejar_network_reconnect_timeout": 10,
        "edgejar_network_rollback_seconds": 30,
    }
    run = network(vm_sim, runner_dir, "vm-net-rollback", "rpi1", extravars)
    assert run.status == "failed"
    msg = run.failures()["rpi1"]["msg"]
    assert unreachable in msg and f"answers on {at} again" in msg, msg
    assert ipv4(vm_sim, "rpi1", at) == [f"{at}/24"]  # back on its old address, by its own timer
    assert unreachable not in (vm_sim.state_dir / "known_hosts").read_text()  # its keys there are gone
    assert out(vm_sim, "rpi1", "nmcli -g ipv4.addresses connection show edgejar-sim", at) == f"{at}/24"


def test_networkd_moves_the_x86_host(vm_sim: Sim, runner_dir: Path) -> None:
    old, new = address(vm_sim, "host"), moved(vm_sim, "host", 112)
    run = network(vm_sim, runner_dir, "vm-net-networkd", "host", {"edgejar_test_addresses": {"host": new}})
    assert run.status == "successful", (run.stats, run.errors())
    assert ran(run, "host", "Prepare the configuration of backend networkd")
    connect_at(vm_sim, "host", new)
    assert ipv4(vm_sim, "host", new) == [f"{new}/24"]
    assert not sim_host.port_open(old, 22)
    assert "10-edgejar-eth0.network" in out(vm_sim, "host", "networkctl status eth0", new)


def test_netplan_moves_the_x86_host(vm_sim: Sim, runner_dir: Path) -> None:
    at, new = moved(vm_sim, "host", 112), moved(vm_sim, "host", 113)
    # netplan installed on the host (as on Ubuntu and L4T); the networkd backend's own file from the
    # previous test removed first: the role does not clean up after another backend (docs/deploy.md).
    setup = (
        "rm -rf /etc/systemd/network/10-edgejar-eth0.network /var/lib/edgejar-network && apt-get update -qq && "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netplan.io"
    )
    out(vm_sim, "host", f"sudo sh -c {shlex.quote(setup)}", at)
    run = network(vm_sim, runner_dir, "vm-net-netplan", "host", {"edgejar_test_addresses": {"host": new}})
    assert run.status == "successful", (run.stats, run.errors())
    assert ran(run, "host", "Prepare the configuration of backend netplan")
    connect_at(vm_sim, "host", new)
    assert ipv4(vm_sim, "host", new) == [f"{new}/24"]
    assert not sim_host.port_open(at, 22)
    assert "10-netplan-eth0.network" in out(vm_sim, "host", "networkctl status eth0", new)
