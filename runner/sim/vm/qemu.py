"""QEMU for VM hosts: the command line (pure, unit-tested) and the accelerator, found by booting.

`/dev/kvm` existing says little: on some machines (PVM-based KVM, no VMX) a stock Debian kernel does not
run under it. The probe boots the image's kernel under KVM with no root disk and `-no-reboot`: a kernel
that runs reaches "Run /init" (the initramfs) within seconds. The verdict is cached per host kernel,
QEMU version and guest kernel, so only the first `sim up --backend vm` on a machine pays for it.
Under TCG each host gets one vCPU (emulation threads compete for the machine's cores).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path

from runner.sim.system import log, run
from runner.sim.vm.image import VmImage

KVM_PROBE_S = 30.0
KERNEL_ARGS = "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=10 quiet systemd.show_status=0"
TCG_TB_MIB = 128  # the translation cache of each emulated host (RSS beside its memory)


def mac_address(address: str) -> str:
    """A stable, locally administered MAC from the host's IPv4 address (QEMU's 52:54:00 prefix)."""
    octets = [int(o) for o in address.split(".")]
    return "52:54:00:{:02x}:{:02x}:{:02x}".format(*octets[1:])


def command(
    image: VmImage,
    root_disk: Path,
    seed_disk: Path,
    console: Path,
    tap: str,
    address: str,
    memory_mib: int,
    accel: str,
    name: str,
) -> list[str]:
    accel_args = (
        ["-accel", "kvm", "-cpu", "host", "-smp", "2"]
        if accel == "kvm"
        else ["-accel", f"tcg,tb-size={TCG_TB_MIB}", "-cpu", "max", "-smp", "1"]
    )
    return [
        "qemu-system-x86_64",
        "-name",
        name,
        *accel_args,
        "-machine",
        "q35",
        "-m",
        str(memory_mib),
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        KERNEL_ARGS,
        "-drive",
        f"file={root_disk},if=virtio,format=qcow2",
        "-drive",
        f"file={seed_disk},if=virtio,format=raw,readonly=on",
        "-netdev",
        f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=n0,mac={mac_address(address)}",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{console}",
    ]


def accelerator(image: VmImage, cache_dir: Path) -> str:
    """`kvm` when a KVM guest runs this image's kernel here, else `tcg` (cached verdict)."""
    if not Path("/dev/kvm").exists():
        return "tcg"
    key = hashlib.sha256(
        json.dumps([platform.release(), _qemu_version(), image.kernel.stat().st_size]).encode()
    ).hexdigest()[:16]
    verdict = cache_dir / f"vm-accel-{key}"
    if verdict.exists():
        return verdict.read_text().strip()
    accel = "kvm" if _kvm_boots(image, verdict.with_suffix(".console")) else "tcg"
    why = "KVM runs the guest kernel" if accel == "kvm" else "KVM cannot run the guest kernel here: emulation"
    log(f"VM hosts: {accel} ({why}); verdict cached in {verdict}")
    verdict.write_text(accel + "\n")
    return accel


def _qemu_version() -> str:
    return run(["qemu-system-x86_64", "--version"], check=False).stdout.split("\n", 1)[0]


def _kvm_boots(image: VmImage, console: Path) -> bool:
    console.write_bytes(b"")
    cmd = [
        "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-m", "256",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", "console=ttyS0 panic=-1 rdinit=/bin/true", "-display", "none", "-monitor", "none",
        "-serial", f"file:{console}", "-no-reboot",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + KVM_PROBE_S
    try:
        while time.monotonic() < deadline:
            if "Run /bin/true" in console.read_text(errors="replace"):
                return True
            if proc.poll() is not None:
                return "Run /bin/true" in console.read_text(errors="replace")
            time.sleep(0.5)
        return False
    finally:
        stop(proc.pid)
        console.unlink(missing_ok=True)


def stop(pid: int) -> None:
    """SIGTERM to QEMU's process group (it was started in its own session), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    for _ in range(50):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = 0 if _alive(pid) else pid
        if done:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
