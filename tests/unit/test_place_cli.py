"""`python -m runner place` and `validate` end to end on a copy of the example inventory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.cli import main
from runner.files import atomic

SEEDS = ["experiments/split_brain.yml", "experiments/hive_cluster.yml"]


def placement_files(project: Path) -> dict[str, list[dict]]:
    out = {}
    for f in sorted((project / "host_vars").glob("*/placement.yml")):
        out[f.parent.name] = yaml.safe_load(f.read_text())["edgejar_instances"]
    return out


def place_json(capsys, *args) -> dict:
    assert main(["place", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_place_writes_host_vars_for_every_node(project: Path, capsys):
    doc = place_json(capsys, *SEEDS)
    assert doc["placements"]["split_brain_A"] == "jetson"
    assert doc["placements"]["hive_pessimist"] in {"rpi1", "rpi2"}
    files = placement_files(project)
    assert set(files) == {"jetson", "rpi1", "rpi2", "host"}
    assert files["host"] == []  # nodes without instances get an empty list
    a = next(e for e in files["jetson"] if e["id"] == "split_brain_A")
    assert a["experiment"] == "split_brain" and a["mode"] == "split_brain" and a["model"] == "tiny"
    assert a["memory_mib"] == 2048 and a["gpu_memory_mib"] == 6144
    assert a["address"] == "192.168.1.100" and 9000 <= a["port"] <= 9100
    b_node = doc["placements"]["split_brain_B"]
    assert b_node != "jetson"
    address = {"rpi1": "192.168.1.101", "rpi2": "192.168.1.102", "host": "192.168.1.10"}[b_node]
    assert a["peers"] == [
        {"id": "split_brain_B", "node": b_node, "address": address, "port": doc["ports"]["split_brain_B"]}
    ]
    assert a["experiment_file"] == "experiments/split_brain.yml"
    ports = [e["port"] for e in files["jetson"]]
    assert len(set(ports)) == len(ports)


def test_ansible_reads_what_place_wrote(project: Path, capsys):
    place_json(capsys, *SEEDS)
    inv = Path(sys.executable).parent / "ansible-inventory"
    out = subprocess.run(
        [str(inv), "-i", "inventory", "--host", "jetson"], capture_output=True, text=True, check=True
    )
    ids = [e["id"] for e in json.loads(out.stdout)["edgejar_instances"]]
    assert "split_brain_A" in ids


def test_dry_run_writes_nothing(project: Path, capsys):
    doc = place_json(capsys, "--dry-run", *SEEDS)
    assert doc["written"] == [] and doc["dry_run"] is True
    assert not (project / "host_vars").exists()


def test_second_run_is_stable_and_writes_nothing(project: Path, capsys):
    first = place_json(capsys, *SEEDS)
    mtimes = {p: p.stat().st_mtime_ns for p in (project / "host_vars").glob("*/placement.yml")}
    second = place_json(capsys, *SEEDS)
    assert second["placements"] == first["placements"] and second["ports"] == first["ports"]
    assert second["moves"] == [] and second["written"] == []
    assert mtimes == {p: p.stat().st_mtime_ns for p in (project / "host_vars").glob("*/placement.yml")}


def test_exclude_moves_only_that_nodes_instances(project: Path, capsys):
    files = ["experiments/split_brain.yml"]
    first = place_json(capsys, *files)
    victim = first["placements"]["split_brain_B"]
    second = place_json(capsys, "--exclude", victim, *files)
    assert [m["instance"] for m in second["moves"]] == ["split_brain_B"]
    assert second["placements"]["split_brain_A"] == first["placements"]["split_brain_A"]
    assert second["placements"]["split_brain_B"] not in {victim, "jetson"}
    assert placement_files(project)[victim] == []


def test_pin_flag_and_removed_instances(project: Path, capsys):
    place_json(capsys, *SEEDS)
    doc = place_json(capsys, "--pin", "split_brain_B=host", "experiments/split_brain.yml")
    assert doc["placements"]["split_brain_B"] == "host"
    assert set(doc["removed"]) == {"hive_historian", "hive_critic", "hive_optimist", "hive_pessimist"}


def test_explain_lists_scores_and_rejections(project: Path, capsys):
    assert main(["place", "--dry-run", "--explain", "experiments/split_brain.yml"]) == 0
    out = capsys.readouterr().out
    assert "split_brain_A -> jetson" in out
    assert "ram_efficiency=20 load_balance=20 gpu_match=15 affinity=0 preferred=10" in out
    assert "rejected: needs a GPU; rpi1 has none" in out
    assert "rejected: anti-affinity with split_brain_A on jetson" in out


def test_infeasible_exits_2_names_the_instance_and_writes_nothing(project: Path, capsys):
    place_json(capsys, "experiments/split_brain.yml")
    before = {p: p.read_text() for p in (project / "host_vars").glob("*/placement.yml")}
    code = main(["place", "--json", *sorted(str(p) for p in (project / "experiments").glob("*.yml"))])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "no feasible placement" in captured.err and "stuck at instance" in captured.err
    assert before == {p: p.read_text() for p in (project / "host_vars").glob("*/placement.yml")}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--pin", "split_brain_A=mars"], "--pin split_brain_A=mars: unknown node 'mars'"),
        (["--pin", "ghost=jetson"], "--pin ghost=jetson: unknown instance 'ghost'"),
        (["--pin", "nonsense"], "--pin nonsense: expected ID=NODE"),
        (["--exclude", "mars"], "--exclude mars: unknown node"),
        (["-i", "nowhere"], "inventory nowhere: no such file"),
    ],
)
def test_bad_flags_exit_2(project: Path, capsys, args, needle):
    assert main(["place", *args, "experiments/split_brain.yml"]) == 2
    assert needle in capsys.readouterr().err
    assert not (project / "host_vars").exists()


def test_bad_experiment_file_exits_2_from_a_real_process(project: Path):
    bad = project / "experiments" / "bad.yml"
    bad.write_text("name: bad\nmode: isolated\nmodel: tiny\ninstances: [{id: x, memory_gb: lots}]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "place", "experiments/bad.yml"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.returncode == 2
    assert "experiments/bad.yml: instance x: memory_gb: must be a positive number of GB" in proc.stderr
    assert not (project / "host_vars").exists()


def test_memory_without_model_file_is_a_clear_error(project: Path, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEJAR_MODEL_CACHE", str(tmp_path / "empty-cache"))
    exp = project / "experiments" / "est.yml"
    exp.write_text("name: est\nmode: isolated\nmodel: tiny\ninstances: [{id: solo}]\n")
    assert main(["place", "experiments/est.yml"]) == 2
    err = capsys.readouterr().err
    assert (
        "est.yml: instance solo: memory_gb: not set, and model 'tiny' has no file on this controller" in err
    )


def test_validate_prints_nodes_and_checks_files(project: Path, capsys):
    assert main(["validate", *SEEDS]) == 0
    out = capsys.readouterr().out
    assert "jetson  192.168.1.100" in out and "56 GB unified" in out
    assert "experiments/split_brain.yml: ok" in out
    bad = project / "experiments" / "unknown_model.yml"
    bad.write_text("name: u\nmode: isolated\nmodel: gpt-9\ninstances: [{id: u1, memory_gb: 1}]\n")
    assert main(["validate", str(bad)]) == 2
    assert "instance u1: model: unknown model 'gpt-9'" in capsys.readouterr().err


def test_atomic_write_rolls_back_when_a_rename_fails(tmp_path: Path, monkeypatch):
    a, b = tmp_path / "x" / "a.yml", tmp_path / "y" / "b.yml"
    atomic.write_all({a: "old a", b: "old b"})
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_all({a: "new a", b: "new b"})
    assert a.read_text() == "old a" and b.read_text() == "old b"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.yml", "b.yml", "x", "y"]  # no temp files left


def test_memory_is_estimated_from_the_gguf_file_when_not_given(project: Path, capsys):
    assert main(["model", "tiny", "--out", "models/tiny-random-llama.gguf"]) == 0
    capsys.readouterr()
    exp = project / "experiments" / "est.yml"
    exp.write_text("name: est\nmode: isolated\nmodel: tiny\nn_ctx: 512\ninstances: [{id: solo}]\n")
    doc = place_json(capsys, "experiments/est.yml")
    entry = next(e for items in placement_files(project).values() for e in items if e["id"] == "solo")
    from runner.modelfile.estimate import estimate_memory

    est = estimate_memory(project / "models" / "tiny-random-llama.gguf", n_ctx=512)
    assert entry["memory_mib"] % 64 == 0
    assert est.ram_mib * 1.1 <= entry["memory_mib"] < est.ram_mib * 1.1 + 64
    assert doc["placements"]["solo"] in {"jetson", "rpi1", "rpi2", "host"}


@pytest.mark.parametrize(
    ("experiment", "expected"),
    [
        # A needs the GPU; B's anti-affinity keeps it off A's node; rpi1 wins on RAM efficiency, then name.
        ("split_brain", {"split_brain_A": "jetson", "split_brain_B": "rpi1"}),
        # Three GPU minds share the Jetson's unified pool; the pessimist requires tag rpi5.
        (
            "hive_cluster",
            {
                "hive_historian": "jetson",
                "hive_critic": "jetson",
                "hive_optimist": "jetson",
                "hive_pessimist": "rpi1",
            },
        ),
        # The subject requires rpi5; the observer needs the GPU.
        ("panopticon", {"panopticon_subject": "rpi1", "panopticon_observer": "jetson"}),
        # Identical hardware (tag rpi5) and anti-affinity: one player per Pi.
        ("prisoners_dilemma", {"pd_player_a": "rpi1", "pd_player_b": "rpi2"}),
    ],
)
def test_seed_scenarios_place_as_documented(project: Path, capsys, experiment, expected):
    doc = place_json(capsys, "--dry-run", f"experiments/{experiment}.yml")
    assert doc["placements"] == expected
