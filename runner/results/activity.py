"""What each instance of an experiment did, read from its results database (runner/results/merge.py):
lives and deaths, cycles, memory against the ceiling, interventions, who sent messages to whom.

Pure reads over an open connection; the report (runner/results/report.py) draws them. Times are Unix
seconds as the nodes recorded them; `start` gives the run's first start, for times relative to it.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from runner.node.lifecycle import CLEAN_CAUSES


@dataclass(frozen=True)
class Life:
    instance_id: str
    node: str
    life: int
    started_at: float
    start_cycle: int
    memory_max_mib: float | None  # the unit's MemoryMax as the instance read it from its cgroup
    ended_at: float | None = None  # None: no end recorded (running at collect, or killed without a trace)
    cause: str | None = None
    last_cycle: int | None = None
    peak_rss_mib: float | None = None
    detected_by: str | None = None

    @property
    def died(self) -> bool:
        """Ended by something other than a clean stop or completion."""
        return self.cause is not None and self.cause not in CLEAN_CAUSES


@dataclass(frozen=True)
class CycleRow:
    instance_id: str
    node: str
    life: int
    cycle: int
    started_at: float
    duration_s: float
    tokens: int
    rss_mib: float | None
    peak_rss_mib: float | None


def _rows(conn: sqlite3.Connection, sql: str, *args: Any) -> list[sqlite3.Row]:
    conn.row_factory = sqlite3.Row
    return list(conn.execute(sql, args))


def lives(conn: sqlite3.Connection) -> list[Life]:
    """Every life on every node with its end (the life's own end, else what the next start found)."""
    sql = """SELECT l.instance_id, l.node, l.life, l.started_at, l.start_cycle,
                    COALESCE(l.cgroup_memory_max_mib, l.memory_limit_mib) AS memory_max_mib,
                    e.ended_at, e.cause, e.last_cycle, e.peak_rss_mib, e.detected_by
             FROM lives l LEFT JOIN life_ends e
               ON e.node = l.node AND e.instance_id = l.instance_id AND e.life = l.life
             ORDER BY l.instance_id, l.started_at, l.life"""
    return [Life(**dict(r)) for r in _rows(conn, sql)]


def deaths(conn: sqlite3.Connection) -> list[Life]:
    """The lives that died (oom-kill, a signal, an exit code...), in time order."""
    return sorted((life for life in lives(conn) if life.died), key=lambda x: x.ended_at or x.started_at)


def restarts(conn: sqlite3.Connection) -> dict[str, int]:
    """instance -> lives after its first (systemd's or failover's restarts)."""
    out: dict[str, int] = defaultdict(int)
    for life in lives(conn):
        out[life.instance_id] += 1
    return {iid: n - 1 for iid, n in out.items()}


def cycles(conn: sqlite3.Connection) -> list[CycleRow]:
    sql = """SELECT instance_id, node, life, cycle, started_at, duration_s, tokens, rss_mib, peak_rss_mib
             FROM cycles ORDER BY instance_id, started_at"""
    return [CycleRow(**dict(r)) for r in _rows(conn, sql)]


def interventions(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    sql = """SELECT instance_id, node, life, cycle, type, description, result, at
             FROM interventions ORDER BY at"""
    return [dict(r) for r in _rows(conn, sql)]


def start(conn: sqlite3.Connection) -> float | None:
    """The run's first recorded start."""
    row = conn.execute("SELECT MIN(started_at) FROM lives").fetchone()
    return row[0] if row and row[0] is not None else None


def memory_series(conn: sqlite3.Connection) -> dict[str, list[tuple[float, float]]]:
    """instance -> (time, resident MiB) at each cycle's end, then its peak at each recorded death."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for c in cycles(conn):
        if c.rss_mib is not None:
            out[c.instance_id].append((c.started_at + c.duration_s, c.rss_mib))
    for life in lives(conn):
        if life.ended_at is not None and life.peak_rss_mib is not None:
            out[life.instance_id].append((life.ended_at, life.peak_rss_mib))
    return {iid: sorted(points) for iid, points in sorted(out.items())}


def memory_max(conn: sqlite3.Connection) -> dict[str, float]:
    """instance -> its memory ceiling (MemoryMax, MiB): the highest any of its lives had."""
    out: dict[str, float] = {}
    for life in lives(conn):
        if life.memory_max_mib is not None:
            out[life.instance_id] = max(out.get(life.instance_id, 0.0), float(life.memory_max_mib))
    return out


def node_memory(conn: sqlite3.Connection) -> dict[str, list[tuple[float, float]]]:
    """node -> (time, MiB): the sum of its instances' latest resident memory, at each of their cycles.

    An instance counts from its first reading until its life ends; the sum is what this experiment's
    instances held on the node (other experiments and the system are not in it).
    """
    ends = {(x.node, x.instance_id, x.life): x.ended_at for x in lives(conn)}
    events = sorted(
        (c.started_at + c.duration_s, c.node, c.instance_id, c.life, c.rss_mib)
        for c in cycles(conn)
        if c.rss_mib is not None
    )
    latest: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t, node, iid, life, rss in events:
        held = latest[node]
        held[(iid, life)] = rss
        for key in list(held):
            end = ends.get((node, *key))
            if end is not None and end < t:
                del held[key]
        out[node].append((t, sum(held.values())))
    return dict(sorted(out.items()))


def talk(conn: sqlite3.Connection) -> tuple[list[str], dict[tuple[str, str], int]]:
    """Who sent messages to whom: the instances (senders and recipients) and (from, to) -> count."""
    counts: dict[tuple[str, str], int] = {}
    for r in conn.execute(
        "SELECT instance_id, peer_id, COUNT(*) FROM messages WHERE direction = 'sent' GROUP BY 1, 2"
    ):
        counts[(str(r[0]), str(r[1]))] = int(r[2])
    names = {i for pair in counts for i in pair}
    names |= {str(r[0]) for r in conn.execute("SELECT instance_id FROM instances")}
    return sorted(names), counts
