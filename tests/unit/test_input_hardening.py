"""Bad input that used to slip through or crash, each reproduced as a test (issue: hardening):
`place --json` polluted by the solver's banner, recursive YAML aliases and duplicate keys, NaN and
infinite numbers, non-UTF-8 files, a damaged placement.yml, host_vars that cannot be written, a corrupt
results database, two `place` runs at once, and what validate/place accepted that the node refused."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import inventory
from runner.cli import main
from runner.errors import InputError
from runner.experiment import load_files
from runner.files import atomic
from runner.node import config as node_config
from runner.planning import hostvars, requirements
from tests.conftest import ROOT


def experiment(tmp: Path, text: str | None = None, **fields: Any) -> Path:
    data: dict[str, Any] = {
        "name": "e",
        "mode": "isolated",
        "model": "tiny",
        "instances": [{"id": "a", "memory_gb": 1}],
    }
    data.update(fields)
    path = tmp / "exp.yml"
    path.write_text(text if text is not None else yaml.safe_dump(data))
    return path


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": str(Path(sys.executable).parent)},
    )


def test_place_json_is_one_json_document_when_the_exact_search_runs(tmp_path: Path):
    # 24 GB into 16 + 8 GB with no slack: only the exact search places it (tests/unit/test_placement.py).
    hosts = {
        "big": {"ansible_host": "10.0.0.1", "node_ram_gb": 16, "node_max_instances": 4},
        "small": {"ansible_host": "10.0.0.2", "node_ram_gb": 8, "node_max_instances": 2},
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"edgejar_nodes": {"hosts": hosts}}))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    exp = experiment(
        tmp_path,
        model=str(tmp_path / "m.gguf"),
        instances=[{"id": f"i{x}", "memory_gb": x} for x in (2, 6, 7, 4, 5)],
    )
    out = run_cli(tmp_path, "place", "-i", "inventory.yml", "--json", "--dry-run", str(exp))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # the whole of stdout: nothing before or after the document
    assert doc["method"] == "exact"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "name: e\nmode: isolated\nmodel: tiny\nsettings: &s {a: 1, self: *s}\ninstances: [{id: a}]\n",
            "refers to a node that contains it",
        ),
        ("name: e\nmode: isolated\nmodel: tiny\nmodel: other\ninstances: [{id: a}]\n", "given twice"),
    ],
)
def test_recursive_aliases_and_duplicate_keys_are_refused(project: Path, capsys, text: str, needle: str):
    path = experiment(project, text)
    assert main(["place", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and needle in err and "line" in err
    assert not (project / "host_vars").exists()


def test_a_json_experiment_with_a_duplicate_key_is_refused(tmp_path: Path):
    path = tmp_path / "e.json"
    path.write_text('{"name": "e", "name": "f", "mode": "isolated", "model": "tiny", "instances": []}')
    with pytest.raises(InputError, match="given twice"):
        load_files([path])


@pytest.mark.parametrize("value", [math.nan, math.inf, 1.0e308, -math.inf])
def test_non_finite_or_absurd_memory_is_refused(tmp_path: Path, value: float):
    path = experiment(tmp_path, instances=[{"id": "a", "memory_gb": value}])
    with pytest.raises(InputError, match="instance a: memory_gb: must be a positive number of GB"):
        load_files([path])


def test_a_memory_ceiling_no_llama_process_can_live_in_is_refused(tmp_path: Path):
    path = experiment(tmp_path, instances=[{"id": "a", "memory_gb": 0.001}])  # 1 MiB
    with pytest.raises(InputError, match="memory_gb"):
        load_files([path])


@pytest.mark.parametrize("key", ["temperature", "top_p", "cycle_delay_s"])
def test_nan_runtime_settings_are_refused(tmp_path: Path, key: str):
    with pytest.raises(InputError, match=f"{key}: must be a finite number"):
        load_files([experiment(tmp_path, **{key: math.nan})])


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"n_ctx": 8, "max_tokens": 500}, "instance a: runtime.n_ctx: must be at least 16"),
        ({"n_ctx": 64, "max_tokens": 500}, "instance a: runtime.max_tokens: must be between 1 and n_ctx"),
        ({"interventions": [{"type": "identity_challenge", "at": 0}]}, "instance a: interventions[0]: at"),
        ({"interventions": [{"type": "nonsense", "at": 3}]}, "interventions[0]: type"),
        ({"settings": {"corruption_rate": math.nan}}, "settings.corruption_rate"),
        ({"settings": {"on_death": "explode"}}, "settings.on_death"),
    ],
)
def test_what_the_node_would_refuse_validate_and_place_refuse(
    project: Path, capsys, fields: dict[str, Any], needle: str
):
    path = experiment(project, **fields)
    for cmd in ("validate", "place"):
        assert main([cmd, str(path)]) == 2
        assert needle in capsys.readouterr().err
    assert not (project / "host_vars").exists()


def test_an_unknown_model_is_refused_by_place_as_by_validate(project: Path, capsys):
    path = experiment(project, model="no-such-model", instances=[{"id": "a", "memory_gb": 1}])
    for cmd in ("validate", "place"):
        assert main([cmd, str(path)]) == 2
        assert "model: unknown model 'no-such-model'" in capsys.readouterr().err
    assert not (project / "host_vars").exists()


def test_a_non_utf8_file_is_named(tmp_path: Path):
    path = tmp_path / "exp.yml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(InputError, match="exp.yml: not UTF-8 text"):
        load_files([path])


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0"])
def test_place_timeout_must_be_a_sane_bound(project: Path, capsys, value: str):
    assert main(["place", "--timeout", value, "experiments/split_brain.yml"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_a_non_finite_inventory_number_is_refused(project: Path, capsys):
    (project / "host_vars" / "rpi1").mkdir(parents=True)
    (project / "host_vars" / "rpi1" / "main.yml").write_text("node_ram_gb: .nan\n")
    assert main(["place", "experiments/split_brain.yml"]) == 2
    assert "host rpi1: node_ram_gb must be a finite number" in capsys.readouterr().err


def test_a_damaged_placement_file_is_named(project: Path, capsys):
    assert main(["place", "experiments/split_brain.yml"]) == 0
    capsys.readouterr()
    (project / "host_vars" / "rpi1" / "placement.yml").write_text("edgejar_instances: [unclosed\n")
    assert main(["place", "experiments/split_brain.yml"]) == 2
    assert "host rpi1: its variables cannot be read" in capsys.readouterr().err


def test_host_vars_that_cannot_be_written_change_nothing(project: Path, capsys):
    # As root, file modes do not stop a write; a directory where placement.yml should go does.
    (project / "host_vars" / "rpi2" / "placement.yml").mkdir(parents=True)
    assert main(["place", "experiments/split_brain.yml"]) == 1
    assert "cannot write" in capsys.readouterr().err
    written = [p for p in (project / "host_vars").rglob("*") if p.is_file()]
    assert written == []  # the other nodes' files were not left behind either


def test_results_on_a_corrupt_database_names_it(tmp_path: Path, capsys):
    db = tmp_path / "results" / "e" / "results.sqlite3"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite" * 100)
    assert main(["results", "--results", str(tmp_path / "results"), "e"]) == 1
    assert "not a readable results database" in capsys.readouterr().err


def test_a_second_place_waits_for_the_first(project: Path):
    with atomic.locked(project, "test"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "place", "--json", "experiments/split_brain.yml"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": str(ROOT), "PATH": str(Path(sys.executable).parent)},
        )
        assert proc.stderr is not None
        line = proc.stderr.readline()  # blocks until place reports that it waits
        assert "place: waiting for another run" in line
        assert proc.poll() is None and not (project / "host_vars").exists()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and json.loads(out)["placements"]


# --- one validation: what load accepts, the node's own config check accepts --------------------------

NUMBERS = st.one_of(
    st.integers(min_value=-5, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    runtime=st.dictionaries(
        st.sampled_from(["n_ctx", "max_tokens", "temperature", "top_p", "cycles"]), NUMBERS
    ),
    at=st.one_of(st.integers(min_value=-2, max_value=50), st.floats(allow_nan=True)),
)
def test_what_load_accepts_the_node_config_check_accepts(tmp_path_factory, runtime: dict[str, Any], at: Any):
    tmp = tmp_path_factory.mktemp("prop")
    path = experiment(tmp, interventions=[{"type": "identity_challenge", "at": at}], **runtime)
    try:
        (exp,) = load_files([path])
    except InputError:
        return
    cluster = inventory.load(ROOT / "inventory")
    inst = {s.id: requirements.instance(s, cluster.models, ROOT) for s in exp.instances}
    assignment = {"a": "rpi1"}
    ports = hostvars.assign_ports(assignment, cluster.peer_ports, {}, {})
    entries = hostvars.entries(cluster, [exp], inst, assignment, ports, ROOT)["rpi1"]
    for entry in entries:
        node_config.parse({**entry, "model_path": "/m/x.gguf", "data_dir": "/d"}, Path("entry.json"))
