"""`python -m runner place`: assign experiment instances to nodes and write host_vars/<node>/placement.yml."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

from runner import inventory
from runner.commands.common import add_inventory, inventory_path, table
from runner.errors import EdgejarError, InputError
from runner.experiment import Experiment, load_files
from runner.files import atomic
from runner.placement import Placement, Problem, Verdict, place
from runner.placement.model import fmt_gb
from runner.placement.policies import POLICIES
from runner.planning import elastic, hostvars, requirements
from runner.serving.spec import replica_id
from runner.training import plan as training_plan

MIN_TIMEOUT_S = 0.1
MAX_TIMEOUT_S = 86_400.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "place",
        help="place experiment instances on nodes and write host_vars",
        description="Assign every instance of the given experiment files to a node and write "
        "host_vars/<node>/placement.yml next to the inventory (all files or none).",
    )
    add_inventory(p)
    p.add_argument("experiments", nargs="+", type=Path, metavar="EXPERIMENT_FILE")
    p.add_argument(
        "--policy", default="score", choices=sorted(POLICIES), help="soft objective (default: score)"
    )
    p.add_argument("--pin", action="append", default=[], metavar="ID=NODE", help="pin an instance to a node")
    p.add_argument("--exclude", action="append", default=[], metavar="NODE", help="keep instances off a node")
    p.add_argument(
        "--rebalance", action="store_true", help="re-score everything instead of keeping instances put"
    )
    p.add_argument("--explain", action="store_true", help="show every node's score or rejection per instance")
    p.add_argument("--dry-run", action="store_true", help="decide and print, write nothing")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="bound on the exact search (s)")
    p.set_defaults(func=run)


def _pins(values: list[str], known_ids: set[str], nodes: set[str]) -> dict[str, str]:
    pins = {}
    for value in values:
        iid, sep, node = value.partition("=")
        if not sep or not iid or not node:
            raise InputError(f"--pin {value}: expected ID=NODE")
        if iid not in known_ids:
            raise InputError(f"--pin {value}: unknown instance {iid!r}")
        if node not in nodes:
            raise InputError(f"--pin {value}: unknown node {node!r} (nodes: {', '.join(sorted(nodes))})")
        pins[iid] = node
    return pins


def _verdicts_json(verdicts: tuple[Verdict, ...]) -> list[dict[str, Any]]:
    return [
        {
            "node": v.node,
            "score": v.score,
            "factors": dict(v.factors) if v.factors else None,
            "rejected": v.rejected,
        }
        for v in verdicts
    ]


def _explain_text(result: Placement) -> str:
    out = []
    for iid, verdicts in result.explanations.items():
        chosen = result.assignment[iid]
        note = " (kept where it runs; --rebalance re-scores it)" if iid in result.kept else ""
        out.append(f"{iid} -> {chosen}{note}")
        for v in sorted(verdicts, key=lambda v: (v.score is None, -(v.score or 0), v.node)):
            if v.factors is None:
                out.append(f"    {v.node:<12} rejected: {v.rejected}")
            else:
                parts = " ".join(f"{k}={val:g}" for k, val in v.factors.items())
                mark = "*" if v.node == chosen else " "
                out.append(f"  {mark} {v.node:<12} {v.score:6.1f}  {parts}")
    return "\n".join(out)


def _units(job: str, per_node: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """(node, entry) of the job's units, unit 0 first."""
    found = [(node, e) for node, items in per_node.items() for e in items if e["experiment"] == job]
    return sorted(found, key=lambda ne: ne[1]["unit_index"])


