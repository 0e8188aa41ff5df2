"""The peer wire format: frames of a 4-byte big-endian length and a UTF-8 JSON object.

Every message is an object with `v` (the protocol version), `type` and `from` (the sender's id).
"""

from __future__ import annotations

import json
import struct
from typing import Any

VERSION = 2  # 2: authenticated (runner/node/auth.py); frames after the handshake are sealed
MAX_FRAME = 256 << 10  # 256 KiB: a thought is a few KiB
_HEADER = struct.Struct(">I")
TYPES = ("hello", "thought", "consensus", "move", "death", "bye")


class ProtocolError(ValueError):
    """A frame that is not a valid message: the connection is closed."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte frame limit")
    return _HEADER.pack(len(body)) + body


def body(message: dict[str, Any]) -> bytes:
    """A message as the UTF-8 JSON body of a (sealed) frame."""
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_FRAME:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the {MAX_FRAME}-byte frame limit")
    return data


def decode(data: bytes) -> dict[str, Any]:
    try:
        return check(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from None


def check(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise ProtocolError("a frame must hold a JSON object")
    if message.get("v") != VERSION:
        raise ProtocolError(f"protocol version {message.get('v')!r}, expected {VERSION}")
    if not isinstance(message.get("type"), str) or not isinstance(message.get("from"), str):
        raise ProtocolError("a message needs string fields 'type' and 'from'")
    return message


class FrameReader:
    """Incremental decoder: feed bytes as they arrive, get whole messages back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out: list[dict[str, Any]] = []
        while len(self._buf) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buf)
            if size > MAX_FRAME:
                raise ProtocolError(f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")
            if len(self._buf) < _HEADER.size + size:
                break
            body = bytes(self._buf[_HEADER.size : _HEADER.size + size])
            del self._buf[: _HEADER.size + size]
            try:
                out.append(check(json.loads(body.decode("utf-8"))))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from None
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)
