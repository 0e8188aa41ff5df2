"""Experiment files: `experiments/*.yml` (or .json), one experiment and its instances per file.

Loading validates every field and names the file, instance and field of the first problem found.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner import names
from runner.errors import InputError
from runner.files import yamlio
from runner.node import config as node_config
from runner.node.config import MODES, RUNTIME_DEFAULTS
from runner.serving import spec as serving_spec
from runner.training import spec as training_spec

# The modes and runtime settings are the node runtime's own (runner/node/config.py): one definition.
# memory_gb and gpu_memory_gb: a llama.cpp process does not start below about 64 MiB (the runtime alone
# takes about 50 MiB RSS, docs/models.md); above 1 TB is a typo, not a board.
MIN_GB = 0.0625
MAX_GB = 1024.0
_RUNTIME_TYPES: dict[str, type | tuple[type, ...]] = {
    k: (int, float) if isinstance(v, float) else int for k, v in RUNTIME_DEFAULTS.items()
}
KINDS = ("llm", training_spec.KIND, serving_spec.KIND)  # llm: the default; runner/training, runner/serving
LLM_MODES = tuple(m for m in MODES if m != serving_spec.MODE)  # serve replicas come from kind: serving
EXPERIMENT_KEYS = {
    "kind",
    "name",
    "mode",
    "model",
    "description",
    "enabled",
    "instances",
    "settings",
    "interventions",
}
INSTANCE_KEYS = {
    "id", "memory_gb", "gpu_memory_gb", "gpu", "node", "prefer", "affinity", "anti_affinity", "tags",
    "peers", "enabled", "model", "role", "identity", "system_prompt", "settings",
}  # fmt: skip


@dataclass(frozen=True)
class InstanceSpec:
    id: str
    experiment: str
    mode: str
    model: str
    source: Path
    memory_gb: float | None = None
    gpu_memory_gb: float | None = None
    gpu: bool = False
    node: str | None = None
    prefer: str | None = None
    affinity: tuple[str, ...] = ()
    anti_affinity: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    peers: tuple[str, ...] | None = None  # None: every other instance of the experiment
    runtime: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)  # role, identity, mode-specific settings


@dataclass(frozen=True)
class Experiment:
    name: str
    mode: str
    model: str
    source: Path
    description: str = ""
    instances: tuple[InstanceSpec, ...] = ()
    interventions: tuple[Mapping[str, Any], ...] = ()
    disabled: tuple[str, ...] = ()  # ids of instances switched off with `enabled: false`
    kind: str = "llm"
    training: training_spec.TrainingSpec | None = None  # kind torch_distributed (None when disabled)
    serving: serving_spec.ServingSpec | None = None  # kind serving: its replicas are the instances


class _Where:
    """Builds error messages that name the file, the instance and the field."""

    def __init__(self, path: Path, instance: str | None = None) -> None:
        self.path, self.instance = path, instance

    def error(self, field_name: str, problem: str) -> InputError:
        where = f"{self.path}: " + (f"instance {self.instance}: " if self.instance else "")
        return InputError(f"{where}{field_name}: {problem}")

    def unknown(self, keys: set[str], allowed: set[str]) -> None:
        for key in sorted(keys - allowed):
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(key, f"unknown field{hint}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise json.JSONDecodeError(f"key {key!r} is given twice", "", 0)
        out[key] = value
    return out


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        return (
            json.loads(text, object_pairs_hook=_unique_keys) if path.suffix == ".json" else yamlio.load(text)
        )
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None


def _str(where: _Where, name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise where.error(name, f"must be a non-empty string, got {value!r}")
    return value


def _ids(where: _Where, name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise where.error(name, f"must be a list of names, got {value!r}")
    return tuple(value)


def _gb(where: _Where, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not node_config.finite(value):
        raise where.error(name, f"must be a positive number of GB, got {value!r}")
    if not MIN_GB <= value <= MAX_GB:
        raise where.error(
            name, f"must be a positive number of GB from {MIN_GB:g} to {MAX_GB:g}, got {value!r}"
        )
    return float(value)


def _runtime(where: _Where, data: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key in RUNTIME_DEFAULTS.keys() & data.keys():
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, _RUNTIME_TYPES[key]):
            raise where.error(key, f"must be a number, got {value!r}")
        if not node_config.finite(value):
            raise where.error(key, f"must be a finite number, got {value!r}")
        if key != "n_gpu_layers" and value < 0:
            raise where.error(key, f"must not be negative, got {value!r}")
        out[key] = value
    return out


def _mapping(where: _Where, name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise where.error(name, f"must be a mapping, got {value!r}")
    return dict(value)


def _instance(
    path: Path, exp: Mapping[str, Any], runtime: Mapping[str, Any], raw: Any, n: int
) -> InstanceSpec:
    if not isinstance(raw, Mapping):
        raise _Where(path).error(f"instances[{n}]", f"must be a mapping, got {raw!r}")
    iid = raw.get("id")
    bad = names.problem(iid)
    if bad:
        raise _Where(path).error(f"instances[{n}].id", bad)
    assert isinstance(iid, str)
    where = _Where(path, iid)
    where.unknown(set(raw) - set(RUNTIME_DEFAULTS), INSTANCE_KEYS)
    gpu = raw.get("gpu", False)
    if not isinstance(gpu, bool):
        raise where.error("gpu", f"must be true or false, got {gpu!r}")
    gpu_memory = _gb(where, "gpu_memory_gb", raw.get("gpu_memory_gb"))
    if gpu_memory is not None and not gpu:
        raise where.error("gpu_memory_gb", "is set but gpu is false")
    settings = {
        **_mapping(_Where(path), "settings", exp.get("settings")),
        **_mapping(where, "settings", raw.get("settings")),
    }
    for key in ("role", "identity", "system_prompt"):
        if key in raw:
            settings[key] = _str(where, key, raw[key])
    inst_runtime = _runtime(where, raw, runtime)
    if gpu and "n_gpu_layers" not in raw and "n_gpu_layers" not in exp:
        inst_runtime["n_gpu_layers"] = -1  # a GPU instance offloads every layer unless told otherwise
    peers = raw.get("peers")
    return InstanceSpec(
        id=iid,
        experiment=str(exp["name"]),
        mode=str(exp["mode"]),
        model=_str(where, "model", raw.get("model", exp["model"])) or "",
        source=path,
        memory_gb=_gb(where, "memory_gb", raw.get("memory_gb")),
        gpu_memory_gb=gpu_memory,
        gpu=gpu,
        node=_str(where, "node", raw.get("node"), optional=True),
        prefer=_str(where, "prefer", raw.get("prefer"), optional=True),
        affinity=_ids(where, "affinity", raw.get("affinity")),
        anti_affinity=_ids(where, "anti_affinity", raw.get("anti_affinity")),
        tags=_ids(where, "tags", raw.get("tags")),
        peers=None if peers is None else _ids(where, "peers", peers),
        runtime=inst_runtime,
        settings=settings,
    )


def node_check(exp: Experiment) -> None:
    """Run each instance through the node runtime's own config check (runner/node/config.py), with the
    entry `place` would write, so that what validate and place accept the node accepts too."""
    for spec in exp.instances:
        entry = {
            "id": spec.id,
            "experiment": exp.name,
            "mode": exp.mode,
            "model": spec.model,
            "model_path": "/models/model.gguf",
            "data_dir": "/data",
            "address": "192.0.2.1",  # a documentation address: only its form is checked
            "port": 9000,
            "gpu": spec.gpu,
            "runtime": dict(spec.runtime),
            "settings": dict(spec.settings),
            "interventions": [dict(i) for i in exp.interventions],
        }
        node_config.parse(entry, Path(f"{exp.source}: instance {spec.id}"))


def load_file(path: Path) -> Experiment:
    data = _read(path)
    where = _Where(path)
    if not isinstance(data, Mapping):
        raise InputError(f"{path}: must be a mapping with name, mode, model and instances")
    kind = data.get("kind", "llm")
    if kind not in KINDS:
        raise where.error("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "llm":
        where.unknown(set(data) - set(RUNTIME_DEFAULTS), EXPERIMENT_KEYS)
    name = _str(where, "name", data.get("name"))
    bad_name = names.problem(name)
    if bad_name:  # the name reaches unit files, paths (results/<name>/) and commands
        raise where.error("name", bad_name)
    if kind == training_spec.KIND:
        return _training(path, data, name or "")
    if kind == serving_spec.KIND:
        return _serving(path, data, name or "")
    mode = data.get("mode")
    if mode == serving_spec.MODE:
        raise where.error(
            "mode", f"{mode!r} replicas are declared with kind: {serving_spec.KIND} (docs/serving.md)"
        )
    if mode not in LLM_MODES:
        raise where.error("mode", f"must be one of {', '.join(LLM_MODES)}, got {mode!r}")
    model = _str(where, "model", data.get("model"))
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise where.error("enabled", f"must be true or false, got {enabled!r}")
    raw_instances = data.get("instances")
    if not isinstance(raw_instances, list) or not raw_instances:
        raise where.error("instances", "must be a non-empty list")
    runtime = _runtime(where, data, RUNTIME_DEFAULTS)
    instances, disabled = [], []
    for n, raw in enumerate(raw_instances):
        spec = _instance(path, data, runtime, raw, n)
        on = raw.get("enabled", True)
        if not isinstance(on, bool):
            raise _Where(path, spec.id).error("enabled", f"must be true or false, got {on!r}")
        (instances if enabled and on else disabled).append(spec)
    interventions = data.get("interventions") or []
    if not isinstance(interventions, list) or not all(isinstance(i, Mapping) for i in interventions):
        raise where.error("interventions", "must be a list of mappings")
    experiment = Experiment(
        name=name or "",
        mode=str(mode),
        model=model or "",
        source=path,
        description=str(data.get("description") or ""),
        instances=tuple(instances),
        interventions=tuple(interventions),
        disabled=tuple(spec.id for spec in disabled),
    )
    node_check(experiment)
    return experiment


def _gb_field(path: Path, field_name: str, value: Any) -> float | None:
    return _gb(_Where(path), field_name, value)


def _training(path: Path, data: Mapping[str, Any], name: str) -> Experiment:
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _Where(path).error("enabled", f"must be true or false, got {enabled!r}")
    # The project `place` writes paths relative to (requirements imports this module, hence here).
    from runner.planning.requirements import project_root

    spec = training_spec.parse(path, data, project_root(), _gb_field)
    return Experiment(
        name=name,
        mode="",
        model="",
        source=path,
        description=spec.description,
        kind=training_spec.KIND,
        training=spec if enabled else None,
    )


def _serving(path: Path, data: Mapping[str, Any], name: str) -> Experiment:
    """A serving experiment: its replicas as instances of mode serve, one per node (they repel each other:
    a replica takes its node's cores or GPU), no peers (the replicas answer clients, not each other)."""
    enabled = data.get("enabled", True)
    where = _Where(path)
    if not isinstance(enabled, bool):
        raise where.error("enabled", f"must be true or false, got {enabled!r}")
    spec = serving_spec.parse(path, data, _gb_field)
    runtime = _runtime(where, {k: data[k] for k in serving_spec.RUNTIME_KEYS if k in data}, RUNTIME_DEFAULTS)
    if spec.gpu and "n_gpu_layers" not in data:
        runtime["n_gpu_layers"] = -1  # every layer on the GPU unless told otherwise (as instances)
    ids = [serving_spec.replica_id(name, k) for k in range(spec.max_replicas)]
    settings: dict[str, Any] = {
        "served_name": spec.served_name,
        "embeddings": spec.embeddings,
        "max_tokens_cap": spec.max_tokens_cap,
    }
    if spec.chat_format:
        settings["chat_format"] = spec.chat_format
    replicas = tuple(
        InstanceSpec(
            id=iid,
            experiment=name,
            mode=serving_spec.MODE,
            model=spec.model,
            source=path,
            memory_gb=spec.memory_gb,
            gpu_memory_gb=spec.gpu_memory_gb,
            gpu=spec.gpu,
            anti_affinity=tuple(o for o in ids if o != iid),
            tags=spec.tags,
            peers=(),
            runtime=runtime,
            settings=settings,
        )
        for iid in ids
    )
    experiment = Experiment(
        name=name,
        mode=serving_spec.MODE,
        model=spec.model,
        source=path,
        description=str(data.get("description") or ""),
        instances=replicas if enabled else (),
        disabled=() if enabled else tuple(ids),
        kind=serving_spec.KIND,
        serving=spec,
    )
    node_check(experiment)
    return experiment


def load_files(paths: Sequence[Path]) -> list[Experiment]:
    """Load and cross-check several files: ids unique across all, references point at known ids."""
    experiments = [load_file(p) for p in paths]
    seen: dict[str, Path] = {}
    names: dict[str, Path] = {}
    for exp in experiments:
        if exp.name in names:
            raise InputError(
                f"{exp.source}: name: experiment {exp.name!r} is also defined in {names[exp.name]}"
            )
        names[exp.name] = exp.source
        for inst in exp.instances:
            if inst.id in seen:
                raise InputError(
                    f"{inst.source}: instance {inst.id}: id: duplicate (also in {seen[inst.id]}); "
                    "ids must be unique across all experiment files"
                )
            seen[inst.id] = inst.source
    off = {iid for exp in experiments for iid in exp.disabled}
    for exp in experiments:
        for inst in exp.instances:
            for field_name in ("affinity", "anti_affinity", "peers"):
                for ref in getattr(inst, field_name) or ():
                    if ref not in seen and ref not in off:
                        raise _Where(inst.source, inst.id).error(field_name, f"unknown instance {ref!r}")
                    if ref == inst.id:
                        raise _Where(inst.source, inst.id).error(field_name, "an instance cannot name itself")
    return experiments
