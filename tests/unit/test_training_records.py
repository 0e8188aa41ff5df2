"""A training job's records: what the unit's wrapper and a script's Recorder write on each node, how collect's
merge puts two nodes together, and what `runner results` makes of it. The records are written through
the same code a real run uses (runner/node/train.py, runner/node/trainrec.py); torch is not needed for
that and is not installed for the unit tests (the integration test runs a real job on the sim)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.cli import main
from runner.node import records, train, trainrec
from runner.results import merge, summary, training

JOB = "mlp"


def entry(k: int, node: str) -> dict:
    return {
        "id": f"{JOB}-{k}",
        "experiment": JOB,
        "kind": "torch_distributed",
        "node": node,
        "address": f"10.0.0.{k + 2}",
        "unit_index": k,
        "memory_mib": 768,
        "gpu": False,
    }


def env(k: int, db: Path, launch: int, restart: int = 0) -> dict[str, str]:
    return {
        trainrec.ENV_RECORDS: str(db),
        trainrec.ENV_UNIT: f"{JOB}-{k}",
        trainrec.ENV_LAUNCH: str(launch),
        trainrec.ENV_CHECKPOINTS: str(db.parent / "checkpoints"),
        "TORCHELASTIC_RESTART_COUNT": str(restart),
        "LOCAL_RANK": "0",
        "RANK": str(k),
    }


def launch(conn: object, k: int, node: str, db: Path) -> trainrec.Recorder:
    """What the unit's wrapper does at a start (register, the launch event) and the worker's Recorder."""
    n = train.register(conn, entry(k, node))
    train._event(conn, entry(k, node), n, "launch")
    rec = trainrec.Recorder.from_env(env(k, db, n))
    assert rec is not None
    return rec


def node_run(db: Path, k: int, node: str, batch: int, compute_s: float, kill_at: int | None = None) -> None:
    """One node's unit: a worker that runs 10 steps; with `kill_at` the unit is killed there (nothing more
    from that launch), systemd starts it again and the worker resumes from step 5's checkpoint."""
    conn = records.connect(db)
    rec = launch(conn, k, node, db)
    rec.event("start", step=0, backend="gloo", world_size=2, batch=batch)
    step = 0
    while step < 10:
        if step == kill_at:
            rec.close()
            rec = launch(conn, k, node, db)
            rec.event("resume", step=5, backend="gloo", world_size=2, batch=batch)
            kill_at, step = None, 5
        rec.step(step, loss=1.0 / (step + 1), batch=batch, step_s=0.1, compute_s=compute_s, comm_s=0.01)
        step += 1
    rec.event("end", step=10, final_loss=0.1)
    rec.close()
    train._event(conn, entry(k, node), rec.launch, "exit", returncode=0)
    conn.close()


