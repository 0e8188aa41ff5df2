"""A serving replica (mode `serve`, from a `kind: serving` experiment): llama-cpp-python's own
OpenAI-compatible server (`llama_cpp.server`: /v1/completions, /v1/chat/completions with streaming,
/v1/embeddings where the file enables them, /v1/models) on the instance's cluster address and port, under
the instance's unit (its hardening and MemoryMax), recorded as a life in the node's records like any
instance (docs/serving.md).

Every request needs the experiment's secret as its bearer key (the same secret launch writes for peer
authentication; the front door holds it): the replica is reached through the front door, never
anonymously. The server itself is llama-cpp-python's; this module only builds its settings from the
instance config and runs it with uvicorn.
"""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from typing import Any

from runner.errors import EdgejarError, InputError
from runner.node import auth, lifecycle, records
from runner.node.config import InstanceConfig

log = logging.getLogger(__name__)


def backend_key(cfg: InstanceConfig) -> str:
    """The bearer key every request to the replica must carry: the experiment's secret."""
    if cfg.peer_secret_file is None:
        raise InputError(f"{cfg.source}: peer_secret_file: a serving replica needs its experiment's secret")
    return auth.config_secret(cfg.peer_secret_file, cfg.source).decode("utf-8", "replace").strip()


def model_settings(cfg: InstanceConfig) -> dict[str, Any]:
    """llama_cpp.server's ModelSettings for this replica (its field names)."""
    rt = cfg.runtime
    out: dict[str, Any] = {
        "model": str(cfg.model_path),
        "model_alias": str(cfg.setting("served_name", cfg.experiment)),
        "n_ctx": rt.n_ctx,
        "n_batch": rt.n_batch,
        "n_gpu_layers": rt.n_gpu_layers,
        "seed": rt.seed,
        "embedding": bool(cfg.setting("embeddings", False)),
        "verbose": False,
    }
    if rt.n_threads:
        out["n_threads"] = out["n_threads_batch"] = rt.n_threads
    chat_format = cfg.setting("chat_format", None)
    if chat_format:
        out["chat_format"] = str(chat_format)
    return out


def server_settings(cfg: InstanceConfig, key: str) -> dict[str, Any]:
    """llama_cpp.server's ServerSettings: the cluster address (never 0.0.0.0) and the bearer key.
    interrupt_requests off: by default a new request cuts a stream in progress short (llama-cpp-python
    issues #897, #867); the server answers one request at a time, the others wait their turn."""
    return {"host": cfg.address, "port": cfg.port, "api_key": key, "interrupt_requests": False}


def _record_life(conn: sqlite3.Connection, cfg: InstanceConfig) -> int:
    lifecycle.register(conn, cfg)
    prev = lifecycle.previous(conn, cfg.id)
    death = lifecycle.find_death(prev)
    if death:
        lifecycle.close_death(conn, cfg.id, death)
        log.warning("%s: life %d died (%s)", cfg.id, death.life, death.cause)
    life = prev.life + 1
    lifecycle.begin(conn, cfg, life, 0)
    return life


def run(cfg: InstanceConfig) -> int:
    """Record the life, then serve until SIGTERM (uvicorn's own handling: it stops accepting, lets the
    requests in flight finish within the unit's stop timeout, and returns)."""
    import uvicorn  # the node venv's (llama-cpp-python's server extra); not on a planning-only controller
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    key = backend_key(cfg)
    conn = records.connect(cfg.db_path)
    try:
        life = _record_life(conn, cfg)
    finally:
        conn.close()
    app = create_app(
        server_settings=ServerSettings(**server_settings(cfg, key)),
        model_settings=[ModelSettings(**model_settings(cfg))],
    )
    log.info("%s: life %d serving %s on %s:%d", cfg.id, life, cfg.setting("served_name", cfg.experiment),
             cfg.address, cfg.port)  # fmt: skip
    # uvicorn re-raises the signal that stopped it once it has shut down, to whatever handler was there
    # before it: with these the process returns here and records the end of the life (exit 0).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(
            sig, lambda signum, _frame: log.info("%s: %s: stopped", cfg.id, signal.Signals(signum).name)
        )
    uvicorn.run(app, host=cfg.address, port=cfg.port, log_level="warning", timeout_graceful_shutdown=10)
    conn = records.connect(cfg.db_path)
    try:
        lifecycle.end(conn, cfg.id, life, "stopped", 0, None)
    finally:
        conn.close()
    return 0


READY_PROMPT = "The cluster is"


def complete_once(cfg: InstanceConfig, key: str, timeout_s: float) -> dict[str, Any]:
    """One real completion of one token from the replica (what "ready" means): its text and its time."""
    body = json.dumps({"model": cfg.setting("served_name", cfg.experiment), "prompt": READY_PROMPT,
                       "max_tokens": 1, "temperature": 0}).encode()  # fmt: skip
    req = urllib.request.Request(
        f"http://{cfg.address}:{cfg.port}/v1/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        method="POST",
    )
    start = time.monotonic()
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        doc = json.load(resp)
    return {"text": doc["choices"][0]["text"], "seconds": round(time.monotonic() - start, 3)}


def ready(cfg: InstanceConfig, timeout_s: float) -> dict[str, Any]:
    """Wait until the replica answers a real completion (it loads its model before it listens); raises
    EdgejarError naming the replica, its address and the last answer when it does not within timeout_s."""
    key = backend_key(cfg)
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        try:
            return {"id": cfg.id, "address": f"{cfg.address}:{cfg.port}", **complete_once(cfg, key, 30.0)}
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:200].decode('utf-8', 'replace')}"
            if exc.code in (400, 401, 403, 404):  # an answer that waiting will not change
                break
        except (OSError, ValueError, KeyError, IndexError) as exc:
            last = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    raise EdgejarError(
        f"{cfg.id}: no completion from {cfg.address}:{cfg.port} within {timeout_s:g} s ({last})"
    )
