"""What authentication costs per message and per connection: protocol v1 (plain frames) against v2
(runner/node/auth.py: sealed frames; a mutual HMAC handshake per connection), on this machine's CPU.

    .venv/bin/python benchmarks/peers.py [--messages 20000] [--size 2000]

Per message: encode on the sender and decode on the receiver, with the body of a typical thought
(`--size` characters). Per connection: one full handshake over a loopback socket pair. The per-cycle
messaging time these are compared with is in docs/runtime.md (benchmarks/runtime.py).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.node import auth, protocol

SECRET = b"k" * 48


def per_message(n: int, size: int, sealed: bool) -> float:
    msg = {"v": 2, "type": "thought", "from": "a", "id": "a:1:1", "text": "x" * size, "cycle": 1}
    key = b"s" * 32
    t0 = time.process_time()  # CPU time of this process: less sensitive to other load than wall time
    if sealed:
        reader = auth.SealedReader(key)
        for i in range(n):
            for body in reader.feed(auth.seal(key, i, protocol.body(msg))):
                protocol.decode(body)
    else:
        plain = protocol.FrameReader()
        for _ in range(n):
            plain.feed(protocol.encode(msg))
    return (time.process_time() - t0) / n


def over_socket(n: int, size: int, sealed: bool) -> float:
    """Wall time per message from the sender's encode to the receiver's decoded dict, through a loopback
    socket pair (sender and receiver in two threads, as in an instance): what a peer message costs."""
    msg = {"v": 2, "type": "thought", "from": "a", "id": "a:1:1", "text": "x" * size, "cycle": 1}
    key = b"s" * 32
    a, b = socket.socketpair()

    def send() -> None:
        for i in range(n):
            a.sendall(auth.seal(key, i, protocol.body(msg)) if sealed else protocol.encode(msg))

    t0 = time.perf_counter()
    t = threading.Thread(target=send)
    t.start()
    got = 0
    if sealed:
        reader = auth.SealedReader(key)
        while got < n:
            for body in reader.feed(b.recv(65536)):
                protocol.decode(body)
                got += 1
    else:
        plain = protocol.FrameReader()
        while got < n:
            got += len(plain.feed(b.recv(65536)))
    t.join()
    spent = (time.perf_counter() - t0) / n
    a.close()
    b.close()
    return spent


def handshake() -> float:
    a, b = socket.socketpair()
    out: dict[str, object] = {}
    t = threading.Thread(target=lambda: out.update(r=auth.accept(b, SECRET, "e", {"x"})))
    t0 = time.perf_counter()
    t.start()
    auth.connect(a, SECRET, "x", "e")
    t.join()
    spent = time.perf_counter() - t0
    a.close()
    b.close()
    return spent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--size", type=int, default=2000)
    args = p.parse_args()
    plain = statistics.median(per_message(args.messages, args.size, False) for _ in range(5))
    sealed = statistics.median(per_message(args.messages, args.size, True) for _ in range(5))
    plain_s = statistics.median(over_socket(args.messages, args.size, False) for _ in range(5))
    sealed_s = statistics.median(over_socket(args.messages, args.size, True) for _ in range(5))
    hs = statistics.median(handshake() for _ in range(50))
    print(f"per message, v1 plain frame : {plain * 1e6:8.1f} us")
    print(f"per message, v2 sealed frame: {sealed * 1e6:8.1f} us  (+{(sealed - plain) * 1e6:.1f} us)")
    extra = (sealed_s - plain_s) / plain_s * 100
    print(f"over a socket, v1 plain     : {plain_s * 1e6:8.1f} us per message")
    print(f"over a socket, v2 sealed    : {sealed_s * 1e6:8.1f} us per message  ({extra:+.1f} %)")
    print(f"per connection, v2 handshake: {hs * 1e3:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
