"""`python -m runner.node bench --model FILE ...`: how fast this node runs one model, by a fixed method,
with the provenance that makes the number mean something. Prints one JSON object.

The method (docs/bench.md): a prompt of exactly `prompt_tokens` tokens (a fixed text's tokens repeated
and cut), then exactly `gen_tokens` tokens generated greedily (end-of-sequence does not stop it). Each
repetition loads the model, evaluates the prompt (prompt processing tokens/s), samples the first token
(time to first token: prompt evaluation plus that sample) and decodes the rest (generation tokens/s:
`gen_tokens` sample+decode steps over their time), then frees the model. The first `warmup` repetitions
are run and thrown away (they also bring the file into the page cache: load times are warm). One model
per process, so the peak memory is that model's.
"""

from __future__ import annotations

import gc
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.node import provenance

# A fixed English text: its tokens, repeated, make every prompt (the same for every node and model).
PROMPT_TEXT = (
    "The edge cluster runs small language models on boards with a real memory ceiling. Each instance "
    "talks to its peers over the network, and every message and every death is recorded. "
)
METRICS = ("load_s", "pp_tps", "tg_tps", "ttft_s")


@dataclass(frozen=True)
class Method:
    prompt_tokens: int = 64
    gen_tokens: int = 32
    reps: int = 3
    warmup: int = 1
    n_threads: int = 0  # generation and prompt threads; 0: llama-cpp-python's choice
    n_gpu_layers: int = 0

    @property
    def n_ctx(self) -> int:
        return self.prompt_tokens + self.gen_tokens + 8


def fixed_prompt(text_tokens: Sequence[int], n: int, bos: int | None) -> list[int]:
    """Pure: exactly n tokens, the BOS token (when the model has one) and then the text's tokens repeated."""
    if n < 1:
        raise ValueError("a prompt needs at least one token")
    body = [t for t in text_tokens if t != bos]
    if not body:
        raise ValueError("the fixed text tokenizes to nothing")
    head = [bos] if bos is not None and bos >= 0 else []
    out = list(head)
    while len(out) < n:
        out.extend(body)
    return out[:n]


def rep_metrics(load_s: float, pp_s: float, first_s: float, gen_s: float, method: Method) -> dict[str, float]:
    """Pure: one repetition's metrics from its measured times."""
    return {
        "load_s": load_s,
        "pp_tps": method.prompt_tokens / pp_s if pp_s > 0 else 0.0,
        "tg_tps": method.gen_tokens / gen_s if gen_s > 0 else 0.0,
        "ttft_s": pp_s + first_s,
    }


def summarise(reps: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Pure: per metric, median, min and max over the repetitions."""
    out = {}
    for m in METRICS:
        values = [r[m] for r in reps]
        out[m] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def quantisation(file_type: object) -> str:
    """The name of a GGUF `general.file_type` (llama.cpp's LLAMA_FTYPE_* numbering)."""
    import llama_cpp

    names = {
        value: key.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_")
        for key, value in vars(llama_cpp).items()
        if key.startswith("LLAMA_FTYPE_") and isinstance(value, int)
    }
    try:
        return names[int(str(file_type))]
    except (KeyError, ValueError):
        return provenance.unavailable(f"general.file_type {file_type!r} is not a known llama.cpp file type")


def _one_rep(load: Callable[[], Any], method: Method) -> tuple[dict[str, float], Any]:
    t0 = time.perf_counter()
    llm = load()
    t1 = time.perf_counter()
    prompt = fixed_prompt(
        llm.tokenize(PROMPT_TEXT.encode(), add_bos=False), method.prompt_tokens, llm.token_bos()
    )
    llm.reset()
    t2 = time.perf_counter()
    llm.eval(prompt)
    t3 = time.perf_counter()
    token = llm.sample(temp=0.0)
    t4 = time.perf_counter()
    llm.eval([token])
    for _ in range(method.gen_tokens - 1):
        llm.eval([llm.sample(temp=0.0)])
    t5 = time.perf_counter()
    return rep_metrics(t1 - t0, t3 - t2, t4 - t3, t5 - t3, method), llm


def _cgroup_peak_mib() -> float | str:
    """memory.peak of this process's cgroup (v2, kernel 5.19+): the unit's peak under its MemoryMax."""
    try:
        rel = Path("/proc/self/cgroup").read_text().strip().splitlines()[-1].split("::", 1)[1]
        return int(Path(f"/sys/fs/cgroup{rel}/memory.peak").read_text()) / (1 << 20)
    except (OSError, IndexError, ValueError):
        return provenance.unavailable("no memory.peak for this process's cgroup (cgroup v1 or kernel < 5.19)")


def run(model: Path, method: Method, record: Path) -> dict[str, Any]:
    import llama_cpp

    if not model.is_file():
        raise FileNotFoundError(f"{model}: no such model file on this node")
    temps_before = provenance.temperatures_c()

    def load() -> Any:
        kwargs: dict[str, Any] = {
            "model_path": str(model),
            "n_ctx": method.n_ctx,
            "n_gpu_layers": method.n_gpu_layers,
            "verbose": False,
        }
        if method.n_threads:  # both phases, as llama-bench's -t (llama-cpp-python's default differs)
            kwargs["n_threads"] = kwargs["n_threads_batch"] = method.n_threads
        return llama_cpp.Llama(**kwargs)

    reps = []
    meta: dict[str, Any] = {}
    for i in range(method.warmup + method.reps):
        metrics, llm = _one_rep(load, method)
        if i >= method.warmup:
            reps.append(metrics)
        meta = {
            "threads": llm.n_threads,
            "threads_batch": llm.n_threads_batch,
            "metadata": dict(llm.metadata),
            "n_params": llm._model.n_params(),
        }
        del llm
        gc.collect()
    md = meta["metadata"]
    return {
        "method": {**asdict(method), "n_ctx": method.n_ctx},
        "model": {
            "file": model.name,
            "path": str(model),
            "size_bytes": model.stat().st_size,
            "sha256": provenance.model_sha256(model),
            "quantisation": quantisation(md["general.file_type"])
            if "general.file_type" in md
            else provenance.unavailable("no general.file_type in the GGUF metadata"),
            "architecture": md.get("general.architecture", provenance.unavailable("no general.architecture")),
            "n_params": meta["n_params"],
        },
        "build": {
            "llama_cpp_python": llama_cpp.__version__,
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(" |"),
            "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "wheel_key": provenance.wheel_key(record),
            "threads": meta["threads"],
            "threads_batch": meta["threads_batch"],
        },
        "board": provenance.board(),
        "temperatures_before": temps_before,
        "temperatures_after": provenance.temperatures_c(),
        "reps": reps,
        "summary": summarise(reps),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cgroup_peak_mib": _cgroup_peak_mib(),
    }
