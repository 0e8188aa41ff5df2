"""Filters of the edgejar_frontdoor role."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any


def hashed(entry: Mapping[str, Any]) -> dict[str, str]:
    """An API key entry {name, key, role} as the front door's key file holds it: the key's SHA-256 only
    (runner/node/frontdoor/keys.py)."""
    return {
        "name": str(entry["name"]),
        "sha256": hashlib.sha256(str(entry["key"]).encode("utf-8")).hexdigest(),
        "role": str(entry["role"]),
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"edgejar_frontdoor_hashed": hashed}
