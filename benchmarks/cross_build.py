"""The Pi's llama-cpp-python wheel: a cross build on the controller against a build under emulation.

Run as root on an x86_64 machine with gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu and qemu-user-static,
and the sim's arm64 rootfs cached (`python -m runner sim build --config` with an `arch: arm64` host):

    .venv/bin/python benchmarks/cross_build.py [--files N] [--skip-wheel] [--json FILE]

1. The whole wheel, as roles/edgejar_llama cross-builds the `a76` key: `pip wheel --no-deps
   --no-cache-dir llama-cpp-python==0.3.36` with edgejar_llama_cross.aarch64's and the a76 flavour's
   CMAKE_ARGS and `_PYTHON_HOST_PLATFORM=linux-aarch64`, every core building.
2. A build under emulation, which a whole wheel would take hours to show: N of llama.cpp's C++ sources
   (those of median size) compiled with the same flags, once by the cross compiler and once by Debian's
   arm64 g++ running through qemu-user in a throw-away copy of the arm64 rootfs (g++ installed into it from
   Debian's mirror), one file at a time both ways. Both are measured in CPU seconds of the compilers
   (user + system, which load beside the benchmark barely moves) as well as wall seconds; the CPU ratio,
   applied to step 1's CPU seconds, estimates a build under emulation (a build on a Pi itself is another
   number: native, but on a Pi's four cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from runner.sim import binfmt  # noqa: E402  (the repository's, run from anywhere)

VERSION = "0.3.36"
CROSS_CMAKE = (
    "-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 "
    "-DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++"
)
A76_CMAKE = "-DGGML_NATIVE=off -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16"
FLAGS = ["-O3", "-march=armv8.2-a+dotprod+fp16", "-fPIC", "-std=c++17", "-w"]
CACHE = Path(os.environ.get("EDGEJAR_CACHE_DIR", "/var/cache/edgejar"))


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc


def wheel(work: Path) -> tuple[float, float]:
    env = {
        **os.environ,
        "CMAKE_ARGS": f"{CROSS_CMAKE} {A76_CMAKE}",
        "_PYTHON_HOST_PLATFORM": "linux-aarch64",
        "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1),
    }
    started, cpu = time.monotonic(), cpu_s()
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--wheel-dir", str(work / "w"),
         f"llama-cpp-python=={VERSION}"],
        env=env,
    )  # fmt: skip
    return time.monotonic() - started, cpu_s() - cpu


def sources(work: Path, count: int) -> tuple[Path, list[Path]]:
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(work / "sd"),
         f"llama-cpp-python=={VERSION}"])  # fmt: skip
    with tarfile.open(next((work / "sd").glob("*.tar.gz"))) as tar:
        tar.extractall(work / "src", filter="data")
    llama = next((work / "src").iterdir()) / "vendor" / "llama.cpp"
    files = sorted((llama / "src").glob("*.cpp"), key=lambda p: p.stat().st_size)
    middle = max(0, len(files) // 2 - count // 2)
    return llama, files[middle : middle + count]


def includes(llama: Path) -> list[str]:
    dirs = [llama / "include", llama / "src", llama / "ggml" / "include", llama / "ggml" / "src"]
    return [f"-I{d}" for d in dirs]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compile_all(
    compiler: list[str], llama: Path, files: list[Path], out: Path, root: Path | None
) -> tuple[float, float]:
    """Compile each file alone; with `root`, inside that chroot (paths below it). (wall, CPU) seconds."""
    started, cpu = time.monotonic(), cpu_s()
    for f in files:
        inc = includes(llama)
        src, obj = str(f), str(out / (f.stem + ".o"))
        if root is not None:
            inc = [i.replace(str(root), "", 1) for i in inc]
            src, obj = src.replace(str(root), "", 1), obj.replace(str(root), "", 1)
            run(["chroot", str(root), *compiler, *FLAGS, *inc, "-c", src, "-o", obj])
        else:
            run([*compiler, *FLAGS, *inc, "-c", src, "-o", obj])
    return time.monotonic() - started, cpu_s() - cpu


def arm64_root(work: Path) -> Path:
    cached = sorted(CACHE.glob("rootfs-arm64-*/rootfs"))
    if not cached:
        sys.exit(
            "no arm64 rootfs in the cache: python -m runner sim build --config <a config with arch: arm64>"
        )
    root = work / "arm64"
    run(["cp", "-a", str(cached[-1]), str(root)])
    (root / "etc/resolv.conf").write_text(Path("/etc/resolv.conf").read_text())
    (root / "etc/apt/sources.list").write_text("deb http://deb.debian.org/debian bookworm main\n")
    started = time.monotonic()
    run(["chroot", str(root), "sh", "-c", "apt-get update -qq && apt-get install -y -qq g++"],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
    print(
        f"g++ installed in the arm64 copy under emulation in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return root


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=3, help="llama.cpp sources compiled both ways (default 3)")
    p.add_argument("--skip-wheel", action="store_true", help="no whole-wheel cross build (step 1)")
    p.add_argument(
        "--wheel-cpu-s",
        type=float,
        help="with --skip-wheel: step 1's CPU seconds from an earlier run, for the estimate",
    )
    p.add_argument("--json", type=Path, help="write the results here too")
    args = p.parse_args()
    for tool in ("aarch64-linux-gnu-g++", "qemu-aarch64-static", "chroot"):
        if shutil.which(tool) is None:
            sys.exit(f"missing {tool}")
    binfmt.acquire(f"benchmark {os.getpid()}")  # arm64 programs run in the chroot while it measures
    try:
        return measure(args)
    finally:
        binfmt.release(f"benchmark {os.getpid()}")


def measure(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="cross-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        result: dict[str, object] = {"cpus": os.cpu_count(), "llama_cpp_python": VERSION}
        wheel_cpu = args.wheel_cpu_s
        if not args.skip_wheel:
            wall, wheel_cpu = wheel(work)
            result |= {"cross_wheel_wall_s": round(wall, 1), "cross_wheel_cpu_s": round(wheel_cpu, 1)}
        root = arm64_root(work)
        llama, files = sources(root / "build", args.files)
        result["files"] = [f.name for f in files]
        (root / "build" / "cross").mkdir()
        (root / "build" / "emul").mkdir()
        cross = compile_all(["aarch64-linux-gnu-g++"], llama, files, root / "build" / "cross", None)
        emul = compile_all(["g++"], llama, files, root / "build" / "emul", root)
        ratio = emul[1] / cross[1]
        result |= {
            "cross_files_wall_s": round(cross[0], 1),
            "cross_files_cpu_s": round(cross[1], 1),
            "emulated_files_wall_s": round(emul[0], 1),
            "emulated_files_cpu_s": round(emul[1], 1),
            "cpu_ratio": round(ratio, 1),
        }
        if wheel_cpu:
            cpus = os.cpu_count() or 1
            result["emulated_wheel_cpu_estimate_s"] = round(wheel_cpu * ratio)
            result[f"emulated_wheel_wall_estimate_s_on_{cpus}_cores"] = round(wheel_cpu * ratio / cpus)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
