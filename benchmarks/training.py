"""Training jobs on the simulated cluster: samples/s of the same job on 1, 2 and 3 hosts, with and without
`weighting: speed`, and what edgejar's launch costs against starting torchrun by hand on the same hosts.

Needs a simulated cluster with PyTorch on three hosts, provisioned (run as root):

    .venv/bin/python -m runner sim up --config benchmarks/training-sim.yml
    ansible-playbook -i "$(.venv/bin/python -m runner sim inventory)" playbooks/provision.yml
    .venv/bin/python benchmarks/training.py [--steps 150] [--slow rpi1 --quota 25%] [--json FILE]
    .venv/bin/python benchmarks/training.py --batch 8192 --hidden 512 --steps 30 --overhead-runs 0 \
        --slow rpi1 --quota 25%   # compute-bound: where weighting can show
    .venv/bin/python benchmarks/training.py --skip-throughput --overhead-runs 3   # the launch overhead only

Each run is the example job (experiments/training/mlp.py, a global batch of --batch samples per step)
started with `runner up`, waited for until every unit completed, collected and read back with `runner
results --json`: samples/s in all (the sum of each rank's batch / step time) and the final loss. With
`--slow NODE` that host's units get `CPUQuota` (`edgejar_launch_cpu_quota`, a host_vars file written for
the benchmark and removed after), so one host is slower than the others, as a Pi is beside a Jetson; on
the simulated cluster every host shares this machine's CPUs, so without it the hosts are alike.

Launch overhead: from the start of `runner up` to the first recorded step (the job alone, nothing
changed since the previous run, so `runner up` skips the deploy: docs/e2e.md), of `runner up --deploy`
(the no-op deploy run all the same) and of `runner up --skip-deploy`, against the same from the start of
the same torchrun commands run by hand over SSH, all nodes at once (the command `python -m runner.node
train --print` shows, as the service user). Goal (issue 14): under 2 s more.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
JOB = "bench_train"
DB = "/var/lib/edgejar/data/records.sqlite3"


def sh(argv: list[str], timeout: float = 900) -> str:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def hosts(inventory: Path) -> dict[str, dict[str, Any]]:
    """host -> its inventory variables (the sim's inventory.yml)."""
    data = yaml.safe_load(inventory.read_text())
    out: dict[str, dict[str, Any]] = {}
    for group in data["all"]["children"]["edgejar_nodes"]["children"].values():
        out.update(group.get("hosts") or {})
    return out


def ssh_argv(hv: dict[str, Any], command: str) -> list[str]:
    return [
        "ssh", "-i", hv["ansible_ssh_private_key_file"], *shlex.split(hv["ansible_ssh_common_args"]),
        "-o", "BatchMode=yes", f"{hv['ansible_user']}@{hv['ansible_host']}", command,
    ]  # fmt: skip


def on(hv: dict[str, Any], command: str) -> str:
    return sh(ssh_argv(hv, f"sudo sh -c {shlex.quote(command)}"), timeout=120)


def job_file(
    tmp: Path, nodes: list[str], weighting: str, args: argparse.Namespace, seed: int
) -> tuple[Path, str]:
    """The job and its name, new for every run (`<JOB>_<seed>`): the records of one run are not mixed with
    an earlier run's in `runner results`, and launch starts its units afresh."""
    name = f"{JOB}_{seed}"
    doc = {
        "name": name,
        "kind": "torch_distributed",
        "description": "benchmarks/training.py: the example MLP, the same job on 1, 2 or 3 hosts.",
        "entry": str(ROOT / "experiments" / "training" / "mlp.py"),
        "args": [
            *("--steps", args.steps, "--batch", args.batch, "--hidden", args.hidden),
            *("--checkpoint-every", 0, "--seed", seed),
        ],
        "ranks": len(nodes),
        "nodes": nodes,
        "memory_gb": args.memory_gb,
        "weighting": weighting,
        "max_restarts": 0,
    }
    path = tmp / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, name


class RunFailed(Exception):
    """A unit of the job failed (the overhead runs take another sample and count it)."""


def retried(what: str, attempt: Callable[[], Any], failed: list[str], tries: int = 3) -> Any:
    """attempt() until its job ends, at most `tries` times (None if it never did). A job that failed says
    nothing about what is measured: each failure is printed and counted in `failed`."""
    for _ in range(tries):
        try:
            return attempt()
        except RunFailed as exc:
            print(f"{what}: {exc}; again", flush=True)
            failed.append(str(exc))
    return None


def units_done(inv: dict[str, dict[str, Any]], nodes: list[str], job: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # each node's own unit by name (a finished unit may be unloaded: a glob would match nothing)
        own = f"for f in /etc/edgejar/instances/{job}-*.json; do basename $f .json; done"
        units = f"$({own} | sed 's/^/edgejar-train@/; s/$/.service/')"
        show = f"systemctl show -p ActiveState,Result --value {units}"
        states = [on(inv[n], show) for n in nodes]
        if all(sorted(s.split()) == ["inactive", "success"] for s in states):  # systemd's own order
            return
        if any("failed" in s for s in states):
            raise RunFailed(f"{job}: a unit failed: {states}")
        time.sleep(2)
    sys.exit(f"the job did not end within {timeout} s")


def first_step_at(inv: dict[str, dict[str, Any]], nodes: list[str], since: float) -> float:
    """The earliest step recorded after `since` (epoch seconds) over the nodes, waiting for it."""
    sql = f"SELECT MIN(at) FROM train_steps WHERE at > {since}"
    conn = f"sqlite3.connect('file:{DB}?mode=ro', uri=True)"
    code = f"import sqlite3; print({conn}.execute({sql!r}).fetchone()[0])"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = [on(inv[n], f"/usr/bin/python3 -c {shlex.quote(code)}").strip() for n in nodes]
        times = [float(f) for f in found if f not in ("", "None")]
        if times:
            return min(times)
        time.sleep(0.5)
    sys.exit("no step recorded within 300 s")


RUNS = iter(range(int(time.time()), 2**62))  # unique over invocations: a repeated seed would not restart


def run_up(inventory: Path, inv: dict[str, Any], nodes: list[str], weighting: str, args: argparse.Namespace,
           tmp: Path, deploy: str = "") -> dict[str, Any]:  # fmt: skip
    """One job from `runner up` (`deploy`: "", "--deploy" or "--skip-deploy") to its results."""
    path, job = job_file(tmp, nodes, weighting, args, next(RUNS))
    start = time.time()
    sh(
        [
            PY,
            "-m",
            "runner",
            "-q",
            "up",
            "-i",
            str(inventory),
            *([deploy] if deploy else []),
            str(path),
        ]
    )
    first = first_step_at(inv, nodes, start)
    units_done(inv, nodes, job, 900)
    results = tmp / f"results-{len(nodes)}-{weighting}"
    sh([PY, "-m", "runner", "-q", "collect", "-i", str(inventory), "--results", str(results), "--no-report"])
    doc = json.loads(sh([PY, "-m", "runner", "results", "--results", str(results), "--json", job]))
    o = doc["experiments"][0]["outcome"]
    return {
        "nodes": nodes,
        "weighting": weighting,
        "samples_per_s": o["samples_per_s"],
        "final_loss": o["final_loss"],
        "batches": {r["node"]: r["batch"] for r in o["ranks"]},
        "up_to_first_step_s": round(first - start, 2),
    }


def by_hand(inventory: Path, inv: dict[str, Any], nodes: list[str]) -> float:
    """Start the placed units' torchrun commands by hand over SSH, all at once; seconds to the first step."""
    commands = {}
    for f in sorted((inventory.parent / "host_vars").glob("*/placement.yml")):
        for e in yaml.safe_load(f.read_text()).get("edgejar_training") or []:
            cfg = f"/etc/edgejar/instances/{e['id']}.json"
            shown = json.loads(
                on(
                    inv[f.parent.name],
                    f"/opt/edgejar/venv/bin/python -m runner.node train --config {cfg} --print",
                )
            )
            # a launch number of its own: the records keep these steps apart from the units' launches
            extra = {"EDGEJAR_TRAINING_LAUNCH": str(1000 + next(RUNS))}
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in {**shown["env"], **extra}.items())
            argv = " ".join(shlex.quote(a) for a in shown["argv"])
            commands[f.parent.name] = (
                f"cd /var/lib/edgejar/data && runuser -u edgejar-run -- env {env} {argv}"
            )
    start = time.time()
    procs = [subprocess.Popen(ssh_argv(inv[n], f"sudo sh -c {shlex.quote(c)}"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for n, c in commands.items()]  # fmt: skip
    first = first_step_at(inv, nodes, start)
    for p in procs:
        p.wait(timeout=900)
    return round(first - start, 2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-i", "--inventory", type=Path, default=None, help="default: the sim's inventory")
    p.add_argument("--nodes", default="jetson,rpi1,host", help="the hosts with PyTorch, in the order used")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=192, help="the global batch per step")
    p.add_argument(
        "--hidden", type=int, default=64, help="the MLP hidden width (larger, with --batch: compute-bound)"
    )
    p.add_argument("--memory-gb", type=float, default=0.5, help="memory_gb of the job (per rank)")
    p.add_argument("--slow", default="", metavar="NODE", help="give this host's units --quota of CPU")
    p.add_argument("--quota", default="25%", help="CPUQuota of --slow's units")
    p.add_argument("--overhead-runs", type=int, default=3)
    p.add_argument("--skip-throughput", action="store_true", help="only the launch overhead runs")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    inventory = args.inventory or Path(sh([PY, "-m", "runner", "sim", "inventory"]).strip())
    inv = hosts(inventory)
    nodes = args.nodes.split(",")
    quota = inventory.parent / "host_vars" / args.slow / "bench-cpu-quota.yml" if args.slow else None
    out: dict[str, Any] = {"steps": args.steps, "batch": args.batch, "hidden": args.hidden}
    out |= {"slow": args.slow, "quota": args.quota}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if quota:
                quota.parent.mkdir(parents=True, exist_ok=True)
                quota.write_text(f"edgejar_launch_cpu_quota: {json.dumps(args.quota)}\n")
            out["runs"] = []
            for n in range(1, 0 if args.skip_throughput else len(nodes) + 1):
                for weighting in ("none", "speed"):
                    r = retried(
                        f"{nodes[:n]} {weighting}",
                        partial(run_up, inventory, inv, nodes[:n], weighting, args, Path(tmp)),
                        out.setdefault("failed_runs", []),
                    )
                    if r is not None:
                        print(json.dumps(r), flush=True)
                        out["runs"].append(r)
            if args.overhead_runs:  # a first deploy, so that the timed plain `runner up`s skip theirs
                try:
                    run_up(inventory, inv, nodes, "none", args, Path(tmp), "--deploy")
                except RunFailed as exc:  # deployed all the same
                    print(f"the first deploy's job: {exc}", flush=True)
            times: dict[str, list[float]] = {"": [], "--deploy": [], "--skip-deploy": [], "by hand": []}
            failed: list[str] = []
            for _ in range(args.overhead_runs):  # interleaved, so that a busy moment hits all alike
                for mode in times:
                    attempt = (
                        partial(by_hand, inventory, inv, nodes)
                        if mode == "by hand"
                        else partial(run_up, inventory, inv, nodes, "none", args, Path(tmp), mode)
                    )
                    took = retried(mode or "runner up", attempt, failed)  # by_hand: s; run_up: its results
                    if took is not None:
                        times[mode].append(took if isinstance(took, float) else took["up_to_first_step_s"])
            hand = statistics.median(times["by hand"]) if args.overhead_runs else 0.0
            out["overhead"] = (
                {}
                if not args.overhead_runs
                else {
                    "runner_up_to_first_step_s": times[""],
                    "runner_up_deploy_to_first_step_s": times["--deploy"],
                    "runner_up_skip_deploy_to_first_step_s": times["--skip-deploy"],
                    "by_hand_to_first_step_s": times["by hand"],
                    "median_difference_s": round(statistics.median(times[""]) - hand, 2),
                    "median_difference_deploy_s": round(statistics.median(times["--deploy"]) - hand, 2),
                    "median_difference_skip_deploy_s": round(
                        statistics.median(times["--skip-deploy"]) - hand, 2
                    ),
                    "failed_runs": failed,
                }
            )
            print(json.dumps(out["overhead"]), flush=True)
        finally:
            if quota and quota.exists():
                quota.unlink()
            sh(
                [PY, "-m", "runner", "-q", "down", "-i", str(inventory)]
            )  # the last run's units (launch pruned the rest)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root (the simulated cluster)")
    sys.exit(main())
