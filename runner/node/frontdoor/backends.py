"""The front door's replicas: their entries, checked, and the file they come from, re-read when it changes
so that replicas moved by a failover or added by a new placement are routed to without a restart.

File (JSON, the role writes it from every node's placement): {"backends": [{"id", "model", "node", "url",
"key", "weight", "max_tokens_cap"}, ...]}. A file that cannot be read or is malformed is reported and the
replicas in force are kept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.node.jsonfile import read_object

log = logging.getLogger(__name__)

FIELDS = ("id", "model", "node", "url", "key")


@dataclass(frozen=True)
class BackendConf:
    id: str
    model: str
    node: str
    url: str  # http://address:port
    key: str  # the replica's bearer key (its experiment's secret)
    weight: float = 1.0
    max_tokens_cap: int | None = None


def parse(where: str, backends: Any) -> list[BackendConf]:
    """The entries of `backends` (a list of objects); InputError names `where` and the entry."""
    if not isinstance(backends, list):
        raise InputError(f"{where}: backends: must be a list")
    out: list[BackendConf] = []
    for n, b in enumerate(backends):
        missing = [k for k in FIELDS if not isinstance(b, dict) or not b.get(k)]
        if missing:
            raise InputError(f"{where}: backends[{n}]: missing {', '.join(missing)}")
        unknown = sorted(set(b) - set(BackendConf.__dataclass_fields__))
        if unknown:
            raise InputError(f"{where}: backends[{n}]: unknown field(s) {', '.join(unknown)}")
        out.append(BackendConf(**b))
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise InputError(f"{where}: backends: duplicate ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return out


def read(path: Path) -> list[BackendConf]:
    return parse(str(path), read_object(path, "the front door's replicas").get("backends"))


class BackendsFile:
    """The replicas' file, re-read when its inode, size or modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self.error: str | None = None

    def load(self) -> list[BackendConf]:
        """The replicas now (InputError when the file is bad: at start, the door refuses to run)."""
        self._seen = self._signature()
        confs = read(self.path)
        self.error = None
        return confs

    def changed(self) -> Sequence[BackendConf] | None:
        """The new replicas when the file changed since the last look and reads well; None otherwise."""
        seen = self._signature()
        if seen == self._seen:
            return None
        self._seen = seen
        try:
            confs = read(self.path)
        except InputError as exc:
            self.error = str(exc)
            log.warning("replicas not re-read, keeping those in force: %s", exc)
            return None
        self.error = None
        return confs

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)
