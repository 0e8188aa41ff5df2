"""`python -m runner model ...`: the tiny test model and memory estimates of GGUF files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runner.errors import InputError

DEFAULT_TINY_PATH = Path("models/tiny-random-llama.gguf")

# Bytes per KV cache element for llama.cpp's cache types (block size 32 for the quantized ones).
KV_TYPE_BYTES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="GGUF model helpers: the tiny test model, memory estimates")
    msub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)

    t = msub.add_parser(
        "tiny",
        help="write the tiny random-weight llama GGUF used by tests",
        description="Write a tiny random-weight llama GGUF (about 250 KB) that llama.cpp loads and runs. "
        "Prints '<sha256>  <path>'; an identical existing file is left untouched.",
    )
    t.add_argument(
        "--out", type=Path, default=DEFAULT_TINY_PATH, help=f"output file (default {DEFAULT_TINY_PATH})"
    )
    t.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    t.set_defaults(func=_cmd_tiny)

    e = msub.add_parser(
        "estimate",
        help="estimate the memory llama.cpp needs for a GGUF model",
        description="Estimate weights + KV cache + compute buffers + runtime footprint of a GGUF model "
        "in llama.cpp, split between host RAM and GPU memory. See docs/models.md.",
    )
    e.add_argument("file", type=Path, metavar="FILE", help="GGUF model file")
    e.add_argument("--n-ctx", type=int, default=2048, help="context length (0 = the model's; default 2048)")
    e.add_argument(
        "--n-gpu-layers", type=int, default=0, help="layers offloaded to the GPU (-1 = all; default 0)"
    )
    e.add_argument("--n-batch", type=int, default=512, help="logical batch size (default 512)")
    e.add_argument("--n-ubatch", type=int, default=512, help="physical batch size (default 512)")
    e.add_argument(
        "--kv-type", choices=sorted(KV_TYPE_BYTES), default="f16", help="KV cache type (default f16)"
    )
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=_cmd_estimate)


def _cmd_tiny(args: argparse.Namespace) -> int:
    from runner.modelfile.tiny import ensure_tiny_model

    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    res = ensure_tiny_model(args.out, seed=args.seed)
    print(f"{res.sha256}  {res.path}")
    print("written" if res.written else "unchanged (an identical file was already there)", file=sys.stderr)
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    from runner.modelfile.estimate import estimate_memory

    est = estimate_memory(
        args.file,
        n_ctx=args.n_ctx,
        n_gpu_layers=args.n_gpu_layers,
        n_batch=args.n_batch,
        n_ubatch=args.n_ubatch,
        kv_type_bytes=KV_TYPE_BYTES[args.kv_type],
    )
    if args.json:
        d = {"file": str(args.file), "kv_type": args.kv_type, **est.to_dict()}
        print(json.dumps(d, indent=2, sort_keys=True))
        return 0
    rows = [
        ("weights", est.weights_mib),
        ("kv cache", est.kv_cache_mib),
        ("compute buffers", est.compute_mib),
        ("runtime footprint", est.footprint_mib),
        ("total", est.total_mib()),
        ("  host RAM", est.ram_mib),
        ("  GPU memory", est.gpu_mib),
    ]
    print(
        f"{args.file}: n_ctx {est.n_ctx} (padded), kv {args.kv_type}, "
        f"{est.offloaded_layers}/{est.n_layer} layers on GPU"
    )
    for name, mib in rows:
        print(f"  {name:<18} {mib:10.1f} MiB")
    return 0
