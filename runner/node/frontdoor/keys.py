"""API keys and roles of the front door. The key file holds SHA-256 hashes only (the role writes it from
the vault); it is re-read when it changes, so keys rotate without a restart.

File (JSON): {"keys": [{"name": "alice", "sha256": "<64 hex>", "role": "user"}, ...]}

Roles and what they may do:
- admin: everything (inference, status, metrics, change the strategy, drain or readmit a backend);
- user: inference and the model list;
- readonly: status, metrics and the model list.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLES = ("admin", "user", "readonly")
# action -> the roles allowed to do it
ALLOWED = {
    "inference": frozenset({"admin", "user"}),
    "models": frozenset({"admin", "user", "readonly"}),
    "read": frozenset({"admin", "readonly"}),
    "admin": frozenset({"admin"}),
}


class KeyFileError(ValueError):
    """The key file is malformed (the message names the file and the entry)."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Identity:
    name: str
    role: str

    def may(self, action: str) -> bool:
        return self.role in ALLOWED[action]


def parse(path: Path, doc: Any) -> dict[str, Identity]:
    """sha256 hex -> who, from the key file's contents; KeyFileError names what is wrong."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
        raise KeyFileError(f"{path}: must be a JSON object with a list `keys`")
    out: dict[str, Identity] = {}
    for n, entry in enumerate(doc["keys"]):
        where = f"{path}: keys[{n}]"
        if not isinstance(entry, Mapping):
            raise KeyFileError(f"{where}: must be an object with name, sha256 and role")
        name, sha, role = entry.get("name"), entry.get("sha256"), entry.get("role")
        if not isinstance(name, str) or not name:
            raise KeyFileError(f"{where}.name: must be a non-empty string")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise KeyFileError(f"{where}.sha256: must be 64 lower-case hex digits (the key's SHA-256)")
        if role not in ROLES:
            raise KeyFileError(f"{where}.role: must be one of {', '.join(ROLES)}, got {role!r}")
        if sha in out:
            raise KeyFileError(f"{where}.sha256: the same key as {out[sha].name}")
        out[sha] = Identity(name, str(role))
    return out


class KeyStore:
    """The key file, re-read when its modification time or size changes. A file that turns malformed
    keeps the keys read before (and `error` says why) rather than locking everybody out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, Identity] = {}
        self.error: str | None = None
        self.refresh()

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror}"
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            self._keys = parse(self.path, json.loads(self.path.read_text(encoding="utf-8")))
            self.error = None
        except (OSError, ValueError) as exc:
            self.error = str(exc)
        self._stamp = stamp

    def identify(self, authorization: str | None) -> Identity | None:
        """Who the `Authorization: Bearer <key>` header belongs to, or None."""
        self.refresh()
        if not authorization or not authorization.startswith("Bearer "):
            return None
        key = authorization[len("Bearer ") :].strip()
        return self._keys.get(digest(key)) if key else None

    def __len__(self) -> int:
        return len(self._keys)
