"""What a kernel asks for: the kernelspec's placement (auto, gpu, a tag, a node) and, per kernel, the
client's KERNEL_EDGEJAR_* variables (the gateway passes KERNEL_* variables of a start request through).
Pure: checked against the pool, so that a request naming a node or tag the cluster does not have is
refused before anything starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.errors import InputError
from runner.node.kernels.pool import Pool
from runner.placement.model import gb_to_mib

ENV_NODE = "KERNEL_EDGEJAR_NODE"
ENV_TAGS = "KERNEL_EDGEJAR_TAGS"
ENV_GPU = "KERNEL_EDGEJAR_GPU"
ENV_GPU_MEMORY = "KERNEL_EDGEJAR_GPU_MEMORY_GB"
ENV_MEMORY = "KERNEL_EDGEJAR_MEMORY_GB"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class KernelRequest:
    memory_mib: int
    node: str | None = None
    tags: frozenset[str] = frozenset()
    gpu: bool = False
    gpu_mib: int = 0

    def describe(self) -> str:
        parts = [f"{self.memory_mib} MiB"]
        if self.node:
            parts.append(f"on {self.node}")
        if self.tags:
            parts.append("tags " + ",".join(sorted(self.tags)))
        if self.gpu:
            parts.append(f"a GPU with {self.gpu_mib} MiB free" if self.gpu_mib else "a GPU")
        return ", ".join(parts)


def _gb(name: str, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{name}: a number of GB, got {text!r}") from None
    if not 0 < value < 10**6:
        raise InputError(f"{name}: a number of GB above 0, got {text!r}")
    return gb_to_mib(value)


def parse(spec: Mapping[str, Any], env: Mapping[str, str], pool: Pool) -> KernelRequest:
    """The request from the kernelspec's settings (`spec`: node, tags, gpu, gpu_memory_gb, memory_gb),
    overridden by the client's KERNEL_EDGEJAR_* variables; InputError names the setting at fault."""
    node = env.get(ENV_NODE) or spec.get("node") or None
    raw_tags = env.get(ENV_TAGS)
    tags = (
        {t.strip() for t in raw_tags.split(",") if t.strip()}
        if raw_tags is not None
        else {str(t) for t in spec.get("tags") or []}
    )
    gpu_text = env.get(ENV_GPU)
    if gpu_text is not None:
        if gpu_text.strip().lower() not in _TRUE | _FALSE:
            raise InputError(f"{ENV_GPU}: true or false, got {gpu_text!r}")
        gpu = gpu_text.strip().lower() in _TRUE
    else:
        gpu = bool(spec.get("gpu", False))
    gpu_mem = env.get(ENV_GPU_MEMORY)
    gpu_mib = _gb(ENV_GPU_MEMORY, gpu_mem) if gpu_mem else gb_to_mib(float(spec.get("gpu_memory_gb") or 0))
    if gpu_mib and not gpu:
        gpu = True  # asking for GPU memory asks for a GPU
    memory = env.get(ENV_MEMORY)
    if memory:
        memory_mib = _gb(ENV_MEMORY, memory)
    elif spec.get("memory_gb"):
        memory_mib = gb_to_mib(float(spec["memory_gb"]))
    else:
        memory_mib = pool.memory_mib
    if memory_mib > pool.max_memory_mib:
        raise InputError(
            f"{ENV_MEMORY}: {memory_mib} MiB is more than a kernel may ask for "
            f"({pool.max_memory_mib} MiB, edgejar_notebooks_max_memory_gb)"
        )
    known = pool.by_name()
    if node is not None:
        node = str(node)
        if node not in known:
            raise InputError(f"{ENV_NODE}: unknown node {node!r} (nodes: {', '.join(sorted(known))})")
    unknown = sorted(tags - pool.tags())
    if unknown:
        raise InputError(
            f"{ENV_TAGS}: no node has tag(s) {', '.join(unknown)} "
            f"(tags in the cluster: {', '.join(sorted(pool.tags())) or 'none'})"
        )
    return KernelRequest(memory_mib=memory_mib, node=node, tags=frozenset(tags), gpu=gpu, gpu_mib=gpu_mib)
