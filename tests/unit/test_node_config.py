"""runner.node config: a placement entry plus model_path/data_dir; bad input exits 2 naming file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.errors import InputError
from runner.node import cli
from runner.node.config import load, parse


def entry(tmp: Path, **over: Any) -> dict[str, Any]:
    base = {
        "id": "split_brain_A",
        "experiment": "split_brain",
        "experiment_file": "experiments/split_brain.yml",
        "mode": "split_brain",
        "model": "tiny",
        "memory_mib": 2048,
        "gpu": True,
        "gpu_memory_mib": 6144,
        "node": "jetson",
        "address": "192.168.1.100",
        "port": 9000,
        "peers": [{"id": "split_brain_B", "node": "rpi1", "address": "192.168.1.101", "port": 9000}],
        "runtime": {"n_ctx": 2048, "n_gpu_layers": -1, "max_tokens": 128, "cycles": 15, "temperature": 0.8},
        "settings": {"identity": "You are the ORIGINAL."},
        "interventions": [{"type": "identity_challenge", "every": 3}, {"type": "resource_pressure", "at": 5}],
        "model_path": "/var/lib/edgejar/models/tiny.gguf",
        "data_dir": "/var/lib/edgejar/data",
    }
    base.update(over)
    return base


def test_a_placement_entry_loads(tmp_path: Path) -> None:
    path = tmp_path / "i.json"
    path.write_text(json.dumps(entry(tmp_path)))
    cfg = load(path)
    assert cfg.peers[0].address == "192.168.1.101" and cfg.runtime.n_gpu_layers == -1
    assert cfg.runtime.n_threads == 0 and cfg.runtime.cycle_delay_s == 1.0  # defaults
    assert cfg.db_path == Path("/var/lib/edgejar/data/records.sqlite3")
    assert cfg.setting("identity", "x") == "You are the ORIGINAL." and cfg.setting("nope", 3) == 3


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"mode": "telepathy"}, "mode"),
        ({"id": ""}, "id"),
        ({"port": 70000}, "port"),
        ({"address": "0.0.0.0"}, "address"),
        ({"model_path": "models/tiny.gguf"}, "model_path"),
        ({"data_dir": None}, "data_dir"),
        ({"memory_mib": -1}, "memory_mib"),
        ({"peers": [{"id": "b", "address": "10.0.0.1"}]}, "peers[0].port"),
        ({"peers": [{"id": "split_brain_A", "address": "10.0.0.1", "port": 1}]}, "peers[0].id"),
        ({"runtime": {"n_ctx": "big"}}, "runtime.n_ctx"),
        ({"runtime": {"n_ctx": 64, "max_tokens": 64}}, "runtime.max_tokens"),
        ({"settings": []}, "settings"),
        ({"settings": {"consensus_every": "often"}}, "settings.consensus_every"),
        ({"settings": {"on_death": "reincarnate"}}, "settings.on_death"),
        ({"settings": {"payoffs": {"temptation": 5.5}}}, "settings.payoffs.temptation"),
        ({"settings": {"payoffs": {"bribe": 1}}}, "settings.payoffs"),
        ({"settings": {"corruption_rate": 2}}, "settings.corruption_rate"),
        ({"interventions": [{"type": "identity_challenge"}]}, "interventions[0]"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, over: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError, match=rf"i\.json: {field.replace('[', '.').replace(']', '.')}"):
        parse(entry(tmp_path, **over), tmp_path / "i.json")


def test_cli_exits_2_naming_the_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(entry(tmp_path, port="x")))
    assert cli.main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "port" in err
    assert cli.main(["record-exit", "--config", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "notjson.json").write_text("{")
    assert cli.main(["run", "--config", str(tmp_path / "notjson.json")]) == 2
    assert not (tmp_path / "data").exists()


def test_record_exit_writes_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "i.json"
    path.write_text(json.dumps(entry(tmp_path, data_dir=str(tmp_path / "data"))))
    monkeypatch.setenv("SERVICE_RESULT", "exit-code")
    monkeypatch.setenv("EXIT_CODE", "exited")
    monkeypatch.setenv("EXIT_STATUS", "1")
    assert cli.main(["record-exit", "--config", str(path)]) == 0
    import sqlite3

    conn = sqlite3.connect(tmp_path / "data" / "records.sqlite3")
    assert conn.execute("SELECT instance_id, life, cause FROM exit_reports").fetchall() == [
        ("split_brain_A", None, "exit-code:1")
    ]


@pytest.mark.parametrize("experiment", ["split_brain", "hive_cluster", "panopticon", "prisoners_dilemma"])
def test_the_seed_experiments_placements_are_valid_instance_configs(
    project: Path, capsys: pytest.CaptureFixture[str], experiment: str
) -> None:
    """What `runner place` writes, plus model_path and data_dir, loads and builds its mode."""
    import yaml

    from runner.cli import main as runner_main
    from runner.node.modes import create

    assert runner_main(["place", f"experiments/{experiment}.yml"]) == 0
    capsys.readouterr()
    entries = [
        e
        for f in sorted((project / "host_vars").glob("*/placement.yml"))
        for e in yaml.safe_load(f.read_text())["edgejar_instances"]
    ]
    assert entries
    for e in entries:
        cfg = parse(
            {**e, "model_path": "/var/lib/edgejar/models/tiny.gguf", "data_dir": "/d"}, Path("x.json")
        )
        mode = create(cfg)
        assert mode.name == experiment and {p.id for p in cfg.peers} <= {x["id"] for x in entries}
    if experiment == "panopticon":
        roles = {
            e["id"]: create(parse({**e, "model_path": "/m", "data_dir": "/d"}, Path("x"))) for e in entries
        }
        assert roles["panopticon_observer"].observer and not roles["panopticon_subject"].observer  # type: ignore[attr-defined]
    if experiment == "prisoners_dilemma":
        b = next(e for e in entries if e["id"] == "pd_player_b")
        assert (
            create(parse({**b, "model_path": "/m", "data_dir": "/d"}, Path("x"))).on_death
            == "erase_betrayals"
        )
