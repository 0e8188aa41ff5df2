"""First provision, first deploy and no-op re-deploys on fresh simulated hosts: Ansible's defaults
against edgejar's ansible.cfg, in the same run.

Needs root (it brings its own simulated cluster up and down, in EDGEJAR_SIM_DIR or the default state
directory, so do not run it while a developer cluster is up there). For each configuration: `sim down`,
`sim up` (fresh hosts), close SSH masters, drop cached facts, then time `provision.yml` (the sim's
package list, as the tests use it), `deploy.yml` after placing split brain and prisoners' dilemma, and N
no-op re-runs of `deploy.yml` (each must report changed=0). Usage:

    .venv/bin/python benchmarks/deploy.py [--runs 3] [--json FILE]

Goal (issue 4): the no-op deploy over four nodes at least 4x faster than Ansible's defaults and under 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from ansible_cfg import close_masters, play  # noqa: E402

from runner.sim.cluster import clear_fact_cache  # noqa: E402
from runner.sim.config import state_dir_from_env  # noqa: E402
from runner.sim.state import StateDir  # noqa: E402

# Ansible's defaults, plus only what the repository layout needs to run at all (where the roles are,
# the summary callback) and what security requires (host keys checked, which is also the default).
DEFAULTS_CFG = f"[defaults]\nroles_path = {ROOT / 'roles'}\n"
EXPERIMENTS = ["experiments/split_brain.yml", "experiments/prisoners_dilemma.yml"]


def sim(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "sim", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"`runner sim {' '.join(args)}` failed:\n{proc.stderr}")
    return proc.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="timed no-op re-deploys per configuration (default 3)"
    )
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args()
    subprocess.run(
        [sys.executable, "-m", "runner", "model", "tiny"], cwd=ROOT, check=True, capture_output=True
    )
    state = StateDir(state_dir_from_env())
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="deploy-bench.") as tmp:
        for name in ("defaults", "edgejar"):
            if name == "edgejar":
                config = ROOT / "ansible.cfg"
            else:
                config = Path(tmp) / name / "ansible.cfg"
                config.parent.mkdir()
                config.write_text(DEFAULTS_CFG)
            sim("down")
            inventory = Path(sim("up"))
            cfg = state.config()
            assert cfg is not None
            close_masters(state)
            clear_fact_cache(cfg)
            provision, _ = play(inventory, ROOT / "playbooks/provision.yml", config, [])
            placed = subprocess.run(
                [sys.executable, "-m", "runner", "place", "-i", str(inventory), *EXPERIMENTS],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if placed.returncode != 0:
                sys.exit(placed.stderr)
            first, _ = play(inventory, ROOT / "playbooks/deploy.yml", config)
            reruns = []
            for _ in range(args.runs):
                elapsed, changed = play(inventory, ROOT / "playbooks/deploy.yml", config)
                if any(changed.values()):
                    sys.exit(f"{name}: a re-deploy changed something ({changed}); it is not a no-op")
                reruns.append(elapsed)
            results[name] = {"provision_s": provision, "deploy_s": first, "noop_s": reruns}
            shown = ", ".join(f"{r:.1f}" for r in reruns)
            print(
                f"{name}: provision {provision:.1f} s, deploy {first:.1f} s, no-op {shown} s", file=sys.stderr
            )
        close_masters(state)
        sim("down")

    base = statistics.median(results["defaults"]["noop_s"])  # type: ignore[arg-type]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"4 simulated hosts, {args.runs} no-op re-deploys each; load average at the end: {load}")
    print(
        f"{'config':<10} {'provision s':>12} {'deploy s':>9} {'no-op median s':>15} {'no-op vs defaults':>18}"
    )
    for name, r in results.items():
        median = statistics.median(r["noop_s"])  # type: ignore[arg-type]
        times = f"{r['provision_s']:>12.1f} {r['deploy_s']:>9.1f} {median:>15.1f}"
        print(f"{name:<10} {times} {base / median:>17.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
