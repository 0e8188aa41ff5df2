"""Notebook kernels on the simulated cluster: time from a kernel request to its first executed cell, per
placement kind (auto, GPU, tag, node), cold and warm. Goal (issue 15): under 3 s warm.

Needs a simulated cluster, provisioned and deployed, with the gateway (run as root):

    .venv/bin/python -m runner sim up
    I="$(.venv/bin/python -m runner sim inventory)"
    ansible-playbook -i "$I" playbooks/provision.yml
    .venv/bin/python -m runner up -i "$I" experiments/split_brain.yml      # deploys; experiments beside
    ansible-playbook -i "$I" playbooks/notebooks.yml -e edgejar_notebooks_token=<24+ characters>
    EDGEJAR_NOTEBOOKS_TOKEN=<the same> .venv/bin/python benchmarks/kernels.py -i "$I" [--reps 5] [--json FILE]

Cold: the first kernel of each kind right after the gateway restarted (a new process: no SSH connection
to any node yet, nothing cached). Warm: the next --reps of the kind, one at a time. Each sample is: POST
/api/kernels (placement, SSH to the node's helper, systemd-run, the kernel's start), then `6*7` over the
websocket channels until its result; the kernel is stopped after. The numbers are this machine's (every
simulated host shares its two CPUs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.notebooks.client import Gateway, locate, token_from_env

KINDS = {
    "auto": ("edgejar", {}),
    "gpu": ("edgejar-gpu", {}),
    "tag": ("edgejar-tag-rpi5", {}),
    "node": ("edgejar", {"KERNEL_EDGEJAR_NODE": "host"}),
}


def first_cell(gw: Gateway, spec: str, env: dict[str, str]) -> float:
    started = time.monotonic()
    kid = gw.start(spec, env)
    try:
        cell = gw.execute(kid, "6*7")
        assert cell.result == "42", cell
        return time.monotonic() - started
    finally:
        gw.stop(kid)


def restart_gateway(inventory: str, host: str, gw: Gateway) -> None:
    subprocess.run(
        # reset-failed first: the unit's start limit (5 in 300 s) counts these restarts too
        ["ansible", host, "-i", inventory, "-b", "-m", "ansible.builtin.shell", "-a",
         "systemctl reset-failed edgejar-gateway.service; systemctl restart edgejar-gateway.service"],
        check=True, capture_output=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            gw.kernelspecs()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-i", "--inventory", required=True)
    p.add_argument("--gateway-host", default="host")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    gw = locate(Path(args.inventory), None, None, token_from_env())
    results: dict[str, dict[str, float | list[float]]] = {}
    for kind, (spec, env) in KINDS.items():
        restart_gateway(args.inventory, args.gateway_host, gw)  # each kind's first request is cold
        cold = first_cell(gw, spec, env)
        warm = [first_cell(gw, spec, env) for _ in range(args.reps)]
        results[kind] = {
            "cold_s": round(cold, 3),
            "warm_median_s": round(statistics.median(warm), 3),
            "warm_max_s": round(max(warm), 3),
            "warm_s": [round(w, 3) for w in warm],
        }
        print(f"{kind:5}  cold {cold:6.2f} s   warm median {statistics.median(warm):5.2f} s  "
              f"max {max(warm):5.2f} s  (n={len(warm)})", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
