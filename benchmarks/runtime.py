"""Node runtime speed: tokens/s of an instance against bare llama-cpp-python, and peer messaging cost.

Run by hand from the repository root:  .venv/bin/python benchmarks/runtime.py [--model PATH] [--threads N]
(without --model the tiny random model is generated in a temp dir). Results go in docs/runtime.md.

1. Same prompt, model, threads, sampling and max_tokens, alternating runs: bare
   `Llama.create_completion` vs the runtime's `Mind.generate` (the streamed loop an instance uses).
2. A real instance process (`python -m runner.node run`, mode isolated) for some cycles: tokens/s as
   recorded in its cycles table and the per-cycle overhead outside generation.
3. Messaging: a split-brain pair of real processes on loopback; per-cycle `messaging_s` from the
   records (framing, queueing and recording the sends), plus the round trip of one framed message
   between two `Peers` on loopback (protocol v2: a per-experiment secret, sealed frames).
   `--messaging-only` runs just this part; benchmarks/messaging_ab.py compares it across two checkouts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.modelfile.tiny import write_tiny_model  # noqa: E402
from runner.node import auth, protocol, records  # noqa: E402
from runner.node.config import InstanceConfig, Peer, parse  # noqa: E402
from runner.node.modes import create  # noqa: E402
from runner.node.modes.base import Cycle  # noqa: E402
from runner.node.peers import Peers  # noqa: E402


def free_port(addr: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


def entry(
    iid: str,
    mode: str,
    model: Path,
    data: Path,
    threads: int,
    n_ctx: int,
    max_tokens: int,
    cycles: int,
    peers: list[dict[str, object]],
    port: int,
    addr: str = "127.0.0.1",
) -> dict[str, object]:
    secret = data / "bench.key"  # the experiment's peer secret (protocol v2), as launch writes it
    if not secret.exists():
        secret.write_text(SECRET.decode() + "\n")
    return {
        "id": iid,
        "experiment": "bench",
        "peer_secret_file": str(secret),
        "members": ["A", "B"],
        "mode": mode,
        "address": addr,
        "port": port,
        "peers": peers,
        "memory_mib": 1024,
        "model_path": str(model),
        "data_dir": str(data),
        "runtime": {
            "n_ctx": n_ctx,
            "n_threads": threads,
            "max_tokens": max_tokens,
            "cycles": cycles,
            "cycle_delay_s": 0.0,
            "seed": 1,
            "temperature": 0.8,
            "top_p": 0.95,
        },
        "settings": {"reconnect_max_s": 0.5, "peer_wait_s": 30, "memory_window": 0},
    }


SECRET = b"bench-secret-0123456789abcdef"


def isolated_prompt(cfg: InstanceConfig) -> str:
    """The prompt an isolated instance builds each cycle with memory_window 0 (so it never changes)."""
    return create(cfg).prompt(Cycle(1, 1, True, [], []))


def bench_bare(model: Path, threads: int, n_ctx: int, max_tokens: int, runs: int) -> dict[str, list[float]]:
    """tok/s of bare llama-cpp-python on the isolated instance's prompt: create_completion and a raw loop."""
    import llama_cpp

    cfg = parse(
        entry("bench", "isolated", model, Path("/tmp"), threads, n_ctx, max_tokens, 0, [], 1), Path("-")
    )
    prompt = isolated_prompt(cfg)
    llm = llama_cpp.Llama(
        model_path=str(model), n_ctx=n_ctx, n_threads=threads, n_batch=min(512, n_ctx), seed=1, verbose=False
    )
    completion, loop = [], []
    for i in range(runs + 2):  # two warm-up runs each
        t0 = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=i)
        dt = time.perf_counter() - t0
        n_completion = out["usage"]["completion_tokens"]
        t0 = time.perf_counter()
        tokens = llm.tokenize(prompt.encode(), add_bos=True)
        llm.set_seed(i)
        got: list[int] = []
        for tok in llm.generate(tokens, temp=0.8, top_p=0.95, reset=True):
            if tok == llm.token_eos() or len(got) >= max_tokens:
                break
            got.append(tok)
        llm.detokenize(got)
        dt_loop = time.perf_counter() - t0
        if i >= 2:
            completion.append(n_completion / dt)
            loop.append(len(got) / dt_loop)
    return {"completion": completion, "loop": loop, "prompt_tokens": [float(len(tokens))]}


