"""Sim configuration: host specs, YAML config, validation, round trip through the state file."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InputError
from runner.sim.config import DEFAULT_SUBNET, SimConfig, build_config, parse_hosts_spec


def test_defaults_match_the_example_inventory() -> None:
    cfg = build_config()
    assert [(h.name, h.kind) for h in cfg.hosts] == [
        ("jetson", "jetson"),
        ("rpi1", "rpi5"),
        ("rpi2", "rpi5"),
        ("host", "x86"),
    ]
    assert cfg.subnet == DEFAULT_SUBNET
    assert [h.address for h in cfg.hosts] == ["10.231.42.11", "10.231.42.12", "10.231.42.13", "10.231.42.14"]
    assert cfg.gateway == "10.231.42.1"
    assert cfg.repo_url == "http://10.231.42.1:8080"
    assert {h.name: h.memory_mib for h in cfg.hosts} == {
        "jetson": 2048,
        "rpi1": 1024,
        "rpi2": 1024,
        "host": 1536,
    }


def test_hosts_flag_with_aliases_and_memory() -> None:
    cfg = build_config(hosts="orin:jetson-orin:3072, pi:RPI,box:amd64", subnet="10.99.0.0/24", memory_mib=512)
    assert [(h.name, h.kind, h.memory_mib) for h in cfg.hosts] == [
        ("orin", "jetson", 3072),
        ("pi", "rpi5", 512),
        ("box", "x86", 512),
    ]
    assert cfg.hosts[0].address == "10.99.0.11"
    assert cfg.netns(cfg.hosts[0]) == "ej-orin" and cfg.veth(cfg.hosts[0]) == "ejv-orin"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("jetson", "NAME:KIND"),
        ("a:jetson,a:rpi5", "given twice"),
        ("a:toaster", "unknown host kind 'toaster'"),
        ("Bad:x86", "host name 'Bad'"),
        ("averyveryverylongname:x86", "too long"),
        ("a:x86:lots", "whole number of MiB"),
        ("a:x86:64", "too small"),
        (",", "no hosts"),
    ],
)
def test_bad_host_specs(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_config(hosts=spec)


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("10.231.42.0/33", "not an IPv4 network"),
        ("10.231.42.5/24", "not an IPv4 network"),
        ("8.8.8.0/24", "not a private range"),
        ("10.0.0.0/30", "too small"),
    ],
)
def test_bad_subnets(subnet: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_config(subnet=subnet)


def test_subnet_must_hold_all_hosts() -> None:
    spec = ",".join(f"h{i}:x86" for i in range(6))
    with pytest.raises(InputError, match="room for 4 hosts"):
        build_config(hosts=spec, subnet="10.1.2.0/28")


def test_yaml_config(tmp_path: Path) -> None:
    f = tmp_path / "sim.yml"
    f.write_text(
        "subnet: 10.231.50.0/24\nbridge: simbr1\nprefix: t1\nrepo_port: 9999\nuser: ops\nmemory_mib: 700\n"
        "hosts:\n  - {name: a, kind: jetson}\n  - {name: b, kind: x86, memory_mib: 900}\n"
    )
    cfg = build_config(config_file=f)
    assert (cfg.subnet, cfg.bridge, cfg.prefix, cfg.repo_port, cfg.user) == (
        "10.231.50.0/24",
        "simbr1",
        "t1",
        9999,
        "ops",
    )
    assert [(h.name, h.memory_mib) for h in cfg.hosts] == [("a", 700), ("b", 900)]
    # Flags win over the file.
    assert build_config(config_file=f, hosts="z:rpi5").hosts[0].name == "z"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hosts: []\n", "non-empty list"),
        ("colour: red\n", "unknown keys"),
        ("hosts:\n  - {name: a}\n", "needs `name` and `kind`"),
        ("hosts:\n  - {name: a, kind: x86, gpu: 1}\n", "unknown keys"),
        ("- a\n", "mapping at the top level"),
        ("user: root\n", "unprivileged"),
        ("repo_port: 70000\n", "not a TCP port"),
        ("prefix: TOO-LONG-PREFIX\n", "prefix"),
        ("bridge: 'a b'\n", "bridge name"),
        ("subnet: [\n", "not valid YAML"),
        ("backend: kvm\n", "backend must be one of nspawn, vm"),
        ("hosts:\n  - {name: a, kind: x86, backend: qemu}\n", r"hosts\[0\]: backend must be one of"),
        ("hosts:\n  - {name: a, kind: rpi5, arch: armhf}\n", r"hosts\[0\]: arch must be one of amd64, arm64"),
        (
            "hosts:\n  - {name: a, kind: x86, arch: arm64}\n",
            "host 'a': arch arm64 is for Pi and Jetson hosts",
        ),
        ("hosts:\n  - {name: a, kind: rpi5, arch: arm64, backend: vm}\n", "arm64 hosts are containers"),
    ],
)
def test_bad_yaml_config(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "sim.yml"
    f.write_text(text)
    with pytest.raises(InputError, match=message):
        build_config(config_file=f)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        build_config(config_file=tmp_path / "nope.yml")


def test_round_trip_through_the_state_file() -> None:
    cfg = build_config(hosts="a:jetson:900,b:x86")
    assert SimConfig.from_dict(cfg.to_dict()) == cfg


def test_parse_hosts_spec_keeps_order() -> None:
    assert [r.name for r in parse_hosts_spec("c:x86,a:x86,b:x86")] == ["c", "a", "b"]


def test_backend_per_host_from_the_file_and_for_all_from_the_flag(tmp_path: Path) -> None:
    f = tmp_path / "sim.yml"
    f.write_text("hosts:\n  - {name: a, kind: rpi5, backend: vm}\n  - {name: b, kind: x86}\n")
    cfg = build_config(config_file=f)
    assert [(h.name, h.backend) for h in cfg.hosts] == [("a", "vm"), ("b", "nspawn")]
    assert cfg.tap(cfg.hosts[0]) == "ejt-a"
    assert SimConfig.from_dict(cfg.to_dict()) == cfg
    assert "backend" not in cfg.to_dict()["hosts"][1]  # state files of nspawn-only clusters unchanged
    assert {h.backend for h in build_config(config_file=f, backend="nspawn").hosts} == {"nspawn"}
    f.write_text(
        "backend: vm\nhosts:\n  - {name: a, kind: rpi5}\n  - {name: b, kind: x86, backend: nspawn}\n"
    )
    assert [h.backend for h in build_config(config_file=f).hosts] == ["vm", "nspawn"]
    with pytest.raises(InputError, match="--backend: backend must be one of"):
        build_config(hosts="a:x86", backend="docker")


def test_arch_per_host(tmp_path: Path) -> None:
    f = tmp_path / "sim.yml"
    f.write_text("hosts:\n  - {name: pi, kind: rpi5, arch: arm64}\n  - {name: h, kind: x86}\n")
    cfg = build_config(config_file=f)
    assert [(h.name, h.arch) for h in cfg.hosts] == [("pi", "arm64"), ("h", "")]
    assert SimConfig.from_dict(cfg.to_dict()) == cfg
    assert "arch" not in cfg.to_dict()["hosts"][1]  # state files of single-architecture clusters unchanged
