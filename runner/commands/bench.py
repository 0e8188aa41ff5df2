"""`python -m runner bench`: measure models on the nodes, keep every run, compare runs.

    python -m runner bench [-i INV] --model M [--model M2] [--nodes a,b] [--reps N] ...
    python -m runner bench --list
    python -m runner bench --compare [RUN_A RUN_B]      (default: the last two runs)

A measurement goes through the normal deploy: deploy.yml with the chosen models (code and models, as for
an experiment), then playbooks/bench.yml (roles/edgejar_bench: runner/node/bench.py in the node venv, the
node's own wheel and model, a hardened transient unit with MemoryMax), one node at a time unless
--all-at-once. The results go into results/bench.sqlite3 (every run kept) and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner import __version__, ansible_bridge, inventory
from runner.bench import parse, store, table
from runner.bench import report as bench_report
from runner.commands.common import add_inventory, inventory_path
from runner.commands.common import table as fmt_table
from runner.commands.results import add_results_dir
from runner.commands.up import add_extra_vars, extra_vars
from runner.errors import EdgejarError, InputError
from runner.node.cli import positive_int
from runner.planning.requirements import is_known_model

log = logging.getLogger(__name__)

DB_NAME = "bench.sqlite3"
REPORT_RUNS = 6  # the report after a run shows the last this many runs side by side


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure models on the nodes (tokens/s, time to first token, memory) with provenance",
        description="Deploy the chosen models, measure each on each chosen node by a fixed method "
        "(docs/bench.md), store the run in results/bench.sqlite3 and print it. Exit status: 0 all measured, "
        "1 a node or a measurement failed (named), 2 bad input (nothing run).",
    )
    add_inventory(p)
    add_results_dir(p)
    p.add_argument("--model", action="append", default=[], metavar="M", help="catalog name or .gguf (repeat)")
    p.add_argument("--nodes", default="", metavar="A,B", help="only these nodes (default: every node)")
    p.add_argument("--reps", type=positive_int, default=3, help="measured repetitions (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up repetitions, not counted (default 1)")
    p.add_argument("--prompt-tokens", type=positive_int, default=64, help="prompt length in tokens (64)")
    p.add_argument("--gen-tokens", type=positive_int, default=32, help="tokens generated (32)")
    p.add_argument("--threads", type=int, default=None, help="llama.cpp n_threads (default: its own choice)")
    p.add_argument("--n-gpu-layers", type=int, default=None, help="GPU layers (default: all on a Jetson)")
    p.add_argument(
        "--all-at-once", action="store_true", help="measure every node at the same time (real boards only)"
    )
    p.add_argument("--skip-deploy", action="store_true", help="the models are on the nodes already")
    p.add_argument("--list", action="store_true", help="list the stored runs")
    p.add_argument(
        "--compare", nargs="*", type=int, metavar="RUN", default=None, help="two runs side by side"
    )
    p.add_argument("--json", action="store_true", help="print the run's stored results as JSON")
    add_extra_vars(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    db = args.results / DB_NAME
    if args.list or args.compare is not None:
        if not db.exists():
            raise InputError(f"{db}: no bench run stored yet (run `python -m runner bench --model M`)")
        conn = store.connect(db)
        try:
            return _list(conn) if args.list else _compare(conn, args.compare, args.results)
        finally:
            conn.close()
    if not args.model:
        raise InputError("bench: give at least one --model (a catalog name or a .gguf path)")
    inv = inventory_path(args)
    cluster = inventory.load(inv)
    for m in args.model:
        if not is_known_model(m, cluster.models):
            known = ", ".join(sorted(cluster.models)) or "empty"
            raise InputError(f"--model {m}: unknown model (catalog: {known}; or give a .gguf path)")
    kinds = {cn.node.name: cn.kind for cn in cluster.nodes}
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()] or sorted(kinds)
    unknown = [n for n in nodes if n not in kinds]
    if unknown:
        raise InputError(
            f"--nodes: unknown node(s) {', '.join(unknown)} (inventory {inv}: {', '.join(sorted(kinds))})"
        )
    models = list(dict.fromkeys(args.model))
    extra = extra_vars(args.extra_var)
    limit = ",".join(nodes)
    started = _now()
    if not args.skip_deploy:
        log.info("==> deploy.yml: code and %s to %s", ", ".join(models), limit)
        deploy_vars = {**extra, "edgejar_deploy_instances": [{"model": m} for m in models]}
        deployed = ansible_bridge.run_playbook("deploy.yml", inv, extravars=deploy_vars, limit=limit)
        deployed.raise_for_failures()
    bench_vars: dict[str, Any] = {
        **extra,
        "edgejar_bench_models": models,
        "edgejar_bench_reps": args.reps,
        "edgejar_bench_warmup": max(args.warmup, 0),
        "edgejar_bench_prompt_tokens": args.prompt_tokens,
        "edgejar_bench_gen_tokens": args.gen_tokens,
        "edgejar_bench_serial": "100%" if args.all_at_once else 1,
    }
    if args.threads is not None:
        bench_vars["edgejar_bench_threads"] = args.threads
    if args.n_gpu_layers is not None:
        bench_vars["edgejar_bench_n_gpu_layers"] = args.n_gpu_layers
    how = "all nodes at once" if args.all_at_once else "one node at a time"
    log.info("==> bench.yml: %d model(s) on %d node(s), %s", len(models), len(nodes), how)
    progress = ansible_bridge.Progress(capture=frozenset({parse.BENCH_TASK}))
    result = ansible_bridge.run_playbook(
        "bench.yml", inv, extravars=bench_vars, limit=limit, progress=progress
    )
    results, failures = parse.from_task(progress.captured.get(parse.BENCH_TASK, {}), kinds)
    controller = {"edgejar": __version__, "commit": _commit(), "serial": how, "nodes": nodes,
                  "models": models}  # fmt: skip
    run_id = None
    if results:
        conn = store.connect(args.results / DB_NAME)
        try:
            run_id = store.add_run(conn, started, _now(), str(inv), controller, results)
            stored = store.load_run(conn, run_id)
            recent = [store.load_run(conn, i) for i in store.run_ids(conn)[-REPORT_RUNS:]]
        finally:
            conn.close()
        if args.json:
            print(json.dumps([r.measurement | {"node": r.node} for r in stored.results], indent=2))
        else:
            header, rows = table.run_rows(stored)
            print(f"bench run {run_id} ({started}; medians, min-max over {args.reps} repetitions)")
            print(_fmt(rows, header))
    for where, why in failures.items():
        log.warning("bench: %s: %s", where, why)
    if run_id is not None:
        _report(args.results, recent)
        log.info("bench: stored as run %s in %s; `python -m runner bench --compare` compares the last two",
                 run_id, db)  # fmt: skip
    if failures or not result.ok:
        if not failures:
            result.raise_for_failures()
        raise EdgejarError(f"bench: {len(failures)} measurement(s) failed: {', '.join(failures)}")
    return 0


def _fmt(rows: list[list[str]], header: list[str]) -> str:
    return fmt_table(rows, header) if rows else "(no results)"


def _list(conn: Any) -> int:
    rows = []
    for run_id in store.run_ids(conn):
        r = store.load_run(conn, run_id)
        nodes = ", ".join(sorted({x.node for x in r.results}))
        models = ", ".join(sorted({x.model for x in r.results}))
        commit = str(r.controller.get("commit", "?"))[:12]
        rows.append([str(r.run_id), r.started, str(len(r.results)), nodes, models, commit])
    print(_fmt(rows, ["run", "started", "results", "nodes", "models", "commit"]))
    return 0


def _compare(conn: Any, wanted: list[int], results_dir: Path) -> int:
    ids = store.run_ids(conn)
    if len(wanted) not in (0, 2):
        raise InputError("--compare takes two run ids, or none for the last two runs")
    if not wanted:
        if len(ids) < 2:
            raise InputError(f"--compare: {len(ids)} run(s) stored, two are needed")
        wanted = ids[-2:]
    a, b = (store.load_run(conn, i) for i in wanted)
    header, rows = table.compare_rows(a, b)
    if not rows:
        raise InputError(f"runs {a.run_id} and {b.run_id} measured no node and model in common")
    print(f"run {a.run_id} ({a.started}) against run {b.run_id} ({b.started}); change: + is better")
    _report(results_dir, [a, b])
    print(_fmt(rows, header))
    ours = {(r.node, r.model): r for r in b.results}
    for r in a.results:
        other = ours.get((r.node, r.model))
        diff = table.provenance_diff(r, other) if other else []
        if diff:
            print(f"\n{r.node}/{r.model}: what else changed between the runs:")
            print("\n".join(f"  {line}" for line in diff))
    return 0


def _report(results_dir: Path, runs: list[store.Run]) -> None:
    """results/bench/report.html of these runs; no plotting library is a warning (the run is stored)."""
    try:
        path = bench_report.write(results_dir, runs)
    except EdgejarError as exc:
        log.warning("bench: no report: %s", exc)
        return
    log.info("bench: report of run(s) %s: %s", ", ".join(str(r.run_id) for r in runs), path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)  # fmt: skip
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown (not a git checkout)"
