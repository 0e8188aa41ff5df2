"""The shared, read-only root filesystem of every simulated host: Debian bookworm by debootstrap, cached.

The cache lives outside the repository (default /var/cache/edgejar, or $EDGEJAR_CACHE_DIR) in a directory
named after a hash of the recipe below (suite, architecture, packages, the customisation script), so it is
built once and rebuilt only when the recipe changes. Each host mounts it as the lower layer of its own
overlayfs. The controller's architecture is the default; a foreign one (arm64, for Pi and Jetson hosts
that run the boards' userland) is built the same way, its programs run through qemu-user
(runner/sim/binfmt.py), and cached beside it (`rootfs-<arch>-<hash>`).

The same build downloads the real Debian packages that the local APT repository serves (with whatever
dependencies the rootfs does not already have), so that `apt install htop` on a host runs for real
without internet access.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runner.errors import EdgejarError
from runner.sim.system import log, run

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "EDGEJAR_DEBIAN_MIRROR"

# Baked into the rootfs: what Ansible and the node roles need on every host.
PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "python3",
    "python3-apt",
    "python3-venv",
    "rsync",
    "iproute2",
    "iputils-ping",
    "procps",
    "curl",
    "ca-certificates",
    "less",
)

# Real packages served by the local APT repo (with their missing dependencies), not installed: the
# seeds' tools, libgomp1 (llama.cpp's OpenMP runtime, which roles/edgejar_llama installs), nftables
# (roles/edgejar_firewall installs it), and the boards' own network and swap tools that the VM-host tests
# install where a board has them (dphys-swapfile: Raspberry Pi OS bookworm; netplan.io: Ubuntu/L4T).
REPO_PACKAGES: tuple[str, ...] = (
    "htop",
    "tmux",
    "git",
    "libgomp1",
    "nftables",
    "dphys-swapfile",
    "netplan.io",
)

# Runs inside the new rootfs (chroot) after debootstrap; $1 is the SSH user's name.
CUSTOMIZE_SCRIPT = r"""
set -eu
user=$1
# Host keys: every host gets its own at `sim up`; never share the ones generated here.
rm -f /etc/ssh/ssh_host_*
cat > /etc/ssh/sshd_config.d/edgejar-sim.conf <<'EOF'
# edgejar sim: key-only logins as the unprivileged user, one ed25519 host key per host (written at sim up)
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
ln -sf /lib/systemd/system/ssh.service /etc/systemd/system/multi-user.target.wants/ssh.service
# The unprivileged SSH user; Ansible becomes root through sudo without a password.
useradd --create-home --shell /bin/bash --user-group "$user"
usermod -p '*' "$user"
echo "$user ALL=(ALL:ALL) NOPASSWD: ALL" > /etc/sudoers.d/edgejar-sim
chmod 0440 /etc/sudoers.d/edgejar-sim
# Timers that would take the dpkg lock or churn the disk in the middle of a test run.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
            systemd-tmpfiles-clean.timer man-db.timer e2scrub_reap.service; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done
