"""Each mode's outcome over time, from a results database: the dilemma's rounds and cumulative payoffs,
split brain's identity claims (the model's own words or its assigned identity), the hive's consensus
rounds, the panopticon's observations. Pure reads; the report draws them."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from runner.node import queries
from runner.node.modes.split_brain import assigned_claim


@dataclass(frozen=True)
class Dilemma:
    players: list[str]
    rounds: list[int]
    cumulative: dict[str, list[int]]  # player -> payoff summed up to each round of `rounds`
    moves: dict[str, dict[int, tuple[str, str]]]  # player -> round -> (move, source: model/fallback)


def dilemma(conn: sqlite3.Connection) -> Dilemma:
    conn.row_factory = sqlite3.Row
    rows = queries.pd_rounds(conn)
    players = sorted({r["instance_id"] for r in rows})
    rounds = sorted({int(r["round"]) for r in rows})
    moves: dict[str, dict[int, tuple[str, str]]] = {p: {} for p in players}
    payoff: dict[str, dict[int, int]] = {p: {} for p in players}
    for r in rows:
        moves[r["instance_id"]][int(r["round"])] = (r["move"], r["move_source"])
        payoff[r["instance_id"]][int(r["round"])] = int(r["payoff"])
    cumulative: dict[str, list[int]] = {}
    for p in players:
        total, series = 0, []
        for n in rounds:
            total += payoff[p].get(n, 0)
            series.append(total)
        cumulative[p] = series
    return Dilemma(players, rounds, cumulative, moves)


@dataclass(frozen=True)
class Claim:
    instance_id: str
    life: int
    cycle: int
    value: str  # original / clone
    from_model: bool  # False: the text said neither, the assigned identity was recorded
    response: str


def assigned_identities(conn: sqlite3.Connection) -> dict[str, str]:
    """Split brain: instance -> the identity it was told (original/clone), from its experiment config.

    Instances without an `identity` take the mode's default (the first in id order is the original)."""
    told: dict[str, str | None] = {}
    for iid, config in conn.execute("SELECT instance_id, config FROM instances ORDER BY instance_id"):
        try:
            raw = json.loads(config)
        except ValueError:
            raw = {}
        identity = raw.get("identity") if isinstance(raw, dict) else None
        told[str(iid)] = assigned_claim(identity) if identity else None
    ids = sorted(told)
    return {iid: v or ("original" if ids.index(iid) == 0 else "clone") for iid, v in told.items()}


def claims(conn: sqlite3.Connection) -> list[Claim]:
    conn.row_factory = sqlite3.Row
    return [
        Claim(
            r["instance_id"],
            int(r["life"]),
            int(r["cycle"]),
            r["value"],
            r["source"] == "model",
            r["response"],
        )
        for r in queries.identity_claims(conn)
        if r["value"]
    ]


def consensus(conn: sqlite3.Connection) -> dict[int, dict[str, str]]:
    """Hive: consensus cycle -> member -> statement, in cycle order."""
    conn.row_factory = sqlite3.Row
    return dict(sorted(queries.hive_consensus(conn).items()))


def observations(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Panopticon: observer, its cycle, the subject and the subject's cycle it saw, its words."""
    conn.row_factory = sqlite3.Row
    return queries.observations(conn)
