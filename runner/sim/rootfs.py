"""The shared, read-only root filesystem of every simulated host: Debian bookworm by debootstrap, cached.

The cache lives outside the repository (default /var/cache/edgejar, or $EDGEJAR_CACHE_DIR) in a directory
named after a hash of the recipe below (suite, packages, the customisation script), so it is built once
and rebuilt only when the recipe changes. Each host mounts it as the lower layer of its own overlayfs.

The same build downloads the real Debian packages that the local APT repository serves (with whatever
dependencies the rootfs does not already have), so that `apt install htop` on a host runs for real
without internet access.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
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

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def debs(self) -> Path:
        return self.root / "debs"


def recipe(user: str) -> dict[str, object]:
    return {
        "suite": SUITE,
        "variant": "minbase",
        "arch": host_arch(),
        "packages": list(PACKAGES),
        "repo_packages": list(REPO_PACKAGES),
        "user": user,
        "customize": CUSTOMIZE_SCRIPT,
        "download": DOWNLOAD_SCRIPT,
    }


def recipe_hash(user: str) -> str:
    blob = json.dumps(recipe(user), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def host_arch() -> str:
    return run(["dpkg", "--print-architecture"]).stdout.strip()


def cached(cache_dir: Path, user: str) -> Rootfs | None:
    entry = Rootfs(cache_dir / f"rootfs-{recipe_hash(user)}", recipe_hash(user))
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


def ensure_rootfs(cache_dir: Path, user: str) -> Rootfs:
    """Return the cached rootfs for the current recipe, building it first if needed (minutes)."""
    found = cached(cache_dir, user)
    if found:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(cache_dir, "rootfs", "the rootfs"):
        found = cached(cache_dir, user)
        if found:
            return found
        h = recipe_hash(user)
        entry = Rootfs(cache_dir / f"rootfs-{h}", h)
        work = cache_dir / f"rootfs-{h}.partial"
        if work.exists():
            log(f"removing an interrupted build in {work}")
            shutil.rmtree(work)
        work.mkdir()
        started = time.monotonic()
        log(
            f"building the Debian {SUITE} root filesystem for the simulated hosts in {entry.root} "
            "(first run or changed recipe; about 2-5 minutes, cached afterwards)"
        )
        debootstrap(work / "rootfs", work / "build.log")
        log("downloading the packages for the local APT repository: " + " ".join(REPO_PACKAGES))
        chroot(work / "rootfs", DOWNLOAD_SCRIPT, *REPO_PACKAGES)
        (work / "debs").mkdir()
        archives = work / "rootfs" / "var" / "cache" / "apt" / "archives"
        for deb in archives.glob("*.deb"):
            shutil.move(str(deb), work / "debs" / deb.name)
        log("customising the rootfs (SSH, user, sudo, units, APT)")
        chroot(work / "rootfs", CUSTOMIZE_SCRIPT, user)
        (work / "recipe.json").write_text(json.dumps(recipe(user), indent=2, sort_keys=True) + "\n")
        (work / COMPLETE).write_text(f"{h}\n")
        work.rename(entry.root)
        log(f"rootfs ready in {time.monotonic() - started:.0f} s ({_size_mib(entry.rootfs)} MiB)")
        _prune(cache_dir, keep=entry.root)
        return entry


def debootstrap(target: Path, build_log: Path, packages: tuple[str, ...] = PACKAGES) -> None:
    """debootstrap minbase of SUITE with `packages` into `target`, progress to stderr, log to build_log."""
    mirror = os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--arch={host_arch()}",
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


def _prune(cache_dir: Path, keep: Path) -> None:
    """Remove rootfs builds of older recipes, unless a running sim still mounts one."""
    mounts = Path("/proc/self/mountinfo").read_text()
    for old in cache_dir.glob("rootfs-*"):
        if old == keep or not old.is_dir():
            continue
        if str(old) in mounts:
            log(f"keeping {old}: a running simulated host still uses it")
            continue
        log(f"removing the rootfs of an older recipe: {old}")
        shutil.rmtree(old, ignore_errors=True)
