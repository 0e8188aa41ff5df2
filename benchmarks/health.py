"""One health poll of all nodes against a plain `ansible -m ansible.builtin.setup` of the same nodes.

Needs root (it brings up its own simulated cluster, unless --inventory names a running one). For each
cluster size it brings the sim up, then times:
  - `poll cold`: the first poll (opens one SSH master per node),
  - `poll warm`: median and max of --runs further polls over the open masters (the monitor's steady state),
  - `health CLI`: `python -m runner health` as a process (inventory parse + poll, masters reused),
  - `ansible setup`: `ansible edgejar_nodes -m ansible.builtin.setup` with the repository's ansible.cfg
    (pipelining, ControlPersist, 20 forks), first run and a repeat over its own warm masters.
Usage (as root; slot 3 subnet and names by default, so it does not disturb other clusters):

    .venv/bin/python benchmarks/health.py --hosts 4 20 [--runs 10] [--json FILE]
    .venv/bin/python benchmarks/health.py --hosts 4 --fanout 5    # 20 nodes on 4 booted hosts
    .venv/bin/python benchmarks/health.py --inventory "$(python -m runner sim inventory)"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from runner.health.cluster import HealthService  # noqa: E402
from runner.health.model import Status  # noqa: E402
from runner.health.status import Thresholds  # noqa: E402

KINDS = ("jetson", "rpi5", "rpi5", "x86")


def sim_config(n: int, subnet: str, bridge: str, prefix: str, port: int) -> str:
    hosts = "\n".join(
        f"  - {{name: n{i:02d}, kind: {KINDS[i % len(KINDS)]}, memory_mib: 512}}" for i in range(n)
    )
    return f"subnet: {subnet}\nbridge: {bridge}\nprefix: {prefix}\nrepo_port: {port}\nhosts:\n{hosts}\n"


def sim(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "sim", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"sim {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout.strip()


def fan_out(inventory: Path, k: int, into: Path) -> Path:
    """An inventory with every host of `inventory` repeated k times (`<name>-<i>`, same connection):
    k SSH masters and k probes per real host, for sizes the machine cannot boot as separate hosts."""
    data = yaml.safe_load(inventory.read_text())

    def walk(group: dict) -> None:
        if group.get("hosts"):
            group["hosts"] = {f"{h}-{i}": dict(v) for h, v in group["hosts"].items() for i in range(k)}
        for child in (group.get("children") or {}).values():
            walk(child)

    walk(data["all"])
    (into / "group_vars").symlink_to(ROOT / "group_vars")
    (into / "host_vars").mkdir()
    out = into / "inventory.yml"
    out.write_text(yaml.safe_dump(data))
    return out


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.monotonic() - start, proc.returncode


def measure(inventory: Path, runs: int) -> dict[str, object]:
    load_start = os.getloadavg()
    service = HealthService.from_inventory(inventory, Thresholds(grace_s=30), timeout_s=30)
    try:
        start = time.monotonic()
        first = service.poll()
        cold = time.monotonic() - start
        bad = [n.node for n in first.nodes if n.status == Status.UNAVAILABLE]
        if bad:
            raise SystemExit(f"unreachable nodes: {bad}")
        warm = []
        for _ in range(runs):
            start = time.monotonic()
            service.poll()
            warm.append(time.monotonic() - start)
        env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        cli, cli_rc = timed([sys.executable, "-m", "runner", "health", "-i", str(inventory)], env)
        setup = [
            str(Path(sys.executable).parent / "ansible"),
            "-i",
            str(inventory),
            "edgejar_nodes",
            "-m",
            "ansible.builtin.setup",
        ]
        setup_first, rc1 = timed(setup, env)
        setup_again, rc2 = timed(setup, env)
    finally:
        service.close()
    return {
        "nodes": len(first.nodes),
        "poll_cold_s": round(cold, 3),
        "poll_warm_median_s": round(statistics.median(warm), 3),
        "poll_warm_max_s": round(max(warm), 3),
        "health_cli_s": round(cli, 3),
        "health_cli_rc": cli_rc,
        "ansible_setup_first_s": round(setup_first, 3),
        "ansible_setup_again_s": round(setup_again, 3),
        "ansible_rc": [rc1, rc2],
        "load_start": [round(x, 1) for x in load_start],
        "load_end": [round(x, 1) for x in os.getloadavg()],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, nargs="+", default=[4, 20], help="cluster sizes to bring up")
    p.add_argument("--inventory", type=Path, help="measure this running cluster instead")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument(
        "--fanout", type=int, default=1, metavar="K", help="repeat every host K times in the inventory"
    )
    p.add_argument("--subnet", default="10.231.53.0/24")
    p.add_argument("--bridge", default="ejsbr3")
    p.add_argument("--prefix", default="ejb3")
    p.add_argument("--repo-port", type=int, default=8093)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = []
    if args.inventory:
        results.append(measure(args.inventory, args.runs))
    else:
        env = {**os.environ, "EDGEJAR_SIM_DIR": "/var/tmp/edgejar-sim-bench3"}
        for n in args.hosts:
            with tempfile.NamedTemporaryFile("w", suffix=".yml") as cfg:
                cfg.write(sim_config(n, args.subnet, args.bridge, args.prefix, args.repo_port))
                cfg.flush()
                sim(env, "down")
                try:
                    inventory = Path(sim(env, "up", "--config", cfg.name))
                    with tempfile.TemporaryDirectory() as tmp:
                        if args.fanout > 1:
                            inventory = fan_out(inventory, args.fanout, Path(tmp))
                        results.append(
                            {**measure(inventory, args.runs), "sim_hosts": n, "fanout": args.fanout}
                        )
                except SystemExit as exc:  # e.g. a host that did not boot in time on a loaded machine
                    results.append({"nodes": n, "error": str(exc)[-400:]})
                finally:
                    sim(env, "down")
                print(json.dumps(results[-1]), flush=True)
    if args.inventory:
        print(json.dumps(results[-1]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
