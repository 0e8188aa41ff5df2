"""The bench results database (`results/bench.sqlite3`): every run is kept. A run and all its results are
written in one transaction: a run is there whole or not at all."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT NOT NULL,
    inventory TEXT NOT NULL,
    controller TEXT NOT NULL       -- JSON: edgejar version, git commit, how the nodes were run
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    node TEXT NOT NULL,
    model TEXT NOT NULL,
    node_kind TEXT NOT NULL,
    pp_tps REAL NOT NULL,          -- medians over the repetitions
    tg_tps REAL NOT NULL,
    ttft_s REAL NOT NULL,
    load_s REAL NOT NULL,
    peak_rss_mib REAL NOT NULL,
    measurement TEXT NOT NULL,     -- JSON: runner/node/bench.py's whole output (provenance, reps, summary)
    PRIMARY KEY (run_id, node, model)
);
CREATE TABLE IF NOT EXISTS reps (
    run_id INTEGER NOT NULL,
    node TEXT NOT NULL,
    model TEXT NOT NULL,
    rep INTEGER NOT NULL,
    load_s REAL NOT NULL,
    pp_tps REAL NOT NULL,
    tg_tps REAL NOT NULL,
    ttft_s REAL NOT NULL,
    PRIMARY KEY (run_id, node, model, rep)
);
"""


@dataclass(frozen=True)
class Result:
    """One model measured on one node in one run."""

    node: str
    model: str
    node_kind: str
    measurement: Mapping[str, Any]

    def median(self, metric: str) -> float:
        return float(self.measurement["summary"][metric]["median"])


@dataclass(frozen=True)
class Run:
    run_id: int
    started: str
    finished: str
    inventory: str
    controller: Mapping[str, Any]
    results: tuple[Result, ...]


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    return conn


def add_run(
    conn: sqlite3.Connection,
    started: str,
    finished: str,
    inventory: str,
    controller: Mapping[str, Any],
    results: Iterable[Result],
) -> int:
    with conn:  # one transaction
        cur = conn.execute(
            "INSERT INTO runs (started, finished, inventory, controller) VALUES (?, ?, ?, ?)",
            (started, finished, inventory, json.dumps(controller, sort_keys=True)),
        )
        run_id = int(cur.lastrowid or 0)
        for r in results:
            m = r.measurement
            conn.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, r.node, r.model, r.node_kind, r.median("pp_tps"), r.median("tg_tps"),
                 r.median("ttft_s"), r.median("load_s"), float(m["peak_rss_mib"]),
                 json.dumps(m, sort_keys=True)),
            )  # fmt: skip
            for i, rep in enumerate(m["reps"], 1):
                conn.execute(
                    "INSERT INTO reps VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, r.node, r.model, i, rep["load_s"], rep["pp_tps"], rep["tg_tps"], rep["ttft_s"]),
                )
    return run_id


def run_ids(conn: sqlite3.Connection) -> list[int]:
    return [int(r[0]) for r in conn.execute("SELECT run_id FROM runs ORDER BY run_id")]


def load_run(conn: sqlite3.Connection, run_id: int) -> Run:
    row = conn.execute(
        "SELECT run_id, started, finished, inventory, controller FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is None:
        known = ", ".join(map(str, run_ids(conn))) or "none yet"
        raise InputError(f"bench run {run_id}: no such run (runs: {known})")
    results = tuple(
        Result(node, model, kind, json.loads(text))
        for node, model, kind, text in conn.execute(
            "SELECT node, model, node_kind, measurement FROM results WHERE run_id = ? ORDER BY node, model",
            (run_id,),
        )
    )
    return Run(int(row[0]), row[1], row[2], row[3], json.loads(row[4]), results)
