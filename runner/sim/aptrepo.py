"""The local APT repository of the simulated cluster, served over HTTP on the bridge address.

It holds stand-ins for the vendor packages of the real boards (L4T core and tools, JetPack and a CUDA
toolkit whose `nvcc` is a stub, Raspberry Pi EEPROM and firmware tools), built with dpkg-deb, and real
Debian packages (htop, tmux, git, libgomp1 and their missing dependencies, downloaded with the rootfs), so
that provisioning's `apt` tasks run for real on hosts that have no internet access. It is a flat repository
(`deb [trusted=yes] http://<bridge>:<port> ./`), built once per recipe into the cache directory.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import EdgejarError
from runner.sim.rootfs import Rootfs, build_lock
from runner.sim.state import StateDir, read_json, write_json
from runner.sim.system import is_same_process, log, run, signal_pid, start_time, wait_gone

MAINTAINER = "edgejar sim <sim@edgejar.invalid>"
SOURCES = "rootfs.json"  # in a built repository: the rootfs cache entries its packages came from


@dataclass(frozen=True)
class DummyPackage:
    name: str
    version: str
    description: str
    depends: tuple[str, ...] = ()
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (content, mode)
    symlinks: dict[str, str] = field(default_factory=dict)  # path -> target

    def control(self) -> str:
        lines = [
            f"Package: {self.name}",
            f"Version: {self.version}",
            "Architecture: all",
            f"Maintainer: {MAINTAINER}",
            "Section: misc",
            "Priority: optional",
        ]
        if self.depends:
            lines.append("Depends: " + ", ".join(self.depends))
        lines.append(f"Description: {self.description} (edgejar sim stand-in)")
        lines.append(" A stand-in package of the edgejar simulated cluster; it carries no vendor software.")
        return "\n".join(lines) + "\n"


NVCC = r"""#!/bin/sh
# edgejar sim: stand-in for CUDA 12.6's nvcc (the simulated cluster has no GPU)
case "${1:-}" in
  --version|-V)
    echo "nvcc: NVIDIA (R) Cuda compiler driver"
    echo "Copyright (c) 2005-2024 NVIDIA Corporation"
    echo "Built on Wed_Aug_14_10:26:51_PDT_2024"
    echo "Cuda compilation tools, release 12.6, V12.6.68"
    echo "Build cuda_12.6.r12.6/compiler.34714021_0"
    exit 0 ;;
esac
echo "nvcc: edgejar sim stub: there is no CUDA compiler in the simulated cluster" >&2
exit 1
"""

NVPMODEL = r"""#!/bin/sh
# edgejar sim: stand-in for nvpmodel (Jetson AGX Orin power modes); the mode is only remembered
state=/var/lib/nvpmodel/status
mode=$(cat "$state" 2>/dev/null || echo 0)
case "${1:-}" in
  -q)
    i=0
    for name in MAXN 15W 30W 50W; do
      [ "$i" = "$mode" ] && echo "NV Power Mode: $name"
      i=$((i + 1))
    done
    echo "$mode" ;;
  -m)
    case "${2:-}" in
      0|1|2|3) mkdir -p /var/lib/nvpmodel; echo "$2" > "$state"; echo "NVPM: power mode set to $2" ;;
      *) echo "nvpmodel: unknown power mode '${2:-}' (0-3)" >&2; exit 1 ;;
    esac ;;
  *) echo "usage: nvpmodel -q | -m MODE" >&2; exit 1 ;;
esac
"""

JETSON_CLOCKS = r"""#!/bin/sh
# edgejar sim: stand-in for jetson_clocks (clocks are not changed)
if [ "${1:-}" = "--show" ]; then
  echo "SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit"
  echo "Online CPUs: 0-11"
  exit 0
fi
echo "jetson_clocks: edgejar sim stub, clocks unchanged"
"""

TEGRASTATS = r"""#!/bin/sh
# edgejar sim: stand-in for tegrastats; prints one line per interval like the real tool
interval=1000
while [ $# -gt 0 ]; do
  case "$1" in --interval) interval=$2; shift ;; esac
  shift
done
while :; do
  awk '/^MemTotal/ {t=$2} /^MemAvailable/ {a=$2}
       END {printf "RAM %d/%dMB (lfb 4x4MB) SWAP 0/0MB (cached 0MB) ", (t-a)/1024, t/1024}' /proc/meminfo
  cpus=""
  for i in 0 1 2 3 4 5 6 7 8 9 10 11; do cpus="$cpus${cpus:+,}0%@2201"; done
  echo "CPU [$cpus] GR3D_FREQ 0% cpu@45.1C soc2@43.9C tj@45.1C VDD_GPU_SOC 1197mW/1197mW"
  sleep "$(awk -v ms="$interval" 'BEGIN {print ms / 1000}')"
