"""playbooks/collect.yml and `runner collect` on the simulated cluster: real instances write records on
their nodes, collect merges them per experiment with the node on every row, twice without duplicates.

The instances are started by hand here (systemd-run of `python -m runner.node run` as the service user,
named like launch.yml's units), so that this test depends only on provision, place and deploy.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.results import merge
from tests.integration import runs
from tests.integration.conftest import ROOT, Sim, assert_provisioned
from tests.integration.conftest import runner_cli as cli

pytestmark = pytest.mark.integration

HOSTS = {"jetson", "rpi1", "rpi2", "host"}
CONFIG_DIR = "/var/lib/edgejar/collect-test"
CYCLES = 3
# The experiment's peer secret (runner/node/auth.py), written by hand as launch would write it.
SECRET = "collect-test-" + "0123456789abcdef" * 2


def placement(sim: Sim) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for f in sorted((sim.inventory.parent / "host_vars").glob("*/placement.yml")):
        entries = yaml.safe_load(f.read_text()).get("edgejar_instances") or []
        if entries:
            out[f.parent.name] = entries
    return out


def start_command(entry: dict[str, Any]) -> str:
    """Shell for one node: write the instance config and start it as edgejar-instance@<id> (transient)."""
    cfg = {
        **entry,
        "runtime": {**entry["runtime"], "cycles": CYCLES, "max_tokens": 16, "cycle_delay_s": 0.2},
        "model_path": "/var/lib/edgejar/models/tiny-random-llama.gguf",
        "data_dir": "/var/lib/edgejar/data",
        "peer_secret_file": f"{CONFIG_DIR}/{entry['experiment']}.key",
    }
    blob = base64.b64encode(json.dumps(cfg).encode()).decode()
    path = f"{CONFIG_DIR}/{entry['id']}.json"
    return (
        f"install -d -m 0755 {CONFIG_DIR} && install -d -o edgejar-run -g edgejar-run -m 0750 /var/lib/edgejar/data"
        f" && echo {blob} | base64 -d > {path} && chmod 0644 {path}"
        f" && echo {SECRET} > {cfg['peer_secret_file']} && chown root:edgejar-run {cfg['peer_secret_file']}"
        f" && chmod 0640 {cfg['peer_secret_file']}"
        # --collect: a unit that fails is unloaded too (no failed transient unit in launch's way later)
        f" && systemd-run --quiet --collect --unit=edgejar-instance@{entry['id']}.service"
        " --uid=edgejar-run --gid=edgejar-run"
        f" --property=WorkingDirectory=/var/lib/edgejar/data"
        f" /opt/edgejar/venv/bin/python -m runner.node run --config {path}"
    )


@pytest.fixture(scope="module")
def ran(sim: Sim, runner_dir: Path, provisioned_runs: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Provision, place split brain, deploy, run its two instances to completion: node -> entries."""
    subprocess.run(
        [sys.executable, "-m", "runner", "model", "tiny"], cwd=ROOT, check=True, capture_output=True
    )
    assert_provisioned(provisioned_runs)
    placed = cli(sim, "place", "-i", str(sim.inventory), "experiments/split_brain.yml")
    assert placed.returncode == 0, placed.stderr
    deploy, _ = runs.playbook(sim, runner_dir, "collect-deploy", "deploy.yml")
    assert deploy.status == "successful", deploy.errors()
    nodes = placement(sim)
    assert sum(len(v) for v in nodes.values()) == 2 and len(nodes) == 2, nodes
    for node, entries in nodes.items():
        runs.shell(
            sim, runner_dir, f"collect-start-{node}", " && ".join(start_command(e) for e in entries), node
        )
    # both run to `completed` and their units go away (a transient unit that exits 0 is unloaded)
    units = " ".join(f"edgejar-instance@{e['id']}.service" for es in nodes.values() for e in es)
    runs.shell(
        sim,
        runner_dir,
        "collect-wait",
        f"for i in $(seq 240); do systemctl is-active --quiet {units} || break; sleep 0.5; done;"
        f" ! systemctl is-active --quiet {units}",
        ",".join(nodes),
    )
    return nodes


