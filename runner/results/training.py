"""The summary of a training job (kind torch_distributed) from its merged records: train_events and
train_steps (runner/node/records.py). Pure reads of one results database."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

MODE = "torch_distributed"


def _detail(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def outcome(conn: sqlite3.Connection) -> dict[str, Any]:
    """Loss, throughput per rank and in all, the slowest rank, restarts, backend, and whether it ended."""
    events = conn.execute(
        "SELECT instance_id, node, launch, restart, local_rank, rank, event, step, detail, at "
        "FROM train_events ORDER BY at"
    ).fetchall()
    backends = sorted(
        {str(_detail(e["detail"]).get("backend")) for e in events if e["event"] in ("start", "resume")}
    )
    resumed = [
        {"unit": e["instance_id"], "rank": e["rank"], "step": e["step"], "launch": e["launch"]}
        for e in events
        if e["event"] == "resume"
    ]
    gave_up = [
        {
            "unit": e["instance_id"],
            "node": e["node"],
            "launch": e["launch"],
            "reason": _detail(e["detail"]).get("reason"),
        }
        for e in events
        if e["event"] == "gave_up"
    ]
    units: dict[str, dict[str, Any]] = {}
    for e in events:
        u = units.setdefault(e["instance_id"], {"node": e["node"], "launches": 0, "restarts": 0, "ended": 0})
        u["launches"] = max(u["launches"], int(e["launch"]))
        u["restarts"] = max(u["restarts"], int(e["restart"]))
        u["ended"] += e["event"] == "end"
    ranks = []
    for r in conn.execute(
        # by node too: a unit id that ran on another node in an earlier placement is another rank there
        "SELECT node, instance_id, local_rank, MAX(rank) AS rank, COUNT(*) AS steps, MAX(step) AS last_step, "
        "AVG(samples_per_s) AS samples_per_s, AVG(compute_s) AS compute_s, AVG(comm_s) AS comm_s, "
        "AVG(batch) AS batch, MAX(peak_rss_mib) AS peak_rss_mib FROM train_steps "
        "GROUP BY node, instance_id, local_rank ORDER BY instance_id, local_rank, node"
    ):
        ranks.append(
            {
                "unit": r["instance_id"],
                "node": r["node"],
                "local_rank": r["local_rank"],
                "rank": r["rank"],
                "steps": r["steps"],
                "last_step": r["last_step"],
                "batch": round(r["batch"], 1),
                "samples_per_s": round(r["samples_per_s"] or 0.0, 1),
                "compute_ms": round(1000 * r["compute_s"], 2),
                "comm_ms": round(1000 * r["comm_s"], 2),
                "peak_rss_mib": r["peak_rss_mib"],
            }
        )
    losses = conn.execute(
        "SELECT step, AVG(loss) AS loss FROM train_steps GROUP BY step ORDER BY step"
    ).fetchall()
    slowest = max(ranks, key=lambda x: x["compute_ms"] / max(x["batch"], 1e-9), default=None)
    return {
        "backends": backends,
        "first_loss": round(losses[0]["loss"], 6) if losses else None,
        "final_loss": round(losses[-1]["loss"], 6) if losses else None,
        "last_step": losses[-1]["step"] if losses else None,
        "samples_per_s": round(sum(x["samples_per_s"] for x in ranks), 1),
        "ranks": ranks,
        "slowest": slowest["unit"] if slowest else None,
        "units": units,
        "unit_restarts": sum(max(0, u["launches"] - 1) for u in units.values()),
        "torchrun_restarts": max((u["restarts"] for u in units.values()), default=0),
        "resumed": resumed,
        "gave_up": gave_up,
        "ended": bool(units) and all(u["ended"] for u in units.values()),
    }


def lines(o: dict[str, Any]) -> list[str]:
    """The job's lines in `runner results` (after its per-rank table)."""
    gave_up = [
        f"  gave up: {g['unit']} on {g['node']} (launch {g['launch']}): {g['reason']}" for g in o["gave_up"]
    ]
    if o["last_step"] is None:
        return ["  no training steps recorded", *gave_up]
    resumed = sorted({r["step"] for r in o["resumed"]})
    return [
        f"  loss {o['first_loss']:g} -> {o['final_loss']:g} at step {o['last_step']}; "
        f"{o['samples_per_s']:g} samples/s in all; backend {', '.join(o['backends']) or '-'}; "
        f"{'ended' if o['ended'] else 'not ended'}",
        f"  slowest rank (compute per sample): {o['slowest']}; restarts: {o['unit_restarts']} of units "
        f"(systemd), {o['torchrun_restarts']} of workers (torchrun)"
        + (f"; resumed from checkpoint step(s) {', '.join(map(str, resumed))}" if resumed else ""),
        *gave_up,
    ]


HEADER = ["unit", "node", "rank", "steps", "batch", "samples/s", "compute ms", "comm ms", "peak MiB"]


def rows(o: dict[str, Any]) -> list[list[str]]:
    return [
        [
            r["unit"] if r["local_rank"] == 0 else f"{r['unit']}/{r['local_rank']}",
            r["node"] or "-",
            str(r["rank"]),
            str(r["steps"]),
            f"{r['batch']:g}",
            f"{r['samples_per_s']:g}",
            f"{r['compute_ms']:g}",
            f"{r['comm_ms']:g}",
            "-" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:g}",
        ]
        for r in o["ranks"]
    ]
