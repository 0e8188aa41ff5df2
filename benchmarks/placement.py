"""Placement speed and quality. Run by hand: `.venv/bin/python benchmarks/placement.py [--quick]`.

1. Time per size, from 10 instances x 4 nodes up to 10,000 x 1,000 (and 5,000 nodes, kube-scheduler's
   CI size), on random heterogeneous clusters about 60 % full; pods/s = instances placed per second.
2. 20 instances x 5 nodes: p50/p95 over repeated runs.
3. Random 85 %-full sets (20 instances x 3 nodes): share placed by the full engine (greedy, then exact)
   against a greedy-only run, and how many the exact search proved infeasible.
Prints Markdown tables (pasted into docs/placement.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from runner.errors import NoPlacementError
from runner.placement import (
    Instance,
    Node,
    Problem,
    greedy,
    place,
)
from runner.placement.state import ClusterState

KINDS = [  # (ram GB, reserved GB, gpu, gpu GB, unified, tags): Jetson Orin AGX, Pi 5, x86 box
    (64, 8, True, 56, True, {"jetson", "arm64"}),
    (8, 1.5, False, 0, False, {"rpi5", "arm64"}),
    (32, 6, False, 0, False, {"x86_64"}),
]


def planted(rng: random.Random, n_nodes: int, count: int, fill: float, kinds: list = KINDS, slack: int = 2):
    """A random heterogeneous cluster and `count` instances built from a hidden assignment that uses
    `fill` of every node's memory, so every generated set is feasible. About 15 % of instances need the
    GPU (their memory split between RAM and GPU, one pool on the Jetson), 10 % carry an anti-affinity
    to an instance planted on another node, 10 % a preferred node. node_max_instances is the planted count
    times `slack`, plus 2: slack 1 makes instance slots nearly as tight as memory."""
    specs = [kinds[rng.randrange(len(kinds))] for _ in range(n_nodes)]
    share = [0] * n_nodes
    for k in range(count):  # every node gets at least one instance when count >= n_nodes
        share[k % n_nodes if k < n_nodes else rng.randrange(n_nodes)] += 1
    nodes, insts, home = [], [], {}
    for k, (ram, res, gpu, gmem, uni, tags) in enumerate(specs):
        name = f"n{k:05d}"
        node = Node(
            name,
            int(ram * 1024),
            int(res * 1024),
            gpu,
            gmem * 1024,
            uni,
            share[k] * slack + 2,
            tags=frozenset(tags),
        )
        nodes.append(node)
        budget = node.ram_capacity * fill
        cuts = sorted(rng.random() for _ in range(share[k] - 1))
        parts = [b - a for a, b in zip([0.0, *cuts], [*cuts, 1.0], strict=True)]
        for part in parts:
            mib = max(16, int(part * budget))
            iid = f"i{len(insts):06d}"
            home[iid] = name
            if gpu and rng.random() < 0.5:
                insts.append(Instance(iid, mib // 2, True, mib - mib // 2))
            else:
                insts.append(Instance(iid, mib))
    names = [n.name for n in nodes]
    for pos, inst in enumerate(insts):
        others = [o for o in insts[max(0, pos - 50) : pos] if home[o.id] != home[inst.id]]
        anti = (rng.choice(others).id,) if others and rng.random() < 0.1 else ()
        prefer = rng.choice(names) if rng.random() < 0.1 else None
        insts[pos] = Instance(
            inst.id, inst.ram_mib, inst.gpu, inst.gpu_mib, anti_affinity=anti, prefer=prefer
        )
    rng.shuffle(insts)
    return tuple(nodes), tuple(insts)


def timed(problem: Problem) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        res = place(problem)
        outcome = res.method
    except NoPlacementError as exc:
        outcome = "proven infeasible" if "proven" in str(exc) else "not found (bounded)"
    return time.perf_counter() - t0, outcome


def sizes_table(quick: bool) -> None:
    sizes = [(10, 4), (20, 5), (100, 20), (1000, 100), (10000, 1000), (5000, 5000)]
    if quick:
        sizes = sizes[:4]
    print("| instances x nodes | time (s) | instances/s | pass |")
    print("| --- | --- | --- | --- |")
    for count, n in sizes:
        nodes, insts = planted(random.Random(count * 7919 + n), n, count, 0.6)
        seconds, outcome = timed(Problem(nodes, insts))
        print(f"| {count} x {n} | {seconds:.3f} | {count / seconds:,.0f} | {outcome} |")


def small_latency(runs: int) -> None:
    rng = random.Random(20)
    times, outcomes = [], []
    for _ in range(runs):
        nodes, insts = planted(rng, 5, 20, 0.7, slack=1)
        seconds, outcome = timed(Problem(nodes, insts))
        times.append(seconds * 1000)
        outcomes.append(outcome)
    times.sort()
    p95 = times[int(0.95 * (len(times) - 1))]
    print(
        f"\n20 instances x 5 nodes, {runs} random sets: p50 {statistics.median(times):.1f} ms, "
        f"p95 {p95:.1f} ms, max {times[-1]:.1f} ms "
        f"(passes: {dict(sorted(Counter(outcomes).items()))})"
    )


def packing(sets: int) -> None:
    rng = random.Random(85)
    full = greedy_only = proven = timeouts = 0
    exact_ms = []
    for _ in range(sets):
        nodes, insts = planted(rng, 3, 20, 0.85, KINDS[1:], slack=1)  # CPU-only boxes, as in field-notes
        problem = Problem(nodes, insts, exact_timeout_s=10.0)
        state = ClusterState(problem)
        if greedy.run(state, None, set()) is None:
            greedy_only += 1
        t0 = time.perf_counter()
        try:
            res = place(problem)
            full += 1
            if res.method == "exact":
                exact_ms.append((time.perf_counter() - t0) * 1000)
        except NoPlacementError as exc:
            if "proven" in str(exc):
                proven += 1
            else:
                timeouts += 1
    print(f"\nrandom 85 %-full sets, 20 instances x 3 nodes, {sets} sets:")
    print("| engine | placed | share |")
    print("| --- | --- | --- |")
    print(f"| greedy only | {greedy_only} | {greedy_only / sets:.0%} |")
    print(f"| greedy + exact (edgejar) | {full} | {full / sets:.0%} |")
    print(
        f"proven infeasible: {proven}; not decided within the bound: {timeouts}; feasible sets placed: "
        f"{full}/{full + timeouts} "
    )
    if exact_ms:
        exact_ms.sort()
        print(
            f"exact-pass placements: median {statistics.median(exact_ms):.1f} ms, max {exact_ms[-1]:.1f} ms"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="skip the two largest sizes")
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; one thread")
    sizes_table(args.quick)
    small_latency(50 if args.quick else 200)
    packing(50 if args.quick else 200)


if __name__ == "__main__":
    main()
