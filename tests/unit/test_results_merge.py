"""runner.results: node snapshots (from the real runtime on loopback) merged per experiment, with the node
on every row, idempotently; journal lines; the summary built from the merged databases.

Two "nodes" are two data directories: split brain's A and the PD's player A write n1's database, B and
player B write n2's, as on two hosts. The snapshots are made with the collect role's own snapshot.py.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.cli import main as cli_main
from runner.modelfile.tiny import write_tiny_model
from runner.results import merge, summary
from tests.runtime.cluster import ROOT, Cluster

SNAPSHOT = ROOT / "roles" / "edgejar_collect" / "files" / "snapshot.py"
NODE_OF = {"sb_A": "n1", "sb_B": "n2", "pd_a": "n1", "pd_b": "n2"}


def _need_llama() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"llama_cpp is not importable ({exc}): these tests use records of real instances")


@pytest.fixture(scope="module")
def node_dbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """node -> its records database, after a 3-cycle split brain and a 3-round PD across the two nodes."""
    _need_llama()
    tmp = tmp_path_factory.mktemp("nodes")
    model = tmp / "tiny.gguf"
    write_tiny_model(model, seed=0)
    cluster = Cluster(tmp, model)
    cluster.define("split_brain", "split_brain", ["sb_A", "sb_B"], cycles=3, settings={"peer_wait_s": 30})
    cluster.define("prisoners_dilemma", "prisoners_dilemma", ["pd_a", "pd_b"], cycles=3)
    for iid, node in NODE_OF.items():
        cluster.entries[iid]["node"] = node
        cluster.entries[iid]["data_dir"] = str(tmp / node)
    try:
        for iid in NODE_OF:
            cluster.start(iid)
        for iid in NODE_OF:
            assert cluster.wait_exit(iid) == 0, cluster.log(iid)
    finally:
        cluster.kill_all()
    yield {node: tmp / node / "records.sqlite3" for node in ("n1", "n2")}


def snapshot(src: Path, dest: Path) -> dict[str, object]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [sys.executable, str(SNAPSHOT), str(src), str(dest)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def journal_line(unit: str, cursor: str, message: str | list[int], at_us: int = 1_700_000_000_000_000) -> str:
    return json.dumps(
        {
            "_SYSTEMD_UNIT": unit,
            "__CURSOR": cursor,
            "__REALTIME_TIMESTAMP": str(at_us),
            "PRIORITY": "6",
            "MESSAGE": message,
        }
    )


@pytest.fixture
def results(tmp_path: Path, node_dbs: dict[str, Path]) -> Path:
    out = tmp_path / "results"
    for node, db in node_dbs.items():
        snapshot(db, out / merge.NODES_DIR / node / merge.SNAPSHOT)
    (out / merge.NODES_DIR / "n1" / merge.JOURNAL).write_text(
        "-- No entries --\n"
        + journal_line("edgejar-instance@sb_A.service", "c1", "sb_A life 1 cycle 1/3: ...")
        + "\n"
        + journal_line("edgejar-instance@sb_A.service", "c2", list(b"bytes \xff"), 1_700_000_001_000_000)
        + "\n"
        + journal_line("edgejar-instance@ghost.service", "c3", "never registered")
        + "\n"
        + journal_line("sshd.service", "c4", "not an instance")
        + "\n"
    )
    return out


def counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {t.name: conn.execute(f"SELECT COUNT(*) FROM {t.name}").fetchone()[0] for t in merge.tables()}
    finally:
        conn.close()


def test_snapshot_is_a_consistent_standalone_copy(tmp_path: Path, node_dbs: dict[str, Path]) -> None:
    first = snapshot(node_dbs["n1"], tmp_path / "a" / "s.sqlite3")
    again = snapshot(node_dbs["n1"], tmp_path / "a" / "s.sqlite3")
    assert first == again  # same records, same bytes: fetch reports no change
    conn = sqlite3.connect(tmp_path / "a" / "s.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["s.sqlite3"]


def test_merge_splits_experiments_and_records_the_node_on_every_row(
    results: Path, node_dbs: dict[str, Path]
) -> None:
    report = merge.merge_nodes(results, ["n1", "n2"])
    assert set(report["experiments"]) == {"split_brain", "prisoners_dilemma"}
    assert report["nodes"] == {"n1": "2 instance(s)", "n2": "2 instance(s)"}
    for exp in ("split_brain", "prisoners_dilemma"):
        conn = sqlite3.connect(results / exp / merge.DB_NAME)
        for t in merge.tables():
            if t.name == "experiments":
                nodes = {r[0] for r in conn.execute("SELECT node FROM experiments")}
                assert nodes == {"n1", "n2"}
                continue
            for iid, node in conn.execute(f"SELECT instance_id, node FROM {t.name}"):
                assert NODE_OF[iid] == node, (t.name, iid, node)
        ids = {r[0] for r in conn.execute("SELECT instance_id FROM instances")}
        assert ids == {i for i in NODE_OF if i.startswith("sb_" if exp == "split_brain" else "pd_")}
        conn.close()
    # every row of the node databases is there once
    merged = {t: 0 for t in counts(results / "split_brain" / merge.DB_NAME)}
    for exp in ("split_brain", "prisoners_dilemma"):
        for t, n in counts(results / exp / merge.DB_NAME).items():
            merged[t] += n
    source = {t: 0 for t in merged}
    for db in node_dbs.values():
        conn = sqlite3.connect(db)
        for t in source:
            source[t] += conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        conn.close()
    source["experiments"] = 4  # each experiment is registered on both nodes: one row per node
    assert merged == source


def test_merging_again_adds_nothing(results: Path) -> None:
    first = merge.merge_nodes(results, ["n1", "n2"])
    before = {e: counts(results / e / merge.DB_NAME) for e in first["experiments"]}
    again = merge.merge_nodes(results, ["n1", "n2"])
    assert first["added"] > 0
    assert again["added"] == 0
    assert {e: counts(results / e / merge.DB_NAME) for e in first["experiments"]} == before


def test_a_new_run_on_fresh_nodes_moves_the_earlier_results_aside(results: Path) -> None:
    first = merge.merge_nodes(results, ["n1", "n2"])
    assert first["archived"] == {}
    # n1 is wiped and runs the experiments again: its instances register anew, cycles count from 1
    snap = results / merge.NODES_DIR / "n1" / merge.SNAPSHOT
    conn = sqlite3.connect(snap)
    conn.execute("UPDATE instances SET registered_at = registered_at + 3600")
    conn.execute("UPDATE cycles SET thought = 'second run'")
    conn.commit()
    conn.close()
    second = merge.merge_nodes(results, ["n1", "n2"])
    assert set(second["archived"]) == {"split_brain", "prisoners_dilemma"}
    moved = Path(second["archived"]["split_brain"]["moved_to"])
    assert moved.parent.parent == results and moved.parent.name.startswith("previous-")
    assert "n1 holds new records of sb_A" in second["archived"]["split_brain"]["because"]
    old = sqlite3.connect(moved / merge.DB_NAME)
    new = sqlite3.connect(results / "split_brain" / merge.DB_NAME)
    thoughts = "SELECT DISTINCT thought FROM cycles WHERE instance_id = 'sb_A'"
    assert "second run" not in {r[0] for r in old.execute(thoughts)}
    assert {r[0] for r in new.execute(thoughts)} == {"second run"}  # the new run, not the old rows
    # n2 was not wiped: its rows are in the new database too, rebuilt from its snapshot
    assert new.execute("SELECT COUNT(*) FROM cycles WHERE instance_id = 'sb_B'").fetchone()[0] == 3
    old.close()
    new.close()
    # the summary reads only the current run; merging again moves nothing more
    assert merge.merge_nodes(results, ["n1", "n2"])["archived"] == {}
    assert sorted(p.name for p in results.glob(f"*/{merge.DB_NAME}")) == [merge.DB_NAME] * 2


def test_journal_lines_become_logs_once(results: Path) -> None:
    report = merge.merge_nodes(results, ["n1", "n2"])
    assert report["experiments"]["split_brain"]["logs"] == 2
    assert report["skipped"] == ["n1: log lines of ghost (no records)"]
    log = (results / "split_brain" / "logs" / "sb_A.log").read_text()
    assert log.splitlines() == [
        "2023-11-14T22:13:20.000+00:00 n1 sb_A life 1 cycle 1/3: ...",
        "2023-11-14T22:13:21.000+00:00 n1 bytes \ufffd",
    ]
    assert merge.merge_nodes(results, ["n1", "n2"])["added"] == 0


def test_a_node_without_a_snapshot_is_reported_and_the_others_merged(results: Path) -> None:
    shutil.rmtree(results / merge.NODES_DIR / "n2")
    report = merge.merge_nodes(results, ["n1", "n2"])
    assert report["nodes"]["n2"] == "no records"
    conn = sqlite3.connect(results / "split_brain" / merge.DB_NAME)
    assert {r[0] for r in conn.execute("SELECT DISTINCT node FROM cycles")} == {"n1"}
    conn.close()


def test_a_broken_snapshot_is_an_error_naming_the_file(
    results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = results / merge.NODES_DIR / "n2" / merge.SNAPSHOT
    bad.write_bytes(b"not sqlite" * 100)
    assert merge.main(["--results", str(results), "n1", "n2"]) == 1
    assert str(bad) in capsys.readouterr().err


def test_summary_per_instance_and_mode_outcomes(results: Path) -> None:
    merge.merge_nodes(results, ["n1", "n2"])
    doc = summary.build(results)
    by_name = {e["name"]: e for e in doc["experiments"]}
    sb = by_name["split_brain"]
    assert sb["mode"] == "split_brain"
    rows = {i["id"]: i for i in sb["instances"]}
    assert {i: r["node"] for i, r in rows.items()} == {"sb_A": "n1", "sb_B": "n2"}
    for r in rows.values():
        assert (r["lives"], r["deaths"], r["state"], r["cycles"]) == (1, 0, "completed", 3)
        assert r["tokens_per_s"] > 0 and r["sent"] > 0 and r["received"] > 0
    claims = sb["outcome"]["identity_claims"]
    assert {i: c["original"] + c["clone"] for i, c in claims.items()} == {"sb_A": 3, "sb_B": 3}
    pd = by_name["prisoners_dilemma"]["outcome"]
    assert pd["players"] == ["pd_a", "pd_b"] and pd["rounds"] == 3
    assert sum(pd["outcomes"].values()) == 3
    payoff = {"cooperate/cooperate": 3, "cooperate/defect": 0, "defect/cooperate": 5, "defect/defect": 1}
    assert pd["scores"]["pd_a"]["payoff"] == sum(payoff[k] * n for k, n in pd["outcomes"].items())
    text = summary.render(doc)
    assert (
        "== split_brain (split_brain)" in text
        and "pd_a: payoff" in text
        and "identity claims of sb_A" in text
    )


def test_results_command_prints_json_and_rejects_unknown_experiments(
    results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    merge.merge_nodes(results, ["n1", "n2"])
    assert cli_main(["results", "--results", str(results), "--json", "split_brain"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in doc["experiments"]] == ["split_brain"]
    assert cli_main(["results", "--results", str(results), "hive_cluster"]) == 2
    err = capsys.readouterr().err
    assert "no results for hive_cluster" in err and "prisoners_dilemma, split_brain" in err