def run_instances(entries: list[dict[str, object]], tmp: Path) -> None:
    procs = []
    for e in entries:
        path = tmp / f"{e['id']}.json"
        path.write_text(json.dumps(e))
        with (tmp / f"{e['id']}.log").open("w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "runner.node", "run", "--config", str(path)],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        for e, p in zip(entries, procs, strict=True):
            if p.wait(timeout=600) != 0:
                tail = (tmp / f"{e['id']}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"instance {e['id']} failed (exit {p.returncode}):\n{tail}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def bench_instance(
    model: Path, threads: int, n_ctx: int, max_tokens: int, cycles: int
) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        run_instances(
            [entry("solo", "isolated", model, tmp, threads, n_ctx, max_tokens, cycles, [], free_port())], tmp
        )
        conn = records.connect(tmp / "records.sqlite3", readonly=True)
        rows = conn.execute("SELECT tokens, gen_s, duration_s FROM cycles WHERE cycle > 2").fetchall()
        conn.close()
    return {
        "rates": [r["tokens"] / r["gen_s"] for r in rows],
        "overhead_ms": [(r["duration_s"] - r["gen_s"]) * 1000 for r in rows],
    }


def bench_messaging(model: Path, threads: int, n_ctx: int, max_tokens: int, cycles: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pa, pb = free_port("127.0.0.1"), free_port("127.0.0.2")
        a = entry(
            "A",
            "split_brain",
            model,
            tmp,
            threads,
            n_ctx,
            max_tokens,
            cycles,
            [{"id": "B", "address": "127.0.0.2", "port": pb}],
            pa,
        )
        b = entry(
            "B",
            "split_brain",
            model,
            tmp,
            threads,
            n_ctx,
            max_tokens,
            cycles,
            [{"id": "A", "address": "127.0.0.1", "port": pa}],
            pb,
            "127.0.0.2",
        )
        run_instances([a, b], tmp)
        conn = records.connect(tmp / "records.sqlite3", readonly=True)
        msg = [r[0] for r in conn.execute("SELECT value FROM metrics WHERE name = 'messaging_s'")]
        conn.close()
    hello = lambda who: lambda: {"v": protocol.VERSION, "type": "hello", "from": who}  # noqa: E731
    p1, p2 = free_port(), free_port()
    keys = {"secret": SECRET, "experiment": "bench"}
    x = Peers("127.0.0.1", p1, (Peer("y", "n", "127.0.0.1", p2),), hello("x"), me="x", **keys)
    y = Peers("127.0.0.1", p2, (Peer("x", "n", "127.0.0.1", p1),), hello("y"), me="y", **keys)
    x.start()
    y.start()
    text = "w" * 600  # about a 128-token thought
    rtts = []
    for i in range(200):
        t0 = time.perf_counter()
        x.send(["y"], {"v": protocol.VERSION, "type": "thought", "from": "x", "text": text, "i": i})
        while True:
            m = y.receive(5)
            if m and m.get("i") == i:
                break
        rtts.append(time.perf_counter() - t0)
    x.close(0)
    y.close(0)
    t0 = time.perf_counter()
    key, reader = b"k" * 32, auth.SealedReader(b"k" * 32)
    for i in range(10_000):
        body = protocol.body({"v": protocol.VERSION, "type": "thought", "from": "x", "text": text, "i": i})
        for got in reader.feed(auth.seal(key, i, body)):
            protocol.decode(got)
    codec_us = (time.perf_counter() - t0) / 10_000 * 1e6
    return {
        "messaging_ms_per_cycle": statistics.median(msg) * 1000,
        "one_way_delivery_ms": statistics.median(rtts[10:]) * 1000,
        "frame_encode_decode_us": codec_us,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--messaging-only", action="store_true", help="only the messaging measurements")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        # Absolute: the instance processes read it from their config, and run in the repository root.
        model = args.model.resolve() if args.model else Path(d) / "tiny.gguf"
        if args.model is None:
            write_tiny_model(model)
        head = f"# Python {platform.python_version()} {platform.machine()}, {os.cpu_count()} CPUs"
        print(
            f"{head}, load {os.getloadavg()[0]:.1f}; model {model.name}, threads {args.threads}, "
            f"n_ctx {args.n_ctx}, max_tokens {args.max_tokens}"
        )
        # alternate blocks so that load from elsewhere hits all three alike; best and median per method
        rates: dict[str, list[float]] = {"completion": [], "loop": [], "instance": []}
        overhead: list[float] = []
        for _ in range(0 if args.messaging_only else args.blocks):
            inst = bench_instance(model, args.threads, args.n_ctx, args.max_tokens, args.cycles)
            rates["instance"] += inst["rates"]
            overhead += inst["overhead_ms"]
            bare = bench_bare(model, args.threads, args.n_ctx, args.max_tokens, args.runs)
            rates["completion"] += bare["completion"]
            rates["loop"] += bare["loop"]
        if not args.messaging_only:
            n_prompt = bare["prompt_tokens"][0]
            print(f"prompt: the isolated mode's, {n_prompt:.0f} tokens; {args.blocks} alternating blocks")
            ref_best, ref_med = max(rates["completion"]), statistics.median(rates["completion"])
            names = {
                "completion": "bare create_completion",
                "loop": "bare generate loop",
                "instance": "instance process",
            }
            for key, name in names.items():
                best, med = max(rates[key]), statistics.median(rates[key])
                print(
                    f"{name:24} best {best:6.0f} tok/s ({best / ref_best * 100:5.1f} %), "
                    f"median {med:6.0f} tok/s ({med / ref_med * 100:5.1f} %), n={len(rates[key])}"
                )
            print(f"instance: {statistics.median(overhead):.1f} ms per cycle outside generation (median)")
        msg = bench_messaging(model, args.threads, args.n_ctx, args.max_tokens, args.cycles)
        print(f"messaging per cycle      {msg['messaging_ms_per_cycle']:9.2f} ms (split brain pair, median)")
        print(
            f"one framed message       {msg['one_way_delivery_ms']:9.3f} ms loopback delivery, "
            f"{msg['frame_encode_decode_us']:.1f} us encode+decode (600-byte thought)"
        )


if __name__ == "__main__":
    main()
