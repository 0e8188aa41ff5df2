"""From an experiment instance to what placement needs: memory (given or estimated from the GGUF file)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.experiment import InstanceSpec
from runner.inventory import Cluster
from runner.placement.model import Instance, gb_to_mib

# An estimate is a floor; the memory ceiling gets this much headroom on top, in 64 MiB steps.
ESTIMATE_HEADROOM = 1.10


def project_root(start: Path | None = None) -> Path:
    """The nearest directory upwards holding ansible.cfg (the repository), else the working directory."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "ansible.cfg").is_file():
            return d
    return here


def model_cache() -> Path:
    return Path(os.environ.get("EDGEJAR_MODEL_CACHE", Path.home() / ".cache" / "edgejar" / "models"))


def is_known_model(name: str, catalog: Mapping[str, Any]) -> bool:
    return name in catalog or name.endswith(".gguf")


def check_references(spec: InstanceSpec, cluster: Cluster) -> None:
    """The names an instance gives that the inventory must know: its model (a catalog name or a .gguf
    path) and its node and preferred node. validate and place both call this: they agree."""
    if not is_known_model(spec.model, cluster.models):
        raise InputError(
            f"{spec.source}: instance {spec.id}: model: unknown model {spec.model!r} "
            f"(catalog: {', '.join(sorted(cluster.models)) or 'empty'}; or give a .gguf path)"
        )
    nodes = {cn.node.name for cn in cluster.nodes}
    for field_name in ("node", "prefer"):
        value = getattr(spec, field_name)
        if value is not None and value not in nodes:
            raise InputError(f"{spec.source}: instance {spec.id}: {field_name}: unknown node {value!r}")


def model_file(spec: InstanceSpec, catalog: Mapping[str, Any], root: Path) -> Path | None:
    """Where the model's GGUF file is on the controller, or None when it is not there (yet)."""
    entry = catalog.get(spec.model)
    candidates: list[Path] = []
    if isinstance(entry, Mapping):
        if entry.get("path"):
            candidates.append(root / str(entry["path"]))
        if entry.get("file"):
            candidates.append(model_cache() / str(entry["file"]))
    elif spec.model.endswith(".gguf"):
        p = Path(spec.model).expanduser()
        candidates += [p] if p.is_absolute() else [spec.source.parent / p, root / p]
    return next((c for c in candidates if c.is_file()), None)


def _round_up(mib: float) -> int:
    return math.ceil(mib * ESTIMATE_HEADROOM / 64.0) * 64 if mib > 0 else 0


def instance(spec: InstanceSpec, catalog: Mapping[str, Any], root: Path) -> Instance:
    """The placement view of one instance. Estimates memory from the model file when not given."""
    ram = gb_to_mib(spec.memory_gb) if spec.memory_gb is not None else None
    gpu = gb_to_mib(spec.gpu_memory_gb) if spec.gpu_memory_gb is not None else None
    if ram is None or (spec.gpu and gpu is None):
        path = model_file(spec, catalog, root)
        if path is None:
            what = "is not in the model catalog (group_vars edgejar_models)"
            if is_known_model(spec.model, catalog):
                what = "has no file on this controller yet (run deploy, or `python -m runner model tiny`)"
            missing = "memory_gb" if ram is None else "gpu_memory_gb"
            raise InputError(
                f"{spec.source}: instance {spec.id}: {missing}: not set, and model {spec.model!r} {what}, "
                "so its memory cannot be estimated; set it or provide the model"
            )
        from runner.modelfile.estimate import estimate_memory

        est = estimate_memory(
            path,
            n_ctx=int(spec.runtime["n_ctx"]),
            n_gpu_layers=int(spec.runtime["n_gpu_layers"]) if spec.gpu else 0,
            n_batch=int(spec.runtime["n_batch"]),
        )
        if ram is None:
            ram = _round_up(est.ram_mib)
        if spec.gpu and gpu is None:
            gpu = _round_up(est.gpu_mib)
    return Instance(
        id=spec.id,
        ram_mib=ram,
        gpu=spec.gpu,
        gpu_mib=gpu or 0,
        experiment=spec.experiment,
        pin=spec.node,
        prefer=spec.prefer,
        affinity=spec.affinity,
        anti_affinity=spec.anti_affinity,
        tags=frozenset(spec.tags),
    )