done
"""

RPI_EEPROM_UPDATE = r"""#!/bin/sh
# edgejar sim: stand-in for rpi-eeprom-update (the bootloader is always up to date)
echo "BOOTLOADER: up to date"
echo "   CURRENT: Mon 23 Sep 13:02:56 UTC 2024 (1727096576)"
echo "    LATEST: Mon 23 Sep 13:02:56 UTC 2024 (1727096576)"
echo "   RELEASE: default (/lib/firmware/raspberrypi/bootloader-2712/default)"
"""

VCGENCMD = r"""#!/bin/sh
# edgejar sim: stand-in for vcgencmd (Raspberry Pi VideoCore queries)
case "${1:-}" in
  measure_temp) echo "temp=48.3'C" ;;
  get_throttled) echo "throttled=0x0" ;;
  measure_clock) echo "frequency(0)=2400000000" ;;
  measure_volts) echo "volt=0.7200V" ;;
  get_mem) echo "${2:-arm}=8192M" ;;
  version) echo "2024/09/23 14:02:56"; echo "version 8ff3a3a3 (release) (embedded)" ;;
  *) echo "error=1 error_msg=\"Command not registered\""; exit 1 ;;
esac
"""

L4T_VERSION = "36.4.0-20240912212859"

DUMMY_PACKAGES: tuple[DummyPackage, ...] = (
    DummyPackage(
        "nvidia-l4t-core",
        L4T_VERSION,
        "NVIDIA Jetson Linux (L4T) core package",
        files={"/usr/share/doc/nvidia-l4t-core/README.edgejar-sim": ("L4T R36.4 stand-in\n", 0o644)},
    ),
    DummyPackage(
        "nvidia-l4t-tools",
        L4T_VERSION,
        "NVIDIA Jetson tools: nvpmodel, jetson_clocks, tegrastats",
        depends=(f"nvidia-l4t-core (= {L4T_VERSION})",),
        files={
            "/usr/sbin/nvpmodel": (NVPMODEL, 0o755),
            "/usr/bin/jetson_clocks": (JETSON_CLOCKS, 0o755),
            "/usr/bin/tegrastats": (TEGRASTATS, 0o755),
        },
    ),
    DummyPackage(
        "cuda-toolkit-12-6",
        "12.6.68-1",
        "CUDA Toolkit 12.6 meta-package",
        files={
            "/usr/local/cuda-12.6/bin/nvcc": (NVCC, 0o755),
            "/usr/local/cuda-12.6/version.json": (
                '{"cuda": {"name": "CUDA SDK", "version": "12.6.68"}}\n',
                0o644,
            ),
        },
        symlinks={"/usr/local/cuda": "cuda-12.6"},
    ),
    DummyPackage(
        "nvidia-jetpack",
        "6.1+b123",
        "NVIDIA JetPack meta-package",
        depends=("nvidia-l4t-core (>= 36.4)", "nvidia-l4t-tools", "cuda-toolkit-12-6"),
    ),
    DummyPackage(
        "rpi-eeprom",
        "28.2-1",
        "Raspberry Pi 4/5 bootloader EEPROM tools",
        files={"/usr/bin/rpi-eeprom-update": (RPI_EEPROM_UPDATE, 0o755)},
    ),
    DummyPackage(
        "raspi-utils",
        "20241203-1",
        "Raspberry Pi firmware utilities: vcgencmd",
        files={"/usr/bin/vcgencmd": (VCGENCMD, 0o755)},
    ),
)


def repo_hash(rootfs: Rootfs | Sequence[Rootfs]) -> str:
    """The repository's recipe: the rootfs builds whose packages it serves (one per architecture) and the
    stand-ins. A repository for one rootfs keeps the name it had before foreign architectures existed."""
    builds = [rootfs] if isinstance(rootfs, Rootfs) else list(rootfs)
    hashes = sorted(r.recipe_hash for r in builds)
    blob = json.dumps(
        {
            "rootfs": hashes[0] if len(hashes) == 1 else hashes,
            "dummies": [
                [p.name, p.version, p.depends, sorted(p.files.items()), sorted(p.symlinks.items())]
                for p in DUMMY_PACKAGES
            ],
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def ensure_repo(cache_dir: Path, rootfs: Rootfs | Sequence[Rootfs]) -> Path:
    """Build (once per recipe) and return the repository directory. A flat repository serves every
    architecture at once: each host's APT picks the packages of its own (and `all`)."""
    builds = [rootfs] if isinstance(rootfs, Rootfs) else list(rootfs)
    repo = cache_dir / f"apt-repo-{repo_hash(builds)}"
    if (repo / "Release").exists():
        return repo
    # One builder at a time (the integration tier and the CI guest may both ask at once).
    with build_lock(cache_dir, repo.name, "the local APT repository"):
        if (repo / "Release").exists():
            return repo
        return _build_repo(cache_dir, builds, repo)


