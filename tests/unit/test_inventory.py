import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner import inventory
from runner.errors import InputError
from tests.conftest import ROOT


def test_ansible_reads_root_group_vars_for_the_root_inventory_file():
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(ROOT / "inventory"), "--list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    hostvars = json.loads(out.stdout)["_meta"]["hostvars"]
    assert hostvars["jetson"]["node_unified_memory"] is True
    assert hostvars["rpi1"]["node_ram_gb"] == 8
    assert hostvars["host"]["node_max_instances"] == 2
    assert "group and host" not in out.stderr  # no group shares a host's name


def test_load_example_cluster():
    cluster = inventory.load(ROOT / "inventory")
    by = cluster.by_name()
    assert set(by) == {"jetson", "rpi1", "rpi2", "host"}
    jet = by["jetson"].node
    assert (jet.ram_mib, jet.reserved_mib, jet.gpu, jet.unified, jet.max_instances) == (
        65536,
        8192,
        True,
        True,
        4,
    )
    assert by["rpi1"].address == "192.168.1.101"
    assert by["rpi1"].node.ram_capacity == 6656
    assert cluster.peer_ports == range(9000, 9101)
    assert "tiny" in cluster.models


def test_host_vars_override_group_vars_with_ansible_precedence(project: Path):
    (project / "host_vars" / "rpi2").mkdir(parents=True)
    (project / "host_vars" / "rpi2" / "main.yml").write_text("---\nnode_maintenance: true\nnode_ram_gb: 16\n")
    by = inventory.load(project / "inventory").by_name()
    assert by["rpi2"].node.maintenance is True
    assert by["rpi2"].node.ram_mib == 16 * 1024
    assert by["rpi1"].node.ram_mib == 8 * 1024


def test_templated_values_are_resolved(project: Path):
    (project / "host_vars" / "host").mkdir(parents=True)
    (project / "host_vars" / "host" / "main.yml").write_text('---\nnode_ram_gb: "{{ 16 * 4 }}"\n')
    assert inventory.load(project / "inventory").by_name()["host"].node.ram_mib == 64 * 1024


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("node_ram_gb: eight", "host rpi1: node_ram_gb must be a number"),
        ("node_ram_gb: -1", "host rpi1: node_ram_gb must not be negative"),
        ("node_gpu: maybe", "host rpi1: node_gpu must be true or false"),
        ("node_tags: arm64", "host rpi1: node_tags must be a list"),
        ("node_priority: high", "host rpi1: node_priority must be a whole number"),
        ("node_max_instances: 1.5", "host rpi1: node_max_instances must be a whole number"),
        ("node_gpu: true\nnode_gpu_memory_gb: 0", "host rpi1: node_gpu is true but node_gpu_memory_gb is 0"),
        ("node_reserved_ram_gb: 9", "host rpi1: node_reserved_ram_gb (9) exceeds node_ram_gb (8)"),
    ],
)
def test_bad_hardware_variables_name_host_and_field(project: Path, text: str, needle: str):
    (project / "host_vars" / "rpi1").mkdir(parents=True)
    (project / "host_vars" / "rpi1" / "main.yml").write_text(f"---\n{text}\n")
    with pytest.raises(InputError, match=re.escape(needle)):
        inventory.load(project / "inventory")


def test_missing_and_unparsable_inventory(tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        inventory.load(tmp_path / "nope")
    bad = tmp_path / "inv.yml"
    bad.write_text("all: {hosts: [\n")
    with pytest.raises(InputError, match=r"inv\.yml: Ansible could not parse it"):
        inventory.load(bad)
