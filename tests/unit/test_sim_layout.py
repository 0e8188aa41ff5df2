"""The cgroup layout the sim detects, per kind of machine, and the commands it chooses for each.

Fixtures (tests/unit/fixtures/cgroup/<machine>/): /proc/self/cgroup, the cgroup lines of
/proc/self/mountinfo and the cgroup2 root's cgroup.controllers, recorded on: `hybrid-ci` this CI machine
kind (PID 1 not systemd, v1 controllers, empty cgroup2 at /sys/fs/cgroup/unified), `debian12-v2` the
standard Debian 12 guest of the CI guest stage (systemd PID 1, unified v2), `legacy-v1` a systemd
machine booted with only v1 hierarchies (CentOS 7 / Debian 10 with systemd.legacy_systemd_cgroup_controller).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import EdgejarError
from runner.sim import launch
from runner.sim.cgroups import HostCgroups, parse_hierarchies
from runner.sim.layout import OWN_V1, SYSTEMD_V2, Layout, classify

FIXTURES = Path(__file__).parent / "fixtures" / "cgroup"


def layout_of(machine: str, systemd_pid1: bool, controllers: str | None = None) -> Layout:
    d = FIXTURES / machine
    if controllers is None:
        controllers = (d / "cgroup.controllers").read_text()
    return classify((d / "proc_cgroup").read_text(), (d / "mountinfo").read_text(), controllers, systemd_pid1)


def test_hybrid_ci_machine_uses_its_own_v1_cgroups() -> None:
    found = layout_of("hybrid-ci", systemd_pid1=False)
    assert (found.name, found.way, found.v1_memory) == ("hybrid", OWN_V1, True)
    assert found.v2_mount == Path("/sys/fs/cgroup/unified")
    assert found.require() == OWN_V1


def test_standard_debian12_uses_a_systemd_unit_per_host() -> None:
    found = layout_of("debian12-v2", systemd_pid1=True)
    assert (found.name, found.way, found.v2_memory) == ("unified v2", SYSTEMD_V2, True)
    assert found.v2_mount == Path("/sys/fs/cgroup")


def test_legacy_v1_machine_uses_its_own_v1_cgroups() -> None:
    found = layout_of("legacy-v1", systemd_pid1=True)
    assert (found.name, found.way, found.v2_mount) == ("legacy v1", OWN_V1, None)


def test_v2_without_systemd_is_refused_naming_what_is_missing() -> None:
    found = layout_of("debian12-v2", systemd_pid1=False)
    assert found.way is None
    with pytest.raises(EdgejarError, match="without systemd as PID 1.*systemd.unified_cgroup_hierarchy=0"):
        found.require()


def test_v2_without_the_memory_controller_is_refused() -> None:
    found = layout_of("debian12-v2", systemd_pid1=True, controllers="cpuset cpu io pids")
    assert found.way is None
    with pytest.raises(EdgejarError, match="memory controller.*cgroup_enable=memory"):
        found.require()


def test_no_cgroups_at_all_is_refused() -> None:
    found = classify("", "", None, systemd_pid1=True)
    assert found.way is None and "no memory cgroup controller" in found.missing


def test_own_v1_cgroups_on_the_hybrid_machine() -> None:
    d = FIXTURES / "hybrid-ci"
    found = parse_hierarchies((d / "proc_cgroup").read_text(), (d / "mountinfo").read_text())
    mounts = {str(h.mount) for h in found}
    assert {"/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/systemd"} <= mounts


NSPAWN = launch.nspawn_command(
    Path("/var/tmp/s/hosts/rpi1/merged"), "ej-rpi1", "rpi1", Path("/run/netns/ej-rpi1"), None
)


def test_nspawn_stays_in_the_cgroup_or_unit_it_is_started_in() -> None:
    assert NSPAWN[:3] == ["systemd-nspawn", "--quiet", "--boot"]
    assert "--keep-unit" in NSPAWN and "--register=no" in NSPAWN
    assert "--network-namespace-path=/run/netns/ej-rpi1" in NSPAWN
    assert not any(a.startswith("--bind-ro") for a in NSPAWN)


def test_systemd_v2_host_is_a_transient_service_with_its_ceiling_and_delegation() -> None:
    unit = launch.unit_name("ej-rpi1")
    cmd = launch.systemd_run_command(
        unit, 1024 * 1024 * 1024, Path("/var/tmp/s/hosts/rpi1/console.log"), NSPAWN
    )
    assert cmd[:2] == ["systemd-run", "--unit=ej-rpi1.service"]
    props = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-p"]
    assert "MemoryMax=1073741824" in props
    assert "Delegate=yes" in props
    assert "StandardOutput=append:/var/tmp/s/hosts/rpi1/console.log" in props
    assert "--collect" in cmd  # a failed host's unit does not linger after stop
    assert cmd[cmd.index("--") + 1 :] == NSPAWN
    assert launch.stop_command(unit) == ["systemctl", "stop", "ej-rpi1.service"]


def test_cgroups_per_layout_round_trip_through_the_host_record() -> None:
    v2 = HostCgroups.for_unit(Path("/sys/fs/cgroup"), "ej-rpi1.service")
    assert v2.dirs == (Path("/sys/fs/cgroup/system.slice/ej-rpi1.service"),)
    assert HostCgroups.from_record(v2.to_record()) == v2
    v1 = HostCgroups((Path("/sys/fs/cgroup/memory/x/ej-rpi1"),), Path("/sys/fs/cgroup/memory/x/ej-rpi1"))
    assert HostCgroups.from_record(v1.to_record()) == v1 and v1.unit is None


def test_memory_usage_reads_v2_files_for_a_unit(tmp_path: Path) -> None:
    (tmp_path / "memory.current").write_text("1048576\n")
    (tmp_path / "memory.max").write_text("2097152\n")
    assert HostCgroups((tmp_path,), tmp_path, "ej-a.service").memory_usage() == (1048576, 2097152)
    (tmp_path / "memory.usage_in_bytes").write_text("5\n")
    (tmp_path / "memory.limit_in_bytes").write_text("9\n")
    assert HostCgroups((tmp_path,), tmp_path).memory_usage() == (5, 9)
