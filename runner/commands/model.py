"""`python -m runner model ...`: the tiny test model and memory estimates of GGUF files."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from runner.errors import InputError

log = logging.getLogger(__name__)

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

    m = msub.add_parser(
        "measure",
        help="load a GGUF in llama-cpp-python and compare its real memory with the estimate",
        description="Load FILE in a child llama-cpp-python process, run one micro-batch of prompt and "
        "generate --tokens tokens; print the RSS readings, llama.cpp's buffer sizes and the estimate.",
    )
    m.add_argument("file", type=Path, metavar="FILE", help="GGUF model file")
    m.add_argument("--n-ctx", type=int, default=2048, help="context length (default 2048)")
    m.add_argument("--n-gpu-layers", type=int, default=0, help="layers offloaded to the GPU (default 0)")
    m.add_argument("--n-batch", type=int, default=512, help="logical batch size (default 512)")
    m.add_argument("--n-ubatch", type=int, default=512, help="physical batch size (default 512)")
    m.add_argument("--tokens", type=int, default=64, help="tokens to generate (default 64)")
    m.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: its own)")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=_cmd_measure)


def _cmd_tiny(args: argparse.Namespace) -> int:
    from runner.modelfile.tiny import ensure_tiny_model

    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    res = ensure_tiny_model(args.out, seed=args.seed)
    print(f"{res.sha256}  {res.path}")
    log.info("written" if res.written else "unchanged (an identical file was already there)")
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


def _cmd_measure(args: argparse.Namespace) -> int:
    from runner.modelfile.measure import measure

    if args.tokens < 1 or args.n_ctx < 0 or (args.n_ctx and args.n_ctx < args.tokens + 16):
        raise InputError(f"--tokens must be >= 1 and fit in --n-ctx, got {args.tokens} and {args.n_ctx}")
    res = measure(
        args.file,
        n_ctx=args.n_ctx,
        n_gpu_layers=args.n_gpu_layers,
        n_batch=args.n_batch,
        n_ubatch=args.n_ubatch,
        tokens=args.tokens,
        n_threads=args.threads,
    )
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, sort_keys=True))
        return 0
    e, p = res.estimate, res.probe
    print(
        f"{args.file}: llama-cpp-python {p['llama_cpp_version']}, "
        f"n_ctx {res.n_ctx}, n_gpu_layers {res.n_gpu_layers}"
    )
    print(
        "  llama.cpp buffers (MiB): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(res.buffers_mib.items()))
    )
    print(
        f"  estimate (MiB):          weights {e.weights_mib:.2f}, kv {e.kv_cache_mib:.2f}, "
        f"compute {e.compute_mib:.2f}, footprint {e.footprint_mib:.0f}, total {e.total_mib():.1f} "
        f"(RAM {e.ram_mib:.1f}, GPU {e.gpu_mib:.1f})"
    )
    for stage in ("start", "imported", "loaded", "prompt", "generated"):
        r = p["readings_mib"][stage]
        print(f"  RSS {stage:<9} {r['VmRSS']:8.1f} MiB  (anon {r['RssAnon']:.1f}, file {r['RssFile']:.1f})")
    print(
        f"  RSS increase: load {res.load_increase_mib:.1f} MiB, load+run {res.run_increase_mib:.1f} MiB; "
        f"peak RSS (VmHWM) {res.peak_rss_mib:.1f} MiB"
    )
    rate = p["generated_tokens"] / p["generate_s"] if p["generate_s"] > 0 else 0.0
    print(
        f"  {p['prompt_tokens']} prompt tokens in {p['prompt_s']:.3f} s; {p['generated_tokens']} generated "
        f"in {p['generate_s']:.3f} s ({rate:.0f} tok/s); load {p['load_s']:.3f} s"
    )
    return 0
