"""The node's records database: schema and writes (one SQLite file per node, WAL, many writers).

Every table is append-only and every row has a natural unique key (instance, life, sequence or cycle),
so databases of many nodes merge into one with `INSERT OR IGNORE` without duplicates (`merge`).
"""

from __future__ import annotations

import json
import platform
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
LOCKED_RETRY_S = 30.0

TABLES: dict[str, str] = {
    "meta": "key TEXT PRIMARY KEY, value TEXT NOT NULL",
    "experiments": """name TEXT PRIMARY KEY, mode TEXT NOT NULL, experiment_file TEXT,
        first_seen REAL NOT NULL""",
    "instances": """instance_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, mode TEXT NOT NULL,
        node TEXT, address TEXT, port INTEGER, model TEXT, memory_mib INTEGER, gpu INTEGER,
        gpu_memory_mib INTEGER, config TEXT NOT NULL, registered_at REAL NOT NULL""",
    "lives": """instance_id TEXT NOT NULL, life INTEGER NOT NULL, started_at REAL NOT NULL,
        pid INTEGER, node TEXT, start_cycle INTEGER NOT NULL, memory_limit_mib INTEGER,
        cgroup_memory_max_mib INTEGER, UNIQUE (instance_id, life)""",
    "life_ends": """instance_id TEXT NOT NULL, life INTEGER NOT NULL, ended_at REAL NOT NULL,
        cause TEXT NOT NULL, last_cycle INTEGER, peak_rss_mib REAL, detected_by TEXT NOT NULL,
        UNIQUE (instance_id, life)""",
    "exit_reports": """instance_id TEXT NOT NULL, life INTEGER, reported_at REAL NOT NULL,
        service_result TEXT, exit_code TEXT, exit_status TEXT, cause TEXT NOT NULL,
        UNIQUE (instance_id, life, reported_at)""",
    "cycles": """instance_id TEXT NOT NULL, life INTEGER NOT NULL, cycle INTEGER NOT NULL,
        started_at REAL NOT NULL, duration_s REAL NOT NULL, prompt_tokens INTEGER NOT NULL,
        tokens INTEGER NOT NULL, gen_s REAL NOT NULL, tokens_per_s REAL, rss_mib REAL,
        peak_rss_mib REAL, stop_reason TEXT NOT NULL, thought TEXT NOT NULL,
        UNIQUE (instance_id, life, cycle)""",
    "messages": """instance_id TEXT NOT NULL, life INTEGER NOT NULL, direction TEXT NOT NULL,
        peer_id TEXT NOT NULL, msg_id TEXT NOT NULL, type TEXT NOT NULL, cycle INTEGER,
        content TEXT NOT NULL, at REAL NOT NULL, UNIQUE (instance_id, direction, peer_id, msg_id)""",
    "self_reports": """instance_id TEXT NOT NULL, life INTEGER NOT NULL, cycle INTEGER NOT NULL,
        kind TEXT NOT NULL, question TEXT, response TEXT NOT NULL, value TEXT, source TEXT NOT NULL,
        about TEXT, about_cycle INTEGER, at REAL NOT NULL, UNIQUE (instance_id, life, cycle, kind)""",
    "pd_rounds": """instance_id TEXT NOT NULL, life INTEGER NOT NULL, round INTEGER NOT NULL,
        move TEXT NOT NULL, move_source TEXT NOT NULL, peer_id TEXT NOT NULL, peer_move TEXT NOT NULL,
        payoff INTEGER NOT NULL, peer_payoff INTEGER NOT NULL, at REAL NOT NULL,
        UNIQUE (instance_id, life, round)""",
    "interventions": """instance_id TEXT NOT NULL, life INTEGER NOT NULL, cycle INTEGER NOT NULL,
        idx INTEGER NOT NULL, type TEXT NOT NULL, params TEXT NOT NULL, description TEXT NOT NULL,
        result TEXT NOT NULL, at REAL NOT NULL, UNIQUE (instance_id, life, cycle, idx)""",
    "memories": """instance_id TEXT NOT NULL, life INTEGER NOT NULL, seq INTEGER NOT NULL,
        cycle INTEGER NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL, content TEXT NOT NULL,
        meta TEXT NOT NULL, replaces TEXT, at REAL NOT NULL, UNIQUE (instance_id, life, seq)""",
    "memory_ops": """instance_id TEXT NOT NULL, life INTEGER NOT NULL, seq INTEGER NOT NULL,
        cycle INTEGER NOT NULL, op TEXT NOT NULL, keys TEXT NOT NULL, reason TEXT NOT NULL,
        at REAL NOT NULL, UNIQUE (instance_id, life, seq)""",
    "metrics": """instance_id TEXT NOT NULL, life INTEGER NOT NULL, cycle INTEGER NOT NULL,
        name TEXT NOT NULL, value REAL, at REAL NOT NULL, UNIQUE (instance_id, life, cycle, name)""",
    # Training units (kind torch_distributed; runner/node/train.py and runner/node/trainrec.py). `launch`:
    # the unit's start by systemd (1, 2, ...); `restart`: torchrun's restart of its workers within that
    # launch (TORCHELASTIC_RESTART_COUNT); `local_rank` -1 is the unit's own wrapper.
    "train_events": """instance_id TEXT NOT NULL, launch INTEGER NOT NULL, restart INTEGER NOT NULL,
        local_rank INTEGER NOT NULL, rank INTEGER, event TEXT NOT NULL, step INTEGER, detail TEXT NOT NULL,
        at REAL NOT NULL, UNIQUE (instance_id, launch, restart, local_rank, event)""",
    "train_steps": """instance_id TEXT NOT NULL, launch INTEGER NOT NULL, restart INTEGER NOT NULL,
        local_rank INTEGER NOT NULL, rank INTEGER NOT NULL, step INTEGER NOT NULL, loss REAL NOT NULL,
        batch INTEGER NOT NULL, step_s REAL NOT NULL, compute_s REAL NOT NULL, comm_s REAL NOT NULL,
        samples_per_s REAL, peak_rss_mib REAL, at REAL NOT NULL,
        UNIQUE (instance_id, launch, restart, local_rank, step)""",
}
INDEXES = (
    "CREATE INDEX IF NOT EXISTS cycles_by_instance ON cycles (instance_id, cycle)",
    "CREATE INDEX IF NOT EXISTS messages_by_instance ON messages (instance_id, direction)",
    "CREATE INDEX IF NOT EXISTS memories_by_instance ON memories (instance_id)",
    "CREATE INDEX IF NOT EXISTS train_steps_by_instance ON train_steps (instance_id, step)",
)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (and create) the records database: WAL, a busy timeout for concurrent writers."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    if not readonly:
        # Instances of one node start together on a new database: switching it to WAL takes a lock that
        # SQLite's busy timeout does not wait for, so "database is locked" is retried here.
        while_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA synchronous = NORMAL")
        while_locked(lambda: init(conn))
    return conn


