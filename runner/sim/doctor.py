"""`python -m runner sim check` (`make doctor`): what this machine has for the simulated cluster, what is
missing, and how to get it. The same findings decide whether the integration tests skip, and why.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from runner.sim import layout, preflight


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    required: bool = True  # False: only some stages need it (the CI guest)


def findings() -> list[Finding]:
    found = [
        Finding("Linux", sys.platform == "linux", sys.platform),
        Finding(
            "Python >= 3.11",
            sys.version_info >= (3, 11),
            f"{sys.version.split()[0]} ({sys.executable})",
        ),
        Finding(
            "root",
            os.geteuid() == 0,
            "yes"
            if os.geteuid() == 0
            else "needed for namespaces, mounts, cgroups, systemd-nspawn: use sudo",
        ),
    ]
    found.append(_tools("tools", preflight.UP_TOOLS, "all present"))
    found.append(_kernel())
    machine = layout.detect()
    found.append(Finding("cgroup layout", machine.way is not None, machine.describe()))
    if machine.way == layout.SYSTEMD_V2:
        found.append(_tools("systemd tools", preflight.SYSTEMD_TOOLS, "systemd-run, systemctl"))
    found += _guest()
    found.append(_arm64())
    return found


def _arm64() -> Finding:
    """arm64 hosts (`arch: arm64`) and the controller's cross build of their wheels: optional."""
    missing = preflight.missing_tools(preflight.FOREIGN_TOOLS + preflight.CROSS_TOOLS)
    problems = [preflight.missing_tools_message(missing)] if missing else []
    if (
        "binfmt_misc" not in Path("/proc/filesystems").read_text()
        and not Path("/proc/sys/fs/binfmt_misc").is_dir()
    ):
        problems.append("the kernel has no binfmt_misc")
    return Finding(
        "arm64 hosts: qemu-user, binfmt_misc, cross compilers",
        not problems,
        "; ".join(problems) or "present",
        required=False,
    )


def _tools(name: str, tools: tuple[str, ...], present: str) -> Finding:
    """A finding for a set of tools: which are missing and the Debian packages to install."""
    missing = preflight.missing_tools(tools)
    return Finding(name, not missing, preflight.missing_tools_message(missing) if missing else present)


def _kernel() -> Finding:
    problems = []
    if not preflight.overlay_available():
        problems.append("no overlayfs (`overlay` not in /proc/filesystems and `modprobe overlay` failed)")
    if not Path("/proc/self/ns/net").exists():
        problems.append("no network namespaces (CONFIG_NET_NS)")
    return Finding("kernel", not problems, "; ".join(problems) or "overlayfs, network namespaces")


def _guest() -> list[Finding]:
    missing = {t: p for t, p in preflight.VM_PACKAGES.items() if shutil.which(t) is None}
    tools = Finding(
        "VM hosts and CI guest: QEMU",
        not missing,
        ("apt-get install -y " + " ".join(sorted(set(missing.values())))) if missing else "present",
        required=False,
    )
    kvm = Path("/dev/kvm").exists()
    accel = Finding(
        "CI guest: KVM",
        kvm,
        "/dev/kvm present; whether it runs a stock kernel is found by booting (else TCG emulation)"
        if kvm
        else "no /dev/kvm: the guest runs under TCG emulation (slower, works)",
        required=False,
    )
    return [tools, accel]


def blocking(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.required and not f.ok]


def report(found: list[Finding]) -> str:
    lines = []
    for f in found:
        mark = "ok" if f.ok else ("MISSING" if f.required else "optional")
        lines.append(f"{mark:<9}{f.name}: {f.detail}")
    bad = blocking(found)
    lines.append(
        "the simulated cluster can run here"
        if not bad
        else "the simulated cluster cannot run here: " + ", ".join(f.name for f in bad)
    )
    return "\n".join(lines)
