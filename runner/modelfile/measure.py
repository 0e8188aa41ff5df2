"""Measure what a GGUF model really takes in llama-cpp-python, next to the estimate.

The model is loaded in a child process (`runner.modelfile.probe`) so that the readings are that process's
alone: RSS after the interpreter starts, after `import llama_cpp`, after loading the model, after one full
micro-batch of prompt and after generating. llama.cpp's own buffer sizes are parsed from its log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import EdgejarError
from runner.modelfile.estimate import MemoryEstimate, estimate_memory, read_gguf_info

_BUF_RE = re.compile(r"(\S+)\s+(model|KV|compute|output)\s+buffer size\s*=\s*([0-9.]+)\s*MiB")


@dataclass(frozen=True)
class Measurement:
    model: Path
    n_ctx: int
    n_gpu_layers: int
    estimate: MemoryEstimate
    probe: dict[str, Any]  # the child's JSON (readings_mib, timings, tokens)
    buffers_mib: dict[str, float]  # "<device> <kind>" -> MiB, from llama.cpp's log

    def reading(self, stage: str, key: str = "VmRSS") -> float:
        return float(self.probe["readings_mib"][stage][key])

    @property
    def load_increase_mib(self) -> float:
        """RSS growth from loading the model (after `import llama_cpp`, before any inference)."""
        return self.reading("loaded") - self.reading("imported")

    @property
    def run_increase_mib(self) -> float:
        """RSS growth from `import llama_cpp` to the end of generation (compute buffers touched)."""
        return self.reading("generated") - self.reading("imported")

    @property
    def peak_rss_mib(self) -> float:
        return self.reading("generated", "VmHWM")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "estimate": self.estimate.to_dict(),
            "llama_cpp_buffers_mib": self.buffers_mib,
            "load_increase_mib": self.load_increase_mib,
            "run_increase_mib": self.run_increase_mib,
            "peak_rss_mib": self.peak_rss_mib,
            "probe": self.probe,
        }


def parse_buffer_sizes(log: str) -> dict[str, float]:
    """Sum llama.cpp's 'X model/KV/compute/output buffer size = N MiB' lines per device and kind."""
    out: dict[str, float] = {}
    for dev, kind, mib in _BUF_RE.findall(log):
        key = f"{dev} {kind}"
        out[key] = out.get(key, 0.0) + float(mib)
    return out


def measure(
    path: Path,
    *,
    n_ctx: int = 2048,
    n_gpu_layers: int = 0,
    n_batch: int = 512,
    n_ubatch: int = 512,
    tokens: int = 64,
    n_threads: int | None = None,
    timeout_s: float = 600.0,
) -> Measurement:
    """Load `path` in a fresh llama-cpp-python process, run a prompt and `tokens` generated tokens."""
    est = estimate_memory(path, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, n_batch=n_batch, n_ubatch=n_ubatch)
    info = read_gguf_info(path)
    n_ctx_run = n_ctx or info.n_ctx_train
    args = {
        "model": str(path),
        "n_ctx": n_ctx_run,
        "n_gpu_layers": n_gpu_layers,
        "n_batch": n_batch,
        "n_ubatch": n_ubatch,
        "tokens": tokens,
        "n_threads": n_threads,
    }
    cmd = [sys.executable, "-m", "runner.modelfile.probe", json.dumps(args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EdgejarError(f"{path}: llama-cpp-python probe timed out after {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-5:]
        if any("No module named 'llama_cpp'" in line for line in tail):
            raise EdgejarError("llama-cpp-python is not installed here (pip install '.[node]')")
        raise EdgejarError(
            f"{path}: llama-cpp-python probe failed (exit {proc.returncode}): " + " | ".join(tail)
        )
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise EdgejarError(f"{path}: llama-cpp-python probe printed no result")
    return Measurement(
        model=path,
        n_ctx=n_ctx_run,
        n_gpu_layers=n_gpu_layers,
        estimate=est,
        probe=json.loads(lines[-1]),
        buffers_mib=parse_buffer_sizes(proc.stderr),
    )
