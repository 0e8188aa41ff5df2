"""Per-cycle messaging time of two checkouts, alternating: e.g. peer protocol v1 against v2.

    git worktree add /tmp/before 0ec3516     # a commit before protocol v2
    .venv/bin/python benchmarks/messaging_ab.py /tmp/before . [--rounds 5] [--cycles 40]

Each round runs `bench_messaging` of each checkout's own benchmarks/runtime.py, in its own process with
that checkout first on the path (the instance processes run in that checkout's root too): a split-brain
pair of real instances on loopback, the median of the engine's `messaging_s` per cycle (framing,
queueing and recording the sends), plus the one-way delivery of a 600-byte message between two `Peers`
and the CPU of encoding and decoding one frame. Alternating rounds spread other load over both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ONE = """
import json, sys, tempfile
from pathlib import Path
root = Path(sys.argv[1])
sys.path[:0] = [str(root), str(root / "benchmarks")]
import runtime
from runner.modelfile.tiny import write_tiny_model
with tempfile.TemporaryDirectory() as d:
    model = Path(d) / "tiny.gguf"
    write_tiny_model(model)
    print(json.dumps(runtime.bench_messaging(model, 1, 512, 64, int(sys.argv[2]))))
"""


def one(root: Path, cycles: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", ONE, str(root), str(cycles)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cycles", type=int, default=40)
    args = p.parse_args()
    roots = [args.a.resolve(), args.b.resolve()]
    got: dict[Path, list[dict[str, float]]] = {r: [] for r in roots}
    for n in range(args.rounds):
        for root in roots:
            got[root].append(one(root, args.cycles))
            print(f"round {n + 1}: {root}: {got[root][-1]}", file=sys.stderr)
    print(f"# load {os.getloadavg()[0]:.1f}; {args.rounds} rounds of {args.cycles} cycles; medians")
    keys = ("messaging_ms_per_cycle", "one_way_delivery_ms", "frame_encode_decode_us")
    med = {r: {k: statistics.median(x[k] for x in got[r]) for k in keys} for r in roots}
    for k in keys:
        a, b = med[roots[0]][k], med[roots[1]][k]
        print(f"{k:24} {a:9.4f} -> {b:9.4f}  ({(b - a) / a * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