def while_locked(step: Callable[[], object], timeout_s: float = LOCKED_RETRY_S) -> None:
    """Run `step`, again while SQLite says the database is locked (up to timeout_s, then the error)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def init(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        for name, cols in TABLES.items():
            conn.execute(f"CREATE TABLE IF NOT EXISTS {name} ({cols})")
        for stmt in INDEXES:
            conn.execute(stmt)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
    found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    if int(found) != SCHEMA_VERSION:
        raise RuntimeError(f"records schema version {found}, this runtime writes {SCHEMA_VERSION}")


def note_machine(conn: sqlite3.Connection) -> None:
    """The node's machine type (`uname -m`: aarch64 on a Pi or a Jetson, also under emulation) in `meta`,
    where an instance writes it when it starts: which userland the records came from."""
    with transaction(conn):
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('machine', ?)", (platform.machine(),))


class transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): one writer at a time across processes."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def insert(conn: sqlite3.Connection, table: str, row: Mapping[str, Any]) -> None:
    """INSERT OR IGNORE one row (dicts and lists become JSON) in its own transaction."""
    write(conn, [(table, row)])


def _sql(table: str, cols: Iterable[str]) -> str:
    cols = list(cols)
    return f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def write(conn: sqlite3.Connection, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """INSERT OR IGNORE (table, row) pairs in one transaction."""
    rows = list(rows)
    if not rows:
        return
    with transaction(conn):
        for table, row in rows:
            values = [
                json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v for v in row.values()
            ]
            conn.execute(_sql(table, row), values)


def now() -> float:
    return time.time()


def merge(target: sqlite3.Connection, source: Path) -> dict[str, int]:
    """Copy every row of the database at `source` into `target` (idempotent). Returns rows added per table."""
    added: dict[str, int] = {}
    target.execute("ATTACH DATABASE ? AS src", (str(source),))
    try:
        with transaction(target):
            for table in TABLES:
                if table == "meta":
                    continue
                cur = target.execute(f"INSERT OR IGNORE INTO main.{table} SELECT * FROM src.{table}")
                added[table] = cur.rowcount
    finally:
        target.execute("DETACH DATABASE src")
    return added
