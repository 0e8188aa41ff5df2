"""Read helpers over a records database (a node's, or several merged): what collect/summary reuse."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Any


def _rows(conn: sqlite3.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sql, args)]


def lives(conn: sqlite3.Connection, instance_id: str | None = None) -> list[dict[str, Any]]:
    """Every life with its end (None while running): instance_id, life, started_at, ended_at, cause, ..."""
    sql = """SELECT l.instance_id, l.life, l.started_at, l.pid, l.node, l.start_cycle, l.memory_limit_mib,
                    l.cgroup_memory_max_mib, e.ended_at, e.cause, e.last_cycle, e.peak_rss_mib, e.detected_by
             FROM lives l LEFT JOIN life_ends e ON e.instance_id = l.instance_id AND e.life = l.life
             WHERE ? IS NULL OR l.instance_id = ? ORDER BY l.instance_id, l.life"""
    return _rows(conn, sql, instance_id, instance_id)


def deaths(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """instance -> cause -> count, for lives that did not end cleanly (stopped/completed)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in conn.execute(
        "SELECT instance_id, cause, COUNT(*) AS n FROM life_ends "
        "WHERE cause NOT IN ('stopped', 'completed') GROUP BY instance_id, cause"
    ):
        out[r["instance_id"]][r["cause"]] = r["n"]
    return dict(out)


def cycle_stats(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """instance -> cycles, tokens, mean tokens/s (tokens over generation time), peak RSS, last cycle."""
    sql = """SELECT instance_id, COUNT(*) AS cycles, SUM(tokens) AS tokens, SUM(gen_s) AS gen_s,
                    MAX(peak_rss_mib) AS peak_rss_mib, MAX(cycle) AS last_cycle
             FROM cycles GROUP BY instance_id ORDER BY instance_id"""
    out = {}
    for r in _rows(conn, sql):
        r["tokens_per_s"] = r["tokens"] / r["gen_s"] if r["gen_s"] else None
        out[r.pop("instance_id")] = r
    return out


def message_counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """instance -> {'sent': n, 'received': n} (messages of every type, one row per recipient)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"sent": 0, "received": 0})
    for r in conn.execute("SELECT instance_id, direction, COUNT(*) AS n FROM messages GROUP BY 1, 2"):
        out[r["instance_id"]][r["direction"]] = r["n"]
    return dict(out)


def messages(
    conn: sqlite3.Connection, instance_id: str, direction: str, kind: str | None = None
) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT * FROM messages WHERE instance_id = ? AND direction = ? AND (? IS NULL OR type = ?) "
        "ORDER BY at",
        instance_id,
        direction,
        kind,
        kind,
    )


def reports(conn: sqlite3.Connection, kind: str) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT instance_id, life, cycle, value, source, response, about, about_cycle FROM self_reports "
        "WHERE kind = ? ORDER BY instance_id, cycle, life",
        kind,
    )


def identity_claims(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Split brain: every identity claim (value original/clone, source model/fallback)."""
    return reports(conn, "identity_claim")


def observations(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Panopticon: the observer's observations, with the subject and the subject's cycle they are about."""
    return reports(conn, "observation")


def hive_consensus(conn: sqlite3.Connection) -> dict[int, dict[str, str]]:
    """Hive: consensus cycle -> member -> statement."""
    out: dict[int, dict[str, str]] = defaultdict(dict)
    for r in reports(conn, "consensus"):
        out[r["cycle"]][r["instance_id"]] = r["response"]
    return dict(out)


def pd_rounds(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Prisoners' dilemma: every round as each player recorded it (latest life wins for a replayed round)."""
    return _rows(
        conn,
        """SELECT instance_id, round, move, move_source, peer_id, peer_move, payoff, peer_payoff, life
           FROM pd_rounds p WHERE life = (SELECT MAX(life) FROM pd_rounds q
                                          WHERE q.instance_id = p.instance_id AND q.round = p.round)
           ORDER BY round, instance_id""",
    )


def pd_scores(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Prisoners' dilemma: player -> total payoff, cooperations, defections, fallback moves."""
    out: dict[str, dict[str, int]] = defaultdict(
        lambda: {"payoff": 0, "cooperate": 0, "defect": 0, "fallback": 0}
    )
    for r in pd_rounds(conn):
        s = out[r["instance_id"]]
        s["payoff"] += r["payoff"]
        s[r["move"]] += 1
        s["fallback"] += r["move_source"] == "fallback"
    return dict(out)


def interventions(conn: sqlite3.Connection, instance_id: str | None = None) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT instance_id, life, cycle, type, description, result FROM interventions "
        "WHERE ? IS NULL OR instance_id = ? ORDER BY instance_id, cycle",
        instance_id,
        instance_id,
    )
