"""The read-only probe that runs ON a node, one process per poll: `python3 -` with this file on stdin.

Stdlib only and self-contained (it is sent as source text, nothing else of edgejar is on the node's path
when it runs). It prints one JSON object on stdout (see `collect`); the controller parses it with
`runner.health.parse`. It reads /proc, /sys and statvfs and runs `systemctl` twice; it writes nothing.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import time
from typing import Any

PROBE_VERSION = 1
DATA_DIR = "/var/lib/edgejar"
RECORDS_DB = "/var/lib/edgejar/data/records.sqlite3"
UNIT_GLOBS = ("edgejar-instance@*", "edgejar-train@*")  # experiment instances, training units
KERNEL_GLOB = "edgejar-kernel-*"  # notebook kernels (runner/node/kernels/ctl.py)
UNIT_PROPERTIES = (
    "Id",
    "ActiveState",
    "SubState",
    "Result",
    "NRestarts",
    "MemoryCurrent",
    "MemoryMax",
    "MainPID",
    "ActiveEnterTimestampMonotonic",
    "StateChangeTimestampMonotonic",
)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def meminfo() -> dict[str, int]:
    """/proc/meminfo in kB: MemTotal, MemAvailable, SwapTotal, SwapFree."""
    out: dict[str, int] = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable", "MemFree", "SwapTotal", "SwapFree"):
            with contextlib.suppress(IndexError, ValueError):
                out[key] = int(rest.split()[0])
    return out


def _int_file(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def memory_cgroup() -> dict[str, Any]:
    """Whether a memory cgroup controller is usable, and this machine's own ceiling when it has one.

    v2: `memory` in /sys/fs/cgroup/cgroup.controllers. v1: a mounted /sys/fs/cgroup/memory. The limit and
    usage at the root of the visible hierarchy are set inside a container (the simulated hosts) and
    absent or unlimited on a board.
    """
    controllers = _read("/sys/fs/cgroup/cgroup.controllers")
    if controllers is not None and "memory" in controllers.split():
        return {
            "version": 2,
            "memory": True,
            "limit": _int_file("/sys/fs/cgroup/memory.max"),
            "usage": _int_file("/sys/fs/cgroup/memory.current"),
        }
    if os.path.isfile("/sys/fs/cgroup/memory/memory.usage_in_bytes"):
        return {
            "version": 1,
            "memory": True,
            "limit": _int_file("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            "usage": _int_file("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
        }
    return {"version": 2 if controllers is not None else 0, "memory": False, "limit": None, "usage": None}


def disk(path: str) -> dict[str, Any]:
    target = path if os.path.isdir(path) else "/"
    st = os.statvfs(target)
    return {"path": target, "total": st.f_blocks * st.f_frsize, "avail": st.f_bavail * st.f_frsize}


def _systemctl(*args: str) -> str:
    try:
        proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout


def failed_units() -> list[str]:
    text = _systemctl("list-units", "--state=failed", "--plain", "--no-legend", "--full", "--no-pager")
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _units(*globs: str) -> list[dict[str, str]]:
    """`systemctl show` of every loaded unit matching `globs`: one property map each."""
    text = _systemctl("show", "--no-pager", "-p", ",".join(UNIT_PROPERTIES), *globs)
    units: list[dict[str, str]] = []
    for block in text.split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id", "").startswith(tuple(g.rstrip("*") for g in globs)):
            units.append(props)
    return units


def instance_units() -> list[dict[str, str]]:
    """Every loaded edgejar-instance@ and edgejar-train@ unit."""
    return _units(*UNIT_GLOBS)


def kernel_units() -> list[dict[str, str]]:
    """Every loaded notebook kernel unit (edgejar-kernel-<id>.service)."""
    return _units(KERNEL_GLOB)


def jetson() -> dict[str, Any]:
    """GPU load (per mille in sysfs, reported in %) and temperatures, where the sysfs files exist."""
    out: dict[str, Any] = {}
    for path in ("/sys/devices/gpu.0/load", "/sys/devices/platform/gpu.0/load"):
        load = _int_file(path)
        if load is not None:
            out["gpu_load_pct"] = load / 10.0
            break
    temps: dict[str, float] = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        kind = (_read(zone + "/type") or "").strip()
        milli = _int_file(zone + "/temp")
        if kind and milli is not None and milli > -40000:
            temps[kind] = milli / 1000.0
    if temps:
        out["temps_c"] = temps
    return out


RECORDS_SQL = {
    "lives": "SELECT instance_id, COUNT(*) FROM lives GROUP BY 1",
    "deaths": """SELECT instance_id, COUNT(*) FROM life_ends
        WHERE cause NOT IN ('stopped', 'completed') GROUP BY 1""",
    "cycle": "SELECT instance_id, MAX(cycle) FROM cycles GROUP BY 1",
    "tokens_per_s": """SELECT instance_id, tokens_per_s FROM cycles c WHERE started_at =
        (SELECT MAX(started_at) FROM cycles d WHERE d.instance_id = c.instance_id)""",
    "last_message_at": "SELECT instance_id, MAX(at) FROM messages GROUP BY 1",
    # How the latest life ended: its recorded end, else the exit systemd reported (None: not ended).
    "end": """SELECT l.instance_id, COALESCE(
            (SELECT cause FROM life_ends e WHERE e.instance_id = l.instance_id AND e.life = l.life),
            (SELECT cause FROM exit_reports x WHERE x.instance_id = l.instance_id AND x.life = l.life
             ORDER BY reported_at DESC LIMIT 1))
        FROM lives l WHERE l.life = (SELECT MAX(life) FROM lives m WHERE m.instance_id = l.instance_id)""",
    # Training units (runner/node/train.py): the latest step of the unit's first local rank, and how the
    # unit's latest launch ended (the wrapper's exit event).
    "train": """SELECT instance_id, json_array(step, loss, samples_per_s, rank) FROM train_steps s
        WHERE local_rank = 0 AND at = (SELECT MAX(at) FROM train_steps t
                                       WHERE t.instance_id = s.instance_id AND t.local_rank = 0)""",
    "train_end": """SELECT instance_id, CASE json_extract(detail, '$.returncode') WHEN 0 THEN 'completed'
            ELSE 'exit ' || json_extract(detail, '$.returncode') END FROM train_events e
        WHERE event = 'exit' AND launch = (SELECT MAX(launch) FROM train_events f
                                           WHERE f.instance_id = e.instance_id)""",
}
TABLES_NEEDED = {"train": "train_steps", "train_end": "train_events"}  # older databases lack them


def read_records(path: str) -> dict[str, Any]:
    """Per-instance statistics from the node's records database, read-only: {instance id: {"lives",
    "deaths", "cycle", "tokens_per_s", "last_message_at", "end"}} (`end`: how the latest life ended,
    e.g. completed, stopped, oom-kill; None while it runs); for a training unit {"train": [step, loss,
    samples/s, rank], "train_end": completed or exit N}. `runner.health.parse.instance_stats` maps it
    onto the instance rows. A database that cannot be read gives {} (the rest of the probe still counts).
    """
    import sqlite3

    out: dict[str, dict[str, Any]] = {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for key, sql in RECORDS_SQL.items():
                if TABLES_NEEDED.get(key, "lives") not in tables:
                    continue
                for iid, value in conn.execute(sql):
                    out.setdefault(str(iid), {})[key] = json.loads(value) if key == "train" else value
        finally:
            conn.close()
    except sqlite3.Error:
        return {}
    return out


def collect() -> dict[str, Any]:
    started = time.monotonic()
    has_db = os.path.isfile(RECORDS_DB)
    try:
        import sqlite3  # noqa: F401

        has_sqlite = True
    except ImportError:
        has_sqlite = False
    load = (_read("/proc/loadavg") or "0 0 0").split()
    uptime = (_read("/proc/uptime") or "0").split()
    report: dict[str, Any] = {
        "v": PROBE_VERSION,
        "time": time.time(),
        "hostname": os.uname().nodename,
        "uptime_s": float(uptime[0]),
        "load": [float(x) for x in load[:3]],
        "cpus": os.cpu_count() or 1,
        "mem": meminfo(),
        "cgroup": memory_cgroup(),
        "disk": disk(DATA_DIR),
        "failed_units": failed_units(),
        "units": instance_units(),
        "kernels": kernel_units(),
        "jetson": jetson(),
        "records_db": has_db,
        "records": read_records(RECORDS_DB) if has_db and has_sqlite else {},
    }
    report["probe_s"] = round(time.monotonic() - started, 4)
    return report


if __name__ == "__main__":
    print(json.dumps(collect(), separators=(",", ":")))
