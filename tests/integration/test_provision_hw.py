"""playbooks/provision.yml's hardware roles (edgejar_swap, edgejar_memcg, edgejar_jetson) on the simulated cluster.

One --check run on the new hosts, two real runs and a --check run afterwards, shared by all tests.
"""

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
CMDLINE = "/boot/firmware/cmdline.txt"
HW_VARS: dict[str, Any] = {
    "edgejar_jetson_nvpmodel_mode": 2,
    "edgejar_jetson_disable_services": ["bluetooth", "avahi-daemon"],
}


def adhoc(sim: Sim, runner_dir: Path, name: str, pattern: str, module: str, args: str) -> dict[str, Any]:
    """host -> result of one module, as root."""
    r = ansible_runner.run(
        private_data_dir=str(private_dir(runner_dir, name)),
        host_pattern=pattern,
        module=module,
        module_args=args,
        inventory=str(sim.inventory),
        envvars=ansible_env(),
        extravars={"ansible_become": True},
        quiet=True,
    )
    assert r.status == "successful", r.stats
    return {e["event_data"]["host"]: e["event_data"]["res"] for e in r.events if e["event"] == "runner_on_ok"}


def provision(sim: Sim, runner_dir: Path, name: str, **kwargs: Any) -> Run:
    return runs.provision(sim, runner_dir, name, HW_VARS, **kwargs)


@pytest.fixture(scope="session")
def hw_runs(sim: Sim, runner_dir: Path) -> dict[str, Run]:
    """Prepare the nodes, then provision.yml: --check, two runs, --check again."""
    # A Pi's kernel command line without the cgroup options (reset even if an earlier test added them), and the
    # L4T tools that every real Jetson has (nvpmodel, jetson_clocks).
    line = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 rootwait quiet"
    adhoc(
        sim, runner_dir, "hw-prep-dir", "rpi1", "ansible.builtin.file", "path=/boot/firmware state=directory"
    )
    adhoc(
        sim,
        runner_dir,
        "hw-prep-cmdline",
        "rpi1",
        "ansible.builtin.copy",
        f"dest={CMDLINE} content='{line}\n' force=true mode=0644",
    )
    adhoc(
        sim,
        runner_dir,
        "hw-prep-l4t",
        "jetson",
        "ansible.builtin.apt",
        "name=nvidia-l4t-tools update_cache=true",
    )
    return {
        "fresh_check": provision(sim, runner_dir, "hw-fresh-check", cmdline="--check"),
        "first": provision(sim, runner_dir, "hw-1"),
        "second": provision(sim, runner_dir, "hw-2"),
        "check": provision(sim, runner_dir, "hw-check", cmdline="--check"),
    }


@pytest.fixture(scope="session")
def node_state(hw_runs: dict[str, Run], sim: Sim, runner_dir: Path) -> dict[str, str]:
    out = adhoc(
        sim,
        runner_dir,
        "hw-state",
        "edgejar_nodes",
        "ansible.builtin.shell",
        "stat -c 'swapfile %s %a %U' /swapfile; blkid -p -o value -s TYPE /swapfile; "
        "echo fstab $(grep -c '^/swapfile ' /etc/fstab); echo active $(swapon --show=NAME --noheadings | wc -l); "
        f"if [ -f {CMDLINE} ]; then echo cmdline $(cat {CMDLINE}); fi; "
        "if [ -f /etc/edgejar/cuda.env ]; then cat /etc/edgejar/cuda.env; fi; "
        "if command -v nvpmodel >/dev/null; then echo nvpmodel $(nvpmodel -q | tail -n 1); fi; "
        "if dpkg-query -W -f '${Status}\\n' cuda-toolkit-12-6 2>/dev/null; then :; fi",
    )
    return {host: res["stdout"] for host, res in out.items()}


@pytest.mark.parametrize("run", ["fresh_check", "first", "second", "check"])
def test_runs_succeed_on_all_hosts(hw_runs: dict[str, Run], run: str) -> None:
    r = hw_runs[run]
    assert r.status == "successful", (run, r.stats, r.failures())
    assert set(r.stats["ok"]) == set(HOSTS), r.stats


@pytest.mark.parametrize("run", ["second", "check"])
def test_rerun_changes_nothing(hw_runs: dict[str, Run], run: str) -> None:
    assert not any(hw_runs[run].stats.get("changed", {}).values()), hw_runs[run].stats["changed"]


def test_swap_file_made_but_not_activated_in_containers(
    hw_runs: dict[str, Run], node_state: dict[str, str]
) -> None:
    said = hw_runs["first"].results("Say why swap is not activated now")
    assert set(said) == set(HOSTS), said
    for host, res in said.items():
        assert "swapon is not permitted in a container" in res["msg"], (host, res)
    for host, out in node_state.items():
        lines = out.splitlines()
        assert f"swapfile {64 * 1024 * 1024} 600 root" in lines, (host, out)
        assert "swap" in lines, (host, out)  # mkswap'ed
        assert "fstab 1" in lines, (host, out)
        assert "active 0" in lines, (host, out)


