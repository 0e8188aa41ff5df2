"""Where a benchmark number came from, read on the node: the board, its CPU, clocks, power mode and
temperatures, the llama.cpp build and the model file. A value the node cannot give is the string
`unavailable: <why>`, never left out, so that every result says what it does not know.

Published Jetson figures swing 3-4x with the power mode and clocks: a number without these is worthless.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

SYS = Path("/sys")
PROC = Path("/proc")


def unavailable(why: str) -> str:
    return f"unavailable: {why}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def cpu_model(proc: Path = PROC) -> str:
    """`model name` of /proc/cpuinfo (x86), else the board model of the device tree (Pi, Jetson), else the
    ARM CPU part."""
    info = _read(proc / "cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    if "model name" in fields:
        return fields["model name"]
    board = _read(proc / "device-tree/model")
    if board:
        return board
    if "CPU part" in fields:
        return f"ARM CPU part {fields['CPU part']} (implementer {fields.get('CPU implementer', '?')})"
    return unavailable("no model name in /proc/cpuinfo and no device-tree model")


def cpu_clocks_mhz(sys_dir: Path = SYS) -> dict[str, Any] | str:
    """Current, min and max of the CPUs' scaling frequency (MHz) and the governor."""
    cur = []
    for f in sorted((sys_dir / "devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        text = _read(f)
        if text and text.isdigit():
            cur.append(int(text) // 1000)
    if not cur:
        return unavailable("no cpufreq in /sys (a VM or a container without it)")
    governor = _read(sys_dir / "devices/system/cpu/cpu0/cpufreq/scaling_governor") or "?"
    return {"min_mhz": min(cur), "max_mhz": max(cur), "cpus": len(cur), "governor": governor}


def gpu_clock_mhz(sys_dir: Path = SYS) -> dict[str, int] | str:
    """The devfreq devices' current frequency (the Jetson's GPU is one of them)."""
    out = {}
    for dev in sorted((sys_dir / "class/devfreq").glob("*")):
        text = _read(dev / "cur_freq")
        if text and text.isdigit():
            out[dev.name] = int(text) // 1_000_000
    return out or unavailable("no devfreq device (no GPU clock to read)")


def temperatures_c(sys_dir: Path = SYS) -> dict[str, float] | str:
    """Thermal zone type -> degrees Celsius."""
    out: dict[str, float] = {}
    for zone in sorted((sys_dir / "class/thermal").glob("thermal_zone*")):
        temp = _read(zone / "temp")
        if temp and temp.lstrip("-").isdigit():
            name = _read(zone / "type") or zone.name
            out[name if name not in out else f"{name}:{zone.name}"] = int(temp) / 1000
    return out or unavailable("no thermal zone in /sys (a VM or a container)")


def power_mode() -> str:
    """`nvpmodel -q` on a Jetson (the power mode), else why not."""
    tool = shutil.which("nvpmodel")
    if tool is None:
        return unavailable("no nvpmodel (not a Jetson)")
    try:
        proc = subprocess.run([tool, "-q"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return unavailable(f"nvpmodel -q: {exc}")
    text = " ".join(proc.stdout.split())
    return text if proc.returncode == 0 and text else unavailable(f"nvpmodel -q exited {proc.returncode}")


def wheel_key(record: Path) -> str:
    """The wheel key of the node's llama-cpp-python (the install record of roles/edgejar_llama)."""
    text = _read(record)
    if text is None:
        return unavailable(f"no install record {record}")
    for line in text.splitlines():
        if line.startswith("key "):
            return line[4:].strip()
    return unavailable(f"no key line in {record}")


def model_sha256(path: Path) -> str:
    """The sidecar's sha256 when it still describes this file (roles/edgejar_deploy writes it: same size,
    mtime and inode), else read the file."""
    st = path.stat()
    try:
        data = json.loads((path.parent / f".{path.name}.sha256").read_text())
    except (OSError, ValueError):
        data = None
    ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    if isinstance(data, dict) and all(data.get(k) == v for k, v in ident.items()):
        sha = data.get("sha256")
        if isinstance(sha, str) and len(sha) == 64:
            return sha
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def board() -> dict[str, Any]:
    """What the node is, read before a run."""
    return {
        "hostname": socket.gethostname(),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "cpu_clocks": cpu_clocks_mhz(),
        "gpu_clocks": gpu_clock_mhz(),
        "power_mode": power_mode(),
    }
