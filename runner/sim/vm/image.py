"""The disk image of a VM host (`sim up --backend vm`): the sim's rootfs plus a kernel, cached.

A VM host runs its own Debian kernel, so swap, addresses, reboots and OOM kills are the kernel's own.
Its image is the nspawn hosts' cached rootfs (the same packages, user, sshd settings and masked timers)
with what a machine of its own needs on top, from Debian's mirror:

- `linux-image-amd64` (its kernel and initrd are also copied out for QEMU's `-kernel/-initrd`), `udev`;
- `network-manager`, so that a host can run NetworkManager as Raspberry Pi OS and L4T do, beside
  `systemd-networkd` (Debian's own); which one starts is chosen per host by its seed disk (see SEED_UNIT);
- the seed service: at every boot it copies the host's own files (identity, keys, persona, network) from
  its seed disk (labelled `ejseed`, runner/sim/vm/seed.py) before the network and sshd start.

Cached in `<cache>/vm-host-<hash>/` (rootfs.img, vmlinuz, initrd.img), named after a hash of this recipe
and the rootfs's; each VM host boots a throw-away qcow2 overlay of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from runner.sim.guest.image import GuestImage, take_boot_files
from runner.sim.rootfs import DEFAULT_MIRROR, MIRROR_ENV, SUITE, Rootfs, build_lock, chroot
from runner.sim.system import log, run

PACKAGES: tuple[str, ...] = ("linux-image-amd64", "udev", "kmod", "network-manager")
ROOTFS_SIZE = "6G"  # sparse: room for the node venv, wheels and a swap file
SEED_LABEL = "ejseed"
MARKER_DIR = "/etc/edgejar-sim/network"  # the seed writes <stack> here: `networkd` or `networkmanager`
COMPLETE = ".complete"

SEED_SCRIPT = rf"""#!/bin/sh
# edgejar sim: this host's own files from its seed disk (label {SEED_LABEL}), its persona at every boot.
set -eu
seed=/run/edgejar-sim-seed
mkdir -p "$seed"
mount -o ro "/dev/disk/by-label/{SEED_LABEL}" "$seed"
# First boot only: later boots keep what the host changed since (addresses, keys), as a machine does.
if [ ! -e /var/lib/edgejar-sim/seeded ]; then
  cp -a "$seed/root/." /
  mkdir -p /var/lib/edgejar-sim && : > /var/lib/edgejar-sim/seeded
fi
hostname "$(cat /etc/hostname)"
# The persona: the board's /proc/cpuinfo and /proc/meminfo, and its device tree under /sys/firmware.
persona=/usr/lib/edgejar-sim/persona
for f in cpuinfo meminfo; do
  [ -f "$persona/$f" ] && mount --bind -o ro "$persona/$f" "/proc/$f"
done
if [ -d "$seed/firmware" ]; then
  mount -t tmpfs -o mode=0755,size=1m edgejar-sim-firmware /sys/firmware
  cp -a "$seed/firmware/." /sys/firmware/
fi
umount "$seed"
"""

SEED_UNIT = f"""\
[Unit]
Description=edgejar sim: this host's identity, keys, persona and network from its seed disk
DefaultDependencies=no
Wants=dev-disk-by\\x2dlabel-{SEED_LABEL}.device
After=dev-disk-by\\x2dlabel-{SEED_LABEL}.device systemd-remount-fs.service
Before=sysinit.target network-pre.target systemd-networkd.service NetworkManager.service ssh.service
Before=systemd-hostnamed.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/edgejar-sim-seed

