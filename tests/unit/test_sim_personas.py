"""Hardware personas: the files facts code reads, and what Ansible's own fact code makes of them."""

from __future__ import annotations

import re

import pytest
from ansible.module_utils.facts.hardware import linux as ansible_linux

from runner.errors import InputError
from runner.sim.personas import (
    FACT_FILE,
    PERSONAS,
    Persona,
    cpuinfo,
    devicetree_files,
    meminfo,
    persona,
    rootfs_files,
)


def ansible_cpu_facts(text: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Ansible's Linux CPU fact parser on a given /proc/cpuinfo (x86_64 userland, as in the sim)."""
    monkeypatch.setattr(ansible_linux, "get_file_lines", lambda path, *a, **k: text.splitlines())
    monkeypatch.setattr(ansible_linux.os, "access", lambda *a, **k: True)
    monkeypatch.setattr(ansible_linux.os.path, "exists", lambda *a, **k: False)
    hw = ansible_linux.LinuxHardware.__new__(ansible_linux.LinuxHardware)
    return hw.get_cpu_facts(collected_facts={"ansible_architecture": "x86_64"})


@pytest.mark.parametrize("kind", sorted(PERSONAS))
def test_ansible_counts_the_board_cores(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = PERSONAS[kind]
    facts = ansible_cpu_facts(cpuinfo(p), monkeypatch)
    assert facts["processor_vcpus"] == p.cores


@pytest.mark.parametrize("kind", sorted(PERSONAS))
def test_cpuinfo_has_one_processor_block_per_core(kind: str) -> None:
    p = PERSONAS[kind]
    assert len(re.findall(r"^processor\t: \d+$", cpuinfo(p), re.M)) == p.cores


def test_pi_cpuinfo_names_the_model() -> None:
    assert "Model\t\t: Raspberry Pi 5 Model B Rev 1.0" in cpuinfo(PERSONAS["rpi5"])


@pytest.mark.parametrize("kind", sorted(PERSONAS))
def test_meminfo_totals(kind: str) -> None:
    p = PERSONAS[kind]
    fields = {line.split(":")[0]: int(line.split()[1]) for line in meminfo(p).splitlines()}
    assert fields["MemTotal"] == p.mem_total_kb
    assert fields["MemAvailable"] <= fields["MemTotal"] and fields["SwapTotal"] == 0


def test_device_tree_strings_are_nul_terminated() -> None:
    jetson = devicetree_files(PERSONAS["jetson"])
    assert jetson["devicetree/base/model"] == b"NVIDIA Jetson AGX Orin Developer Kit\0"
    assert jetson["devicetree/base/compatible"].split(b"\0")[:-1][-1] == b"nvidia,tegra234"
    assert devicetree_files(PERSONAS["rpi5"])["devicetree/base/model"] == b"Raspberry Pi 5 Model B Rev 1.0\0"
    assert devicetree_files(PERSONAS["x86"]) == {}


def test_rootfs_files_per_kind() -> None:
    jetson = rootfs_files(PERSONAS["jetson"], "jetson")
    assert jetson["/etc/nv_tegra_release"].startswith("# R36 (release), REVISION: 4.0")
    pi = rootfs_files(PERSONAS["rpi5"], "rpi1")
    assert "/etc/nv_tegra_release" not in pi and "/boot/firmware/cmdline.txt" in pi
    assert '"simulated": true' in rootfs_files(PERSONAS["x86"], "host")[FACT_FILE]


def test_memory_matches_group_vars_profiles() -> None:
    """The persona's MemTotal is within 10 % below the profile's node_ram_gb (as on the real boards)."""
    import yaml

    from tests.conftest import ROOT

    for p in PERSONAS.values():
        profile = yaml.safe_load((ROOT / "group_vars" / f"{p.group}.yml").read_text())
        ram_mb = profile["node_ram_gb"] * 1024
        assert 0.9 * ram_mb <= p.mem_total_kb / 1024 <= ram_mb, p.kind
        assert profile["node_cpu_cores"] == p.cores, p.kind


def test_kind_lookup() -> None:
    assert persona("Jetson_Orin") is PERSONAS["jetson"]
    assert isinstance(persona("pi5"), Persona)
    with pytest.raises(InputError, match="known kinds are jetson, rpi5, x86"):
        persona("nano")
