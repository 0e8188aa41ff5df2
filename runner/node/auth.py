"""Peer authentication: a mutual HMAC-SHA256 handshake over fresh nonces, then sealed frames.

Both ends of a connection know the experiment's secret (a file only root and the service group read).
The connecting side (a sender) and the listening side (a receiver) each send a 16-byte random nonce; each
proves that it knows the secret with an HMAC over both nonces, the experiment and the sender's id, so a
recorded handshake cannot be replayed and neither side can be impersonated without the secret. The
receiver accepts only ids among its configured peers. The sender's identity is the one proven here: the
receiver overwrites `from` in every message with it.

After the handshake every frame is sealed: 4-byte length, a 16-byte tag (keyed BLAKE2b-128, a MAC by
design and about half the cost of HMAC-SHA256 here, under a session key derived from both nonces, over an
8-byte frame counter and the body), then the body. A frame altered, dropped, replayed or reordered on an
established connection fails its tag and the connection is closed.

Handshake frames are plain protocol frames (runner/node/protocol.py):
  sender   -> {"v": 2, "type": "auth_hello", "from": ID, "experiment": E, "nonce": HEX}
  receiver -> {"v": 2, "type": "auth_challenge", "nonce": HEX, "proof": HEX}   proof of the receiver
  sender   -> {"v": 2, "type": "auth_proof", "proof": HEX}                     proof of the sender
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import struct
import time
from collections.abc import Collection
from typing import Any

from runner.errors import InputError
from runner.node import protocol

NONCE_BYTES = 16
TAG_BYTES = 16
HANDSHAKE_TIMEOUT_S = 5.0
_LENGTH = struct.Struct(">I")
_COUNTER = struct.Struct(">Q")


class AuthError(protocol.ProtocolError):
    """A peer that failed to authenticate, or a frame whose tag does not verify."""


def _mac(key: bytes, *parts: bytes | str) -> bytes:
    data = b"\x00".join(p.encode("utf-8") if isinstance(p, str) else p for p in parts)
    return hmac.new(key, data, hashlib.sha256).digest()


def proof(secret: bytes, role: str, experiment: str, sender: str, n_send: bytes, n_recv: bytes) -> str:
    return _mac(secret, "edgejar-peer-v2", role, experiment, sender, n_send, n_recv).hex()


def session_key(secret: bytes, experiment: str, sender: str, n_send: bytes, n_recv: bytes) -> bytes:
    return _mac(secret, "edgejar-peer-v2", "session", experiment, sender, n_send, n_recv)


def _tag(key: bytes, counter: int, body: bytes) -> bytes:
    """A frame's tag: keyed BLAKE2b over its counter and body (the session key is 32 bytes)."""
    return hashlib.blake2b(_COUNTER.pack(counter) + body, key=key, digest_size=TAG_BYTES).digest()


def seal(key: bytes, counter: int, body: bytes) -> bytes:
    """One sealed frame: length, tag over (counter, body), body."""
    if len(body) > protocol.MAX_FRAME:
        raise protocol.ProtocolError(
            f"message of {len(body)} bytes exceeds the {protocol.MAX_FRAME}-byte limit"
        )
    tag = _tag(key, counter, body)
    return _LENGTH.pack(TAG_BYTES + len(body)) + tag + body


class SealedReader:
    """Feed bytes of sealed frames; get the verified bodies back in order (counter from 0)."""

    def __init__(self, key: bytes) -> None:
        self.key, self.counter, self._buf = key, 0, bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buf)
            if size < TAG_BYTES or size > TAG_BYTES + protocol.MAX_FRAME:
                raise AuthError(f"sealed frame of {size} bytes is out of bounds")
            if len(self._buf) < _LENGTH.size + size:
                break
            frame = bytes(self._buf[_LENGTH.size : _LENGTH.size + size])
            del self._buf[: _LENGTH.size + size]
            tag, body = frame[:TAG_BYTES], frame[TAG_BYTES:]
            want = _tag(self.key, self.counter, body)
            if not hmac.compare_digest(tag, want):
                raise AuthError(
                    f"frame {self.counter}: its tag does not verify (altered, replayed or reordered)"
                )
            self.counter += 1
            out.append(body)
        return out


