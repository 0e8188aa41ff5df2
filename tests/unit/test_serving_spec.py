"""The serving kind (`kind: serving`): its fields checked with the file and field named, its replicas
placed by the same engine as instances (one per node) and written into host_vars as instances of mode
serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from runner.cli import main
from runner.errors import InputError
from runner.experiment import load_file

DOC = {
    "name": "chat",
    "kind": "serving",
    "model": "tiny",
    "replicas": 3,
    "memory_gb": 0.5,
    "n_ctx": 512,
}


def write(project: Path, **fields: object) -> Path:
    doc = {**DOC, **fields}
    for key in [k for k, v in doc.items() if v is None]:
        del doc[key]
    path = project / "experiments" / "chat.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def placements(project: Path) -> dict[str, list[dict]]:
    return {
        f.parent.name: yaml.safe_load(f.read_text())["edgejar_instances"]
        for f in sorted((project / "host_vars").glob("*/placement.yml"))
    }


def test_replicas_are_instances_of_mode_serve_that_repel_each_other(tmp_path: Path) -> None:
    exp = load_file(write_doc(tmp_path))
    assert exp.kind == "serving" and exp.mode == "serve"
    assert [s.id for s in exp.instances] == ["chat-0", "chat-1", "chat-2"]
    for s in exp.instances:
        assert s.peers == () and set(s.anti_affinity) == {"chat-0", "chat-1", "chat-2"} - {s.id}
        assert s.settings["served_name"] == "chat" and s.runtime["n_ctx"] == 512


def write_doc(tmp: Path, **fields: object) -> Path:
    path = tmp / "chat.yml"
    path.write_text(yaml.safe_dump({**DOC, **fields}, sort_keys=False))
    return path


def test_place_puts_each_replica_on_its_own_node_with_a_port(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["place", str(write(project))]) == 0
    capsys.readouterr()
    placed = {e["id"]: (node, e) for node, items in placements(project).items() for e in items}
    assert set(placed) == {"chat-0", "chat-1", "chat-2"}
    assert len({node for node, _ in placed.values()}) == 3
    for node, e in placed.values():
        assert e["mode"] == "serve" and e["peers"] == [] and e["node"] == node
        assert 9000 <= e["port"] <= 9100 and e["settings"]["served_name"] == "chat"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"replicas": 0}, "replicas: must be a whole number from 1 to 256, got 0"),
        ({"replicas": None}, "replicas: must be a whole number or MIN:MAX (e.g. 2:4), got None"),
        ({"replicas": "3:2"}, "replicas: '3:2': needs 1 <= MIN <= MAX <= 256"),
        ({"replicas": "0:2"}, "replicas: '0:2': needs 1 <= MIN <= MAX <= 256"),
        ({"replicas": "2-4"}, "replicas: must be a whole number or MIN:MAX"),
        ({"model": None}, "model: missing"),
        ({"served_name": "a b"}, "served_name: must be a name"),
        ({"embeddings": "yes"}, "embeddings: must be true or false"),
        ({"max_tokens_cap": 0}, "max_tokens_cap: must be a whole number from 1"),
        ({"gpu_memory_gb": 1}, "gpu_memory_gb: is set but gpu is false"),
        ({"n_ctx": -1}, "n_ctx: must not be negative"),
        ({"strategy": "fast"}, "strategy: unknown field for kind serving"),
        ({"mode": "split_brain"}, "mode: unknown field for kind serving"),
    ],
)
def test_bad_serving_input_names_the_file_and_field(tmp_path: Path, fields: dict, needle: str) -> None:
    doc = {**DOC, **fields}
    for key in [k for k, v in fields.items() if v is None]:
        del doc[key]
    path = tmp_path / "chat.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InputError) as err:
        load_file(path)
    assert str(err.value).startswith(f"{path}: ") and needle in str(err.value), str(err.value)


def test_an_llm_file_cannot_declare_serve_replicas(tmp_path: Path) -> None:
    path = tmp_path / "x.yml"
    path.write_text(
        yaml.safe_dump({"name": "x", "mode": "serve", "model": "tiny", "instances": [{"id": "a"}]})
    )
    with pytest.raises(InputError, match="mode: 'serve' replicas are declared with kind: serving"):
        load_file(path)


def test_min_max_replicas_take_as_many_nodes_as_have_room(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`replicas: 2:6` on the example's four nodes beside split brain (whose B fills rpi1): three replicas,
    the others left out and named; with two nodes excluded, the two it needs at least; below that, exit 2
    with nothing written."""
    exp = load_file(write(project, replicas="2:6"))
    assert [s.id for s in exp.instances] == [f"chat-{k}" for k in range(6)]
    assert exp.serving is not None and (exp.serving.min_replicas, exp.serving.max_replicas) == (2, 6)
    chat = str(write(project, replicas="2:6"))
    assert main(["place", "experiments/split_brain.yml", chat, "--pin", "split_brain_B=rpi1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["serving"]["chat"] == {
        "replicas": ["chat-0", "chat-1", "chat-2"], "min": 2, "max": 6,
        "left_out": ["chat-5", "chat-4", "chat-3"],
    }  # fmt: skip
    placed = {e["id"]: node for node, items in placements(project).items() for e in items}
    assert {placed[f"chat-{k}"] for k in range(3)} == {"jetson", "rpi2", "host"}
    assert main(["place", chat, "--exclude", "jetson", "--exclude", "host"]) == 0
    out = capsys.readouterr().out
    assert "serving chat: 2 replica(s) of 2:6; left out chat-5, chat-4, chat-3, chat-2 (no room)" in out
    before = {p: p.read_text() for p in (project / "host_vars").glob("*/placement.yml")}
    assert main(["place", chat, "--exclude", "jetson", "--exclude", "host", "--exclude", "rpi1"]) == 2
    assert "no feasible placement" in capsys.readouterr().err
    assert {p: p.read_text() for p in (project / "host_vars").glob("*/placement.yml")} == before


def test_more_replicas_than_nodes_exits_2_and_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["place", "experiments/split_brain.yml"]) == 0
    before = {p: p.read_text() for p in (project / "host_vars").glob("*/placement.yml")}
    capsys.readouterr()
    assert main(["place", "experiments/split_brain.yml", str(write(project, replicas=5))]) == 2
    assert "no feasible placement" in capsys.readouterr().err
    assert {p: p.read_text() for p in (project / "host_vars").glob("*/placement.yml")} == before