[Install]
WantedBy=sysinit.target
"""

CUSTOMIZE_SCRIPT = rf"""
set -eu
mirror=$1
echo "deb $mirror {SUITE} main" > /etc/apt/sources.list
apt-get update -qq
apt-get install -y -qq --no-install-recommends {" ".join(PACKAGES)}
# The sim's own repository only, as on the nspawn hosts (written per host by the seed).
echo '# written by the seed disk at boot' > /etc/apt/sources.list
apt-get clean
rm -rf /var/lib/apt/lists/*_* /var/cache/apt/*.bin
touch -d @0 /var/lib/apt/lists
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > /etc/fstab
systemctl enable edgejar-sim-seed.service systemd-networkd.service NetworkManager.service >/dev/null
for stack in networkd:systemd-networkd.service networkd:systemd-networkd.socket \
             networkmanager:NetworkManager.service; do
  mkdir -p "/etc/systemd/system/${{stack#*:}}.d"
  printf '[Unit]\nConditionPathExists={MARKER_DIR}/%s\n' "${{stack%%:*}}" \
    > "/etc/systemd/system/${{stack#*:}}.d/edgejar-sim.conf"
done
# Nothing waits for "online" (no route out; a TCG boot is slow enough).
for unit in systemd-networkd-wait-online.service NetworkManager-wait-online.service; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done
"""


# The same layout as the CI guest's image: vmlinuz, initrd.img and rootfs.img in one directory.
VmImage = GuestImage


def recipe(rootfs: Rootfs) -> dict[str, object]:
    return {
        "rootfs": rootfs.recipe_hash,
        "packages": list(PACKAGES),
        "seed_script": SEED_SCRIPT,
        "seed_unit": SEED_UNIT,
        "customize": CUSTOMIZE_SCRIPT,
        "size": ROOTFS_SIZE,
    }


def recipe_hash(rootfs: Rootfs) -> str:
    return hashlib.sha256(json.dumps(recipe(rootfs), sort_keys=True).encode()).hexdigest()[:16]


def image_dir(cache_dir: Path, rootfs: Rootfs) -> Path:
    return cache_dir / f"vm-host-{recipe_hash(rootfs)}"


def ensure_image(cache_dir: Path, rootfs: Rootfs) -> VmImage:
    """The cached VM host image for the current rootfs and recipe, built first if needed (minutes)."""
    image = VmImage(image_dir(cache_dir, rootfs))
    if (image.root / COMPLETE).exists():
        return image
    with build_lock(cache_dir, "vm-host", "the VM host image"):
        if (image.root / COMPLETE).exists():
            return image
        work = image.root.with_name(image.root.name + ".partial")
        if work.exists():
            log(f"removing an interrupted VM image build in {work}")
            shutil.rmtree(work)
        work.mkdir(parents=True)
        started = time.monotonic()
        log(f"building the VM host image in {image.root} (first run or changed recipe; a few minutes)")
        tree = work / "tree"
        run(["cp", "-a", "--reflink=auto", str(rootfs.rootfs), str(tree)], timeout=900)
        seed = tree / "usr/local/sbin/edgejar-sim-seed"
        seed.write_text(SEED_SCRIPT)
        seed.chmod(0o755)
        (tree / "etc/systemd/system/edgejar-sim-seed.service").write_text(SEED_UNIT)
        # The rootfs has no DNS (its hosts have no route out): the build borrows this machine's resolver.
        resolv = tree / "etc/resolv.conf"
        kept = resolv.read_text()
        resolv.unlink()
        shutil.copy2("/etc/resolv.conf", resolv)
        chroot(tree, CUSTOMIZE_SCRIPT, os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR)
        resolv.unlink()
        resolv.write_text(kept)
        take_boot_files(tree, VmImage(work))
        run(
            [
                "mke2fs",
                "-q",
                "-t",
                "ext4",
                "-L",
                "edgejar-vm",
                "-d",
                str(tree),
                str(work / "rootfs.img"),
                ROOTFS_SIZE,
            ],
            timeout=900,
        )
        shutil.rmtree(tree)
        (work / "recipe.json").write_text(json.dumps(recipe(rootfs), indent=2, sort_keys=True) + "\n")
        (work / COMPLETE).write_text(recipe_hash(rootfs) + "\n")
        work.rename(image.root)
        log(f"VM host image ready in {time.monotonic() - started:.0f} s")
        _prune(cache_dir, keep=image.root)
        return image


def _prune(cache_dir: Path, keep: Path) -> None:
    for old in cache_dir.glob("vm-host-*"):
        if old != keep and old.is_dir() and not old.name.endswith(".partial"):
            log(f"removing the VM host image of an older recipe: {old}")
            shutil.rmtree(old, ignore_errors=True)
