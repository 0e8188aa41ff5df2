"""Child process of `model measure`: load a GGUF in llama-cpp-python and report its memory as JSON.

Run as `python -m runner.modelfile.probe '<json args>'`. It imports nothing heavy before the first
reading, so the readings separate the interpreter, the llama_cpp import, the model load (weights, KV
cache, compute buffers) and inference. The last stdout line is the JSON result; llama.cpp's own log
(buffer sizes) goes to stderr, where the parent reads it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _status() -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile from /proc/self/status, in MiB."""
    out: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(rest.split()[0]) / 1024.0  # kB -> MiB
    return out


def run(args: dict[str, Any]) -> dict[str, Any]:
    readings: dict[str, dict[str, float]] = {"start": _status()}
    import llama_cpp

    readings["imported"] = _status()
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=args["model"],
        n_ctx=args["n_ctx"],
        n_gpu_layers=args["n_gpu_layers"],
        n_batch=args["n_batch"],
        n_ubatch=args["n_ubatch"],
        n_threads=args.get("n_threads"),
        seed=0,
        verbose=True,
    )
    load_s = time.perf_counter() - t0
    readings["loaded"] = _status()

    # Fill the context (minus the tokens to generate): the last micro-batch then attends over nearly
    # n_ctx cells, which touches the whole worst-case compute buffer llama.cpp reserved.
    n_prompt = int(args.get("prompt_tokens") or args["n_ctx"] - args["tokens"] - 1)
    body: list[int] = []
    while len(body) < n_prompt - 1:
        body += llm.tokenize(b" hello world, the jar" * 64, add_bos=False)
    prompt = [llm.token_bos(), *body[: n_prompt - 1]]
    t0 = time.perf_counter()
    llm.eval(prompt)
    prompt_s = time.perf_counter() - t0
    readings["prompt"] = _status()

    generated: list[int] = []
    t0 = time.perf_counter()
    for tok in llm.generate(prompt, temp=0.8):  # the prompt is cached: generation starts at once
        generated.append(tok)
        if len(generated) >= args["tokens"]:
            break
    gen_s = time.perf_counter() - t0
    readings["generated"] = _status()
    return {
        "llama_cpp_version": llama_cpp.__version__,
        "readings_mib": readings,
        "prompt_tokens": len(prompt),
        "generated_tokens": len(generated),
        "load_s": load_s,
        "prompt_s": prompt_s,
        "generate_s": gen_s,
        "sample_text": llm.detokenize(generated[:32]).decode("utf-8", "replace"),
    }


def main() -> None:
    result = run(json.loads(sys.argv[1]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
