"""`python -m runner validate`: show the nodes as the inventory defines them, and check experiment files."""

from __future__ import annotations

import argparse
from pathlib import Path

from runner import inventory
from runner.commands.common import add_inventory, inventory_path, table
from runner.experiment import load_files
from runner.placement.model import fmt_gb
from runner.planning import requirements
from runner.training import plan as training_plan


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="show the cluster's nodes and check experiment files",
        description="Print the nodes (name, host, RAM, GPU, max instances) and validate experiment files: "
        "fields, unique ids, references, known models and memory estimates.",
    )
    add_inventory(p)
    p.add_argument("experiments", nargs="*", type=Path, metavar="EXPERIMENT_FILE")
    p.set_defaults(func=run)


def _status(cn: inventory.ClusterNode) -> str:
    return "MAINTENANCE" if cn.node.maintenance else "ok"


def run(args: argparse.Namespace) -> int:
    path = inventory_path(args)
    cluster = inventory.load(path)
    rows = []
    for cn in cluster.nodes:
        n = cn.node
        gpu = f"{fmt_gb(n.gpu_mib)}{' unified' if n.unified else ''}" if n.gpu else "-"
        rows.append(
            [
                n.name,
                cn.address,
                cn.kind,
                fmt_gb(n.ram_mib),
                fmt_gb(n.reserved_mib),
                gpu,
                str(n.max_instances),
                ",".join(sorted(n.tags)) or "-",
                _status(cn),
            ]
        )
    print(f"inventory: {path}")
    print(table(rows, ["node", "host", "kind", "ram", "reserved", "gpu", "max", "tags", "status"]))
    if not args.experiments:
        return 0
    experiments = load_files(args.experiments)
    root = requirements.project_root()
    for exp in experiments:
        job = exp.training
        if exp.kind != "llm":
            if job is not None:
                training_plan.check_nodes(job, [cn.node.name for cn in cluster.nodes])
            ranks = f"ranks {job.min_ranks}:{job.max_ranks}" if job else "disabled"
            print(f"{exp.source}: ok ({exp.name}, kind {exp.kind}, {ranks})")
            continue
        for spec in exp.instances:
            requirements.check_references(spec, cluster)
            requirements.instance(spec, cluster.models, root)
        print(f"{exp.source}: ok ({exp.name}, mode {exp.mode}, {len(exp.instances)} instance(s))")
    return 0
