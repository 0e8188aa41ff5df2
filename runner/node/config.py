"""The instance config: a placement entry plus `model_path` and `data_dir` (docs/runtime.md).

`load(path)` validates every field the runtime uses and raises InputError (exit 2) naming the file and
the field of the first problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import names
from runner.errors import InputError

# serve: a replica of a `kind: serving` experiment (runner/node/serve.py); the others run runner/node/modes
MODES = (
    "isolated", "amnesiac_loop", "split_brain", "hive_cluster", "panopticon", "prisoners_dilemma", "serve",
)  # fmt: skip
RUNTIME_DEFAULTS: dict[str, Any] = {
    "n_ctx": 2048,
    "n_gpu_layers": 0,
    "n_threads": 0,
    "n_batch": 512,
    "max_tokens": 128,
    "temperature": 0.8,
    "top_p": 0.95,
    "seed": 0,
    "cycles": 0,
    "cycle_delay_s": 1.0,
}
_FLOATS = {"temperature", "top_p", "cycle_delay_s"}


@dataclass(frozen=True)
class Peer:
    id: str
    node: str
    address: str
    port: int


@dataclass(frozen=True)
class Runtime:
    n_ctx: int = 2048
    n_gpu_layers: int = 0
    n_threads: int = 0  # 0: llama.cpp chooses
    n_batch: int = 512
    max_tokens: int = 128
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    cycles: int = 0  # 0: run until stopped
    cycle_delay_s: float = 1.0


@dataclass(frozen=True)
class InstanceConfig:
    id: str
    experiment: str
    mode: str
    model: str
    model_path: Path
    data_dir: Path
    node: str
    address: str
    port: int
    memory_mib: int | None
    gpu: bool
    gpu_memory_mib: int | None
    experiment_file: str
    peers: tuple[Peer, ...]
    runtime: Runtime
    settings: Mapping[str, Any] = field(default_factory=dict)
    interventions: tuple[Mapping[str, Any], ...] = ()
    members: tuple[str, ...] = ()  # the experiment's instances: who may send to this one
    peer_secret_file: Path | None = None  # the experiment's secret (runner/node/auth.py)
    source: Path = Path("-")
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "records.sqlite3"

    def setting(self, key: str, default: Any) -> Any:
        value = self.settings.get(key)
        return default if value is None else value


def finite(value: float) -> bool:
    """NaN and infinities are not numbers a setting can take (a whole number always is finite)."""
    return isinstance(value, int) or math.isfinite(value)


class _Check:
    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, name: str, problem: str) -> InputError:
        return InputError(f"{self.path}: {name}: {problem}")

    def text(self, data: Mapping[str, Any], key: str, prefix: str = "") -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.error(prefix + key, f"must be a non-empty string, got {value!r}")
        return value

    def port(self, data: Mapping[str, Any], key: str, prefix: str = "") -> int:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise self.error(prefix + key, f"must be a TCP port (1-65535), got {value!r}")
        return value

    def mib(self, data: Mapping[str, Any], key: str, *, zero: bool = False) -> int | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
            kind = "non-negative" if zero else "positive"
            raise self.error(key, f"must be a {kind} whole number of MiB, got {value!r}")
        return value

    def mapping(self, data: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a mapping, got {value!r}")
        return dict(value)


def _runtime(check: _Check, data: Mapping[str, Any]) -> Runtime:
    raw = check.mapping(data, "runtime")
    out = dict(RUNTIME_DEFAULTS)
    for key, value in raw.items():
        if key not in RUNTIME_DEFAULTS:
            continue  # the placement may carry more runtime keys than the node uses
        types: tuple[type, ...] = (int, float) if key in _FLOATS else (int,)
        if isinstance(value, bool) or not isinstance(value, types):
            raise check.error(f"runtime.{key}", f"must be a number, got {value!r}")
        if not finite(value):
            raise check.error(f"runtime.{key}", f"must be a finite number, got {value!r}")
        if key != "n_gpu_layers" and value < 0:
            raise check.error(f"runtime.{key}", f"must not be negative, got {value!r}")
        out[key] = value
    if out["n_ctx"] < 16:
        raise check.error("runtime.n_ctx", f"must be at least 16, got {out['n_ctx']}")
    if out["max_tokens"] < 1 or out["max_tokens"] >= out["n_ctx"]:
        raise check.error("runtime.max_tokens", f"must be between 1 and n_ctx - 1, got {out['max_tokens']}")
    return Runtime(**out)


def _peers(check: _Check, data: Mapping[str, Any], own_id: str) -> tuple[Peer, ...]:
    raw = data.get("peers") or []
    if not isinstance(raw, list):
        raise check.error("peers", f"must be a list, got {raw!r}")
    peers: list[Peer] = []
    for n, item in enumerate(raw):
        prefix = f"peers[{n}]."
        if not isinstance(item, Mapping):
            raise check.error(f"peers[{n}]", f"must be a mapping, got {item!r}")
        pid = check.text(item, "id", prefix)
        if pid == own_id or any(p.id == pid for p in peers):
            raise check.error(f"peers[{n}].id", f"{pid!r} is the instance itself or listed twice")
        node = item.get("node") or ""
        peers.append(
            Peer(pid, str(node), check.text(item, "address", prefix), check.port(item, "port", prefix))
        )
    return tuple(peers)


# Settings the runtime reads, with their types (texts are free strings; unknown keys are left alone).
_NUMBER_SETTINGS = {
    "memory_window": int,
    "memory_item_chars": int,
    "consensus_every": int,
    "surveillance_hint_every": int,
    "peer_wait_s": float,
    "move_wait_s": float,
    "reconnect_max_s": float,
    "corruption_rate": float,
}
_CHOICE_SETTINGS = {
    "on_death": ("keep", "wipe", "corrupt", "erase_betrayals"),
    "fallback": ("random", "cooperate", "defect", "tit_for_tat"),
    "panopticon_role": ("subject", "observer"),
}
_PAYOFF_KEYS = ("both_cooperate", "both_defect", "temptation", "sucker")


def _settings(check: _Check, data: Mapping[str, Any]) -> dict[str, Any]:
    settings = check.mapping(data, "settings")
    for key, kind in _NUMBER_SETTINGS.items():
        value = settings.get(key)
        if value is None:
            continue
        ok = isinstance(value, int) if kind is int else isinstance(value, int | float)
        if isinstance(value, bool) or not ok or not finite(value) or value < 0:
            raise check.error(f"settings.{key}", f"must be a non-negative {kind.__name__}, got {value!r}")
    for key, choices in _CHOICE_SETTINGS.items():
        if key in settings and settings[key] not in choices:
            raise check.error(
                f"settings.{key}", f"must be one of {', '.join(choices)}, got {settings[key]!r}"
            )
    if "corruption_rate" in settings and settings["corruption_rate"] > 1:
        raise check.error(
            "settings.corruption_rate", f"must be between 0 and 1, got {settings['corruption_rate']}"
        )
    payoffs = settings.get("payoffs")
    if payoffs is not None:
        if not isinstance(payoffs, Mapping) or set(payoffs) - set(_PAYOFF_KEYS):
            raise check.error(
                "settings.payoffs", f"must be a mapping with keys from {', '.join(_PAYOFF_KEYS)}"
            )
        for key, value in payoffs.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise check.error(f"settings.payoffs.{key}", f"must be a whole number, got {value!r}")
    return settings


def _interventions(check: _Check, data: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    from runner.node.interventions import validate

    raw = data.get("interventions") or []
    if not isinstance(raw, list):
        raise check.error("interventions", f"must be a list, got {raw!r}")
    out = []
    for n, item in enumerate(raw):
        problem = validate(item)
        if problem:
            raise check.error(f"interventions[{n}]", problem)
        out.append(dict(item))
    return tuple(out)


def parse(data: Any, path: Path) -> InstanceConfig:
    check = _Check(path)
    if not isinstance(data, Mapping):
        raise InputError(f"{path}: must be a JSON object (a placement entry plus model_path and data_dir)")
    iid = check.text(data, "id")
    bad = names.problem(iid)
    if bad:
        raise check.error("id", bad)
    bad = names.problem(data.get("experiment"))
    if bad:
        raise check.error("experiment", bad)
    mode = data.get("mode")
    if mode not in MODES:
        raise check.error("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    model_path = Path(check.text(data, "model_path"))
    if not model_path.is_absolute():
        raise check.error("model_path", f"must be an absolute path, got {str(model_path)!r}")
    data_dir = Path(check.text(data, "data_dir"))
    if not data_dir.is_absolute():
        raise check.error("data_dir", f"must be an absolute path, got {str(data_dir)!r}")
    address = check.text(data, "address")
    if address in ("0.0.0.0", "::", ""):
        raise check.error("address", "must be the node's cluster address, not a wildcard")
    gpu = data.get("gpu", False)
    if not isinstance(gpu, bool):
        raise check.error("gpu", f"must be true or false, got {gpu!r}")
    members = data.get("members") or []
    if not isinstance(members, list) or any(names.problem(m) for m in members):
        raise check.error("members", f"must be a list of instance ids, got {members!r}")
    secret = data.get("peer_secret_file")
    if secret is not None and not (isinstance(secret, str) and Path(secret).is_absolute()):
        raise check.error("peer_secret_file", f"must be an absolute path, got {secret!r}")
    return InstanceConfig(
        id=iid,
        experiment=check.text(data, "experiment"),
        mode=str(mode),
        model=str(data.get("model") or model_path.name),
        model_path=model_path,
        data_dir=data_dir,
        node=str(data.get("node") or ""),
        address=address,
        port=check.port(data, "port"),
        memory_mib=check.mib(data, "memory_mib"),
        gpu=gpu,
        gpu_memory_mib=check.mib(data, "gpu_memory_mib", zero=True),
        experiment_file=str(data.get("experiment_file") or ""),
        peers=_peers(check, data, iid),
        runtime=_runtime(check, data),
        settings=_settings(check, data),
        interventions=_interventions(check, data),
        members=tuple(str(m) for m in members),
        peer_secret_file=Path(secret) if secret else None,
        source=path,
        raw=dict(data),
    )


def load(path: Path) -> InstanceConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the instance config ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    return parse(data, Path(path))
