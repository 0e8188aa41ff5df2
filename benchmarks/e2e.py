"""Wall time of `make demo`'s phases on the simulated cluster: sim up, provision, place + deploy + launch
(`runner up`), collect, and the time from the start of `runner up` to the first message between peers on
different hosts (from the collected records: sim hosts share the controller's clock).

Runs scripts/demo.sh with its own sim state directory and subnet (so a developer's cluster is untouched),
then takes that sim down. As root:

    .venv/bin/python benchmarks/e2e.py [--seconds 30] [--keep]

Prints one JSON object; docs/e2e.md has the numbers. Results land in results/ as with `make demo`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = Path("/var/tmp/edgejar-sim-e2e")
SIM_CONFIG = """\
subnet: 10.231.49.0/24
bridge: ejebr0
prefix: eje
repo_port: 8089
hosts:
  - {name: jetson, kind: jetson}
  - {name: rpi1, kind: rpi5}
  - {name: rpi2, kind: rpi5}
  - {name: host, kind: x86}
"""


def first_cross_host_message(results: Path, since: float) -> float | None:
    """Earliest receipt (at or after `since`) of a message whose sender runs on another node."""
    best: float | None = None
    for db in results.glob("*/results.sqlite3"):
        conn = sqlite3.connect(db)
        row = conn.execute(
            """SELECT MIN(m.at) FROM messages m
               JOIN instances me ON me.instance_id = m.instance_id
               JOIN instances peer ON peer.instance_id = m.peer_id
               WHERE m.direction = 'received' AND me.node != peer.node AND m.at >= ?""",
            (since,),
        ).fetchone()
        conn.close()
        if row[0] is not None:
            best = row[0] if best is None else min(best, row[0])
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=30, help="DEMO_SECONDS (default 30)")
    p.add_argument("--keep", action="store_true", help="leave the benchmark's sim up")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "sim.yml"
        cfg.write_text(SIM_CONFIG)
        times = Path(tmp) / "times"
        env = {
            **os.environ,
            "EDGEJAR_SIM_DIR": str(STATE_DIR),
            "DEMO_SIM_CONFIG": str(cfg),
            "DEMO_TIMES": str(times),
            "DEMO_SECONDS": str(args.seconds),
        }
        load0 = os.getloadavg()[0]
        t0 = time.time()
        demo = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
        total = time.time() - t0
        load1 = os.getloadavg()[0]
        if not args.keep:
            subprocess.run([sys.executable, "-m", "runner", "sim", "down"], cwd=ROOT, env=env, check=False)
        if demo.returncode != 0:
            sys.stderr.write(demo.stdout[-4000:] + demo.stderr[-4000:])
            return 1
        phases = {}
        for line in times.read_text().splitlines():
            name, seconds, start = line.split()
            phases[name] = {"seconds": float(seconds), "start": float(start)}
    m = re.search(r"up: placed, deployed, launched \(seconds: (.*)\)", demo.stderr + demo.stdout)
    up_parts = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())} if m else {}
    first = first_cross_host_message(ROOT / "results", phases["up"]["start"]) if "up" in phases else None
    doc = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_start_end": [round(load0, 1), round(load1, 1)],
        "demo_seconds": args.seconds,
        "total_s": round(total, 1),
        "phases_s": {k: v["seconds"] for k, v in phases.items()},
        "up_parts_s": {k: round(v, 2) for k, v in up_parts.items()},
        "first_cross_host_message_after_up_start_s": (
            round(first - phases["up"]["start"], 2) if first and "up" in phases else None
        ),
        "first_cross_host_message_after_launch_start_s": (
            round(first - phases["up"]["start"] - up_parts.get("place", 0) - up_parts.get("deploy.yml", 0), 2)
            if first and "up" in phases
            else None
        ),
    }
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
