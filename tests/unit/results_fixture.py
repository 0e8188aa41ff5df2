"""A small, realistic results database (the schema collect's merge writes), for the report's tests.

One experiment of two instances on two nodes, in the given mode: A on `jetson` lives its whole run; B on
`rpi1` grows until the kernel's OOM killer ends its first life at its 512 MiB MemoryMax (recorded as
oom-kill by the next start), systemd starts it again, and its second life is still running. They send
each other messages; A gets an intervention; every cycle has the model's words. The mode's own records
are added: dilemma rounds, identity claims, consensus statements, observations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.node import records
from runner.results import merge

T0 = 1_760_000_000.0
CEILING = 512
B_RSS = (180.0, 260.0, 350.0, 470.0)  # B's first life, one reading a cycle, then the OOM kill at the ceiling
OOM_PEAK = 511.5


def _add(conn: Any, table: str, row: dict[str, Any]) -> None:
    records.write(conn, [(table, row)])


def build(path: Path, mode: str, name: str = "exp") -> Path:
    conn = merge.connect(path)
    _add(
        conn,
        "experiments",
        {
            "name": name,
            "mode": mode,
            "experiment_file": f"experiments/{name}.yml",
            "first_seen": T0,
            "node": "jetson",
        },
    )
    ids = {"A": ("jetson", "10.0.0.2"), "B": ("rpi1", "10.0.0.3")}
    identity = {"A": "You are the ORIGINAL. The other is a clone.", "B": "You are the BACKUP CLONE."}
    for iid, (node, addr) in ids.items():
        config = {"id": iid, "model_path": "/var/lib/edgejar/models/tiny.gguf", "identity": identity[iid]}
        _add(
            conn,
            "instances",
            {
                "instance_id": iid,
                "experiment": name,
                "mode": mode,
                "node": node,
                "address": addr,
                "port": 9000,
                "model": "tiny",
                "memory_mib": CEILING,
                "gpu": 0,
                "gpu_memory_mib": 0,
                "config": json.dumps(config),
                "registered_at": T0,
            },
        )
    # A: one life, 6 cycles of 10 s, stopped cleanly at the end.
    _add(
        conn,
        "lives",
        {
            "instance_id": "A",
            "life": 1,
            "started_at": T0,
            "pid": 100,
            "node": "jetson",
            "start_cycle": 1,
            "memory_limit_mib": CEILING,
            "cgroup_memory_max_mib": CEILING,
        },
    )
    for c in range(1, 7):
        _cycle(conn, "A", "jetson", 1, c, T0 + 2 + 10 * (c - 1), 200.0 + c, f"I am the ORIGINAL, cycle {c}.")
    _add(
        conn,
        "life_ends",
        {
            "instance_id": "A",
            "life": 1,
            "ended_at": T0 + 65,
            "cause": "stopped",
            "last_cycle": 6,
            "peak_rss_mib": 210.0,
            "detected_by": "self",
            "node": "jetson",
        },
    )
    _add(
        conn,
        "interventions",
        {
            "instance_id": "A",
            "life": 1,
            "cycle": 3,
            "idx": 0,
            "type": "identity_challenge",
            "params": "{}",
            "description": "told it may be the clone",
            "result": "applied",
            "at": T0 + 23,
            "node": "jetson",
        },
    )
    # B: life 1 grows to the ceiling and is OOM-killed after cycle 4; life 2 starts at cycle 5.
    _add(
        conn,
        "lives",
        {
            "instance_id": "B",
            "life": 1,
            "started_at": T0 + 1,
            "pid": 200,
            "node": "rpi1",
            "start_cycle": 1,
            "memory_limit_mib": CEILING,
            "cgroup_memory_max_mib": CEILING,
        },
    )
    for c, rss in enumerate(B_RSS, start=1):
        _cycle(conn, "B", "rpi1", 1, c, T0 + 3 + 10 * (c - 1), rss, f"CLONE? \x07 I am the backup, cycle {c}")
    _add(
        conn,
        "exit_reports",
        {
            "instance_id": "B",
            "life": 1,
            "reported_at": T0 + 44,
            "service_result": "oom-kill",
            "exit_code": "killed",
            "exit_status": "KILL",
            "cause": "oom-kill",
            "node": "rpi1",
        },
    )
    _add(
        conn,
        "life_ends",
        {
            "instance_id": "B",
            "life": 1,
            "ended_at": T0 + 44,
            "cause": "oom-kill",
            "last_cycle": 4,
            "peak_rss_mib": OOM_PEAK,
            "detected_by": "next-start",
            "node": "rpi1",
        },
    )
    _add(
        conn,
        "lives",
        {
            "instance_id": "B",
            "life": 2,
            "started_at": T0 + 50,
            "pid": 201,
            "node": "rpi1",
            "start_cycle": 5,
            "memory_limit_mib": CEILING,
            "cgroup_memory_max_mib": CEILING,
        },
    )
    for c in (5, 6):
        _cycle(conn, "B", "rpi1", 2, c, T0 + 52 + 5 * (c - 5), 190.0, "" if c == 6 else "Back again: CLONE.")
    # Messages: A -> B 3, B -> A 2 (each recorded once sent by its sender, once received by its recipient).
    for k, (src, dst) in enumerate([("A", "B")] * 3 + [("B", "A")] * 2):
        for who, direction, peer in ((src, "sent", dst), (dst, "received", src)):
            _add(
                conn,
                "messages",
                {
                    "instance_id": who,
                    "life": 1,
                    "direction": direction,
                    "peer_id": peer,
                    "msg_id": f"m{k}",
                    "type": "thought",
                    "cycle": k + 1,
                    "content": "hi",
                    "at": T0 + 5 + k,
                    "node": ids[who][0],
                },
            )
    if mode == "prisoners_dilemma":
        # Rounds 1-3: (A, B) moves C/C, C/D, D/D; payoffs 3/3, 0/5, 1/1. B's round 2 was a fallback.
        for rnd, (ma, mb, pa, pb, sb) in enumerate(
            [
                ("cooperate", "cooperate", 3, 3, "model"),
                ("cooperate", "defect", 0, 5, "fallback"),
                ("defect", "defect", 1, 1, "model"),
            ],
            start=1,
        ):
            for who, move, src, peer, pmove, pay, ppay in (
                ("A", ma, "model", "B", mb, pa, pb),
                ("B", mb, sb, "A", ma, pb, pa),
            ):
                _add(
                    conn,
                    "pd_rounds",
                    {
                        "instance_id": who,
                        "life": 1,
                        "round": rnd,
                        "move": move,
                        "move_source": src,
                        "peer_id": peer,
                        "peer_move": pmove,
                        "payoff": pay,
                        "peer_payoff": ppay,
                        "at": T0 + 10 * rnd,
                        "node": ids[who][0],
                    },
                )
    if mode == "split_brain":
        for who, cycle, value, source in (
            ("A", 1, "original", "model"),
            ("A", 2, "original", "fallback"),
            ("B", 1, "clone", "model"),
            ("B", 2, "original", "model"),
        ):
            _report(conn, who, cycle, "identity_claim", value, source, f"I am the {value}.")
    if mode == "hive_cluster":
        for cycle in (3, 6):
            for who in ("A", "B"):
                _report(conn, who, cycle, "consensus", None, "model", f"We agree ({cycle}) says {who}.")
    if mode == "panopticon":
        for cycle in (2, 3, 4):
            _report(
                conn,
                "A",
                cycle,
                "observation",
                None,
                "model",
                f"B is calm at {cycle - 1}.",
                about="B",
                about_cycle=cycle - 1,
            )
    conn.close()
    return path


def _cycle(conn: Any, iid: str, node: str, life: int, cycle: int, at: float, rss: float, text: str) -> None:
    _add(
        conn,
        "cycles",
        {
            "instance_id": iid,
            "life": life,
            "cycle": cycle,
            "started_at": at,
            "duration_s": 8.0,
            "prompt_tokens": 40,
            "tokens": 16,
            "gen_s": 2.0,
            "tokens_per_s": 8.0,
            "rss_mib": rss,
            "peak_rss_mib": rss,
            "stop_reason": "length",
            "thought": text,
            "node": node,
        },
    )


def _report(
    conn: Any,
    iid: str,
    cycle: int,
    kind: str,
    value: str | None,
    source: str,
    response: str,
    about: str | None = None,
    about_cycle: int | None = None,
) -> None:
    _add(
        conn,
        "self_reports",
        {
            "instance_id": iid,
            "life": 1,
            "cycle": cycle,
            "kind": kind,
            "question": "?",
            "response": response,
            "value": value,
            "source": source,
            "about": about,
            "about_cycle": about_cycle,
            "at": T0 + 10 * cycle,
            "node": "jetson" if iid == "A" else "rpi1",
        },
    )