def test_a_replica_serves_on_its_cluster_address_with_the_experiment_secret(
    project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The node side (runner/node/serve.py): llama_cpp.server's settings from the entry place wrote, the
    cluster address (never 0.0.0.0), the served name as the model alias, the secret as the bearer key."""
    from runner.node import config as node_config
    from runner.node import serve

    assert (
        main(["place", str(write(project, served_name="assistant", chat_format="chatml", n_threads=2))]) == 0
    )
    capsys.readouterr()
    entry = next(e for items in placements(project).values() for e in items)
    secret = tmp_path / "chat.key"
    secret.write_text("s" * 32 + "\n")
    cfg = node_config.parse(
        {**entry, "model_path": "/opt/edgejar/models/tiny.gguf", "data_dir": str(tmp_path),
         "peer_secret_file": str(secret)},
        tmp_path / "chat-0.json",
    )  # fmt: skip
    assert serve.server_settings(cfg, serve.backend_key(cfg)) == {
        "host": entry["address"], "port": entry["port"], "api_key": "s" * 32,
        "interrupt_requests": False,
    }  # fmt: skip
    model = serve.model_settings(cfg)
    assert model["model"] == "/opt/edgejar/models/tiny.gguf" and model["model_alias"] == "assistant"
    assert model["n_ctx"] == 512 and model["n_threads"] == 2 and model["chat_format"] == "chatml"
    assert model["embedding"] is False
    short = tmp_path / "short.key"
    short.write_text("short")
    with pytest.raises(InputError, match="peer_secret_file: .* at least 16 bytes"):
        serve.backend_key(node_config.parse({**cfg.raw, "peer_secret_file": str(short)}, tmp_path / "c.json"))
