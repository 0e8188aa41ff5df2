"""The controller's client of the serving front door: where it is, one authenticated call, and its status
as table rows. Shared by `runner serve` and the monitor's serving table (docs/serving.md)."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import inventory
from runner.errors import EdgejarError, InputError
from runner.planning.requirements import project_root

KEY_ENV = "EDGEJAR_FRONTDOOR_KEY"  # never a command-line argument, where `ps` would show it
PORT = 8443
BACKEND_HEADER = ("backend", "model", "node", "state", "in flight", "queued", "served", "ttft s", "tok/s")


@dataclass(frozen=True)
class Door:
    url: str
    tls: ssl.SSLContext | None
    key: str

    def call(self, method: str, path: str, body: Any = None, timeout_s: float = 30.0) -> Any:
        """One request with the key; the decoded JSON answer. EdgejarError names the URL and the refusal."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=timeout_s, context=self.tls) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = exc.reason
            raise EdgejarError(f"{self.url}{path}: HTTP {exc.code}: {message}") from None
        except OSError as exc:
            raise EdgejarError(f"{self.url}: cannot reach the front door ({exc})") from None


def key_from_env() -> str | None:
    return os.environ.get(KEY_ENV) or None


def coordinator(inventory_file: Path) -> inventory.ClusterNode:
    """Where frontdoor.yml puts the front door: the first node of kind x86, else the first node."""
    cluster = inventory.load(inventory_file)
    return next((cn for cn in cluster.nodes if cn.kind == "x86"), cluster.nodes[0])


def endpoint(
    inventory_file: Path, url: str | None, cacert: Path | None, port: int, name: str
) -> tuple[str, ssl.SSLContext | None]:
    """A service on the coordinator: url (default https://<coordinator>:<port>) and the TLS context that
    trusts cacert (default the certificate playbooks/<name>.yml fetched to .edgejar/<name>/<node>.crt);
    None for plain HTTP. InputError when that certificate is missing."""
    if url is None:
        node = coordinator(inventory_file)
        url = f"https://{node.address}:{port}"
        cacert = cacert or project_root() / ".edgejar" / name / f"{node.node.name}.crt"
    if not url.startswith("https://"):
        return url.rstrip("/"), None
    if cacert is not None and not cacert.is_file():
        raise InputError(f"--cacert {cacert}: no such file (run playbooks/{name}.yml, which fetches it)")
    return url.rstrip("/"), ssl.create_default_context(cafile=str(cacert) if cacert else None)


def locate(inventory_file: Path, url: str | None, cacert: Path | None, key: str) -> Door:
    """The front door (default https://<coordinator>:8443, trusting the certificate frontdoor.yml fetched)."""
    base, tls = endpoint(inventory_file, url, cacert, PORT, "frontdoor")
    return Door(base, tls, key)


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def backend_state(b: dict[str, Any]) -> str:
    if b["drained"]:
        return "drained"
    if b.get("unreachable"):
        return "unreachable"
    return f"cooling {b['cooldown_s']:g} s" if b["cooldown_s"] else "up"


def backend_rows(doc: dict[str, Any]) -> list[list[str]]:
    """One row per backend of an /admin/status answer, in BACKEND_HEADER's order."""
    return [
        [b["id"], b["model"], b["node"], backend_state(b), str(b["in_flight"]), str(b["queued"]),
         str(b["served"]), _fmt(b["ttft_s"], 3), _fmt(b["decode_tokens_per_s"], 1)]
        for b in doc["backends"]
    ]  # fmt: skip


def headline(doc: dict[str, Any]) -> str:
    """The front door's line: strategy, models, keys (and a keys file it could not read)."""
    problem = f"; keys file: {doc['keys_error']}" if doc.get("keys_error") else ""
    models = ", ".join(doc["models"]) or "-"
    return f"strategy {doc['strategy']}; models {models}; {doc['keys']} key(s){problem}"
