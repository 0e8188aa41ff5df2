"""Merge the node snapshots that collect.yml fetched into one results database per experiment.

`results/<experiment>/results.sqlite3` has every records table of the node runtime (runner/node/records.py)
plus a `node` column on every row (the node whose database held it) and a `logs` table (the instances'
journal lines). Each table's unique key is the runtime's natural key with `node` in front, and every write
is `INSERT OR IGNORE`: merging the same snapshot again adds nothing, and an instance that moved between
nodes keeps the lives it had on each. When a node's records were started afresh (the same experiment run
again on fresh nodes), the earlier run's `results/<experiment>/` is moved to
`results/previous-<UTC time>/<experiment>/` before the new run is merged. Run by collect.yml on the
controller:

    python -m runner.results.merge --results results NODE...

prints one JSON object: rows added per experiment and table, and what was found per node.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from runner import names
from runner.files import atomic
from runner.node import records

NODES_DIR = ".nodes"
DB_NAME = "results.sqlite3"
SNAPSHOT = "records.sqlite3"
JOURNAL = "journal.json"
UNIT_RE = re.compile(r"^edgejar-(?:instance|train)@(.+)\.service$")  # instances and training units
TABLE_NAMES = tuple(t for t in records.TABLES if t != "meta")  # what a results database merges
LOGS_DDL = """node TEXT NOT NULL, instance_id TEXT NOT NULL, cursor TEXT NOT NULL, at REAL NOT NULL,
    priority INTEGER, message TEXT NOT NULL, UNIQUE (node, cursor)"""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, declaration) in the runtime's order, `node` last if added
    key: tuple[str, ...]  # the runtime's natural key

    @property
    def source_columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns if c != "node")

    def ddl(self) -> str:
        cols = ", ".join(f"{c} {decl}" for c, decl in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}, UNIQUE (node, {', '.join(self.key)}))"


@cache
def tables() -> tuple[Table, ...]:
    """The runtime's tables (meta excepted) as the results database holds them. Read from SQLite itself."""
    mem = sqlite3.connect(":memory:", isolation_level=None)
    records.init(mem)
    out = []
    for name in records.TABLES:
        if name == "meta":
            continue
        cols = []
        for _, col, kind, notnull, _, _ in mem.execute(f"PRAGMA table_info({name})"):
            cols.append((col, f"{kind}{' NOT NULL' if notnull else ''}"))
        if not any(c == "node" for c, _ in cols):
            cols.append(("node", "TEXT NOT NULL"))
        key: tuple[str, ...] = ()
        for _, index, unique, origin, _ in mem.execute(f"PRAGMA index_list({name})"):
            if unique and origin in ("u", "pk"):
                key = tuple(r[2] for r in mem.execute(f"PRAGMA index_info({index})"))
        if not key:
            raise RuntimeError(f"records table {name} has no natural key")
        out.append(Table(name, tuple(cols), key))
    mem.close()
    return tuple(out)


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create) a results database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    with records.transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        version = str(records.SCHEMA_VERSION)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (version,))
        for t in tables():
            conn.execute(t.ddl())
        conn.execute(f"CREATE TABLE IF NOT EXISTS logs ({LOGS_DDL})")
        for stmt in records.INDEXES:
            conn.execute(stmt)
    return conn


@contextlib.contextmanager
def attached(conn: sqlite3.Connection, source: Path) -> Iterator[None]:
    """The node snapshot as schema `src` (a rollback-journal file: collect.yml's snapshot is not WAL)."""
    conn.execute("ATTACH DATABASE ? AS src", (str(source),))
    try:
        yield
    finally:
        conn.execute("DETACH DATABASE src")


def snapshot_experiments(source: Path) -> dict[str, list[str]]:
    """experiment -> instance ids registered in a node snapshot. Checks the schema version."""
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) != records.SCHEMA_VERSION:
            found = row[0] if row else "none"
            raise ValueError(f"{source}: records schema version {found}, expected {records.SCHEMA_VERSION}")
        out: dict[str, list[str]] = {}
        for iid, exp in conn.execute("SELECT instance_id, experiment FROM instances ORDER BY instance_id"):
            out.setdefault(str(exp), []).append(str(iid))
        return out
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{source}: not a records database ({exc})") from None
    finally:
        conn.close()


