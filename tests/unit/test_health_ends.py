"""An instance whose unit finished shows how it ended (completed, oom-kill...), read from the node's
records by the probe, not `not loaded`."""

from __future__ import annotations

import json
from pathlib import Path

from runner.health import probe
from runner.health.instances import NOT_LOADED, rows
from runner.health.parse import parse
from runner.node import records
from tests.unit.test_health_fixtures import probe_doc, unit


def _records(path: Path) -> Path:
    conn = records.connect(path)
    t = 1_700_000_000.0
    rows_ = [
        ("lives", {"instance_id": "done", "life": 1, "started_at": t, "node": "n", "start_cycle": 1}),
        ("life_ends", {"instance_id": "done", "life": 1, "ended_at": t + 9, "cause": "completed",
                       "detected_by": "self"}),
        ("lives", {"instance_id": "oom", "life": 1, "started_at": t, "node": "n", "start_cycle": 1}),
        ("exit_reports", {"instance_id": "oom", "life": 1, "reported_at": t + 5, "service_result": "oom-kill",
                          "cause": "oom-kill"}),
        ("lives", {"instance_id": "run", "life": 1, "started_at": t, "node": "n", "start_cycle": 1}),
        ("life_ends", {"instance_id": "run", "life": 1, "ended_at": t + 3, "cause": "signal:KILL",
                       "detected_by": "next-start"}),
        ("lives", {"instance_id": "run", "life": 2, "started_at": t + 4, "node": "n", "start_cycle": 3}),
    ]  # fmt: skip
    for c in (1, 2, 3):
        rows_.append(("cycles", {"instance_id": "run", "life": 1 + (c == 3), "cycle": c, "started_at": t + c,
                                 "duration_s": 1.0, "prompt_tokens": 4, "tokens": 8, "gen_s": 0.5,
                                 "tokens_per_s": 10.0 + c, "stop_reason": "length", "thought": "x"}))  # fmt: skip
    records.write(conn, rows_)
    conn.close()
    return path


def test_probe_reads_how_each_latest_life_ended(tmp_path):
    got = probe.read_records(str(_records(tmp_path / "records.sqlite3")))
    assert got["done"]["end"] == "completed"
    assert got["oom"]["end"] == "oom-kill"  # systemd's exit report when no end row was written
    assert got["run"]["end"] is None  # its second life is running
    assert got["run"]["lives"] == 2 and got["run"]["deaths"] == 1
    assert got["run"]["cycle"] == 3 and got["run"]["tokens_per_s"] == 13.0


def test_probe_on_a_database_it_cannot_read_gives_nothing(tmp_path):
    bad = tmp_path / "records.sqlite3"
    bad.write_text("not sqlite")
    assert probe.read_records(str(bad)) == {}


def test_finished_instances_show_their_end_not_not_loaded(tmp_path):
    recs = probe.read_records(str(_records(tmp_path / "records.sqlite3")))
    units = [unit("oom", active="failed", sub="failed", Result="oom-kill"), unit("run")]
    sample = parse(json.dumps(probe_doc(units=units, records=recs)))
    placed = [{"id": i} for i in ("done", "oom", "run", "never")]
    states = {r.instance: r.state for r in rows("n", placed, sample)}
    assert states == {
        "done": "completed",  # unit unloaded by systemd after it finished
        "oom": "oom-kill (failed/failed)",
        "run": "active/running",
        "never": NOT_LOADED,
    }
