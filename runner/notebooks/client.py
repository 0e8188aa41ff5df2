"""The controller's client of the notebook gateway (Jupyter Kernel Gateway's REST and websocket API):
where it is, kernelspecs, kernels, start, execute a cell, stop. Shared by `runner kernels`,
benchmarks/kernels.py and the tests. The token comes from $EDGEJAR_NOTEBOOKS_TOKEN, never the command
line."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import EdgejarError

TOKEN_ENV = "EDGEJAR_NOTEBOOKS_TOKEN"
PORT = 8888


class Refused(EdgejarError):
    """The gateway answered with an error status (its reason in the message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class KernelDied(EdgejarError):
    """The kernel died (or restarted) while it ran the cell."""


@dataclass(frozen=True)
class Cell:
    """What one executed cell gave: its stdout, its result (text/plain) and its error, if any."""

    stdout: str = ""
    result: str | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Gateway:
    url: str
    tls: ssl.SSLContext | None
    token: str | None
    timeout_s: float = 60.0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={**self.headers(), "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=self.tls) as resp:
                raw = resp.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                doc = json.loads(raw)
                message = str(doc.get("message") or doc.get("reason") or exc.reason)
            except (ValueError, AttributeError):
                message = str(exc.reason)
            raise Refused(exc.code, f"{self.url}{path}: HTTP {exc.code}: {message}") from None
        except OSError as exc:
            raise EdgejarError(f"{self.url}: cannot reach the notebook gateway ({exc})") from None

    def kernelspecs(self) -> dict[str, Any]:
        return dict(self.call("GET", "/api/kernelspecs")["kernelspecs"])

    def kernels(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/api/kernels"))

    def start(self, name: str = "edgejar", env: dict[str, str] | None = None) -> str:
        """Start a kernel of kernelspec `name` (KERNEL_EDGEJAR_* variables in `env`); its id."""
        doc = self.call("POST", "/api/kernels", {"name": name, "env": env or {}})
        return str(doc["id"])

    def stop(self, kid: str) -> None:
        self.call("DELETE", f"/api/kernels/{kid}")

    def execute(self, kid: str, code: str, timeout_s: float = 60.0) -> Cell:
        """Run `code` in the kernel over its websocket channels; what it printed, returned or raised."""
        import websocket  # websocket-client

        ws_url = "ws" + self.url.removeprefix("http") + f"/api/kernels/{kid}/channels"
        sslopt = {"context": self.tls} if self.tls is not None else None
        started = time.monotonic()
        try:
            ws = websocket.create_connection(
                ws_url,
                header=[f"{k}: {v}" for k, v in self.headers().items()],
                sslopt=sslopt,
                timeout=timeout_s,
            )
        except (OSError, websocket.WebSocketException) as exc:
            raise EdgejarError(f"{ws_url}: cannot open the kernel's channels ({exc})") from None
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "edgejar", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))  # fmt: skip
        out: list[str] = []
        result: str | None = None
        error: str | None = None
        replied = idle = False
        try:
            while not (replied and idle):
                left = timeout_s - (time.monotonic() - started)
                if left <= 0:
                    raise EdgejarError(f"kernel {kid}: no answer to the cell within {timeout_s:.0f} s")
                ws.settimeout(left)
                # Control frames too (the gateway pings every 30 s): the deadline is checked between frames.
                opcode, frame = ws.recv_data_frame(True)
                if opcode != websocket.ABNF.OPCODE_TEXT:
                    if opcode == websocket.ABNF.OPCODE_CLOSE:
                        raise EdgejarError(f"kernel {kid}: the gateway closed its channels")
                    continue
                msg = json.loads(frame.data)
                kind, content = msg["header"]["msg_type"], msg.get("content", {})
                state = content.get("execution_state") if kind == "status" else None
                if state in ("restarting", "autorestarting", "dead"):
                    raise KernelDied(
                        f"kernel {kid} died while running the cell ({state}): killed at its memory "
                        "ceiling or crashed; it restarts with empty state"
                    )
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if kind == "stream":
                    out.append(content.get("text", ""))
                elif kind == "execute_result":
                    result = content.get("data", {}).get("text/plain")
                elif kind == "error":
                    error = f"{content.get('ename')}: {content.get('evalue')}"
                elif state == "idle":
                    idle = True
                elif kind == "execute_reply":
                    replied = True
        except websocket.WebSocketException as exc:
            raise EdgejarError(f"kernel {kid}: its channels closed ({exc})") from None
        finally:
            ws.close()
        return Cell("".join(out), result, error, time.monotonic() - started)


def token_from_env() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


def locate(
    inventory_file: Path, url: str | None, cacert: Path | None, token: str | None, timeout_s: float = 60.0
) -> Gateway:
    """The gateway (default https://<coordinator>:8888, trusting the certificate notebooks.yml fetched to
    .edgejar/notebooks/<node>.crt). InputError when that certificate is missing."""
    from runner.serving.door_client import endpoint

    base, tls = endpoint(inventory_file, url, cacert, PORT, "notebooks")
    return Gateway(base, tls, token, timeout_s)