def _read_message(sock: socket.socket, buf: bytearray, deadline: float) -> dict[str, Any]:
    """Exactly one plain frame from the socket; bytes after it stay in `buf` (sealed frames may follow)."""
    while True:
        if len(buf) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buf)
            if size > 4096:
                raise AuthError(f"handshake frame of {size} bytes is too large")
            if len(buf) >= _LENGTH.size + size:
                body = bytes(buf[_LENGTH.size : _LENGTH.size + size])
                del buf[: _LENGTH.size + size]
                try:
                    return protocol.check(json.loads(body.decode("utf-8")))
                except (UnicodeDecodeError, ValueError) as exc:
                    raise AuthError(f"handshake: not a valid frame ({exc})") from None
        left = deadline - time.monotonic()
        if left <= 0:
            raise AuthError("handshake timed out")
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            raise AuthError("handshake timed out") from None
        if not data:
            raise AuthError("connection closed during the handshake")
        buf += data


def _nonce(msg: dict[str, Any]) -> bytes:
    try:
        value = bytes.fromhex(str(msg.get("nonce", "")))
    except ValueError:
        value = b""
    if len(value) != NONCE_BYTES:
        raise AuthError("handshake: bad nonce")
    return value


def connect(sock: socket.socket, secret: bytes, me: str, experiment: str) -> bytes:
    """The sender's half of the handshake on a connected socket; returns the session key."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
    n_send = os.urandom(NONCE_BYTES)
    hello = {"v": protocol.VERSION, "type": "auth_hello", "from": me, "experiment": experiment}
    sock.sendall(protocol.encode({**hello, "nonce": n_send.hex()}))
    reply = _read_message(sock, bytearray(), deadline)
    if reply.get("type") != "auth_challenge":
        raise AuthError(f"handshake: expected a challenge, got {reply.get('type')!r}")
    n_recv = _nonce(reply)
    want = proof(secret, "receiver", experiment, me, n_send, n_recv)
    if not hmac.compare_digest(str(reply.get("proof", "")), want):
        raise AuthError("handshake: the receiver does not know the experiment's secret")
    mine = proof(secret, "sender", experiment, me, n_send, n_recv)
    sock.sendall(protocol.encode({"v": protocol.VERSION, "type": "auth_proof", "from": me, "proof": mine}))
    return session_key(secret, experiment, me, n_send, n_recv)


def accept(
    sock: socket.socket, secret: bytes, experiment: str, allowed: Collection[str]
) -> tuple[str, bytes, bytes]:
    """The receiver's half: returns the proven sender id, the session key and the bytes already read
    after the handshake (the first sealed frames). Raises AuthError for an unknown or unproven sender."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
    buf = bytearray()
    hello = _read_message(sock, buf, deadline)
    sender = str(hello.get("from", ""))
    if hello.get("type") != "auth_hello" or hello.get("experiment") != experiment:
        raise AuthError(f"handshake: not an auth_hello of experiment {experiment!r}")
    if sender not in allowed:
        raise AuthError(f"handshake: {sender!r} is not a peer of this instance")
    n_send, n_recv = _nonce(hello), os.urandom(NONCE_BYTES)
    challenge = {
        "v": protocol.VERSION,
        "type": "auth_challenge",
        "from": "",
        "nonce": n_recv.hex(),
        "proof": proof(secret, "receiver", experiment, sender, n_send, n_recv),
    }
    sock.sendall(protocol.encode(challenge))
    answer = _read_message(sock, buf, deadline)
    want = proof(secret, "sender", experiment, sender, n_send, n_recv)
    if answer.get("type") != "auth_proof" or not hmac.compare_digest(str(answer.get("proof", "")), want):
        raise AuthError(f"handshake: {sender!r} did not prove that it knows the experiment's secret")
    return sender, session_key(secret, experiment, sender, n_send, n_recv), bytes(buf)


def read_secret(path: str | os.PathLike[str]) -> bytes:
    """The experiment's secret from its file (whitespace around it ignored); at least 16 bytes."""
    with open(path, "rb") as fh:
        secret = fh.read().strip()
    if len(secret) < 16:
        raise ValueError(f"{path}: the peer secret must be at least 16 bytes, got {len(secret)}")
    return secret


def config_secret(path: str | os.PathLike[str], source: object) -> bytes:
    """The experiment's secret an instance config names (`peer_secret_file`); InputError (exit 2) names
    the config `source` and the field when it cannot be read or is too short."""
    try:
        return read_secret(path)
    except OSError as exc:
        raise InputError(f"{source}: peer_secret_file: cannot read {path} ({exc.strerror})") from None
    except ValueError as exc:
        raise InputError(f"{source}: peer_secret_file: {exc}") from None
