"""`python -m runner bench` on the simulated cluster with the tiny model: deploy, the measurement as a
hardened transient unit on each chosen node, every provenance field filled, the repetitions stored, two
runs kept and compared. (No GPU here: a Jetson's power mode and clocks come out `unavailable: ...`, which
is what the provenance says on a machine that cannot give them; the Jetson path itself needs the board.)"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import filled
from tests.integration.conftest import ROOT, Sim, assert_provisioned
from tests.integration.conftest import runner_cli as cli

pytestmark = pytest.mark.integration

NODES = ["host", "rpi1"]


@pytest.fixture(scope="module")
def benched(
    sim: Sim, provisioned_runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    assert_provisioned(provisioned_runs)
    subprocess.run(
        [sys.executable, "-m", "runner", "model", "tiny"], cwd=ROOT, check=True, capture_output=True
    )
    results = tmp_path_factory.mktemp("bench-results")
    common = ["-i", str(sim.inventory), "--results", str(results), "--model", "tiny", "--nodes", ",".join(NODES),
              "--reps", "2", "--prompt-tokens", "16", "--gen-tokens", "8"]  # fmt: skip
    first = cli(sim, "bench", *common)
    second = cli(sim, "bench", *common, "--skip-deploy", "--all-at-once")
    compare = cli(sim, "bench", "--results", str(results), "--compare")
    return {"first": first, "second": second, "compare": compare, "db": results / "bench.sqlite3"}


def test_bench_runs_store_every_field_and_repetition(benched: dict[str, Any]) -> None:
    for name in ("first", "second"):
        proc = benched[name]
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr[-3000:])
        assert "gen tok/s" in proc.stdout and all(n in proc.stdout for n in NODES), proc.stdout
    db = sqlite3.connect(benched["db"])
    assert [r[0] for r in db.execute("SELECT run_id FROM runs ORDER BY 1")] == [1, 2]
    rows = db.execute(
        "SELECT run_id, node, model, node_kind, measurement FROM results ORDER BY 1, 2"
    ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (1, "host", "tiny", "x86"), (1, "rpi1", "tiny", "rpi"), (2, "host", "tiny", "x86"), (2, "rpi1", "tiny", "rpi"),
    ]  # fmt: skip
    for run_id, node, _, _, text in rows:
        m = json.loads(text)
        for section in ("method", "model", "build", "board"):
            assert filled(m[section]), (run_id, node, section, m[section])
        assert filled(m["temperatures_before"]) and filled(m["temperatures_after"]), m
        assert m["board"]["hostname"] == node, m["board"]
        assert m["build"]["wheel_key"] == "x86_64-cpu-cp311", m["build"]  # the node's own wheel
        assert m["model"]["path"] == "/var/lib/edgejar/models/tiny-random-llama.gguf"
        assert m["method"]["prompt_tokens"] == 16 and m["method"]["gen_tokens"] == 8
        assert m["peak_rss_mib"] > 0
    reps = db.execute("SELECT run_id, node, COUNT(*) FROM reps GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    assert reps == [(1, "host", 2), (1, "rpi1", 2), (2, "host", 2), (2, "rpi1", 2)]


def test_bench_compare_shows_both_runs_side_by_side(benched: dict[str, Any]) -> None:
    proc = benched["compare"]
    assert proc.returncode == 0, proc.stderr
    assert "run 1" in proc.stdout and "run 2" in proc.stdout, proc.stdout
    lines = [line for line in proc.stdout.splitlines() if "gen tok/s" in line]
    assert sorted(line.split()[0] for line in lines) == NODES, proc.stdout