def copy_experiment(conn: sqlite3.Connection, source: Path, node: str, experiment: str) -> dict[str, int]:
    """INSERT OR IGNORE every row of `experiment` from the node snapshot `source`. Rows added per table."""
    added: dict[str, int] = {}
    members = "SELECT instance_id FROM src.instances WHERE experiment = :exp"
    with attached(conn, source), records.transaction(conn):
        present = {r[0] for r in conn.execute("SELECT name FROM src.sqlite_master WHERE type = 'table'")}
        for t in tables():
            if t.name not in present:  # a snapshot of a runtime from before the table existed
                added[t.name] = 0
                continue
            cols = [c for c, _ in t.columns]
            picked = [":node" if c == "node" else c for c in cols]
            where = "name = :exp" if t.name == "experiments" else f"instance_id IN ({members})"
            cur = conn.execute(
                f"INSERT OR IGNORE INTO main.{t.name} ({', '.join(cols)}) "
                f"SELECT {', '.join(picked)} FROM src.{t.name} WHERE {where}",
                {"node": node, "exp": experiment},
            )
            added[t.name] = cur.rowcount
    return added


def earlier_run(results_db: Path, source: Path, node: str, experiment: str) -> list[str]:
    """Instances of `experiment` that `results_db` holds from `node` with another registration than the
    node snapshot's: the node's records were started afresh, so its rows belong to a new run (lives and
    cycles count from 1 again and would collide with the earlier run's keys)."""
    if not results_db.is_file():
        return []
    conn = sqlite3.connect(f"file:{results_db}?mode=ro", uri=True)
    try:
        with attached(conn, source):
            rows = conn.execute(
                "SELECT s.instance_id FROM src.instances AS s JOIN main.instances AS m"
                " ON m.instance_id = s.instance_id AND m.node = :node"
                " WHERE s.experiment = :exp AND m.registered_at != s.registered_at ORDER BY 1",
                {"node": node, "exp": experiment},
            ).fetchall()
    finally:
        conn.close()
    return [str(r[0]) for r in rows]


def archive(results_dir: Path, experiment: str, stamp: str) -> Path:
    """Move results/<experiment> aside to results/previous-<stamp>/<experiment> (one rename)."""
    dest = results_dir / f"previous-{stamp}" / experiment
    dest.parent.mkdir(parents=True, exist_ok=True)
    (results_dir / experiment).rename(dest)
    return dest


def _text(value: Any) -> str:
    """journald's MESSAGE: a string, or a list of bytes when it is not valid UTF-8."""
    if isinstance(value, list):
        return bytes(int(b) & 0xFF for b in value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The instance lines of a `journalctl -o json` export: instance_id, cursor, at, priority, message."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{"):
            continue  # e.g. "-- No entries --"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        m = UNIT_RE.match(str(entry.get("_SYSTEMD_UNIT", "")))
        if not m or "__CURSOR" not in entry:
            continue
        prio = entry.get("PRIORITY")
        out.append(
            {
                "instance_id": m.group(1),
                "cursor": str(entry["__CURSOR"]),
                "at": int(entry.get("__REALTIME_TIMESTAMP", 0)) / 1e6,
                "priority": int(prio) if str(prio).isdigit() else None,
                "message": _text(entry.get("MESSAGE")),
            }
        )
    return out


def add_logs(conn: sqlite3.Connection, node: str, lines: Sequence[dict[str, Any]]) -> int:
    rows = [(node, r["instance_id"], r["cursor"], r["at"], r["priority"], r["message"]) for r in lines]
    with records.transaction(conn):
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO logs (node, instance_id, cursor, at, priority, message) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        return conn.total_changes - before