# A container has no consoles to log in on and nothing to fsck or remount.
for unit in getty@tty1.service console-getty.service systemd-remount-fs.service; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' > /etc/systemd/journald.conf.d/edgejar-sim.conf
# No DNS and no route out: the hosts talk only to the controller on their bridge.
echo '# edgejar sim: no DNS, no route out of the sim network' > /etc/resolv.conf
: > /etc/machine-id
rm -f /etc/hostname
# APT: only the controller's local repo (the URL is written per host at sim up).
echo '# written by `python -m runner sim up`' > /etc/apt/sources.list
echo 'Acquire::Languages "none";' > /etc/apt/apt.conf.d/99edgejar-sim
apt-get clean
rm -rf /var/lib/apt/lists/*_* /var/cache/apt/*.bin
# Ansible's apt `cache_valid_time` looks at this directory's mtime: make the empty lists look stale.
touch -d @0 /var/lib/apt/lists
mkdir -p /etc/ansible/facts.d
"""

# Runs inside a foreign-architecture rootfs after the customisation. qemu-user cannot set up a unit's
# credentials (systemd 252 fails them with EINVAL at step CREDENTIALS), and the units that load optional
# ones (tmpfiles, sysusers, sysctl) would fail at boot: they run without them.
FOREIGN_SCRIPT = r"""
set -eu
for unit in systemd-tmpfiles-setup systemd-tmpfiles-setup-dev systemd-tmpfiles-clean systemd-sysusers \
            systemd-sysctl systemd-firstboot procps; do
  mkdir -p "/etc/systemd/system/$unit.service.d"
  printf '[Service]\n# edgejar sim: no credentials under qemu-user\nLoadCredential=\n' \
    > "/etc/systemd/system/$unit.service.d/edgejar-qemu-user.conf"
done
"""

# Runs inside the rootfs before the customisation, with Debian's mirror in sources.list.
DOWNLOAD_SCRIPT = r"""
set -eu
apt-get clean  # drop debootstrap's own downloads: keep only what the repo serves
apt-get update -qq
apt-get install -y -qq --download-only "$@"
"""

COMPLETE = ".complete"

# debootstrap's "I: <Verb> ..." lines, grouped into the phases reported as progress.
_PHASES = {
    "Retrieving": "downloading packages",
    "Validating": "downloading packages",
    "Resolving": "resolving dependencies",
    "Checking": "checking",
    "Extracting": "extracting the base system",
    "Installing": "installing the base system",
    "Unpacking": "unpacking packages",
    "Configuring": "configuring packages",
    "Base": "base system installed",
}


@dataclass(frozen=True)
class Rootfs:
    """A finished cache entry: the rootfs directory and the real .debs for the local repo."""

    root: Path
    recipe_hash: str
    arch: str = "amd64"  # Debian's name

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def debs(self) -> Path:
        return self.root / "debs"


def recipe(user: str, arch: str | None = None) -> dict[str, object]:
    foreign = {"foreign": FOREIGN_SCRIPT} if arch and arch != host_arch() else {}
    return foreign | {
        "suite": SUITE,
        "variant": "minbase",
        "arch": arch or host_arch(),
        "packages": list(PACKAGES),
        "repo_packages": list(REPO_PACKAGES),
        "user": user,
        "customize": CUSTOMIZE_SCRIPT,
        "download": DOWNLOAD_SCRIPT,
    }


def recipe_hash(user: str, arch: str | None = None) -> str:
    blob = json.dumps(recipe(user, arch), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@functools.cache
def host_arch() -> str:
    return run(["dpkg", "--print-architecture"]).stdout.strip()


def entry_name(recipe_hash: str, arch: str, native: str) -> str:
    """rootfs-<hash> for the controller's architecture, rootfs-<arch>-<hash> for a foreign one."""
    return f"rootfs-{recipe_hash}" if arch == native else f"rootfs-{arch}-{recipe_hash}"


def _entry(cache_dir: Path, user: str, arch: str | None) -> Rootfs:
    arch = arch or host_arch()
    h = recipe_hash(user, arch)
    return Rootfs(cache_dir / entry_name(h, arch, host_arch()), h, arch)


def cached(cache_dir: Path, user: str, arch: str | None = None) -> Rootfs | None:
    entry = _entry(cache_dir, user, arch)
    return entry if (entry.root / COMPLETE).exists() else None


@contextlib.contextmanager
def build_lock(cache_dir: Path, name: str, what: str) -> Iterator[None]:
    """One builder at a time for a cache entry (`cache_dir/.<name>.lock`); says so when it waits."""
    with (cache_dir / f".{name}.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is building {what}; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_rootfs(cache_dir: Path, user: str, arch: str | None = None) -> Rootfs:
    """Return the cached rootfs for the current recipe, building it first if needed (minutes).

    A foreign `arch` needs its binfmt_misc entry in place first (runner/sim/binfmt.py)."""
    found = cached(cache_dir, user, arch)
    if found:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    entry = _entry(cache_dir, user, arch)
    foreign = entry.arch != host_arch()
    with build_lock(cache_dir, f"rootfs-{entry.arch}" if foreign else "rootfs", f"the {entry.arch} rootfs"):
        found = cached(cache_dir, user, arch)
        if found:
            return found
        work = entry.root.with_name(entry.root.name + ".partial")
        if work.exists():
            log(f"removing an interrupted build in {work}")
            shutil.rmtree(work)
        work.mkdir()
        started = time.monotonic()
        log(
            f"building the Debian {SUITE} {entry.arch} root filesystem for the simulated hosts in "
            f"{entry.root} "
            + (
                "(first run or changed recipe; under emulation: about 5-10 minutes, cached afterwards)"
                if foreign
                else "(first run or changed recipe; about 2-5 minutes, cached afterwards)"
            )
        )
        debootstrap(work / "rootfs", work / "build.log", arch=entry.arch)
        log("downloading the packages for the local APT repository: " + " ".join(REPO_PACKAGES))
        chroot(work / "rootfs", DOWNLOAD_SCRIPT, *REPO_PACKAGES)
        (work / "debs").mkdir()
        archives = work / "rootfs" / "var" / "cache" / "apt" / "archives"
        for deb in archives.glob("*.deb"):
            shutil.move(str(deb), work / "debs" / deb.name)
        log("customising the rootfs (SSH, user, sudo, units, APT)")
        chroot(work / "rootfs", CUSTOMIZE_SCRIPT, user)
        if foreign:
            chroot(work / "rootfs", FOREIGN_SCRIPT)
        recipe_json = json.dumps(recipe(user, entry.arch), indent=2, sort_keys=True)
        (work / "recipe.json").write_text(recipe_json + "\n")
        (work / COMPLETE).write_text(f"{entry.recipe_hash}\n")
        work.rename(entry.root)
        log(f"rootfs ready in {time.monotonic() - started:.0f} s ({_size_mib(entry.rootfs)} MiB)")
        _prune(cache_dir, keep=entry, native=host_arch())
        return entry


def debootstrap(
    target: Path, build_log: Path, packages: tuple[str, ...] = PACKAGES, arch: str | None = None
) -> None:
    """debootstrap minbase of SUITE with `packages` into `target`, progress to stderr, log to build_log."""
    mirror = os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--arch={arch or host_arch()}",
        "--include=" + ",".join(packages),
        SUITE,
        str(target),
        mirror,
    ]
    log("$ " + " ".join(cmd))
    with build_log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        phase = ""
        count = 0
        started = last_report = time.monotonic()
        for line in proc.stdout:
            out.write(line)
            words = line.split()
            if len(words) < 2 or words[0] != "I:":
                continue
            count += 1
            now = time.monotonic()
            current = _PHASES.get(words[1], phase)
            if current != phase:
                phase = current
                log(f"debootstrap: {phase} ({now - started:.0f} s)")
                last_report = now
            elif now - last_report > 20:
                log(f"debootstrap: {phase}, {count} steps so far ({now - started:.0f} s)")
                last_report = now
        rc = proc.wait()
    if rc != 0:
        tail = build_log.read_text().strip().splitlines()[-8:]
        raise EdgejarError(
            f"debootstrap failed (exit {rc}); full log in {build_log}:\n  " + "\n  ".join(tail)
        )


def chroot(root: Path, script: str, *args: str) -> None:
    """Run a shell script inside `root` (as root, Debian's PATH, non-interactive)."""
    proc = subprocess.run(
        ["chroot", str(root), "/bin/sh", "-c", script, "sh", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"},
        check=False,
        timeout=900,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise EdgejarError(
            f"rootfs step failed in chroot {root} (exit {proc.returncode}):\n  " + "\n  ".join(tail)
        )


def _size_mib(path: Path) -> int:
    out = run(["du", "-sm", str(path)], check=False).stdout.split()
    return int(out[0]) if out else 0


def same_arch_entries(names: list[str], arch: str, native: str) -> list[str]:
    """The rootfs cache entries among `names` built for `arch` (finished ones: no .partial)."""
    name = "rootfs" if arch == native else f"rootfs-{re.escape(arch)}"
    pattern = re.compile(name + r"-[0-9a-f]{16}")
    return [n for n in names if pattern.fullmatch(n)]


def _prune(cache_dir: Path, keep: Rootfs, native: str) -> None:
    """Remove rootfs builds of older recipes of the same architecture, unless a running sim mounts one."""
    mounts = Path("/proc/self/mountinfo").read_text()
    names = same_arch_entries([p.name for p in cache_dir.iterdir()], keep.arch, native)
    for old in (cache_dir / n for n in names):
        if old == keep.root or not old.is_dir():
            continue
        if str(old) in mounts:
            log(f"keeping {old}: a running simulated host still uses it")
            continue
        log(f"removing the rootfs of an older recipe: {old}")
        shutil.rmtree(old, ignore_errors=True)
