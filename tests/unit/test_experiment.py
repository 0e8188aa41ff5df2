import json
from pathlib import Path

import pytest

from runner.errors import InputError
from runner.experiment import load_file, load_files
from tests.conftest import ROOT

SEEDS = sorted((ROOT / "experiments").glob("*.yml"))


def write(tmp_path: Path, text: str, name: str = "exp.yml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


BASE = "name: e\nmode: isolated\nmodel: tiny\n"


def test_seed_files_load_with_intent_and_defaults():
    exps = load_files(SEEDS)
    llm = [e for e in exps if e.kind == "llm"]
    assert {e.mode for e in llm} == {"split_brain", "hive_cluster", "panopticon", "prisoners_dilemma"}
    assert [e.name for e in exps if e.kind == "torch_distributed"] == ["mixed_mlp"]
    for e in exps:
        text = e.training.description if e.training is not None else e.description
        assert len(text) > 80, f"{e.source} should state its intent"
    split = next(e for e in exps if e.name == "split_brain")
    a = split.instances[0]
    assert a.runtime["n_ctx"] == 2048 and a.runtime["cycles"] == 15
    assert a.runtime["n_gpu_layers"] == -1  # GPU instance offloads all layers by default
    assert split.instances[1].runtime["n_gpu_layers"] == 0
    assert "ORIGINAL" in a.settings["identity"]


def test_instance_overrides_experiment_defaults(tmp_path: Path):
    p = write(
        tmp_path,
        BASE + "n_ctx: 1024\ninstances:\n  - {id: a, memory_gb: 1}\n  - {id: b, memory_gb: 1, n_ctx: 512}\n",
    )
    a, b = load_file(p).instances
    assert a.runtime["n_ctx"] == 1024 and b.runtime["n_ctx"] == 512


def test_json_is_accepted(tmp_path: Path):
    doc = {"name": "j", "mode": "isolated", "model": "tiny", "instances": [{"id": "x", "memory_gb": 1}]}
    p = write(tmp_path, json.dumps(doc), "exp.json")
    assert load_file(p).instances[0].id == "x"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("name: e\nmode: dreaming\nmodel: tiny\ninstances: [{id: a}]\n", "exp.yml: mode: must be one of"),
        (BASE + "instances: []\n", "exp.yml: instances: must be a non-empty list"),
        (
            BASE + "instances: [{id: a, memory_gb: -2}]\n",
            "exp.yml: instance a: memory_gb: must be a positive",
        ),
        (
            BASE + "instances: [{id: a, memroy_gb: 2}]\n",
            "instance a: memroy_gb: unknown field (did you mean 'memory_gb'?)",
        ),
        (
            BASE + "instances: [{id: a, gpu_memory_gb: 2}]\n",
            "instance a: gpu_memory_gb: is set but gpu is false",
        ),
        (BASE + "instances: [{id: a, gpu: yes please}]\n", "instance a: gpu: must be true or false"),
        (BASE + "instances: [{id: a, anti_affinity: b}]\n", "instance a: anti_affinity: must be a list"),
        (
            BASE + "instances: [{id: a, affinity: [ghost]}]\n",
            "instance a: affinity: unknown instance 'ghost'",
        ),
        (BASE + "instances: [{id: a, peers: [a]}]\n", "instance a: peers: an instance cannot name itself"),
        (BASE + "instances: [{id: 'a b'}]\n", "exp.yml: instances[0].id: must be a name"),
        (BASE + "n_ctx: lots\ninstances: [{id: a}]\n", "exp.yml: n_ctx: must be a number"),
        (BASE + "colour: blue\ninstances: [{id: a}]\n", "exp.yml: colour: unknown field"),
        ("name: e\nmode: [\n", "exp.yml: not valid YAML"),
        ("- just\n- a list\n", "exp.yml: must be a mapping"),
    ],
)
def test_validation_errors_name_file_instance_and_field(tmp_path: Path, body: str, needle: str):
    with pytest.raises(InputError) as info:
        load_files([write(tmp_path, body)])
    assert needle in str(info.value)


def test_duplicate_ids_across_files_are_an_error(tmp_path: Path):
    a = write(tmp_path, BASE + "instances: [{id: x}]\n", "a.yml")
    b = write(tmp_path, BASE.replace("name: e", "name: f") + "instances: [{id: x}]\n", "b.yml")
    with pytest.raises(InputError, match=r"b\.yml: instance x: id: duplicate \(also in .*a\.yml\)"):
        load_files([a, b])


def test_disabled_instances_and_experiments_are_skipped(tmp_path: Path):
    p = write(tmp_path, BASE + "instances:\n  - {id: a, anti_affinity: [b]}\n  - {id: b, enabled: false}\n")
    exp = load_files([p])[0]
    assert [i.id for i in exp.instances] == ["a"] and exp.disabled == ("b",)
    off = write(
        tmp_path, BASE.replace("name: e", "name: g") + "enabled: false\ninstances: [{id: c}]\n", "off.yml"
    )
    assert load_file(off).instances == ()


def test_unreadable_file(tmp_path: Path):
    with pytest.raises(InputError, match="missing.yml: cannot read"):
        load_file(tmp_path / "missing.yml")
