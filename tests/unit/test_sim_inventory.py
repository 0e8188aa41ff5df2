"""The simulated cluster's inventory: same groups and group_vars as the real one, sim connections."""

from __future__ import annotations

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