def test_memcg_options_appended_once_on_the_pis(hw_runs: dict[str, Run], node_state: dict[str, str]) -> None:
    for host in ("rpi1", "rpi2"):
        cmdline = [line for line in node_state[host].splitlines() if line.startswith("cmdline ")]
        if host == "rpi1" or cmdline:
            assert len(cmdline) == 1, (host, node_state[host])
            words = cmdline[0].split()
            assert words.count("cgroup_enable=memory") == 1 and words.count("cgroup_memory=1") == 1, cmdline
            assert "rootwait" in words, cmdline
    # edgejar_memcg_reboot keeps its default (true), as in test_provision.py: the role must not reboot a container.
    said = hw_runs["first"].results("Say why the node is not rebooted for the new kernel command line")
    assert "rpi1" in said and "a container does not boot its own kernel" in said["rpi1"]["msg"], said
    recorded = hw_runs["first"].results(
        "Record whether the memory cgroup controller is on (edgejar_memory_cgroup)"
    )
    assert set(recorded) == {"rpi1", "rpi2"}, recorded
    assert all(r["ansible_facts"]["edgejar_memory_cgroup"] is True for r in recorded.values()), recorded
    for host in ("jetson", "host"):
        assert not any(line.startswith("cmdline ") for line in node_state[host].splitlines()), node_state[
            host
        ]


def test_jetson_cuda_env_and_power_mode(hw_runs: dict[str, Run], node_state: dict[str, str]) -> None:
    lines = node_state["jetson"].splitlines()
    assert "install ok installed" in lines, lines
    assert "PATH=/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in lines, (
        lines
    )
    assert "CUDA_HOME=/usr/local/cuda" in lines, lines
    assert "nvpmodel 2" in lines, lines
    reported = hw_runs["first"].results("Report the L4T release")
    assert set(reported) == {"jetson"}, reported
    assert "R36.4.0" in reported["jetson"]["msg"], reported
    for host in ("rpi1", "rpi2", "host"):
        assert not any(line.startswith("PATH=") for line in node_state[host].splitlines()), node_state[host]


def test_swap_file_resized_then_removed_then_restored(
    hw_runs: dict[str, Run], sim: Sim, runner_dir: Path
) -> None:
    """edgejar_swap's state switch on the plain backend: another size remakes the file (and changes nothing
    the second time), state absent removes the file and its fstab line, and the default comes back."""

    def swap(name: str, cmdline: str = "--tags swap", **over: Any) -> Run:
        r = runs.provision(sim, runner_dir, name, {**HW_VARS, **over}, cmdline=cmdline)
        assert r.status == "successful", (name, r.stats, r.failures())
        return r

    def state(name: str) -> dict[str, str]:
        out = adhoc(
            sim, runner_dir, name, "edgejar_nodes", "ansible.builtin.shell",
            "stat -c 'swapfile %s' /swapfile 2>/dev/null || echo no swapfile; "
            "blkid -p -o value -s TYPE /swapfile 2>/dev/null; echo fstab $(grep -c '^/swapfile ' /etc/fstab)",
        )  # fmt: skip
        return {host: res["stdout"] for host, res in out.items()}

    swap("hw-swap-32", edgejar_swap_size_mb=32)
    for host, out in state("hw-swap-32-state").items():
        assert out.splitlines() == [f"swapfile {32 * 1024 * 1024}", "swap", "fstab 1"], (host, out)
    again = swap("hw-swap-32-again", edgejar_swap_size_mb=32)
    assert not any(again.stats.get("changed", {}).values()), again.stats["changed"]

    checked = swap("hw-swap-absent-check", edgejar_swap_state="absent", cmdline="--tags swap --check")
    assert set(checked.stats.get("changed", {})) == set(HOSTS), checked.stats
    assert all("swapfile" in out.splitlines()[0] for out in state("hw-swap-check-state").values())
    swap("hw-swap-absent", edgejar_swap_state="absent")
    for host, out in state("hw-swap-absent-state").items():
        assert out.splitlines() == ["no swapfile", "fstab 0"], (host, out)
    again = swap("hw-swap-absent-again", edgejar_swap_state="absent")
    assert not any(again.stats.get("changed", {}).values()), again.stats["changed"]

    swap("hw-swap-64", edgejar_swap_size_mb=64)  # as the other tests left it
    for host, out in state("hw-swap-64-state").items():
        assert out.splitlines() == [f"swapfile {64 * 1024 * 1024}", "swap", "fstab 1"], (host, out)