@pytest.fixture(scope="module")
def collected(sim: Sim, ran: dict[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory):
    """`runner collect` twice into a fresh results directory: (results dir, first run, second run)."""
    results = tmp_path_factory.mktemp("results")
    first = cli(sim, "collect", "-i", str(sim.inventory), "--results", str(results), "--json")
    counts_first = table_counts(results / "split_brain" / merge.DB_NAME)
    second = cli(sim, "collect", "-i", str(sim.inventory), "--results", str(results), "--json")
    return results, first, second, counts_first


def table_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in [*merge.TABLE_NAMES, "logs"]
        }
    finally:
        conn.close()


def test_collect_merges_every_nodes_records_with_the_node_on_each_row(
    collected: tuple[Path, Any, Any, dict[str, int]], ran: dict[str, list[dict[str, Any]]]
) -> None:
    results, first, _, counts = collected
    assert first.returncode == 0, first.stderr[-3000:]
    node_of = {e["id"]: node for node, es in ran.items() for e in es}
    db = results / "split_brain" / merge.DB_NAME
    conn = sqlite3.connect(db)
    for table in merge.TABLE_NAMES:
        if table == "experiments":
            assert {r[0] for r in conn.execute("SELECT node FROM experiments")} == set(ran)
            continue
        for iid, node in conn.execute(f"SELECT instance_id, node FROM {table}"):
            assert node_of[iid] == node, (table, iid, node)
    cycles = dict(conn.execute("SELECT instance_id, COUNT(*) FROM cycles GROUP BY 1").fetchall())
    assert cycles == {iid: CYCLES for iid in node_of}
    assert counts["messages"] > 0 and counts["self_reports"] == 2 * CYCLES
    conn.close()
    # the journal came too: each instance's log lines, from its own node
    for iid, node in node_of.items():
        log = (results / "split_brain" / "logs" / f"{iid}.log").read_text()
        assert f" {node} {iid} life 1 cycle {CYCLES}/{CYCLES}" in log, log[-2000:]
    doc = json.loads(first.stdout)
    (exp,) = doc["experiments"]
    assert {i["id"]: i["node"] for i in exp["instances"]} == node_of
    assert all(i["cycles"] == CYCLES and i["state"] == "completed" for i in exp["instances"])


def test_collecting_again_adds_no_rows_and_reports_no_change(
    sim: Sim, runner_dir: Path, collected: tuple[Path, Any, Any, dict[str, int]]
) -> None:
    results, _, second, counts = collected
    assert second.returncode == 0, second.stderr[-3000:]
    assert table_counts(results / "split_brain" / merge.DB_NAME) == counts
    run, _ = runs.playbook(
        sim, runner_dir, "collect-3", "collect.yml", {"edgejar_collect_results_dir": str(results)}
    )
    assert run.status == "successful", run.errors()
    assert not run.stats.get("changed"), run.stats
    assert table_counts(results / "split_brain" / merge.DB_NAME) == counts


def test_check_mode_collects_nothing_and_succeeds(
    sim: Sim, runner_dir: Path, ran: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    run, _ = runs.playbook(
        sim,
        runner_dir,
        "collect-check",
        "collect.yml",
        {"edgejar_collect_results_dir": str(tmp_path)},
        cmdline="--check",
    )
    assert run.status == "successful", run.errors()
    assert not list(tmp_path.glob(f"*/{merge.DB_NAME}"))


def test_an_unreachable_node_is_named_and_the_others_collected(
    sim: Sim, runner_dir: Path, ran: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    inventory = yaml.safe_load(sim.inventory.read_text())
    groups = inventory["all"]["children"]["edgejar_nodes"]["children"]
    some_host = next(iter(next(iter(groups.values()))["hosts"].values()))
    ghost = {**some_host, "ansible_host": some_host["ansible_host"].rsplit(".", 1)[0] + ".250"}
    extra = tmp_path / "ghost.yml"
    extra.write_text(yaml.safe_dump({"edgejar_nodes": {"hosts": {"ghost": ghost}}}))
    results = tmp_path / "results"
    run, output = runs.playbook(
        sim,
        runner_dir,
        "collect-ghost",
        "collect.yml",
        {"edgejar_collect_results_dir": str(results)},
        inventory=[str(sim.inventory), str(extra)],
    )
    assert set(run.stats.get("dark", {})) == {"ghost"}, run.stats
    assert not run.stats.get("failures"), run.errors()
    assert "ghost: unreachable at task" in output, output[-2000:]
    conn = sqlite3.connect(results / "split_brain" / merge.DB_NAME)
    assert {r[0] for r in conn.execute("SELECT DISTINCT node FROM cycles")} == set(ran)
    conn.close()