@pytest.fixture
def results(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    for k, node, batch, compute, kill in ((0, "jetson", 160, 0.02, None), (1, "rpi1", 96, 0.05, 7)):
        db = tmp_path / node / "records.sqlite3"
        node_run(db, k, node, batch, compute, kill)
        snap = out / merge.NODES_DIR / node
        snap.mkdir(parents=True)
        shutil.copy(db, snap / merge.SNAPSHOT)  # collect's snapshot is a plain copy of a quiet database
    merge.merge_nodes(out, ["jetson", "rpi1"])
    return out


def test_launches_are_counted_per_unit(tmp_path: Path) -> None:
    conn = records.connect(tmp_path / "records.sqlite3")
    assert train.register(conn, entry(0, "a")) == 1
    train._event(conn, entry(0, "a"), 1, "launch")
    assert train.register(conn, entry(0, "a")) == 2
    assert train.register(conn, entry(1, "a")) == 1  # another unit counts its own
    row = conn.execute("SELECT mode, port, model FROM instances WHERE instance_id = 'mlp-0'").fetchone()
    assert tuple(row) == ("torch_distributed", None, None)


def test_a_script_outside_a_unit_records_nothing() -> None:
    assert trainrec.Recorder.from_env({"RANK": "0"}) is None


def test_steps_are_buffered_and_events_write_them(tmp_path: Path) -> None:
    db = tmp_path / "records.sqlite3"
    rec = trainrec.Recorder.from_env(env(0, db, 1))
    assert rec is not None
    rec.step(0, loss=1.0, batch=8, step_s=0.5, compute_s=0.4, comm_s=0.1)
    assert not db.exists()  # nothing written yet: steps wait for the next flush
    rec.event("end", step=1, final_loss=1.0)
    conn = records.connect(db, readonly=True)
    step = conn.execute("SELECT samples_per_s, peak_rss_mib FROM train_steps").fetchone()
    assert step["samples_per_s"] == 16.0 and step["peak_rss_mib"] > 0
    assert json.loads(conn.execute("SELECT detail FROM train_events").fetchone()[0]) == {"final_loss": 1.0}
    assert rec.checkpoint() == tmp_path / "checkpoints" / "rank0-checkpoint.pt"


def test_merge_and_summary_of_a_job_with_a_killed_unit(results: Path) -> None:
    doc = summary.build(results)
    (exp,) = doc["experiments"]
    assert exp["mode"] == training.MODE
    o = exp["outcome"]
    assert o["backends"] == ["gloo"] and o["ended"]
    assert o["first_loss"] == 1.0 and o["final_loss"] == pytest.approx(0.1) and o["last_step"] == 9
    assert o["unit_restarts"] == 1 and o["resumed"] == [{"unit": "mlp-1", "rank": 1, "step": 5, "launch": 2}]
    by_unit = {r["unit"]: r for r in o["ranks"]}
    assert by_unit["mlp-0"]["node"] == "jetson" and by_unit["mlp-1"]["node"] == "rpi1"
    assert by_unit["mlp-1"]["steps"] == 12  # steps 5 and 6 ran twice: before the kill and after the resume
    assert o["slowest"] == "mlp-1"  # 0.05 s for 96 samples against 0.02 s for 160
    assert o["samples_per_s"] == pytest.approx(1600 + 960)
    text = summary.render(doc)
    assert "loss 1 -> 0.1 at step 9; 2560 samples/s in all; backend gloo; ended" in text
    assert (
        "restarts: 1 of units (systemd), 0 of workers (torchrun); resumed from checkpoint step(s) 5" in text
    )


def test_results_command_prints_the_job(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "--results", str(results), JOB]) == 0
    out = capsys.readouterr().out
    assert "== mlp (torch_distributed)" in out and "slowest rank (compute per sample): mlp-1" in out


def test_a_job_given_up_at_its_rendezvous_prints_why(tmp_path: Path) -> None:
    """A unit whose job could not form records gave_up (runner/node/train.py); results names it and why."""
    out = tmp_path / "results"
    db = tmp_path / "host" / "records.sqlite3"
    conn = records.connect(db)
    n = train.register(conn, entry(0, "host"))
    train._event(conn, entry(0, "host"), n, "launch")
    train._event(conn, entry(0, "host"), n, "gave_up", returncode=1, reason="the job did not form")
    conn.close()
    snap = out / merge.NODES_DIR / "host"
    snap.mkdir(parents=True)
    shutil.copy(db, snap / merge.SNAPSHOT)
    merge.merge_nodes(out, ["host"])
    (exp,) = summary.build(out)["experiments"]
    o = exp["outcome"]
    assert o["gave_up"] == [{"unit": "mlp-0", "node": "host", "launch": 1, "reason": "the job did not form"}]
    assert not o["ended"]
    text = summary.render(summary.build(out))
    assert (
        "no training steps recorded" in text
        and "gave up: mlp-0 on host (launch 1): the job did not form" in text
    )


def test_health_shows_a_training_unit_with_its_step_loss_and_rate(tmp_path: Path) -> None:
    """The node probe reads the unit's latest step and how its launch ended; the monitor's cells show it."""
    from runner.health import instances, parse, probe
    from runner.health.model import UnitSample
    from runner.monitor import format as fmt

    db = tmp_path / "records.sqlite3"
    node_run(db, 0, "jetson", batch=64, compute_s=0.02)
    stats = parse.instance_stats(json.loads(json.dumps(probe.read_records(str(db)))))  # through JSON
    got = stats["mlp-0"]
    assert (got.step, got.loss, got.samples_per_s, got.rank, got.end) == (9, 0.1, 640.0, 0, "completed")
    unit = UnitSample("mlp-0", "active", "running", "success", 0, 300 << 20, 768 << 20, 42, 1.0)
    assert parse.instance_id("edgejar-train@mlp-0.service") == "mlp-0"
    sample = type("S", (), {"units": (unit,), "records": stats})()
    (row,) = instances.rows("jetson", [entry(0, "jetson")], sample)  # type: ignore[arg-type]
    assert (fmt.progress_cell(row), fmt.rate_cell(row), fmt.last_cell(row, 0.0)) == (
        "step 9",
        "640 smp/s",
        "loss 0.1",
    )
