"""VM hosts of the simulated cluster (`sim up --backend vm`): how long they take to come up, and what an
Ansible task costs on them, against the same hosts as nspawn containers.

Run as root, with nothing else on the subnet it uses (10.231.48.0/24):

    .venv/bin/python benchmarks/vm_hosts.py [--hosts rpi1:rpi5,host:x86] [--json FILE]

For each backend (nspawn, then vm): `sim up` (cached rootfs and VM image: boot only), then
`provision.yml --tags swap` twice (facts and the swap role: the first run configures, the second changes
nothing) and `sim down`; wall times in seconds. The numbers are this machine's: under TCG (no usable KVM)
each VM host emulates one vCPU, and the hosts share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
subnet: 10.231.48.0/24
bridge: ejbbr0
prefix: ejb
repo_port: 8088
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}{proc.stdout[-2000:]}")
    return took, proc.stdout.strip()


def one(backend: str, hosts: str, work: Path) -> dict[str, float]:
    config = work / f"{backend}.yml"
    config.write_text(CONFIG)
    env = {**os.environ, "EDGEJAR_SIM_DIR": str(work / f"state-{backend}")}
    env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(work / f"facts-{backend}")
    py = sys.executable
    sim = [py, "-m", "runner", "sim"]
    result: dict[str, float] = {}
    try:
        up_s, inventory = timed(
            [*sim, "up", "--config", str(config), "--hosts", hosts, "--backend", backend], env
        )
        result["sim_up_s"] = round(up_s, 1)
        book = [str(Path(py).parent / "ansible-playbook"), "-i", inventory, "playbooks/provision.yml"]
        for run in ("first", "second"):
            took, _ = timed([*book, "--tags", "swap", "-e", "edgejar_swap_size_mb=128"], env)
            result[f"provision_swap_{run}_s"] = round(took, 1)
    finally:
        down_s, _ = timed([*sim, "down"], env)
        result["sim_down_s"] = round(down_s, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", default="rpi1:rpi5,host:x86")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgejar-bench-vm-") as tmp:
        results = {backend: one(backend, args.hosts, Path(tmp)) for backend in ("nspawn", "vm")}
    report = {"hosts": args.hosts, "results": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
