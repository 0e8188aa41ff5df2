"""A node-side config file: one JSON object, read with the file named in every error (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.errors import InputError


def read_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in `path` (`what` it is, for the messages); InputError when unreadable or not one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: {what} must be one JSON object")
    return doc
