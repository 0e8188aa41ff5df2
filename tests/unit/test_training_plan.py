"""The torch_distributed kind's planner half: its experiment file checked (file, field, exit 2, nothing
written), ranks placed by the placement engine one unit per node, one backend for the whole job, and the
units' entries in host_vars. Launching the units is not built yet: `runner up` says so (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from runner.cli import main
from runner.placement.model import Node
from runner.training import plan
from runner.training.spec import TrainingSpec

JOB = {
    "name": "mlp",
    "kind": "torch_distributed",
    "description": "a small model on synthetic data across the cluster",
    "entry": "train_mlp.py",
    "args": ["--steps", 50],
    "ranks": 3,
    "memory_gb": 0.5,
}


def write_job(project: Path, name: str = "mlp.yml", **fields: object) -> Path:
    (project / "experiments" / "train_mlp.py").write_text("print('a training entry point')\n")
    doc = {**JOB, **fields}
    for key in [k for k, v in doc.items() if v is None]:
        del doc[key]
    path = project / "experiments" / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def training_entries(project: Path) -> dict[str, list[dict]]:
    out = {}
    for f in sorted((project / "host_vars").glob("*/placement.yml")):
        out[f.parent.name] = yaml.safe_load(f.read_text()).get("edgejar_training", [])
    return out


def placement_texts(project: Path) -> dict[Path, str]:
    return {p: p.read_text() for p in (project / "host_vars").glob("*/placement.yml")}


def test_three_ranks_go_to_three_nodes_with_one_backend_and_one_rendezvous(project: Path, capsys) -> None:
    path = write_job(project)
    assert main(["place", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    job = doc["training"]["mlp"]
    assert job["nnodes"] == 3 and job["world_size"] == 3 and len(set(job["nodes"])) == 3
    assert job["backend"] == "gloo" and "CPU" in job["backend_reason"]
    units = [e for items in training_entries(project).values() for e in items]
    assert sorted(e["unit_index"] for e in units) == [0, 1, 2]
    host = next(e for e in units if e["unit_index"] == 0)
    assert {e["rdzv_endpoint"] for e in units} == {f"{host['address']}:29500"}
    assert {e["backend"] for e in units} == {"gloo"}
    assert all(e["entry"] == "experiments/train_mlp.py" and e["args"] == ["--steps", "50"] for e in units)
    # 0.5 GB per rank and the torchrun agent (plan.AGENT_MIB): the unit's MemoryMax
    assert all(e["memory_mib"] == 512 + plan.AGENT_MIB and e["nproc_per_node"] == 1 for e in units)
    # The LLM instances' list is untouched by a training-only placement (launch reads only that list).
    for f in (project / "host_vars").glob("*/placement.yml"):
        assert yaml.safe_load(f.read_text())["edgejar_instances"] == []


def test_min_max_ranks_take_as_many_nodes_as_fit(project: Path, capsys) -> None:
    path = write_job(project, ranks="2:8", ranks_per_node=2)
    assert main(["place", "--json", str(path)]) == 0
    job = json.loads(capsys.readouterr().out)["training"]["mlp"]
    assert job["nnodes"] == 4 and job["world_size"] == 8  # four nodes in the example inventory


def test_exclude_and_tags_and_nodes_narrow_the_nodes(project: Path, capsys) -> None:
    path = write_job(project, ranks="1:4", exclude=["rpi1"])
    assert main(["place", "--json", "--explain", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["training"]["mlp"]["nnodes"] == 3 and "rpi1" not in doc["training"]["mlp"]["nodes"]
    verdicts = {v["node"]: v for v in doc["explain"]["mlp-0"]}
    assert verdicts["rpi1"]["rejected"] == "mlp leaves rpi1 out (nodes/exclude in its experiment file)"
    path = write_job(project, ranks="1:4", nodes=["jetson", "host"])
    assert main(["place", "--json", str(path)]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["training"]["mlp"]["nodes"]) == ["host", "jetson"]


def test_gpu_ranks_only_where_a_gpu_is(project: Path, capsys) -> None:
    path = write_job(project, ranks=1, gpu=True, gpu_memory_gb=2)
    assert main(["place", "--json", str(path)]) == 0
    job = json.loads(capsys.readouterr().out)["training"]["mlp"]
    assert job["nodes"] == ["jetson"]
    assert job["backend"] == "gloo" and "node_torch_nccl" in job["backend_reason"]


def test_the_backend_is_one_for_the_job() -> None:
    spec = TrainingSpec(
        name="j", source=Path("j.yml"), entry="experiments/j.py", module=None, args=(), min_ranks=2,
        max_ranks=2, ranks_per_node=1, memory_gb=1.0, gpu=True, gpu_memory_gb=1.0, tags=(), nodes=(),
        exclude=(), data="synthetic", weighting="none", max_restarts=3,
    )  # fmt: skip
    a, b = Node("a", 1024, gpu=True, gpu_mib=1024), Node("b", 1024, gpu=True, gpu_mib=1024)
    assert plan.choose_backend(spec, [a, b], {"a": True, "b": True}).name == "nccl"
    mixed = plan.choose_backend(spec, [a, b], {"a": True})
    assert mixed.name == "gloo" and mixed.reason == "no NCCL-enabled torch on b (node_torch_nccl)"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"ranks": 0}, "ranks: must be a whole number from 1 to 4096, got 0"),
        ({"ranks": "3:2"}, "ranks: '3:2': needs 1 <= MIN <= MAX"),
        ({"ranks": "many"}, "ranks: must be a whole number or MIN:MAX"),
        ({"ranks": None}, "ranks: missing"),
        ({"ranks": 3, "ranks_per_node": 2}, "ranks: 3: no whole number of nodes runs 2 rank(s) each"),
        ({"memory_gb": None}, "memory_gb: missing"),
        ({"entry": "nowhere.py"}, "entry: nowhere.py: no such file"),
        ({"entry": "../ansible.cfg"}, "entry: ../ansible.cfg: must be under"),
        ({"module": "pkg.train"}, "entry: give entry (a script under experiments/) or module: one of them"),
        ({"entry": None, "module": "not a module"}, "module: must be a dotted Python module name"),
        ({"gpu_memory_gb": 1}, "gpu_memory_gb: is set but gpu is false"),
        ({"weighting": "fair"}, "weighting: must be one of none, speed"),
        ({"data": "datasets/x.pt"}, "data: must be 'synthetic' or an absolute path on the nodes"),
        ({"join_timeout_s": 0}, "join_timeout_s: must be a whole number from 10 to 86400, got 0"),
        ({"collective_timeout_s": "5m"}, "collective_timeout_s: must be a whole number from 10 to 86400"),
        ({"epochs": 3}, "epochs: unknown field for kind torch_distributed"),
        ({"kind": "spark"}, "kind: must be one of llm, torch_distributed, serving, got 'spark'"),
        ({"exclude": ["mars"]}, "exclude: unknown node(s) mars"),
        ({"ranks": 5}, "no feasible placement"),  # more ranks than nodes (one unit per node)
        ({"ranks": 2, "gpu": True, "gpu_memory_gb": 1}, "needs a GPU; host has none"),  # one GPU node only
    ],
)
def test_bad_training_input_exits_2_names_the_field_and_writes_nothing(
    project: Path, capsys, fields: dict, needle: str
) -> None:
    assert main(["place", "experiments/split_brain.yml"]) == 0
    before = placement_texts(project)
    capsys.readouterr()
    path = write_job(project, **fields)
    assert main(["place", "experiments/split_brain.yml", str(path)]) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    if "placement" not in needle and "GPU" not in needle:
        assert str(path) in err or "mlp.yml" in err, err
    assert placement_texts(project) == before


def test_up_with_a_bad_training_file_exits_2_before_anything_runs(project: Path, capsys) -> None:
    path = write_job(project, entry="no_such_script.py")
    assert main(["up", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: entry: no_such_script.py: no such file" in err, err
    assert not list((project / "host_vars").glob("*/placement.yml"))


def test_a_node_without_pytorch_takes_no_training_unit(project: Path, capsys) -> None:
    """node_torch: false on rpi2 (host_vars): a job over all four nodes cannot be placed, and says why."""
    (project / "host_vars" / "rpi2").mkdir(parents=True)
    (project / "host_vars" / "rpi2" / "torch.yml").write_text("node_torch: false\n")
    assert main(["place", str(write_job(project, ranks=4))]) == 2
    assert "rpi2: needs PyTorch; rpi2 has none (node_torch is not true)" in capsys.readouterr().err
    assert main(["place", "--json", str(write_job(project, ranks="2:4"))]) == 0
    assert "rpi2" not in json.loads(capsys.readouterr().out)["training"]["mlp"]["nodes"]


def test_validate_reports_a_training_job(project: Path, capsys) -> None:
    path = write_job(project, ranks="2:3")
    assert main(["validate", str(path)]) == 0
    assert f"{path}: ok (mlp, kind torch_distributed, ranks 2:3)" in capsys.readouterr().out
