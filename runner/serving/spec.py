"""A `kind: serving` experiment file: a model served by N (or MIN:MAX) replicas, each an OpenAI-compatible
server (llama-cpp-python's own, `llama_cpp.server`) in its own hardened unit (docs/serving.md).

The replicas are ordinary instances of mode `serve` (`<name>-0`, `<name>-1`, ...): the placement engine,
host_vars, deploy (the model), launch, the firewall, health and collect treat them as they treat any
instance. This module checks the serving fields; runner/experiment.py turns them into instances.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import names
from runner.counts import count_or_range
from runner.errors import InputError

KIND = "serving"
MODE = "serve"  # the replicas' instance mode (runner/node/serve.py)
KEYS = {
    "name", "kind", "description", "enabled", "model", "replicas", "memory_gb", "gpu", "gpu_memory_gb",
    "tags", "served_name", "embeddings", "chat_format", "max_tokens_cap",
}  # fmt: skip
# The llama.cpp settings a replica takes from the file (the runtime's names and checks, experiment.py).
RUNTIME_KEYS = ("n_ctx", "n_gpu_layers", "n_threads", "n_batch", "seed")
MAX_REPLICAS = 256
MAX_TOKENS_CAP = 65536


@dataclass(frozen=True)
class ServingSpec:
    name: str
    source: Path
    model: str
    min_replicas: int  # `replicas: MIN:MAX`: as many as fit, at least MIN (N gives N:N)
    max_replicas: int
    served_name: str  # the model name clients ask for (`model` in the OpenAI request)
    embeddings: bool
    chat_format: str | None  # None: the chat template the GGUF file carries
    max_tokens_cap: int  # a request asking for more tokens than this is refused (the replica's bound)
    gpu: bool
    memory_gb: float | None
    gpu_memory_gb: float | None
    tags: tuple[str, ...]


def replica_id(name: str, k: int) -> str:
    return f"{name}-{k}"


def _err(path: Path, field: str, problem: str) -> InputError:
    return InputError(f"{path}: {field}: {problem}")


def parse(path: Path, data: Mapping[str, Any], gb: Any) -> ServingSpec:
    """The serving experiment in `data` (read from `path`); `gb` checks a GB field (experiment.py's)."""
    for key in sorted(set(data) - KEYS - set(RUNTIME_KEYS)):
        raise _err(path, key, f"unknown field for kind {KIND}")
    name = str(data["name"])
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _err(
            path,
            "model",
            f"missing: the model the replicas serve (a catalog name or a .gguf path), got {model!r}",
        )
    try:
        low, high = count_or_range(data.get("replicas"), MAX_REPLICAS)
    except ValueError as exc:
        raise _err(path, "replicas", str(exc)) from None
    served = data.get("served_name", name)
    bad = names.problem(served)
    if bad:
        raise _err(path, "served_name", bad)
    embeddings = data.get("embeddings", False)
    if not isinstance(embeddings, bool):
        raise _err(path, "embeddings", f"must be true or false, got {embeddings!r}")
    chat_format = data.get("chat_format")
    if chat_format is not None and (not isinstance(chat_format, str) or not chat_format.strip()):
        raise _err(path, "chat_format", f"must be a llama.cpp chat format name, got {chat_format!r}")
    cap = data.get("max_tokens_cap", 512)
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_TOKENS_CAP:
        raise _err(path, "max_tokens_cap", f"must be a whole number from 1 to {MAX_TOKENS_CAP}, got {cap!r}")
    gpu = data.get("gpu", False)
    if not isinstance(gpu, bool):
        raise _err(path, "gpu", f"must be true or false, got {gpu!r}")
    gpu_gb = gb(path, "gpu_memory_gb", data.get("gpu_memory_gb"))
    if gpu_gb is not None and not gpu:
        raise _err(path, "gpu_memory_gb", "is set but gpu is false")
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise _err(path, "tags", f"must be a list of names, got {tags!r}")
    return ServingSpec(
        name=name,
        source=path,
        model=model,
        min_replicas=low,
        max_replicas=high,
        served_name=str(served),
        embeddings=embeddings,
        chat_format=chat_format,
        max_tokens_cap=cap,
        gpu=gpu,
        memory_gb=gb(path, "memory_gb", data.get("memory_gb")),
        gpu_memory_gb=gpu_gb,
        tags=tuple(tags),
    )
