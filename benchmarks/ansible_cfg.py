"""No-op re-run of the same playbook on the simulated cluster: Ansible's defaults against our ansible.cfg.

Needs a running simulated cluster (`python -m runner sim up`, as root). For each configuration it closes
the SSH masters and drops cached facts, converges once (the first run), then times N re-runs, which
must report changed=0. Usage:

    .venv/bin/python benchmarks/ansible_cfg.py [--runs 3] [--playbook PLAYBOOK] [--json FILE]

(default playbook: tests/integration/playbooks/sim_smoke.yml).

Configurations: `defaults` (an empty ansible.cfg: 5 forks, no pipelining, ControlPersist 60 s, facts
gathered every play), `pipelining` (defaults + pipelining) and `edgejar` (the repository's ansible.cfg:
pipelining, ControlPersist 300 s, 20 forks, smart gathering with a jsonfile fact cache).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.sim.cluster import clear_fact_cache  # noqa: E402
from runner.sim.config import state_dir_from_env  # noqa: E402
from runner.sim.state import StateDir  # noqa: E402

CONFIGS = {
    "defaults": "",
    "pipelining": "[ssh_connection]\npipelining = True\n",
    "edgejar": None,  # the repository's ansible.cfg
}
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def close_masters(state: StateDir) -> None:
    if state.control_dir.is_dir():
        for sock in state.control_dir.iterdir():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "edgejar-sim"],
                capture_output=True,
                timeout=10,
                check=False,
            )


def play(
    inventory: Path, playbook: Path, config: Path, extra: list[str] | None = None
) -> tuple[float, dict[str, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(config)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    start = time.monotonic()
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(playbook), *(extra or [])],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"ansible-playbook failed with {config}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    changed = {m[0]: int(m[2]) for m in RECAP.findall(proc.stdout)}
    return elapsed, changed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="timed re-runs per configuration (default 3)")
    parser.add_argument("--playbook", type=Path, default=ROOT / "tests/integration/playbooks/sim_smoke.yml")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args()

    state = StateDir(state_dir_from_env())
    cfg = state.config()
    if cfg is None or not state.inventory.exists():
        sys.exit(f"the simulated cluster is not up ({state.root}): run `python -m runner sim up` first")
    results: dict[str, tuple[float, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ansible-cfg-bench.") as tmp:
        for name, text in CONFIGS.items():
            if text is None:
                config = ROOT / "ansible.cfg"
            else:
                config = Path(tmp) / name / "ansible.cfg"
                config.parent.mkdir()
                config.write_text(text)
            close_masters(state)
            clear_fact_cache(cfg)
            first, _ = play(state.inventory, args.playbook, config)
            reruns = []
            for _ in range(args.runs):
                elapsed, changed = play(state.inventory, args.playbook, config)
                if any(changed.values()):
                    sys.exit(f"{name}: a re-run changed something ({changed}); it is not a no-op re-run")
                reruns.append(elapsed)
            results[name] = (first, reruns)
            shown = ", ".join(f"{r:.1f}" for r in reruns)
            print(f"{name}: first {first:.1f} s, re-runs {shown} s", file=sys.stderr)
    close_masters(state)
    clear_fact_cache(cfg)

    base = statistics.median(results["defaults"][1])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"playbook: {args.playbook.relative_to(ROOT)}, {len(cfg.hosts)} hosts, {args.runs} re-runs each")
    print(f"load average at the end: {load} on {os.cpu_count()} CPUs")
    header = ("config", "first run s", "re-run median s", "re-run min s", "vs defaults")
    print(f"{header[0]:<12} {header[1]:>12} {header[2]:>16} {header[3]:>13} {header[4]:>12}")
    for name, (first, reruns) in results.items():
        median = statistics.median(reruns)
        print(f"{name:<12} {first:>12.1f} {median:>16.1f} {min(reruns):>13.1f} {base / median:>11.2f}x")
    if args.json:
        data = {
            n: {"first_s": round(f, 2), "reruns_s": [round(r, 2) for r in rr]}
            for n, (f, rr) in results.items()
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