def stale_repos(cache_dir: Path, keep: Path) -> list[Path]:
    """Repositories to remove: those whose rootfs builds are no longer all cached (or unrecorded)."""
    stale = []
    for old in sorted(cache_dir.glob("apt-repo-*")):
        if old == keep or not old.is_dir():
            continue
        try:
            sources = json.loads((old / SOURCES).read_text())["rootfs"]
        except (OSError, ValueError, KeyError, TypeError):
            sources = None
        if not sources or not all((cache_dir / name / ".complete").exists() for name in sources):
            stale.append(old)
    return stale


def _build_repo(cache_dir: Path, builds: list[Rootfs], repo: Path) -> Path:
    for old in stale_repos(cache_dir, keep=repo):
        shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="apt-repo.", dir=cache_dir))
    log(
        f"building the local APT repository ({len(DUMMY_PACKAGES)} stand-in vendor packages; "
        + ", ".join(b.arch for b in builds)
        + ")"
    )
    for pkg in DUMMY_PACKAGES:
        build_deb(pkg, work)
    for deb in (deb for b in builds for deb in b.debs.glob("*.deb")):
        try:
            os.link(deb, work / deb.name)
        except OSError:
            shutil.copy2(deb, work / deb.name)
    (work / SOURCES).write_text(json.dumps({"rootfs": [b.root.name for b in builds]}) + "\n")
    packages = run(
        ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], env={"LC_ALL": "C"}, timeout=300, cwd=work
    )
    if "Package: " not in packages.stdout:
        raise EdgejarError(f"dpkg-scanpackages found no packages in {work}")
    (work / "Packages").write_text(packages.stdout)
    with gzip.open(work / "Packages.gz", "wb", compresslevel=9) as fh:
        fh.write(packages.stdout.encode())
    (work / "Release").write_text(release_file(work))
    work.chmod(0o755)
    work.rename(repo)
    return repo


def build_deb(pkg: DummyPackage, out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix=f"{pkg.name}.") as tmp:
        root = Path(tmp)
        (root / "DEBIAN").mkdir()
        (root / "DEBIAN" / "control").write_text(pkg.control())
        for path, (content, mode) in pkg.files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        for path, link_target in pkg.symlinks.items():
            link = root / path.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(link_target)
        for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
            d.chmod(0o755)
        deb = out_dir / f"{pkg.name}_{pkg.version}_all.deb"
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)])
    return deb


def release_file(repo: Path) -> str:
    """A Release file for the flat repository (unsigned; the hosts' sources say `trusted=yes`)."""
    lines = [
        "Origin: edgejar-sim",
        "Label: edgejar-sim",
        "Suite: edgejar-sim",
        "Codename: edgejar-sim",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        "Architectures: all amd64 arm64",
        "Description: local APT repository of the edgejar simulated cluster",
        "SHA256:",
    ]
    for name in ("Packages", "Packages.gz"):
        data = (repo / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    return "\n".join(lines) + "\n"


# --- HTTP server ------------------------------------------------------------------------------------
def serve(state: StateDir, repo: Path, address: str, port: int) -> None:
    """Start the repo's HTTP server on the bridge address (a detached process, recorded in the state)."""
    if server_running(state):
        return
    log_file = state.root / "repo-server.log"
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", address, "--directory", str(repo), str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    write_json(state.repo_server_file, {"pid": proc.pid, "start": start_time(proc.pid), "port": port})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
            raise EdgejarError(
                f"the APT repo server could not listen on {address}:{port}: "
                + " / ".join(tail)
                + " (is the port taken? set `repo_port:` in the sim config)"
            )
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise EdgejarError(f"the APT repo server did not answer on {address}:{port} within 10 s")


def _record(state: StateDir) -> dict[str, Any] | None:
    return read_json(state.repo_server_file)


def server_running(state: StateDir) -> bool:
    rec = _record(state)
    return bool(rec) and is_same_process(rec.get("pid"), rec.get("start"))


def stop(state: StateDir) -> str | None:
    """Stop the recorded server; returns a description of a leftover process, if any."""
    rec = _record(state)
    if not rec:
        return None
    pid, started = rec.get("pid"), rec.get("start")
    if is_same_process(pid, started):
        assert isinstance(pid, int)
        signal_pid(pid, signal.SIGTERM)
        if not wait_gone(pid, started, 5):
            signal_pid(pid, signal.SIGKILL)
            if not wait_gone(pid, started, 5):
                return f"APT repo server, PID {pid}"
    state.repo_server_file.unlink(missing_ok=True)
    return None
