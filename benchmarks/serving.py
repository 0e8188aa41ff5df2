"""Serving on the simulated cluster: what the front door costs, and how each strategy does with one slow
host.

Needs a simulated cluster, provisioned, and the tiny model (run as root):

    .venv/bin/python -m runner sim up
    ansible-playbook -i "$(.venv/bin/python -m runner sim inventory)" playbooks/provision.yml
    .venv/bin/python -m runner model tiny
    .venv/bin/python benchmarks/serving.py [--requests 60] [--slow rpi1 --quota 25%] [--json FILE]

It starts experiments/serving.yml (three replicas) with `runner up` and the front door with
playbooks/frontdoor.yml (keys made for the run), then:

1. Overhead: the same completions (max_tokens --tokens) one at a time, straight to the replicas in
   turn and through the front door (round robin): p50 and p99 latency and the difference at p50 (goal,
   issue 16: under 2 ms), then --concurrency at once: the aggregate throughput of each (goal: the front
   door at least 95 % of straight).
   With --door-cpu N the front door runs on CPU N alone and the replicas and the client on the other
   CPUs, as a coordinator runs beside the boards on a real cluster; without it everything shares every
   CPU of this machine, so the front door's CPU cost comes out of the replicas' time.
2. With --slow NODE, that host's replica gets CPUQuota (host_vars, removed after) and is relaunched;
   for each strategy, --requests completions at --concurrency: p50, p99 and how many each replica took.

Every request is a real completion of the tiny model; the numbers are this machine's (every simulated
host shares its CPUs).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import ssl
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from training import PY, ROOT, sh  # the same runner of commands (benchmarks/training.py)

from runner.node.frontdoor.routing import STRATEGIES

EXPERIMENT = ROOT / "experiments" / "serving.yml"


_conns = threading.local()  # each client thread keeps one connection per target, as an OpenAI client does


def connection(url: str, tls: ssl.SSLContext | None, fresh: bool) -> http.client.HTTPConnection:
    """The thread's kept-alive connection to url (a new one per request with `fresh`: --new-connections)."""
    pool: dict[str, http.client.HTTPConnection] = _conns.__dict__.setdefault("pool", {})
    conn = None if fresh else pool.get(url)
    if conn is None:
        parts = urllib.parse.urlsplit(url)
        if tls is None:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=300)
        else:
            conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=300, context=tls)
        pool[url] = conn
    return conn


def post(url: str, key: str, tls: ssl.SSLContext | None, body: dict[str, Any], fresh: bool = False) -> float:
    """Seconds for one completion (raises on any failure: a benchmark counts answered requests only)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if fresh:
        headers["Connection"] = "close"
    data = json.dumps(body).encode()
    start = time.perf_counter()
    conn = connection(url, tls, fresh)
    conn.request("POST", "/v1/completions", body=data, headers=headers)
    resp = conn.getresponse()
    answer = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{url}: HTTP {resp.status}: {answer[:300]!r}")
    json.loads(answer)
    elapsed = time.perf_counter() - start
    if fresh:
        conn.close()
    return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(times: list[float], wall: float | None = None) -> dict[str, float]:
    out = {"p50_ms": round(1000 * statistics.median(times), 2), "p99_ms": round(1000 * pct(times, 0.99), 2)}
    if wall:
        out["requests_per_s"] = round(len(times) / wall, 2)
    return out


def load(
    targets: list[tuple[str, str, ssl.SSLContext | None]], n: int, concurrency: int, tokens: int, fresh: bool
) -> tuple[list[float], float]:
    """n completions over the targets in turn, `concurrency` at once: the times and the wall time."""
    body = {"model": "chat", "prompt": "The cluster", "max_tokens": tokens, "temperature": 0}
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        pick = [targets[k % len(targets)] for k in range(n)]
        times = list(pool.map(lambda t: post(t[0], t[1], t[2], body, fresh), pick))
    return times, time.perf_counter() - start


def pids(pattern: str) -> list[int]:
    """This machine's processes whose command line contains `pattern` (the simulated hosts' are too)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if pattern in cmd:
                found.append(int(d.name))
    return found


def pin(processes: list[int], cpus: set[int]) -> None:
    """Every thread of each process onto `cpus` (threads made later inherit it from their maker)."""
    for pid in processes:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(task.name), cpus)


