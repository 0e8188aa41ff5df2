"""A standard Debian 12 machine image for CI: kernel, initrd and an ext4 root filesystem, cached.

Built from Debian packages only (debootstrap of bookworm with `linux-image-amd64`, `systemd-sysv`
and what the simulated cluster needs), so the guest is what a user's machine is: systemd as PID 1 and
the unified cgroup v2 hierarchy (Debian 12's default). The image is cached like the sim's rootfs, in
`<cache>/guest-<hash>/` named after a hash of the recipe; each boot writes into a throw-away qcow2
overlay, never into the cached image.

At boot the guest runs `edgejar-guest-job.service`: it mounts the second disk (`/dev/vdb`, made per
run by runner/sim/guest/datadisk.py), runs `job.sh` from it, writes the exit status to that disk, and
powers off. Progress goes to the serial console.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from runner.errors import EdgejarError
from runner.sim.rootfs import SUITE, build_lock, chroot, debootstrap, host_arch
from runner.sim.system import log, run

# A standard Debian 12 host with what the simulated cluster needs (scripts/deb-deps.sh's list).
PACKAGES: tuple[str, ...] = (
    "linux-image-amd64",
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "e2fsprogs",
    "procps",
    "iproute2",
    "python3",
    "python3-venv",
    "make",
    "git",
    "debootstrap",
    "systemd-container",
    "openssh-client",
    "dpkg-dev",
    "rsync",
    "zstd",
)

ROOTFS_SIZE = "8G"  # sparse; room for the sim's overlays, node venvs and wheels during the job
JOB_MARKER_START = "EDGEJAR-GUEST-JOB-START"
JOB_MARKER_END = "EDGEJAR-GUEST-JOB-END"

JOB_UNIT = """\
[Unit]
Description=edgejar CI job from the data disk (/dev/vdb)
Requires=dev-vdb.device
After=dev-vdb.device multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/edgejar-guest-job
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
"""

JOB_RUNNER = f"""\
#!/bin/sh
# Runs job.sh from the data disk, records its exit status there, powers off.
mkdir -p /mnt/data
mount /dev/vdb /mnt/data || {{ echo "{JOB_MARKER_END} rc=99 (no data disk)"; systemctl poweroff; exit 1; }}
echo "{JOB_MARKER_START}"
mkdir -p /mnt/data/out
bash /mnt/data/job.sh > /mnt/data/out/job.log 2>&1 &
job=$!
tail -f /mnt/data/out/job.log --pid=$job &
wait $job
rc=$?
sleep 1
echo "$rc" > /mnt/data/out/rc
sync
umount /mnt/data
echo "{JOB_MARKER_END} rc=$rc"
systemctl poweroff
"""

CUSTOMIZE_SCRIPT = r"""
set -eu
echo edgejar-guest > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tedgejar-guest\n' > /etc/hosts
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > /etc/fstab
passwd -d root
# QEMU's user network: the guest is 10.0.2.15, the gateway .2, its DNS .3 (pip may use PyPI).
mkdir -p /etc/systemd/network
printf '[Match]\nName=en*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n' \
  > /etc/systemd/network/10-qemu.network
ln -sf /lib/systemd/system/systemd-networkd.service \
  /etc/systemd/system/multi-user.target.wants/systemd-networkd.service
echo 'nameserver 10.0.2.3' > /etc/resolv.conf
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
            man-db.timer e2scrub_reap.service systemd-networkd-wait-online.service; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done
ln -sf /etc/systemd/system/edgejar-guest-job.service \
  /etc/systemd/system/multi-user.target.wants/edgejar-guest-job.service
: > /etc/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/*_*
"""

COMPLETE = ".complete"


@dataclass(frozen=True)
class GuestImage:
    root: Path

    @property
    def kernel(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.root / "initrd.img"

    @property
    def disk(self) -> Path:
        return self.root / "rootfs.img"


def recipe() -> dict[str, object]:
    return {
        "suite": SUITE,
        "arch": host_arch(),
        "packages": list(PACKAGES),
        "customize": CUSTOMIZE_SCRIPT,
        "unit": JOB_UNIT,
        "runner": JOB_RUNNER,
        "size": ROOTFS_SIZE,
    }


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def image_dir(cache_dir: Path) -> Path:
    return cache_dir / f"ci-guest-{recipe_hash()}"


def cached(cache_dir: Path) -> GuestImage | None:
    image = GuestImage(image_dir(cache_dir))
    return image if (image.root / COMPLETE).exists() else None


def ensure_image(cache_dir: Path) -> GuestImage:
    """The cached guest image for the current recipe, built first if needed (minutes)."""
    found = cached(cache_dir)
    if found:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(cache_dir, "ci-guest", "the CI guest image"):
        found = cached(cache_dir)
        if found:
            return found
        final = image_dir(cache_dir)
        work = final.with_name(final.name + ".partial")
        if work.exists():
            log(f"removing an interrupted guest build in {work}")
            shutil.rmtree(work)
        work.mkdir()
        started = time.monotonic()
        log(f"building the Debian {SUITE} CI guest image in {final} (first run or changed recipe)")
        tree = work / "tree"
        debootstrap(tree, work / "build.log", PACKAGES)
        (tree / "etc/systemd/system/edgejar-guest-job.service").write_text(JOB_UNIT)
        job = tree / "usr/local/sbin/edgejar-guest-job"
        job.write_text(JOB_RUNNER)
        job.chmod(0o755)
        chroot(tree, CUSTOMIZE_SCRIPT)
        take_boot_files(tree, GuestImage(work))
        run(
            [
                "mke2fs",
                "-q",
                "-t",
                "ext4",
                "-L",
                "edgejar-guest",
                "-d",
                str(tree),
                str(work / "rootfs.img"),
                ROOTFS_SIZE,
            ],
            timeout=900,
        )
        shutil.rmtree(tree)
        (work / "recipe.json").write_text(json.dumps(recipe(), indent=2, sort_keys=True) + "\n")
        (work / COMPLETE).write_text(recipe_hash() + "\n")
        work.rename(final)
        log(f"CI guest image ready in {time.monotonic() - started:.0f} s")
        _prune(cache_dir, keep=final)
        return GuestImage(final)


def take_boot_files(tree: Path, image: GuestImage) -> None:
    """The newest kernel and initrd of `tree`'s /boot, copied beside the image (QEMU's -kernel/-initrd)."""
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    initrds = sorted((tree / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise EdgejarError(f"the guest tree {tree} has no kernel or initrd in /boot (linux-image-amd64?)")
    shutil.copy2(kernels[-1], image.kernel)
    shutil.copy2(initrds[-1], image.initrd)


def _prune(cache_dir: Path, keep: Path) -> None:
    """Older recipes' images of this builder (never another tool's cache entries)."""
    for old in cache_dir.glob("ci-guest-*"):
        if old != keep and old.is_dir() and not old.name.endswith(".partial"):
            log(f"removing the CI guest image of an older recipe: {old}")
            shutil.rmtree(old, ignore_errors=True)
