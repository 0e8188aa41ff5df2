"""The front door as a real process over two real replicas (llama-cpp-python's server on the tiny model),
all on loopback addresses: the official `openai` client through the door (plain and streaming), keys
and roles (401, 403), errors in the OpenAI format, round robin's even spread, a strategy change, a
replica killed under requests (every request still answered, the replica cooled down) and the metrics'
counts matching the requests sent."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from runner.node.frontdoor.keys import digest
from tests.runtime.cluster import ROOT, free_port, wait_until

SECRET = "r" * 40
KEYS = {"admin": "admin-key-" + "a" * 30, "user": "user-key-" + "u" * 30, "readonly": "ro-key-" + "o" * 30}
DOOR = "127.0.0.9"


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "runner.node", *args], cwd=ROOT,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip


@pytest.fixture
def door(tmp_path: Path, tiny_model: Path) -> Iterator[dict[str, Any]]:
    """Two replicas and the front door, its own poll off (a dead replica is found by a failed request)."""
    with running(tmp_path, tiny_model, poll_s=0) as d:
        yield d


@contextlib.contextmanager
def running(tmp_path: Path, tiny_model: Path, poll_s: float) -> Iterator[dict[str, Any]]:
    secret = tmp_path / "chat.key"
    secret.write_text(SECRET + "\n")
    (tmp_path / "data").mkdir()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    backends = []
    try:
        for n, address in enumerate(("127.0.0.7", "127.0.0.8")):
            iid = f"chat-{n}"
            entry = {
                "id": iid, "experiment": "chat", "experiment_file": "experiments/serving.yml", "mode": "serve",
                "model": "tiny", "memory_mib": 512, "gpu": False, "gpu_memory_mib": None, "node": f"node{n}",
                "address": address, "port": free_port(address), "peers": [], "members": [iid],
                "runtime": {"n_ctx": 256, "n_threads": 1}, "settings": {"served_name": "chat"},
                "interventions": [], "model_path": str(tiny_model), "data_dir": str(tmp_path / "data"),
                "peer_secret_file": str(secret),
            }  # fmt: skip
            config = tmp_path / f"{iid}.json"
            config.write_text(json.dumps(entry))
            procs[iid] = start(["run", "--config", str(config)], tmp_path / f"{iid}.log")
            ready = subprocess.run([sys.executable, "-m", "runner.node", "ready", "--config", str(config)],
                                   cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
            assert ready.returncode == 0, ready.stderr
            backends.append({"id": iid, "model": "chat", "node": f"node{n}",
                             "url": f"http://{address}:{entry['port']}", "key": SECRET, "max_tokens_cap": 64})  # fmt: skip
        keys = tmp_path / "keys.json"
        keys.write_text(
            json.dumps({"keys": [{"name": r, "sha256": digest(k), "role": r} for r, k in KEYS.items()]})
        )
        port = free_port(DOOR)
        (tmp_path / "backends.json").write_text(json.dumps({"backends": backends}))
        cfg = {"listen": {"address": DOOR, "port": port}, "keys_file": str(keys), "strategy": "round_robin",
               "retries": 2, "cooldown_base_s": 30, "poll_s": poll_s,
               "backends_file": str(tmp_path / "backends.json")}  # fmt: skip
        (tmp_path / "door.json").write_text(json.dumps(cfg))
        procs["door"] = start(["frontdoor", "--config", str(tmp_path / "door.json")], tmp_path / "door.log")
        url = f"http://{DOOR}:{port}"
        wait_until("the front door to listen", lambda: call(url, "GET", "/v1/models", KEYS["user"])[0] == 200)
        yield {"url": url, "procs": procs, "tmp": tmp_path, "backends": backends}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def call(url: str, method: str, path: str, key: str | None, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, method=method, headers={
        **({"Authorization": f"Bearer {key}"} if key else {}), "Content-Type": "application/json", **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, raw if path == "/metrics" else json.loads(raw)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, None


def client(url: str, role: str = "user") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=KEYS[role], max_retries=0)


def status(url: str) -> dict[str, Any]:
    code, doc = call(url, "GET", "/admin/status", KEYS["readonly"])
    assert code == 200, doc
    return {b["id"]: b for b in doc["backends"]} | {"strategy": doc["strategy"]}


def test_the_openai_client_through_the_door_with_round_robin_then_a_strategy_change(
    door: dict[str, Any],
) -> None:
    url, c = door["url"], client(door["url"])
    assert [m.id for m in c.models.list().data] == ["chat"]
    for _ in range(4):
        chat = c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert chat.choices[0].message.role == "assistant"
    chunks = list(c.completions.create(model="chat", prompt="Once", max_tokens=6, stream=True))
    assert len(chunks) >= 2
    c.completions.create(model="chat", prompt="Once", max_tokens=4)
    shown = status(url)
    assert shown["chat-0"]["served"] == 3 and shown["chat-1"]["served"] == 3  # round robin: evenly
    assert shown["chat-0"]["decode_tokens_per_s"] or shown["chat-1"]["decode_tokens_per_s"]  # measured

    assert call(url, "PUT", "/admin/strategy", KEYS["readonly"], {"strategy": "least_busy"})[0] == 403
    code, doc = call(url, "PUT", "/admin/strategy", KEYS["admin"], {"strategy": "fastest"})
    assert code == 400 and "must be one of round_robin" in doc["error"]["message"]
    assert call(url, "PUT", "/admin/strategy", KEYS["admin"], {"strategy": "adaptive"}) == (
        200, {"strategy": "adaptive", "was": "round_robin"}
    )  # fmt: skip
    c.completions.create(model="chat", prompt="Once", max_tokens=4)
    assert status(url)["strategy"] == "adaptive"
    metrics = call(url, "GET", "/metrics", KEYS["readonly"])[1].decode()
    served = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith("edgejar_frontdoor_requests_total{"))  # fmt: skip
    assert served == 7, metrics  # every request sent, counted once
    assert 'edgejar_frontdoor_strategy{strategy="adaptive"} 1.0' in metrics


def test_keys_roles_and_bad_requests_get_openai_errors(door: dict[str, Any]) -> None:
    url = door["url"]
    body = {"model": "chat", "prompt": "x", "max_tokens": 1}
    code, doc = call(url, "POST", "/v1/completions", None, body)
    assert code == 401 and doc["error"]["code"] == "invalid_api_key"
    assert call(url, "POST", "/v1/completions", "not-a-key", body)[0] == 401
    code, doc = call(url, "POST", "/v1/completions", KEYS["readonly"], body)
    assert code == 403 and doc["error"]["type"] == "permission_error"
    assert call(url, "GET", "/metrics", KEYS["user"])[0] == 403
    code, doc = call(url, "POST", "/v1/completions", KEYS["user"], {**body, "model": "gpt-9"})
    assert code == 404 and "no replica serves model 'gpt-9'; served: chat" in doc["error"]["message"]
    code, doc = call(url, "POST", "/v1/completions", KEYS["user"], b"{not json")
    assert code == 400 and "not JSON" in doc["error"]["message"]
    code, doc = call(url, "POST", "/v1/completions", KEYS["user"], {**body, "max_tokens": 1000})
    assert code == 400 and "above what model 'chat' allows (64)" in doc["error"]["message"]
    code, doc = call(url, "POST", "/v1/completions", KEYS["user"], body, {"X-Edgejar-Priority": "urgent"})
    assert code == 400 and "must be one of high, normal, low" in doc["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
    code, doc = call(
        url, "POST", "/v1/completions", KEYS["user"], b"x" * 100, {"Content-Length": str(2 << 20)}
    )
    assert code == 413  # refused from its declared length, before it is read
    # a request without max_tokens gets the model's bound (64), not the whole context
    unbounded = client(url).completions.create(model="chat", prompt="Once upon a time")
    assert 1 <= unbounded.usage.completion_tokens <= 64


def test_a_killed_replica_fails_no_request_and_is_cooled_down(door: dict[str, Any]) -> None:
    url, c = door["url"], client(door["url"])
    door["procs"]["chat-1"].kill()
    door["procs"]["chat-1"].wait(timeout=30)
    for _ in range(4):  # round robin sends half of them to the dead replica first: retried elsewhere
        text = c.completions.create(model="chat", prompt="Once", max_tokens=3)
        assert text.usage.completion_tokens >= 1
    shown = status(url)
    assert shown["chat-1"]["failures"] >= 1 and shown["chat-1"]["cooldown_s"] > 0, shown
    assert shown["chat-0"]["served"] == 4
    metrics = call(url, "GET", "/metrics", KEYS["admin"])[1].decode()
    assert 'edgejar_frontdoor_retries_total{model="chat"} 1.0' in metrics, metrics
    assert 'edgejar_frontdoor_backend_up{backend="chat-1"} 0.0' in metrics
    # drained by an admin, then readmitted: no longer cooling down, but dead, so the next request to it
    # fails over to chat-0 again
    assert call(url, "POST", "/admin/backends/chat-1/drain", KEYS["admin"])[0] == 200
    assert call(url, "POST", "/admin/backends/chat-9/drain", KEYS["admin"])[0] == 404
    assert call(url, "POST", "/admin/backends/chat-1/ready", KEYS["user"])[0] == 403


def test_a_restarted_replica_is_not_cooled_down_for_the_connection_it_closed(door: dict[str, Any]) -> None:
    """The door keeps a connection to each replica alive; a replica restarted between requests closed
    it, and the door does not send on it again: the restarted replica takes its share at once, counts no
    failure and is not cooled down (nothing is retried elsewhere)."""
    url, c = door["url"], client(door["url"])
    for _ in range(2):  # a kept-alive connection to each replica
        c.completions.create(model="chat", prompt="Once", max_tokens=2)
    proc, config = door["procs"]["chat-1"], door["tmp"] / "chat-1.json"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    door["procs"]["chat-1"] = start(["run", "--config", str(config)], door["tmp"] / "chat-1.again.log")
    ready = subprocess.run([sys.executable, "-m", "runner.node", "ready", "--config", str(config)],
                           cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    assert ready.returncode == 0, ready.stderr
    before = status(url)["chat-1"]["served"]
    for _ in range(4):
        assert c.completions.create(model="chat", prompt="Once", max_tokens=2).usage.completion_tokens >= 1
    shown = status(url)
    assert shown["chat-1"]["failures"] == 0 and shown["chat-1"]["cooldown_s"] == 0, shown
    assert shown["chat-1"]["served"] == before + 2, shown
    metrics = call(url, "GET", "/metrics", KEYS["admin"])[1].decode()
    assert 'edgejar_frontdoor_retries_total{model="chat"}' not in metrics, metrics  # none sent elsewhere


def test_runner_serve_shows_the_door_and_changes_its_strategy(door: dict[str, Any]) -> None:
    """`python -m runner serve` with the key in $EDGEJAR_FRONTDOOR_KEY: status as a table, a strategy
    change with an admin key, 1 with the front door's reason for a read-only one, 2 without a key."""
    import os

    def serve(role: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "EDGEJAR_FRONTDOOR_KEY"}
        if role:
            env["EDGEJAR_FRONTDOOR_KEY"] = KEYS[role]
        return subprocess.run([sys.executable, "-m", "runner", "serve", "--url", door["url"], *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    shown = serve("readonly", "status")
    assert shown.returncode == 0, shown.stderr
    assert (
        "strategy round_robin; models chat" in shown.stdout
        and "chat-0" in shown.stdout
        and "chat-1" in shown.stdout
    )
    refused = serve("readonly", "strategy", "latency")
    assert refused.returncode == 1 and "HTTP 403: role readonly may not do this" in refused.stderr
    changed = serve("admin", "strategy", "latency")
    assert changed.returncode == 0 and json.loads(changed.stdout) == {
        "strategy": "latency",
        "was": "round_robin",
    }
    assert serve(None, "status").returncode == 2


def test_the_door_leaves_out_a_replica_whose_port_stops_answering(tmp_path: Path, tiny_model: Path) -> None:
    """With its poll on (every 0.5 s here), a replica that dies is marked unreachable without any request
    failing on it, and no request is even tried there (no retry counted); it is readmitted when it answers."""
    with running(tmp_path, tiny_model, poll_s=0.5) as d:
        url, c = d["url"], client(d["url"])
        d["procs"]["chat-1"].kill()
        d["procs"]["chat-1"].wait(timeout=30)
        wait_until("chat-1 marked unreachable", lambda: status(url)["chat-1"]["unreachable"])
        for _ in range(4):
            c.completions.create(model="chat", prompt="Once", max_tokens=3)
        assert status(url)["chat-0"]["served"] == 4
        metrics = call(url, "GET", "/metrics", KEYS["readonly"])[1].decode()
        assert "edgejar_frontdoor_retries_total" not in metrics.replace(
            "# HELP edgejar_frontdoor_retries_total", ""
        ).replace("# TYPE edgejar_frontdoor_retries_total", "")  # no retry ever happened
        assert 'edgejar_frontdoor_backend_up{backend="chat-1"} 0.0' in metrics


def test_the_monitor_shows_the_doors_backends_and_why_it_cannot(door: dict[str, Any], tmp_path: Path) -> None:
    """The Textual monitor (headless) with a read-only key polls the real front door beside the nodes: one
    row per backend with its state, the strategy in the table's title; a drain shows at the next poll; a
    wrong key is shown as the door's refusal, never a crash. The nodes come from the unit tests' scripted
    poller (no SSH here; the real poll is tests/integration/test_health.py)."""
    import asyncio

    from runner.serving.door_client import Door
    from tests.unit.test_monitor_app import cells, make_app, poll, wait_polls

    async def drive(key: str) -> tuple[dict[str, list[str]], str, dict[str, list[str]], str]:
        app, _, _ = make_app(tmp_path / key[:3])
        app.frontdoor = Door(door["url"], None, key)
        async with app.run_test(size=(160, 50)) as pilot:
            await wait_polls(app, pilot, 1)
            await pilot.pause(0.2)
            first, title = cells(app, "#serving"), str(app.serving_table.border_title)
            call(door["url"], "POST", "/admin/backends/chat-1/drain", KEYS["admin"])
            await poll(app, pilot)
            await pilot.pause(0.2)
            return first, title, cells(app, "#serving"), str(app.serving_table.border_title)

    (tmp_path / "ro-").mkdir()
    (tmp_path / "wro").mkdir()
    first, title, after, _ = asyncio.run(drive(KEYS["readonly"]))
    assert list(first) == ["chat-0", "chat-1"] and first["chat-0"][1:4] == ["chat", "node0", "up"], first
    assert "strategy round_robin; models chat; 3 key(s)" in title, title
    assert after["chat-1"][3] == "drained", after
    rows, title, _, _ = asyncio.run(drive("wrong-key-" + "w" * 30))
    assert rows == {} and "HTTP 401" in title, title


def test_the_door_follows_its_replicas_file_without_a_restart(door: dict[str, Any]) -> None:
    """The role rewrites backends.json when the placement changes (a failover, a new `place`): the door
    routes to the new list within about a second, the same process, no request failing; a malformed file
    is reported in the status and the replicas in force are kept."""
    url, c, path = door["url"], client(door["url"]), door["tmp"] / "backends.json"
    pid = door["procs"]["door"].pid
    first, second = door["backends"]

    def rewrite(doc: Any) -> None:
        tmp = path.with_suffix(".new")
        tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        tmp.replace(path)  # as the template module writes: a new file renamed over the old one

    before = call(url, "GET", "/metrics", KEYS["readonly"])[1].decode()
    assert 'edgejar_frontdoor_backend_up{backend="chat-0"} 1.0' in before
    rewrite({"backends": [second]})
    wait_until("chat-0 gone from the door", lambda: set(status(url)) == {"chat-1", "strategy"})
    for _ in range(3):
        assert c.completions.create(model="chat", prompt="Once", max_tokens=3).usage.completion_tokens >= 1
    assert status(url)["chat-1"]["served"] == 3
    rewrite("{not json")
    wait_until("the bad file reported", lambda: call(url, "GET", "/admin/status", KEYS["readonly"])[1][
        "backends_error"] is not None)  # fmt: skip
    assert set(status(url)) == {"chat-1", "strategy"}  # kept
    rewrite({"backends": [second, {**first, "id": "chat-9"}]})
    wait_until("chat-9 added", lambda: "chat-9" in status(url))
    for _ in range(4):
        c.completions.create(model="chat", prompt="Once", max_tokens=3)
    shown = status(url)
    assert shown["chat-9"]["served"] == 2 and shown["chat-1"]["served"] == 5, shown
    assert door["procs"]["door"].pid == pid and door["procs"]["door"].poll() is None
    metrics = call(url, "GET", "/metrics", KEYS["readonly"])[1].decode()
    assert "edgejar_frontdoor_errors_total{" not in metrics, metrics  # no request refused or failed
    assert 'edgejar_frontdoor_backend_up{backend="chat-0"}' not in metrics  # removed: its gauges dropped
    assert 'edgejar_frontdoor_backend_up{backend="chat-9"} 1.0' in metrics