def admin(door: str, key: str, tls: ssl.SSLContext, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(
        door + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60, context=tls) as resp:
        return json.loads(resp.read())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--concurrency", type=int, default=6)
    p.add_argument("--tokens", type=int, default=8, help="max_tokens of each completion")
    p.add_argument("--slow", default="", metavar="NODE", help="give this host's replica --quota of CPU")
    p.add_argument("--quota", default="25%")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--new-connections",
        action="store_true",
        help="a new connection (TCP, and TLS to the front door) for every request, instead of one kept alive "
        "per client thread and target as an OpenAI client keeps them",
    )
    p.add_argument(
        "--door-cpu",
        type=int,
        default=None,
        metavar="N",
        help="for the overhead runs, the front door's processes on CPU N alone and the replicas and this "
        "client on the others: the coordinator's CPU apart from the boards', as on a real cluster "
        "(default: everything shares every CPU, which measures what the front door costs in CPU)",
    )
    args = p.parse_args()
    inventory = Path(sh([PY, "-m", "runner", "sim", "inventory"]).strip())
    keys = {"admin": os.urandom(18).hex(), "user": os.urandom(18).hex()}
    extra = {"edgejar_frontdoor_keys": [{"name": f"bench-{r}", "key": k, "role": r} for r, k in keys.items()]}
    extra_file = Path("/tmp/edgejar-bench-frontdoor.json")
    extra_file.write_text(json.dumps(extra))
    extra_file.chmod(0o600)
    quota = inventory.parent / "host_vars" / args.slow / "bench-cpu-quota.yml" if args.slow else None
    out: dict[str, Any] = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "tokens": args.tokens,
        "new_connections": args.new_connections,
    }
    everything = set(range(os.cpu_count() or 1))
    pinned: list[int] = []
    try:
        sh([PY, "-m", "runner", "-q", "up", "-i", str(inventory), str(EXPERIMENT)])
        sh(
            [
                str(ROOT / ".venv" / "bin" / "ansible-playbook"),
                "-i",
                str(inventory),
                "-e",
                f"@{extra_file}",
                str(ROOT / "playbooks" / "frontdoor.yml"),
            ]
        )
        replicas = [
            e
            for f in sorted((inventory.parent / "host_vars").glob("*/placement.yml"))
            for e in yaml.safe_load(f.read_text()).get("edgejar_instances") or []
            if e.get("mode") == "serve"
        ]
        secret = (ROOT / ".edgejar" / "secrets" / "chat").read_text().strip()
        hv = {
            n: h
            for g in yaml.safe_load(inventory.read_text())["all"]["children"]["edgejar_nodes"][
                "children"
            ].values()
            for n, h in g["hosts"].items()
        }
        tls = ssl.create_default_context(cafile=str(ROOT / ".edgejar" / "frontdoor" / "host.crt"))
        door = f"https://{hv['host']['ansible_host']}:8443"
        direct = [(f"http://{e['address']}:{e['port']}", secret, None) for e in replicas]
        through = [(door, keys["user"], tls)]
        fresh = args.new_connections
        if args.door_cpu is not None:  # the coordinator's CPU apart from the boards' (see --door-cpu)
            rest = everything - {args.door_cpu}
            door_pids = pids("runner.node frontdoor --config")
            replica_pids = [q for e in replicas for q in pids(f"/etc/edgejar/instances/{e['id']}.json")]
            if not door_pids or len(replica_pids) < len(replicas) or not rest:
                sys.exit(f"--door-cpu: front door {door_pids}, replicas {replica_pids}, other CPUs {rest}")
            pin(door_pids, {args.door_cpu})
            pin(replica_pids, rest)
            os.sched_setaffinity(0, rest)  # the client's threads too
            pinned = door_pids + replica_pids + [os.getpid()]
            out["door_cpu"] = args.door_cpu
        load(direct, 6, 1, args.tokens, fresh)  # warm every replica
        load(through, 6, 1, args.tokens, fresh)
        seq_direct, _ = load(direct, args.requests, 1, args.tokens, fresh)
        seq_door, _ = load(through, args.requests, 1, args.tokens, fresh)
        par_direct, wall_direct = load(direct, args.requests, args.concurrency, args.tokens, fresh)
        par_door, wall_door = load(through, args.requests, args.concurrency, args.tokens, fresh)
        out["overhead"] = {
            "one_at_a_time": {
                "direct": summary(seq_direct),
                "front_door": summary(seq_door),
                "added_p50_ms": round(
                    1000 * (statistics.median(seq_door) - statistics.median(seq_direct)), 2
                ),
            },
            "concurrent": {
                "direct": summary(par_direct, wall_direct),
                "front_door": summary(par_door, wall_door),
                "throughput_ratio": round(wall_direct / wall_door, 3),
            },
        }
        print(json.dumps(out["overhead"]), flush=True)
        pin(pinned, everything)  # the strategies share the CPUs again (a relaunch makes new replicas)
        if quota:
            quota.parent.mkdir(parents=True, exist_ok=True)
            quota.write_text(f"edgejar_launch_cpu_quota: {json.dumps(args.quota)}\n")
            sh([PY, "-m", "runner", "-q", "up", "-i", str(inventory), "--skip-deploy", str(EXPERIMENT)])
            out["slow"] = {"node": args.slow, "quota": args.quota}
            # the relaunch restarted the slow replica: the door's poll (every 5 s) may have seen its port
            # closed; wait until it routes to every replica again, or the strategies would skip that one
            deadline = time.monotonic() + 60
            while any(
                b.get("unreachable")
                for b in admin(door, keys["admin"], tls, "GET", "/admin/status")["backends"]
            ):
                if time.monotonic() > deadline:
                    sys.exit("the front door still calls a replica unreachable after 60 s")
                time.sleep(0.5)
        out["strategies"] = {}
        for strategy in STRATEGIES:
            admin(door, keys["admin"], tls, "PUT", "/admin/strategy", {"strategy": strategy})
            before = {
                b["id"]: b["served"]
                for b in admin(door, keys["admin"], tls, "GET", "/admin/status")["backends"]
            }
            times, wall = load(through, args.requests, args.concurrency, args.tokens, fresh)
            after = admin(door, keys["admin"], tls, "GET", "/admin/status")["backends"]
            took = {f"{b['id']}@{b['node']}": b["served"] - before[b["id"]] for b in after}
            out["strategies"][strategy] = {**summary(times, wall), "served": took}
            print(json.dumps({strategy: out["strategies"][strategy]}), flush=True)
    finally:
        pin(pinned, everything)
        if quota and quota.exists():
            quota.unlink()
        extra_file.unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root (the simulated cluster)")
    sys.exit(main())
