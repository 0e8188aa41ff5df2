"""The simulated cluster's inventory: same groups and group_vars as the real one, sim connections."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import yaml

from runner import inventory as cluster_inventory
from runner.sim.config import build_config
from runner.sim.inventory import inventory_data, render, write_inventory
from runner.sim.state import StateDir
from tests.conftest import ROOT


def real_groups() -> dict[str, list[str]]:
    data = yaml.safe_load((ROOT / "inventory").read_text())
    groups = data["all"]["children"]["edgejar_nodes"]["children"]
    return {g: sorted(v["hosts"]) for g, v in groups.items()}


def test_default_sim_has_the_real_inventory_groups_and_hosts(tmp_path: Path) -> None:
    data = inventory_data(build_config(), StateDir(tmp_path))
    groups = data["all"]["children"]["edgejar_nodes"]["children"]
    assert {g: sorted(v["hosts"]) for g, v in groups.items()} == real_groups()


def test_connection_variables(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    data = inventory_data(build_config(), state)
    host = data["all"]["children"]["edgejar_nodes"]["children"]["x86"]["hosts"]["host"]
    assert host["ansible_host"] == "10.231.42.14"
    assert host["ansible_connection"] == "ssh"  # the real inventory's `host` is local; the sim's is not
    assert host["ansible_user"] == "edgejar"
    assert host["ansible_ssh_private_key_file"] == str(tmp_path / "ssh" / "id_ed25519")
    args = host["ansible_ssh_common_args"]
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in args
    assert "StrictHostKeyChecking=yes" in args
    text = render(build_config(), state)
    assert "StrictHostKeyChecking=no" not in text and "/dev/null" not in text


def test_only_groups_with_hosts(tmp_path: Path) -> None:
    data = inventory_data(build_config(hosts="a:rpi5,b:rpi5"), StateDir(tmp_path))
    assert list(data["all"]["children"]["edgejar_nodes"]["children"]) == ["rpi5"]


def test_written_inventory_reads_group_vars_through_ansible(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "sim")
    state.root.mkdir()
    path = write_inventory(build_config(), state)
    assert (state.root / "group_vars").resolve() == (ROOT / "group_vars").resolve()
    assert (state.root / "host_vars").is_dir()
    # Written twice: the symlink is replaced, not an error.
    write_inventory(build_config(), state)
    cluster = cluster_inventory.load(path)
    kinds = {cn.node.name: cn.kind for cn in cluster.nodes}
    assert kinds == {"jetson": "jetson", "rpi1": "rpi", "rpi2": "rpi", "host": "x86"}
    assert {cn.node.name: cn.address for cn in cluster.nodes}["rpi2"] == "10.231.42.13"
    assert cluster.host_vars_dir == state.root / "host_vars"


def test_sim_hosts_carry_what_they_need_differently(tmp_path: Path) -> None:
    """provision.yml runs on the sim inventory with no extra variables: the hosts' differences are in it."""
    data = inventory_data(build_config(), StateDir(tmp_path))
    defaults = yaml.safe_load((ROOT / "roles/edgejar_base/defaults/main.yml").read_text())
    for group in data["all"]["children"]["edgejar_nodes"]["children"].values():
        for host in group["hosts"].values():
            assert host["edgejar_base_packages"] == [
                p for p in defaults["edgejar_base_packages"] if p != "build-essential"
            ]
            assert host["edgejar_swap_size_mb"] == 64
            assert host["edgejar_llama_flavour"] == "cpu"


def test_sim_host_vars_win_over_group_vars_through_ansible(tmp_path: Path) -> None:
    """Inventory host variables rank above group_vars/ in Ansible's precedence: ask Ansible itself."""
    state = StateDir(tmp_path / "sim")
    state.root.mkdir()
    path = write_inventory(build_config(), state)
    exe = shutil.which("ansible-inventory")
    assert exe is not None
    out = subprocess.run([exe, "-i", str(path), "--host", "rpi1"], capture_output=True, text=True, check=True)
    hostvars = json.loads(out.stdout)
    assert "build-essential" not in hostvars["edgejar_base_packages"]
    assert hostvars["edgejar_swap_size_mb"] == 64
    assert hostvars["node_ram_gb"] == 8  # group_vars/rpi5.yml still read


def test_an_arm64_pi_keeps_its_board_flavour_the_others_build_for_the_cpu() -> None:
    from runner.sim.config import build_config
    from runner.sim.inventory import host_vars

    cfg = build_config(hosts="a:rpi5,b:jetson,c:x86")
    arm = [dataclasses.replace(h, arch="arm64") if h.kind != "x86" else h for h in cfg.hosts]
    assert "edgejar_llama_flavour" not in host_vars(arm[0])  # a76: cross-built by the controller
    assert host_vars(arm[1])["edgejar_llama_flavour"] == "cpu"  # the sim Jetson's nvcc is a stub
    assert all(host_vars(h)["edgejar_llama_flavour"] == "cpu" for h in cfg.hosts)
