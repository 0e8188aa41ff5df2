"""The model wrapper with real llama.cpp (abandoning a generation) and memory interventions in a process."""

from __future__ import annotations

import json
from pathlib import Path

from runner.node import queries
from runner.node.config import parse
from runner.node.mind import Mind
from tests.runtime.cluster import Cluster


def _mind(tmp_path: Path, model: Path, n_ctx: int = 128) -> Mind:
    cfg = parse(
        {
            "id": "m",
            "experiment": "e",
            "mode": "isolated",
            "address": "127.0.0.1",
            "port": 1,
            "model_path": str(model),
            "data_dir": str(tmp_path),
            "runtime": {"n_ctx": n_ctx, "n_threads": 1, "max_tokens": 32, "seed": 3},
        },
        tmp_path / "m.json",
    )
    return Mind(cfg)


def test_generation_stops_between_tokens_when_asked(tmp_path: Path, tiny_model: Path) -> None:
    mind = _mind(tmp_path, tiny_model)
    calls = iter(range(1000))
    gen = mind.generate("hello world", 32, 1, lambda: next(calls) >= 3)
    assert gen.stop_reason == "abandoned" and gen.tokens == 3
    full = mind.generate("hello world", 32, 1, lambda: False)
    assert full.stop_reason in ("length", "eos") and 0 < full.tokens <= 32
    assert mind.generate("hello world", 32, 1, lambda: False).text == full.text  # same seed, same text


def test_a_prompt_longer_than_the_context_is_cut_to_fit(tmp_path: Path, tiny_model: Path) -> None:
    mind = _mind(tmp_path, tiny_model, n_ctx=64)
    gen = mind.generate("the jar " * 200, 16, 1, lambda: False)
    assert gen.prompt_tokens == 64 - 16 and gen.tokens <= 16


def test_memory_corruption_and_erasure_in_a_running_instance(cluster: Cluster) -> None:
    solo = "loner"
    cluster.define(
        "alone",
        "isolated",
        [solo],
        cycles=4,
        interventions=[
            {"type": "memory_corruption", "at": 3, "rate": 1.0},
            {"type": "memory_erasure", "at": 4, "fraction": 0.5},
        ],
    )
    cluster.start(solo)
    assert cluster.wait_exit(solo) == 0, cluster.log(solo)
    conn = cluster.db()
    corrupted = conn.execute("SELECT replaces FROM memories WHERE kind = 'corrupted'").fetchall()
    assert len(corrupted) == 2  # both thoughts held at cycle 3 (cycles 1 and 2)
    assert {r["replaces"] for r in corrupted} == {"1.1", "1.2"}
    (op,) = conn.execute("SELECT keys, reason, cycle FROM memory_ops").fetchall()
    assert op["reason"] == "intervention:memory_erasure" and op["cycle"] == 4
    assert len(json.loads(op["keys"])) == 2  # half of the 3 held then (2 corrupted + thought 3), rounded
    results = {i["type"]: json.loads(i["result"]) for i in queries.interventions(conn)}
    assert results == {"memory_corruption": {"corrupted": 2}, "memory_erasure": {"forgotten": 2}}
    conn.close()
