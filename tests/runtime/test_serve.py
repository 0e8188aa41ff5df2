"""A serving replica as a real process: `python -m runner.node run` on a mode-serve config runs
llama-cpp-python's own OpenAI-compatible server on the tiny model (real inference) on a loopback
address; `python -m runner.node ready` waits for a real completion; the official `openai` client talks
to it (chat, streaming chat, completion, embeddings refused unless enabled, a wrong key refused);
SIGTERM stops it cleanly and the records show the life."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.runtime.cluster import ROOT, free_port

SECRET = "k" * 40


@pytest.fixture
def replica(tmp_path: Path, tiny_model: Path) -> Iterator[dict[str, Any]]:
    address = "127.0.0.7"
    secret = tmp_path / "chat.key"
    secret.write_text(SECRET + "\n")
    entry = {
        "id": "chat-0", "experiment": "chat", "experiment_file": "experiments/serving.yml", "mode": "serve",
        "model": "tiny", "memory_mib": 512, "gpu": False, "gpu_memory_mib": None, "node": "node1",
        "address": address, "port": free_port(address), "peers": [], "members": ["chat-0"],
        "runtime": {"n_ctx": 256, "n_threads": 1}, "settings": {"served_name": "chat", "embeddings": False},
        "interventions": [], "model_path": str(tiny_model), "data_dir": str(tmp_path / "data"),
        "peer_secret_file": str(secret),
    }  # fmt: skip
    (tmp_path / "data").mkdir()
    config = tmp_path / "chat-0.json"
    config.write_text(json.dumps(entry))
    log = (tmp_path / "chat-0.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.node", "run", "--config", str(config)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield {"entry": entry, "config": config, "proc": proc, "log": tmp_path / "chat-0.log"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner.node", *args], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=180)  # fmt: skip


def test_a_replica_answers_the_openai_client_and_stops_cleanly(replica: dict[str, Any]) -> None:
    entry = replica["entry"]
    ready = node("ready", "--config", str(replica["config"]), "--timeout", "120")
    assert ready.returncode == 0, (ready.stderr, replica["log"].read_text()[-3000:])
    shown = json.loads(ready.stdout)
    assert shown["id"] == "chat-0" and isinstance(shown["text"], str)

    client = openai.OpenAI(
        base_url=f"http://{entry['address']}:{entry['port']}/v1", api_key=SECRET, max_retries=0
    )
    assert [m.id for m in client.models.list().data] == ["chat"]
    chat = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens >= 1
    chunks = list(
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Count."}], max_tokens=8, stream=True
        )
    )
    assert len(chunks) >= 2 and chunks[-1].choices[0].finish_reason in ("length", "stop")
    text = client.completions.create(model="chat", prompt="Once upon a time", max_tokens=4)
    assert text.choices[0].text is not None and text.usage.completion_tokens >= 1

    wrong = openai.OpenAI(
        base_url=f"http://{entry['address']}:{entry['port']}/v1", api_key="wrong" * 8, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        wrong.completions.create(model="chat", prompt="x", max_tokens=1)
    # embeddings are off unless the file enables them (llama-cpp-python answers 500, not a 4xx)
    with pytest.raises(openai.APIStatusError):
        client.embeddings.create(model="chat", input="x")

    replica["proc"].send_signal(signal.SIGTERM)
    assert replica["proc"].wait(timeout=60) == 0, replica["log"].read_text()[-3000:]
    db = sqlite3.connect(Path(entry["data_dir"]) / "records.sqlite3")
    lives = db.execute("SELECT life FROM lives WHERE instance_id = 'chat-0'").fetchall()
    ends = db.execute("SELECT cause FROM life_ends WHERE instance_id = 'chat-0'").fetchall()
    mode = db.execute("SELECT mode FROM instances WHERE instance_id = 'chat-0'").fetchone()
    db.close()
    assert lives == [(1,)] and ends == [("stopped",)] and mode == ("serve",)


def test_ready_names_the_replica_when_nothing_answers(tmp_path: Path, replica: dict[str, Any]) -> None:
    replica["proc"].kill()
    replica["proc"].wait(timeout=30)
    out = node("ready", "--config", str(replica["config"]), "--timeout", "2")
    assert out.returncode == 1
    assert (
        f"chat-0: no completion from {replica['entry']['address']}:{replica['entry']['port']} within 2 s"
        in out.stderr
    )