def render_logs(conn: sqlite3.Connection, logs_dir: Path) -> list[Path]:
    """One file per instance: `<ISO time> <node> <message>` lines in time order. Returns changed files."""
    files: dict[Path, list[str]] = {}
    for r in conn.execute("SELECT node, instance_id, at, message FROM logs ORDER BY instance_id, at, cursor"):
        stamp = datetime.fromtimestamp(r["at"], UTC).isoformat(timespec="milliseconds")
        line = f"{stamp} {r['node']} {r['message']}"
        files.setdefault(logs_dir / f"{r['instance_id']}.log", []).append(line)
    return atomic.write_all({p: "\n".join(lines) + "\n" for p, lines in files.items()})


def merge_nodes(results_dir: Path, nodes: Sequence[str]) -> dict[str, Any]:
    """Merge each node's fetched snapshot and journal. Returns a report (rows added, per node state)."""
    report: dict[str, Any] = {"added": 0, "archived": {}, "experiments": {}, "nodes": {}, "skipped": []}
    found: dict[str, tuple[Path, dict[str, list[str]]]] = {}
    owner: dict[str, str] = {}  # instance -> experiment, across all nodes (for the journal lines)
    for node in nodes:
        snap = results_dir / NODES_DIR / node / SNAPSHOT
        if not snap.is_file():
            report["nodes"][node] = "no records"
            continue
        exps = snapshot_experiments(snap)
        found[node] = (snap, exps)
        owner.update({iid: exp for exp, ids in exps.items() for iid in ids})
        report["nodes"][node] = f"{sum(len(v) for v in exps.values())} instance(s)"
    # A node whose records started afresh (a new run on fresh nodes) would have its rows silently
    # dropped against the earlier run's keys: the earlier run's results are moved aside first, whole,
    # and the new results database is built from the current snapshots.
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for node, (snap, exps) in found.items():
        for exp in exps:
            if exp in report["archived"] or not names.is_name(exp):
                continue
            redone = earlier_run(results_dir / exp / DB_NAME, snap, node, exp)
            if redone:
                dest = archive(results_dir, exp, stamp)
                report["archived"][exp] = {
                    "moved_to": str(dest),
                    "because": f"{node} holds new records of {', '.join(redone)}",
                }
    touched: set[str] = set()
    for node, (snap, exps) in found.items():
        for exp in exps:
            if not names.is_name(exp):
                report["skipped"].append(f"{node}: experiment {exp!r} is not a safe directory name")
                continue
            conn = connect(results_dir / exp / DB_NAME)
            try:
                added = copy_experiment(conn, snap, node, exp)
            finally:
                conn.close()
            per_exp = report["experiments"].setdefault(exp, {})
            for table, n in added.items():
                per_exp[table] = per_exp.get(table, 0) + n
            report["added"] += sum(added.values())
            touched.add(exp)
    for node in nodes:
        journal = results_dir / NODES_DIR / node / JOURNAL
        if not journal.is_file():
            continue
        by_exp: dict[str, list[dict[str, Any]]] = {}
        for line in read_journal(journal):
            exp = owner.get(line["instance_id"])
            if exp is None or not names.is_name(exp):
                report["skipped"].append(f"{node}: log lines of {line['instance_id']} (no records)")
                continue
            by_exp.setdefault(exp, []).append(line)
        for exp, lines in by_exp.items():
            conn = connect(results_dir / exp / DB_NAME)
            try:
                n = add_logs(conn, node, lines)
            finally:
                conn.close()
            report["experiments"].setdefault(exp, {})["logs"] = report["experiments"][exp].get("logs", 0) + n
            report["added"] += n
            touched.add(exp)
    report["skipped"] = sorted(set(report["skipped"]))
    for exp in sorted(touched):
        conn = connect(results_dir / exp / DB_NAME)
        try:
            render_logs(conn, results_dir / exp / "logs")
        finally:
            conn.close()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runner.results.merge", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, required=True, help="the results directory")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="nodes whose snapshots to merge")
    args = p.parse_args(argv)
    try:
        report = merge_nodes(args.results, args.nodes)
    except (ValueError, sqlite3.DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
