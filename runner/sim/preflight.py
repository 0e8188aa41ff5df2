"""Checks before the sim touches anything: root, the tools it runs (with their Debian packages), kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from runner.errors import EdgejarError

# tool -> Debian package that provides it
TOOLS: dict[str, str] = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "chroot": "coreutils",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "dpkg-deb": "dpkg",
    "dpkg-scanpackages": "dpkg-dev",
    "systemd-run": "systemd",
    "systemctl": "systemd",
}
# Only for VM hosts (`sim up --backend vm`).
VM_PACKAGES: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mke2fs": "e2fsprogs",
}
# Only for arm64 hosts (`arch: arm64`): their programs run through qemu-user (runner/sim/binfmt.py).
FOREIGN_PACKAGES: dict[str, str] = {"qemu-aarch64-static": "qemu-user-static"}
# Only for the controller's cross build of their wheels (roles/edgejar_llama, edgejar_llama_cross.aarch64).
CROSS_PACKAGES: dict[str, str] = {
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
}
TOOLS.update(VM_PACKAGES)
TOOLS.update(FOREIGN_PACKAGES)
TOOLS.update(CROSS_PACKAGES)
VM_TOOLS = tuple(VM_PACKAGES)
FOREIGN_TOOLS = tuple(FOREIGN_PACKAGES)
CROSS_TOOLS = tuple(CROSS_PACKAGES)
SYSTEMD_TOOLS = ("systemd-run", "systemctl")  # only on systemd-v2 machines (runner/sim/layout.py)
UP_TOOLS = tuple(t for t in TOOLS if t not in SYSTEMD_TOOLS + VM_TOOLS + FOREIGN_TOOLS + CROSS_TOOLS)
DOWN_TOOLS = ("ip", "umount", "ssh")
STATUS_TOOLS = ("ssh",)


def missing_tools(tools: Iterable[str], which: Callable[[str], str | None] = shutil.which) -> dict[str, str]:
    """The tools that are not on PATH, each with the Debian package to install."""
    return {tool: TOOLS[tool] for tool in tools if which(tool) is None}


def missing_tools_message(missing: dict[str, str]) -> str:
    packages = sorted(set(missing.values()))
    listed = ", ".join(f"{tool} (package {pkg})" for tool, pkg in missing.items())
    return f"missing tools: {listed}; install them with: apt-get install -y {' '.join(packages)}"


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise EdgejarError(
            f"`sim {action}` needs root (network namespaces, mounts, cgroups, systemd-nspawn); "
            "run it as root or with sudo"
        )


def check_tools(tools: Iterable[str]) -> None:
    missing = missing_tools(tools)
    if missing:
        raise EdgejarError(missing_tools_message(missing))


def overlay_available() -> bool:
    """overlayfs is built in, or loads as a module (Debian's kernels build it as one)."""
    if "overlay" in Path("/proc/filesystems").read_text().split():
        return True
    if shutil.which("modprobe") is None:
        return False
    subprocess.run(["modprobe", "overlay"], capture_output=True, check=False)
    return "overlay" in Path("/proc/filesystems").read_text().split()


def check_kernel() -> None:
    if not overlay_available():
        raise EdgejarError(
            "the kernel has no overlayfs (not in /proc/filesystems, and `modprobe overlay` failed)"
        )
    if not Path("/proc/self/ns/net").exists():
        raise EdgejarError("the kernel has no network namespaces")
