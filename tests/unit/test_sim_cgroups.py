"""Which cgroup hierarchies a simulated host gets its own cgroup in."""

from __future__ import annotations

from pathlib import Path

from runner.sim.cgroups import HostCgroups, parse_hierarchies

# /proc/self/cgroup and the cgroup lines of /proc/self/mountinfo on the CI machines (hybrid v1).
PROC_CGROUP = """\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""
MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_hybrid_layout() -> None:
    found = {h.mount: (sorted(h.controllers), h.own_path) for h in parse_hierarchies(PROC_CGROUP, MOUNTINFO)}
    assert found == {
        Path("/sys/fs/cgroup/systemd"): (["name=systemd"], "/"),
        Path("/sys/fs/cgroup/pids"): (["pids"], "/"),
        Path("/sys/fs/cgroup/memory"): (["memory"], "/process_api/abc"),
        Path("/sys/fs/cgroup/cpuacct"): (["cpuacct"], "/"),
        Path("/sys/fs/cgroup/cpu"): (["cpu"], "/"),
        Path("/sys/fs/cgroup/unified"): ([], "/"),
    }


def test_comounted_controllers() -> None:
    proc = "4:memory:/a\n2:cpu,cpuacct:/b\n1:name=systemd:/c\n0::/c\n"
    mounts = (
        "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "2 0 0:2 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "3 0 0:3 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
    )
    found = {str(h.mount): h.own_path for h in parse_hierarchies(proc, mounts)}
    # No cgroup2 mount here, so the 0:: line is ignored.
    assert found == {
        "/sys/fs/cgroup/memory": "/a",
        "/sys/fs/cgroup/cpu,cpuacct": "/b",
        "/sys/fs/cgroup/systemd": "/c",
    }


def test_host_cgroups_record_round_trip() -> None:
    cg = HostCgroups((Path("/sys/fs/cgroup/memory/x/ej-a"), Path("/sys/fs/cgroup/pids/ej-a")), None)
    cg = HostCgroups(cg.dirs, cg.dirs[0])
    assert HostCgroups.from_record(cg.to_record()) == cg
    assert HostCgroups.from_record({}).dirs == ()
