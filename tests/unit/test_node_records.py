"""runner.node records: schema, WAL, lives and exits, read helpers, idempotent merging of node databases."""

from __future__ import annotations

import platform
import sqlite3
import threading
from pathlib import Path

import pytest

from runner.node import lifecycle, queries, records
from runner.node.config import parse


def _cfg(tmp: Path, iid: str = "sb_A", mode: str = "split_brain"):
    return parse(
        {
            "id": iid,
            "experiment": "split_brain",
            "mode": mode,
            "address": "127.0.0.1",
            "port": 9000,
            "memory_mib": 256,
            "model_path": str(tmp / "m.gguf"),
            "data_dir": str(tmp / "data"),
            "runtime": {"n_ctx": 128, "max_tokens": 8},
        },
        tmp / f"{iid}.json",
    )


def _cycle(conn: sqlite3.Connection, iid: str, life: int, cycle: int, peak: float) -> None:
    records.insert(
        conn,
        "cycles",
        {
            "instance_id": iid,
            "life": life,
            "cycle": cycle,
            "started_at": 1.0,
            "duration_s": 0.1,
            "prompt_tokens": 10,
            "tokens": 8,
            "gen_s": 0.05,
            "tokens_per_s": 160.0,
            "rss_mib": peak - 1,
            "peak_rss_mib": peak,
            "stop_reason": "length",
            "thought": "t",
        },
    )


def test_schema_is_wal_versioned_and_every_table_has_a_unique_key(tmp_path: Path) -> None:
    conn = records.connect(tmp_path / "r.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
        records.SCHEMA_VERSION
    )
    for table, cols in records.TABLES.items():
        assert "UNIQUE" in cols or "PRIMARY KEY" in cols, table
    records.connect(tmp_path / "r.sqlite3").close()  # opening again is fine


def test_death_found_on_next_start_with_cause_cycle_and_peak(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    conn = records.connect(cfg.db_path)
    lifecycle.register(conn, cfg)
    assert lifecycle.find_death(lifecycle.previous(conn, cfg.id)) is None
    lifecycle.begin(conn, cfg, 1, 1)
    for c, peak in ((1, 50.0), (2, 70.0), (3, 65.0)):
        _cycle(conn, cfg.id, 1, c, peak)
    assert (
        lifecycle.record_exit(
            conn, cfg.id, {"SERVICE_RESULT": "oom-kill", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"}
        )
        == "oom-kill"
    )
    prev = lifecycle.previous(conn, cfg.id)
    death = lifecycle.find_death(prev)
    assert death == lifecycle.Death(1, "oom-kill", 3, 70.0)
    assert prev.max_cycle == 3
    lifecycle.close_death(conn, cfg.id, death)
    lifecycle.begin(conn, cfg, 2, 4)
    lifecycle.end(conn, cfg.id, 2, "stopped", 3, 60.0)
    assert lifecycle.find_death(lifecycle.previous(conn, cfg.id)) is None
    lives = queries.lives(conn, cfg.id)
    assert [(lf["life"], lf["cause"], lf["detected_by"]) for lf in lives] == [
        (1, "oom-kill", "next-start"),
        (2, "stopped", "runtime"),
    ]
    assert lives[0]["memory_limit_mib"] == 256
    assert queries.deaths(conn) == {cfg.id: {"oom-kill": 1}}
    assert queries.cycle_stats(conn)[cfg.id]["cycles"] == 3


def test_a_life_that_never_started_a_cycle_dies_at_the_cycle_before_its_start(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    conn = records.connect(cfg.db_path)
    lifecycle.begin(conn, cfg, 1, 5)
    death = lifecycle.find_death(lifecycle.previous(conn, cfg.id))
    assert death == lifecycle.Death(1, lifecycle.UNKNOWN_DEATH, 4, None)


def _node_db(path: Path, iid: str, cycles: int) -> None:
    conn = records.connect(path)
    cfg = _cfg(path.parent, iid)
    lifecycle.register(conn, cfg)
    lifecycle.begin(conn, cfg, 1, 1)
    for c in range(1, cycles + 1):
        _cycle(conn, iid, 1, c, 40.0 + c)
    records.insert(
        conn,
        "self_reports",
        {
            "instance_id": iid,
            "life": 1,
            "cycle": 1,
            "kind": "identity_claim",
            "response": "ORIGINAL",
            "value": "original",
            "source": "model",
            "at": 1.0,
        },
    )
    conn.close()


def test_merging_node_databases_is_idempotent(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _node_db(tmp_path / "a" / "r.sqlite3", "sb_A", 3)
    _node_db(tmp_path / "b" / "r.sqlite3", "sb_B", 2)
    target = records.connect(tmp_path / "all.sqlite3")
    first = records.merge(target, tmp_path / "a" / "r.sqlite3")
    assert first["cycles"] == 3
    records.merge(target, tmp_path / "b" / "r.sqlite3")
    again = records.merge(target, tmp_path / "a" / "r.sqlite3")
    assert set(again.values()) == {0}
    assert target.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 5
    assert [c["value"] for c in queries.identity_claims(target)] == ["original", "original"]
    assert set(queries.cycle_stats(target)) == {"sb_A", "sb_B"}


def test_pd_helpers_take_the_latest_life_of_a_replayed_round(tmp_path: Path) -> None:
    conn = records.connect(tmp_path / "r.sqlite3")
    for life, move in ((1, "cooperate"), (2, "defect")):
        records.insert(
            conn,
            "pd_rounds",
            {
                "instance_id": "a",
                "life": life,
                "round": 1,
                "move": move,
                "move_source": "fallback",
                "peer_id": "b",
                "peer_move": "defect",
                "payoff": 1 if move == "defect" else 0,
                "peer_payoff": 1 if move == "defect" else 5,
                "at": 1.0,
            },
        )
    (row,) = queries.pd_rounds(conn)
    assert row["move"] == "defect"
    assert queries.pd_scores(conn) == {"a": {"payoff": 1, "cooperate": 0, "defect": 1, "fallback": 1}}


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = records.connect(tmp_path / "r.sqlite3")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        records.connect(tmp_path / "r.sqlite3")


def test_a_new_database_opens_while_another_instance_holds_its_write_lock(tmp_path: Path) -> None:
    """Instances of one node start together on a new records file. Switching it to WAL while another
    holds the write lock fails at once with 'database is locked' (SQLite's busy timeout does not apply
    there): connect waits for the lock instead of crashing the instance."""
    path = tmp_path / "records.sqlite3"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # what another instance's init holds for a moment
    other.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    outcome: list[object] = []

    def open_it() -> None:
        try:
            conn = records.connect(path)
            outcome.append(conn.execute("PRAGMA journal_mode").fetchone()[0])
            conn.close()
        except Exception as exc:
            outcome.append(exc)

    t = threading.Thread(target=open_it)
    t.start()
    t.join(0.5)
    assert not outcome, outcome  # still waiting for the lock, not failed
    other.execute("COMMIT")
    other.close()
    t.join(60)
    assert outcome == ["wal"]


def test_an_instance_notes_its_machine_type(tmp_path: Path) -> None:
    conn = records.connect(tmp_path / "records.sqlite3")
    records.note_machine(conn)
    records.note_machine(conn)  # again at the next start: one row, the latest value
    rows = conn.execute("SELECT value FROM meta WHERE key = 'machine'").fetchall()
    assert [r[0] for r in rows] == [platform.machine()]
