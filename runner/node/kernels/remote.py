"""The gateway's side of a node's kernel helper (ctl.py): one SSH command per call, as the node's
kernel-launch account, with the gateway's own key, its own known_hosts (host keys checked, never
accepted blindly) and one shared connection per node (ControlMaster), so a call costs a round trip."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import EdgejarError, InputError


class Unreachable(EdgejarError):
    """SSH could not reach the node (ssh's own exit status 255)."""


@dataclass(frozen=True)
class Ssh:
    user: str  # the nodes' kernel-launch account
    key: Path
    known_hosts: Path
    control_dir: Path
    timeout_s: float = 20.0

    def argv(self, address: str, words: list[str]) -> list[str]:
        return [
            "ssh",
            "-F",
            "none",
            "-i",
            str(self.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self.control_dir}/%C",
            "-o",
            "ControlPersist=300",
            f"{self.user}@{address}",
            " ".join(words),
        ]

    async def call(
        self, address: str, words: list[str], stdin: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run the helper's command `words` on the node at `address`; its JSON answer."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(address, words),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        data = json.dumps(stdin).encode() if stdin is not None else b""
        try:
            out, err = await asyncio.wait_for(proc.communicate(data), self.timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise Unreachable(f"{address}: no answer within {self.timeout_s:.0f} s ({words[0]})") from None
        text = err.decode(errors="replace").strip()
        if proc.returncode == 255:
            raise Unreachable(f"{address}: ssh failed: {text[-300:]}")
        if proc.returncode == 2:
            raise InputError(text.removeprefix("edgejar kernel helper: ")[-500:])
        if proc.returncode != 0:
            raise EdgejarError(f"{address}: {words[0]} failed (exit {proc.returncode}): {text[-500:]}")
        try:
            doc = json.loads(out)
        except ValueError:
            raise EdgejarError(f"{address}: {words[0]} answered no JSON: {out[:200]!r}") from None
        if not isinstance(doc, dict):
            raise EdgejarError(f"{address}: {words[0]} answered {doc!r}")
        return doc
