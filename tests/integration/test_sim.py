"""The simulated cluster end to end: a real playbook over real SSH against all four hosts."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import ansible_runner
import pytest
import yaml

from runner.sim.personas import PERSONAS
from tests.integration.conftest import PLAYBOOKS, Sim, ansible_env
from tests.integration.runs import Run

pytestmark = pytest.mark.integration

HOSTS = {"jetson": "jetson", "rpi1": "rpi5", "rpi2": "rpi5", "host": "x86"}


def run_playbook(sim: Sim, runner_dir: Path, playbook: str) -> Run:
    r = ansible_runner.run(
        private_data_dir=str(runner_dir),
        project_dir=str(PLAYBOOKS),
        playbook=playbook,
        inventory=str(sim.inventory),
        envvars=ansible_env(),
        quiet=True,
    )
    return Run.of(r)


@pytest.fixture(scope="session")
def smoke(sim: Sim, runner_dir: Path) -> tuple[Run, Run]:
    """The smoke playbook, run twice."""
    first = run_playbook(sim, runner_dir, "sim_smoke.yml")
    second = run_playbook(sim, runner_dir, "sim_smoke.yml")
    return first, second


def test_smoke_playbook_runs_on_all_hosts(smoke: tuple[Run, Run]) -> None:
    first, _ = smoke
    assert first.status == "successful", first.stats
    assert set(first.stats["ok"]) == set(HOSTS)
    assert not first.stats.get("failures") and not first.stats.get("dark"), first.stats


def test_second_run_changes_nothing(smoke: tuple[Run, Run]) -> None:
    _, second = smoke
    assert second.status == "successful", second.stats
    assert set(second.stats["ok"]) == set(HOSTS)
    assert not any(second.stats.get("changed", {}).values()), second.stats["changed"]


def test_each_host_shows_its_persona(smoke: tuple[Run, Run]) -> None:
    reported = smoke[0].results("Report the persona")
    assert set(reported) == set(HOSTS)
    for host, kind in HOSTS.items():
        p = PERSONAS[kind]
        seen = reported[host]["smoke_persona"]
        model = base64.b64decode(seen["model_b64"]) if seen["model_b64"] else b""
        assert model == ((p.model.encode() + b"\0") if p.model else b""), host
        assert bool(seen["nv_tegra_release"]) == (kind == "jetson"), host
        assert int(seen["memtotal_mb"]) == p.mem_total_kb // 1024, host
        assert int(seen["vcpus"]) == p.cores, host
        assert seen["simulated"] in (True, "True"), host


def test_memory_max_is_enforced_by_an_oom_kill(smoke: tuple[Run, Run]) -> None:
    for run in smoke:
        ended = run.results("Report how the memory hog ended")
        assert set(ended) == set(HOSTS)
        for host, res in ended.items():
            msg = res["msg"]
            assert msg["memory_max"] == "67108864", host
            # cgroup v1 hosts report a SIGKILL (9/KILL); cgroup v2 ones report Result=oom-kill.
            assert msg["result"] == "oom-kill" or (
                msg["result"] == "signal" and msg["exec_main_status"] == "9"
            ), (
                host,
                msg,
            )


def test_packages_install_from_the_local_repo(smoke: tuple[Run, Run]) -> None:
    first, _ = smoke
    assert set(first.results("Install a real package from the local repository")) == set(HOSTS)
    assert set(first.results("Install the JetPack stand-in on Jetsons")) == {"jetson"}
    assert set(first.results("Install the Pi firmware tools on Pis")) == {"rpi1", "rpi2"}
    nvcc = first.results("Ask nvcc for its version on Jetsons")
    assert "release 12.6" in nvcc["jetson"]["stdout"]


def test_inventory_uses_the_real_groups_and_group_vars(sim: Sim) -> None:
    data = yaml.safe_load(sim.inventory.read_text())
    groups = data["all"]["children"]["edgejar_nodes"]["children"]
    assert {g: sorted(v["hosts"]) for g, v in groups.items()} == {
        "jetson_orin": ["jetson"],
        "rpi5": ["rpi1", "rpi2"],
        "x86": ["host"],
    }
    assert (sim.inventory.parent / "group_vars").resolve() == (
        Path(__file__).parents[2] / "group_vars"
    ).resolve()
    assert (sim.inventory.parent / "host_vars").is_dir()


def test_host_keys_are_per_host_and_checked(sim: Sim, tmp_path: Path) -> None:
    known = (sim.state_dir / "known_hosts").read_text().split("\n")
    keys = [line.split()[2] for line in known if line.strip()]
    assert len(keys) == len(HOSTS) and len(set(keys)) == len(HOSTS)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    address = yaml.safe_load(sim.inventory.read_text())["all"]["children"]["edgejar_nodes"]["children"][
        "rpi5"
    ]["hosts"]["rpi1"]["ansible_host"]
    ssh = [
        "ssh",
        "-i",
        str(sim.state_dir / "ssh" / "id_ed25519"),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ControlPath=none",
    ]
    refused = subprocess.run(
        [*ssh, "-o", f"UserKnownHostsFile={empty}", f"edgejar@{address}", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode != 0 and "Host key verification failed" in refused.stderr
    routes = subprocess.run(
        [
            *ssh,
            "-o",
            f"UserKnownHostsFile={sim.state_dir / 'known_hosts'}",
            f"edgejar@{address}",
            "ip",
            "route",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "default" not in routes.stdout  # no way out of the sim network


def test_status_and_inventory_commands(sim: Sim) -> None:
    inv = sim.cli("inventory")
    assert inv.returncode == 0 and inv.stdout == f"{sim.inventory}\n"
    status = sim.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for host in HOSTS:
        line = next(line for line in status.stdout.splitlines() if line.startswith(f"{host} "))
        assert line.rstrip().endswith("ok"), line


def test_runs_through_ansible_runner_check_host_keys(sim: Sim, tmp_path: Path) -> None:
    """ansible-runner turns host-key checking off unless told; edgejar's bridge tells it not to."""
    from runner import ansible_bridge

    hosts = yaml.safe_load(sim.inventory.read_text())["all"]["children"]["edgejar_nodes"]["children"]
    rpi1 = dict(hosts["rpi5"]["hosts"]["rpi1"])
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    rpi1["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={empty} -o StrictHostKeyChecking=yes"
    rpi1["ansible_control_path_dir"] = str(tmp_path / "cp")  # no master connection to reuse
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"edgejar_nodes": {"hosts": {"rpi1": rpi1}}}}}))
    result = ansible_bridge.run_playbook(
        "stop.yml", inventory, extravars={"edgejar_stop_all": True}, cmdline=["--check"]
    )
    assert set(result.hosts) == {"rpi1"}, result.hosts
    assert result.hosts["rpi1"].unreachable, result.hosts
    assert "Host key verification failed" in result.hosts["rpi1"].reason, result.hosts
    assert empty.read_text() == ""  # nothing was trusted on first use