def _jobs_json(
    jobs: list[Any], counts: dict[str, int], per_node: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    out = {}
    for job in jobs:
        units = _units(job.name, per_node)
        first = units[0][1]
        out[job.name] = {
            "nodes": [node for node, _ in units],
            "nnodes": counts[job.name],
            "world_size": first["world_size"],
            "backend": first["backend"],
            "backend_reason": first["backend_reason"],
            "rdzv_endpoint": first["rdzv_endpoint"],
        }
    return out


def _serving_json(experiments: list[Experiment], left_out: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each serving experiment's placed replicas, its MIN:MAX and the replicas left out for want of room."""
    out: dict[str, dict[str, Any]] = {}
    for e in experiments:
        if e.serving is None or not e.instances:
            continue
        defined = {replica_id(e.name, k) for k in range(e.serving.max_replicas)}
        out[e.name] = {
            "replicas": [s.id for s in e.instances],
            "min": e.serving.min_replicas,
            "max": e.serving.max_replicas,
            "left_out": [i for i in left_out if i in defined],
        }
    return out


def check_timeout(value: float) -> float:
    """--timeout bounds the exact search: a finite number of seconds from 0.1 to a day."""
    if not (math.isfinite(value) and MIN_TIMEOUT_S <= value <= MAX_TIMEOUT_S):
        raise InputError(f"--timeout {value}: must be from {MIN_TIMEOUT_S:g} to {MAX_TIMEOUT_S:g} seconds")
    return value


def run(args: argparse.Namespace) -> int:
    check_timeout(args.timeout)
    path = inventory_path(args)
    if not path.exists():
        raise InputError(f"inventory {path}: no such file or directory")
    # Read the current placement, decide and write under one lock: two runs never mix their files.
    with atomic.locked(path if path.is_dir() else path.resolve().parent, "place"):
        return _run(args, path)


def _run(args: argparse.Namespace, path: Path) -> int:
    cluster = inventory.load(path)
    experiments = load_files(args.experiments)
    specs = [s for e in experiments for s in e.instances]
    jobs = [e.training for e in experiments if e.training is not None]
    if not specs and not jobs:
        raise InputError("no enabled instances or training jobs in the given experiment files")
    node_names = {cn.node.name for cn in cluster.nodes}
    pins = _pins(args.pin, {s.id for s in specs}, node_names)
    specs = [dataclasses.replace(s, node=pins.get(s.id, s.node)) for s in specs]
    experiments = [
        dataclasses.replace(e, instances=tuple(s for s in specs if s.experiment == e.name))
        for e in experiments
    ]
    root = requirements.project_root()
    for spec in specs:
        requirements.check_references(spec, cluster)
    instances = {s.id: requirements.instance(s, cluster.models, root) for s in specs}
    # A node cannot run more instances than it has peer ports.
    nodes = tuple(
        dataclasses.replace(cn.node, max_instances=min(cn.node.max_instances, len(cluster.peer_ports)))
        for cn in cluster.nodes
    )
    current = {iid: node for iid, node in cluster.current().items() if node in node_names}
    problem = Problem(
        nodes=nodes,
        instances=tuple(instances[s.id] for s in specs),
        current=current,
        policy=args.policy,
        rebalance=args.rebalance,
        excluded=frozenset(args.exclude),
        explain=args.explain,
        exact_timeout_s=args.timeout,
    )
    (result, unit_counts), left_out = elastic.place_replicas(
        experiments,
        problem.instances,
        len(node_names - set(args.exclude)),
        lambda llm: training_plan.place_all(
            jobs,
            llm,
            sorted(node_names),
            lambda chosen: place(dataclasses.replace(problem, instances=tuple(chosen))),
        ),
    )
    if left_out:  # serving replicas beyond their MIN that did not fit
        specs = [s for s in specs if s.id not in left_out]
        experiments = [
            dataclasses.replace(e, instances=tuple(s for s in e.instances if s.id not in left_out))
            for e in experiments
        ]
    llm_assignment = {s.id: result.assignment[s.id] for s in specs}
    ports = hostvars.assign_ports(llm_assignment, cluster.peer_ports, cluster.current_ports(), current)
    per_node = hostvars.entries(cluster, experiments, instances, llm_assignment, ports, root)
    per_node_training: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        for node, entry in training_plan.entries(
            job, unit_counts[job.name], result.assignment, cluster
        ).items():
            per_node_training.setdefault(node, []).append(entry)
    removed = sorted(set(current) - set(result.assignment))
    written: list[Path] = []
    if not args.dry_run:
        try:
            written = atomic.write_all(hostvars.files(cluster, per_node, per_node_training))
        except OSError as exc:  # nothing was replaced: write_all puts back what it had renamed
            where = exc.filename or cluster.host_vars_dir
            raise EdgejarError(f"cannot write {where}: {exc.strerror}; nothing was changed") from None
    if args.json:
        doc: dict[str, Any] = {
            "placements": result.assignment,
            "ports": ports,
            "method": result.method,
            "policy": args.policy,
            "moves": [dataclasses.asdict(m) for m in result.moves],
            "removed": removed,
            "nodes": {node: [e["id"] for e in items] for node, items in per_node.items()},
            "written": [str(p) for p in written],
            "dry_run": args.dry_run,
        }
        if jobs:
            doc["training"] = _jobs_json(jobs, unit_counts, per_node_training)
        serving = _serving_json(experiments, left_out)
        if serving:
            doc["serving"] = serving
        if args.explain:
            doc["explain"] = {iid: _verdicts_json(v) for iid, v in result.explanations.items()}
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    rows = []
    for s in specs:
        inst = instances[s.id]
        gpu = f"{fmt_gb(inst.gpu_claim())}" if s.gpu else "-"
        rows.append(
            [s.id, s.experiment, result.assignment[s.id], str(ports[s.id]), fmt_gb(inst.ram_mib), gpu]
        )
    for job in jobs:
        for node, entry in _units(job.name, per_node_training):
            gpu = fmt_gb(entry["gpu_memory_mib"]) if job.gpu else "-"
            rows.append([entry["id"], job.name, node, "-", fmt_gb(entry["memory_mib"]), gpu])
    print(table(rows, ["instance", "experiment", "node", "port", "memory", "gpu"]))
    what = f"{len(specs)} instances" + (f" and {len(jobs)} training job(s)" if jobs else "")
    print(f"\nplaced {what} with policy {args.policy} ({result.method} pass)")
    for job in jobs:
        units = _units(job.name, per_node_training)
        first = units[0][1]
        print(
            f"training {job.name}: {first['nnodes']} node(s) x {job.ranks_per_node} rank(s) "
            f"= world size {first['world_size']} (ranks {job.min_ranks}:{job.max_ranks}); backend "
            f"{first['backend']} ({first['backend_reason']}); rendezvous {first['rdzv_endpoint']}"
        )
    for name, info in _serving_json(experiments, left_out).items():
        if info["min"] < info["max"]:
            out = f"; left out {', '.join(info['left_out'])} (no room)" if info["left_out"] else ""
            print(f"serving {name}: {len(info['replicas'])} replica(s) of {info['min']}:{info['max']}{out}")
    for m in result.moves:
        print(f"moves: {m.instance}: {m.source} -> {m.target}")
    for iid in removed:
        print(f"removed: {iid} (was on {current[iid]}; not in the given experiment files)")
    if args.explain:
        print("\n" + _explain_text(result))
    if args.dry_run:
        print("\ndry run: nothing written")
    elif written:
        print(f"\nwrote {len(written)} file(s) under {cluster.host_vars_dir}")
    else:
        print(f"\n{cluster.host_vars_dir}: already up to date")
    return 0
