"""`python -m runner sim guest`: the CI guest stage of scripts/test.sh.

Builds (once, cached) the standard Debian 12 guest image, the sim's rootfs and APT repository and the
guest's wheels; makes a data disk with the repository, those caches and scripts/guest-job.sh; boots the
guest (KVM only when it boots, else TCG) on a throw-away overlay of the image; the job inside brings the
sim up, provisions it, runs one experiment with the tiny model, collects it, takes the sim down and
checks that nothing is left. The guest is always stopped and its disks removed, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from runner.errors import EdgejarError
from runner.sim import aptrepo, preflight
from runner.sim.config import DEFAULT_USER
from runner.sim.guest import datadisk, qemu
from runner.sim.guest.image import GuestImage, ensure_image
from runner.sim.inventory import repo_root
from runner.sim.rootfs import ensure_rootfs
from runner.sim.system import log, run

JOB_SCRIPT = Path("scripts/guest-job.sh")
JOB_TIMEOUT_S = 55 * 60.0  # about 22 min under TCG on 2 idle cores, longer beside the integration tier
WORK_ROOT = Path("/var/tmp")
TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils", "debugfs": "e2fsprogs"}


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM (scripts/test.sh stopping a background guest) unwinds like an exit: QEMU is stopped and the
    guest's disks removed by the `finally` blocks on the way out."""
    sys.exit(128 + signum)


def main(cache_dir: Path, build_only: bool = False, keep: Path | None = None) -> int:
    preflight.require_root("guest")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    missing = {t: p for t, p in TOOLS.items() if shutil.which(t) is None}
    if missing:
        raise EdgejarError(preflight.missing_tools_message(missing))
    started = time.monotonic()
    image = ensure_image(cache_dir)
    rootfs = ensure_rootfs(cache_dir, DEFAULT_USER)
    repo_cache = aptrepo.ensure_repo(cache_dir, rootfs)
    wheels = datadisk.wheels_dir(cache_dir, repo_root())
    venv = datadisk.venv_dir(cache_dir, wheels)
    log(f"guest image, sim rootfs and wheels ready ({time.monotonic() - started:.0f} s)")
    if build_only:
        return 0
    work = WORK_ROOT / f"edgejar-ci-guest.{os.getpid()}"
    try:
        return _run(image, work, [rootfs.root, repo_cache], wheels, venv, keep, started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(
    image: GuestImage,
    work: Path,
    caches: list[Path],
    wheels: Path,
    venv: Path,
    keep: Path | None,
    started: float,
) -> int:
    datadisk.stage(work / "data", repo_root(), caches, wheels, venv, repo_root() / JOB_SCRIPT)
    data_disk = work / "data.img"
    datadisk.make_image(work / "data", data_disk)
    shutil.rmtree(work / "data")
    console = work / "console.log"
    boot = None
    for accel in ("kvm", "tcg") if Path("/dev/kvm").exists() else ("tcg",):
        root_disk = work / f"root-{accel}.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "raw", str(root_disk)])
        start_s = qemu.KVM_PROBE_S if accel == "kvm" else qemu.TCG_START_S
        log(f"booting the Debian 12 guest with {accel} (console: {console})")
        boot = qemu.run(image, root_disk, data_disk, console, accel, start_s, JOB_TIMEOUT_S)
        root_disk.unlink(missing_ok=True)
        if boot.reason.startswith("no job start") and accel == "kvm":
            log(f"KVM does not boot this kernel here ({boot.reason}): falling back to TCG emulation")
            continue
        break
    if boot is None:
        raise EdgejarError("CI guest: no accelerator to boot with")
    job_log = work / "job.log"
    datadisk.read_out(data_disk, "job.log", job_log)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for name in (
            "job.log",
            "provision.log",
            "up.log",
            "collect.log",
            "proc_cgroup",
            "mountinfo",
            "cgroup.controllers",
        ):
            datadisk.read_out(data_disk, name, keep / name)
        shutil.copy2(console, keep / "console.log")
    tail = _tail(job_log if job_log.exists() else console, 40)
    total = time.monotonic() - started
    if boot.rc is None:
        raise EdgejarError(
            f"CI guest ({boot.accel}): {boot.reason} after {boot.seconds:.0f} s; last lines:\n{tail}"
        )
    log(
        f"CI guest ({boot.accel}): job exit status {boot.rc}; guest {boot.seconds:.0f} s, stage {total:.0f} s"
    )
    print(tail)
    return 0 if boot.rc == 0 else 1


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text.strip().splitlines()[-lines:])
