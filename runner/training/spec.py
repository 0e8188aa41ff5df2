"""A `kind: torch_distributed` experiment file: its fields, checked, naming the file and field."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.counts import count_or_range
from runner.errors import InputError

KIND = "torch_distributed"
KEYS = {
    "name", "kind", "description", "enabled", "entry", "module", "args", "ranks", "ranks_per_node",
    "memory_gb", "gpu", "gpu_memory_gb", "tags", "nodes", "exclude", "data", "weighting", "max_restarts",
    "join_timeout_s", "collective_timeout_s",
}  # fmt: skip
WEIGHTING = ("none", "speed")
MAX_RANKS = 4096
MAX_RESTARTS = 100
TIMEOUT_S = (10, 86400)  # bounds of join_timeout_s and collective_timeout_s
DEFAULT_TIMEOUT_S = 300
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class TrainingSpec:
    name: str
    source: Path
    entry: str | None  # a script, relative to the project root (it ships with experiments/)
    module: str | None  # or a module the node venv has (`python -m`)
    args: tuple[str, ...]
    min_ranks: int
    max_ranks: int
    ranks_per_node: int
    memory_gb: float
    gpu: bool
    gpu_memory_gb: float | None
    tags: tuple[str, ...]
    nodes: tuple[str, ...]  # only these may take part (empty: any)
    exclude: tuple[str, ...]
    data: str
    weighting: str
    max_restarts: int
    join_timeout_s: int = DEFAULT_TIMEOUT_S  # torchrun waits this long for every node at a rendezvous
    collective_timeout_s: int = DEFAULT_TIMEOUT_S  # a rank gives up on a peer after this long in a collective
    description: str = ""

    def unit_counts(self) -> range:
        """How many nodes the job may span, most first is tried first: every node runs ranks_per_node."""
        low = -(-self.min_ranks // self.ranks_per_node)
        return range(self.max_ranks // self.ranks_per_node, low - 1, -1)


def _err(path: Path, field: str, problem: str) -> InputError:
    return InputError(f"{path}: {field}: {problem}")


def _int(path: Path, field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _err(path, field, f"must be a whole number from {low} to {high}, got {value!r}")
    return value


def _names(path: Path, field: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(path, field, f"must be a list of names, got {value!r}")
    return tuple(value)


def _ranks(path: Path, value: Any) -> tuple[int, int]:
    try:
        return count_or_range(value, MAX_RANKS)
    except ValueError as exc:
        raise _err(path, "ranks", str(exc)) from None


def _entry(path: Path, root: Path, value: Any) -> str:
    """The script's path relative to the project root; it must exist and ship (be under experiments/)."""
    if not isinstance(value, str) or not value.strip():
        raise _err(path, "entry", f"must be a path to a Python script, got {value!r}")
    script = (path.parent / value).resolve()
    if not script.is_file():
        raise _err(path, "entry", f"{value}: no such file (relative to {path.parent})")
    try:
        rel = script.relative_to((root / "experiments").resolve())
    except ValueError:
        where = root / "experiments"
        raise _err(path, "entry", f"{value}: must be under {where} (what deploy ships)") from None
    return str(Path("experiments") / rel)


GBCheck = Callable[[Path, str, Any], "float | None"]


def parse(path: Path, data: Mapping[str, Any], root: Path, gb: GBCheck) -> TrainingSpec:
    """The training experiment in `data` (read from `path`). `gb` checks a GB field (experiment.py's)."""
    for key in sorted(set(data) - KEYS):
        raise _err(path, key, f"unknown field for kind {KIND}")
    name = str(data["name"])
    has_entry, has_module = data.get("entry") is not None, data.get("module") is not None
    if has_entry == has_module:
        raise _err(path, "entry", "give entry (a script under experiments/) or module: one of them")
    module = data.get("module")
    if has_module and (not isinstance(module, str) or not _MODULE.fullmatch(module)):
        raise _err(path, "module", f"must be a dotted Python module name, got {module!r}")
    args = data.get("args", [])
    plain = (str, int, float)
    if not isinstance(args, list) or not all(isinstance(a, plain) and not isinstance(a, bool) for a in args):
        raise _err(path, "args", f"must be a list of strings or numbers, got {args!r}")
    if "ranks" not in data:
        raise _err(path, "ranks", "missing: how many ranks (processes) the job runs, or MIN:MAX")
    low, high = _ranks(path, data["ranks"])
    per_node = _int(path, "ranks_per_node", data.get("ranks_per_node", 1), 1, 256)
    if -(-low // per_node) > high // per_node:
        raise _err(
            path,
            "ranks",
            f"{data['ranks']!r}: no whole number of nodes runs {per_node} rank(s) each (ranks_per_node)",
        )
    if data.get("memory_gb") is None:
        raise _err(path, "memory_gb", "missing: the memory of one rank (its share of the unit's MemoryMax)")
    gpu = data.get("gpu", False)
    if not isinstance(gpu, bool):
        raise _err(path, "gpu", f"must be true or false, got {gpu!r}")
    gpu_gb = gb(path, "gpu_memory_gb", data.get("gpu_memory_gb"))
    if gpu and gpu_gb is None:
        raise _err(path, "gpu_memory_gb", "missing: the GPU memory of one rank (gpu is true)")
    if gpu_gb is not None and not gpu:
        raise _err(path, "gpu_memory_gb", "is set but gpu is false")
    nodes, exclude = _names(path, "nodes", data.get("nodes")), _names(path, "exclude", data.get("exclude"))
    both = sorted(set(nodes) & set(exclude))
    if both:
        raise _err(path, "exclude", f"{', '.join(both)} also listed in nodes")
    data_src = data.get("data", "synthetic")
    if not isinstance(data_src, str) or not (data_src == "synthetic" or data_src.startswith("/")):
        raise _err(path, "data", f"must be 'synthetic' or an absolute path on the nodes, got {data_src!r}")
    weighting = data.get("weighting", "none")
    if weighting not in WEIGHTING:
        raise _err(path, "weighting", f"must be one of {', '.join(WEIGHTING)}, got {weighting!r}")
    return TrainingSpec(
        name=name,
        source=path,
        entry=_entry(path, root, data["entry"]) if has_entry else None,
        module=module if has_module else None,
        args=tuple(str(a) for a in args),
        min_ranks=low,
        max_ranks=high,
        ranks_per_node=per_node,
        memory_gb=float(gb(path, "memory_gb", data["memory_gb"])),
        gpu=gpu,
        gpu_memory_gb=gpu_gb,
        tags=_names(path, "tags", data.get("tags")),
        nodes=nodes,
        exclude=exclude,
        data=data_src,
        weighting=str(weighting),
        max_restarts=_int(path, "max_restarts", data.get("max_restarts", 3), 0, MAX_RESTARTS),
        join_timeout_s=_int(
            path, "join_timeout_s", data.get("join_timeout_s", DEFAULT_TIMEOUT_S), *TIMEOUT_S
        ),
        collective_timeout_s=_int(
            path, "collective_timeout_s", data.get("collective_timeout_s", DEFAULT_TIMEOUT_S), *TIMEOUT_S
        ),
        description=str(data.get("description") or ""),
    )
