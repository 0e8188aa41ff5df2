"""The researcher's loop on the simulated cluster: `runner up` with nothing changed, `runner up` after one
instance's prompt was edited, and a no-op `deploy.yml`, each timed N times (median, min, max).

Run it after `make demo` (the sim up and provisioned, the demo's experiments in experiments/demo/), as
root. `--root DIR` runs another checkout's runner and playbooks on the same cluster and the same
experiment files (for a baseline: `git worktree add /tmp/before <commit>` and point --root there).

    .venv/bin/python benchmarks/iteration.py [--runs 5] [--root DIR] [--json FILE] [--cycle-delay S]

On the simulated cluster the instances run on this machine's own CPUs, beside Ansible; on real boards
they do not. `--cycle-delay S` gives every instance S seconds between cycles (`cycle_delay_s`), so the
instances are mostly idle and what is measured is the deploy and launch path itself, as on boards. A
restarted instance still runs its first cycle at once (a model load and a generation on the shared
CPUs), so before each timed run the benchmark waits until this machine's CPUs are idle again (under 25 %
busy over one second; `--settle S` waits at most S seconds, 0 not at all); the wait is not timed.

Every timed run is checked, not only timed: a no-op must leave every instance's main PID unchanged; an
edit must restart exactly the edited instance and return with it answering (launch waits for that).
Goals (issue 13): no-op `runner up` under 5 s, one edited instance answering under 8 s, no-op deploy under
3 s (four hosts, the demo's ten instances).
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
MAIN_PIDS = (
    "for u in $(systemctl list-units --plain --no-legend --state=active 'edgejar-instance@*'"
    " | cut -d' ' -f1); do echo $u $(systemctl show -p MainPID --value $u); done"
)


def sh(argv: list[str], root: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{tail}")
    return proc.stdout


def env_for(root: Path) -> dict[str, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"), PYTHONPATH=str(root))
    env["PATH"] = f"{ROOT / '.venv/bin'}:{env['PATH']}"
    return env


def pids(inventory: str, root: Path) -> dict[str, str]:
    """instance unit -> main PID, over every node."""
    out = sh(["ansible", "-i", inventory, "edgejar_nodes", "-b", "-o", "-m", "ansible.builtin.shell",
              "-a", MAIN_PIDS], root, env_for(root))  # fmt: skip
    found: dict[str, str] = {}
    for line in out.splitlines():
        text = line.split("(stdout) ", 1)[1] if "(stdout) " in line else ""
        for pair in text.split("\\n"):
            unit, _, pid = pair.strip().partition(" ")
            if unit.startswith("edgejar-instance@"):
                found[unit] = pid
    return found


def busy_over(seconds: float) -> float:
    """The fraction of this machine's CPU time that was busy over the next `seconds` (/proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def settle(limit: float) -> float:
    """Wait until the CPUs are idle (under 25 % busy over a second), at most `limit` s; the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and busy_over(1.0) >= 0.25:
        pass
    return time.monotonic() - t0


def timed(argv: list[str], root: Path) -> float:
    t0 = time.monotonic()
    sh(argv, root, env_for(root))
    return time.monotonic() - t0


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def edit(path: Path, iid: str, n: int) -> None:
    """Change one instance's system prompt (a new sentence each time)."""
    data = yaml.safe_load(path.read_text())
    for inst in data["instances"]:
        if inst["id"] == iid:
            inst["system_prompt"] = f"Edit number {n}: answer in one short sentence."
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose runner and playbooks run")
    parser.add_argument("--experiments", type=Path, nargs="+", help="default: experiments/demo/*.yml")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--cycle-delay", type=float, default=None, metavar="S", help="cycle_delay_s of every instance"
    )
    parser.add_argument(
        "--settle", type=float, default=90.0, metavar="S",
        help="before each timed run, wait at most S s for the CPUs to be idle (0: do not wait)",
    )  # fmt: skip
    args = parser.parse_args()
    root = args.root.resolve()
    sources = args.experiments or sorted((ROOT / "experiments/demo").glob("*.yml"))
    if not sources:
        sys.exit("no experiments: run `make demo` first (it writes experiments/demo/*.yml)")
    # Copies that run until stopped: an instance that completes its cycles during the runs would count
    # as a restart that the edit did not cause.
    workdir = Path(tempfile.mkdtemp(prefix="iteration-bench."))
    files = []
    for src in sources:
        data = yaml.safe_load(src.read_text())
        data["cycles"] = 0
        if args.cycle_delay is not None:
            data["cycle_delay_s"] = args.cycle_delay
        files.append(workdir / src.name)
        files[-1].write_text(yaml.safe_dump(data, sort_keys=False))
    py = str(ROOT / ".venv/bin/python")
    inventory = sh([py, "-m", "runner", "sim", "inventory"], ROOT).strip()
    up = [py, "-m", "runner", "up", "-i", inventory, *map(str, files)]
    deploy = ["ansible-playbook", "-i", inventory, str(root / "playbooks/deploy.yml")]
    target = yaml.safe_load(files[0].read_text())["instances"][0]["id"]
    original = files[0].read_text()
    results: dict[str, list[float]] = {"noop_up": [], "edit_up": [], "noop_deploy": []}
    waited: list[float] = []

    def run(argv: list[str]) -> float:
        waited.append(settle(args.settle))
        return timed(argv, root)

    try:
        timed(up, root)  # bring everything to the state of the files first
        for _ in range(args.runs):
            before = pids(inventory, root)
            results["noop_up"].append(run(up))
            if pids(inventory, root) != before:
                sys.exit("a no-op `runner up` restarted an instance")
        for n in range(args.runs):
            before = pids(inventory, root)
            edit(files[0], target, n)
            results["edit_up"].append(run(up))
            after = pids(inventory, root)
            restarted = sorted(u for u in before if after.get(u) != before[u])
            if restarted != [f"edgejar-instance@{target}.service"]:
                sys.exit(f"editing {target} restarted {restarted or 'nothing'}")
        for _ in range(args.runs):
            results["noop_deploy"].append(run(deploy))
    finally:
        files[0].write_text(original)
        timed(up, root)  # leave the cluster as the copies describe it
    summary = {k: stats(v) for k, v in results.items()}
    print(f"{'step':<14} {'median':>8} {'min':>8} {'max':>8}   ({args.runs} runs, {root})")
    print(f"(waited for idle CPUs before each run: up to {max(waited, default=0):.0f} s)")
    for k, s in summary.items():
        print(f"{k:<14} {s['median']:8.2f} {s['min']:8.2f} {s['max']:8.2f}")
    if args.json:
        record = {"root": str(root), "runs": results, "summary": summary, "settle_s": waited}
        args.json.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
