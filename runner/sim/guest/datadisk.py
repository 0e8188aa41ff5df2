"""The per-run data disk of the CI guest: the repository, the sim's cached rootfs and APT repository, the
Python wheels the job installs (llama-cpp-python from pip's cache: llama.cpp is never built in the guest),
and the job script. An ext4 image made with `mke2fs -d` from a staging tree of hard links (no copy of
the caches on the host), mounted by the guest at /mnt/data; the job writes its log and results into
its `out/` directory, read back with `debugfs` after the guest powered off (no loop mount needed).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from runner.errors import EdgejarError
from runner.sim.system import log, run

HEADROOM_MIB = 1024  # room for out/ and for ext4 itself


NODE_LOCK = Path("roles/edgejar_llama/files/locks/base.txt")
GUEST_PYTHON = Path("/usr/bin/python3")  # Debian 12's, the same interpreter as the guest's


def lock_constraints(lock_text: str, python_full_version: str) -> str:
    """A hashed lock as pip constraints for this machine's architecture and the given Python (the guest's,
    which may not be the one running pip): each applying entry's `name==version`, hashes left out."""
    environment = {
        **default_environment(),
        "python_full_version": python_full_version,
        "python_version": ".".join(python_full_version.split(".")[:2]),
    }
    out = []
    for line in lock_text.splitlines():
        if not line.strip() or line[0].isspace() or line.startswith("#"):
            continue
        req = Requirement(line.rstrip().removesuffix("\\").strip())
        if req.marker is None or req.marker.evaluate(environment):
            out.append(f"{req.name}{req.specifier}\n")
    return "".join(out)


def wheels_dir(cache_dir: Path, repo: Path) -> Path:
    """Wheels of edgejar's runtime and `node` dependencies for the guest, made by this machine's pip
    (llama-cpp-python comes from pip's wheel cache) at the node lock's versions, so that they also fill
    the guest controller's wheelhouse for its one node; cached per pyproject.toml and node lock."""
    lock = (repo / NODE_LOCK).read_text()
    key = hashlib.sha256((repo / "pyproject.toml").read_bytes() + lock.encode()).hexdigest()[:16]
    target = cache_dir / f"ci-guest-wheels-{key}"
    if (target / ".complete").exists():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    log(f"collecting the guest's Python wheels in {target} (pip's cache has llama-cpp-python)")
    constraints = partial / "node-lock-constraints.txt"
    guest_python = run([str(GUEST_PYTHON), "-c", "import platform; print(platform.python_version())"])
    constraints.write_text(lock_constraints(lock, guest_python.stdout.strip()))
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(partial), "-c", str(constraints)]
    run([*pip_wheel, f"{repo}[node]"], timeout=1800)
    constraints.unlink()
    for own in partial.glob("edgejar-*.whl"):  # the guest runs the repository's code, not a wheel of it
        own.unlink()
    if not any(partial.glob("llama_cpp_python-*.whl")):
        raise EdgejarError(f"no llama-cpp-python wheel in {partial}: run `make venv` first (it builds it)")
    (partial / ".complete").write_text("")
    for old in cache_dir.glob("ci-guest-wheels-*"):
        if old.is_dir() and old != partial:
            shutil.rmtree(old, ignore_errors=True)
    partial.rename(target)
    return target


def venv_dir(cache_dir: Path, wheels: Path) -> Path:
    """A venv of the guest's dependencies, made here (natively: pip under emulation takes minutes) with
    Debian's python3, the guest's interpreter, at the path where the guest mounts it; cached per wheel set."""
    target = cache_dir / f"ci-guest-venv-{wheels.name.rsplit('-', 1)[-1]}"
    if (target / ".complete").exists():
        return target
    if not GUEST_PYTHON.exists():
        raise EdgejarError(f"{GUEST_PYTHON} is missing: the guest's venv is made with Debian's python3")
    shutil.rmtree(target, ignore_errors=True)
    log(f"making the guest's venv in {target}")
    run([str(GUEST_PYTHON), "-m", "venv", str(target)], timeout=300)
    wheel_files = [str(w) for w in sorted(wheels.glob("*.whl"))]
    run(
        [str(target / "bin/pip"), "install", "-q", "--no-index", "--find-links", str(wheels), *wheel_files],
        timeout=900,
    )
    (target / ".complete").write_text("")
    for old in cache_dir.glob("ci-guest-venv-*"):
        if old.is_dir() and old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def repo_files(repo: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files: the working tree as the developer has it."""
    out = run(["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard", "-z"]).stdout
    return [f for f in out.split("\0") if f and (repo / f).is_file()]


def stage(staging: Path, repo: Path, cache_entries: list[Path], wheels: Path, venv: Path, job: Path) -> None:
    """The tree the data disk is made from (hard links where the source is on the same filesystem)."""
    staging.mkdir(parents=True)
    (staging / "out").mkdir()
    dest = staging / "repo"
    for rel in repo_files(repo):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)
    cache = staging / "cache"
    cache.mkdir()
    for entry in [*cache_entries, wheels, venv]:
        target = {wheels: staging / "wheels", venv: staging / "venv"}.get(entry, cache / entry.name)
        if run(["cp", "-al", str(entry), str(target)], check=False, timeout=600).returncode != 0:
            shutil.rmtree(target, ignore_errors=True)  # another filesystem: copy instead of linking
            run(["cp", "-a", str(entry), str(target)], timeout=600)
    shutil.copy2(job, staging / "job.sh")
    (staging / "venv-path").write_text(f"{venv}\n")  # where the guest mounts the venv (its scripts' shebangs)


def make_image(staging: Path, image: Path) -> None:
    used = int(run(["du", "-sm", "--apparent-size", str(staging)]).stdout.split()[0])
    size = int(used * 1.3) + HEADROOM_MIB
    run(
        ["mke2fs", "-q", "-t", "ext4", "-L", "edgejar-data", "-d", str(staging), str(image), f"{size}M"],
        timeout=900,
    )


def read_out(image: Path, name: str, dest: Path) -> bool:
    """Copy out/<name> from the data disk image to dest; False if it is not there."""
    proc = run(["debugfs", "-R", f"dump /out/{name} {dest}", str(image)], check=False)
    return proc.returncode == 0 and dest.exists() and dest.stat().st_size > 0
