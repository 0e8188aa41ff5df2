"""Where a run's results came from: the experiment file, the placement the nodes ran, the models
(file and SHA-256), versions and the nodes. From the results database, plus the inventory when given
(node hardware and the model catalog)."""

from __future__ import annotations

import hashlib
import json
import platform
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import __version__
from runner.ansible_bridge import ROOT
from runner.inventory import Cluster


@dataclass(frozen=True)
class Provenance:
    experiment: str
    mode: str
    experiment_file: str | None
    experiment_file_sha256: str | None
    placement: list[dict[str, Any]]  # instance, node, address, port, model, memory and GPU asked for
    models: list[dict[str, Any]]  # name, file, sha256 (the catalog's, or the file's on the controller)
    nodes: list[dict[str, Any]]  # name, kind, RAM, CPU cores, GPU (from the inventory)
    versions: dict[str, str] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _local(path: str | None) -> Path | None:
    if not path:
        return None
    p = Path(path)
    p = p if p.is_absolute() else ROOT / p
    return p if p.is_file() else None


def placement(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    out = []
    for r in conn.execute(
        "SELECT instance_id, GROUP_CONCAT(DISTINCT node), MIN(address), MIN(port), MIN(model), "
        "MAX(memory_mib), MAX(gpu), MAX(gpu_memory_mib), MIN(config) FROM instances "
        "GROUP BY instance_id ORDER BY instance_id"
    ):
        try:
            config = json.loads(r[8])
        except ValueError:
            config = {}
        out.append(
            {
                "instance": r[0],
                "node": r[1],
                "address": f"{r[2]}:{r[3]}",
                "model": r[4],
                "model_path": config.get("model_path"),
                "memory_mib": r[5],
                "gpu": bool(r[6]),
                "gpu_memory_mib": r[7],
            }
        )
    return out


def models(conn: sqlite3.Connection, cluster: Cluster | None) -> list[dict[str, Any]]:
    """The models the instances ran: the catalog's file and SHA-256, else the controller's file hashed."""
    names = sorted({str(r[0]) for r in conn.execute("SELECT DISTINCT model FROM instances") if r[0]})
    catalog = dict(cluster.models) if cluster else {}
    out = []
    for name in names:
        entry = dict(catalog.get(name) or {})
        sha = entry.get("sha256")
        local = _local(entry.get("path")) or _local(f"models/{entry.get('file') or name}")
        source = "catalog" if sha else None
        if not sha and local:
            sha, source = sha256_file(local), f"controller file {local}"
        out.append(
            {
                "name": name,
                "file": entry.get("file") or (local.name if local else None),
                "sha256": sha,
                "sha256_from": source or "not known (no catalog entry, no file on the controller)",
            }
        )
    return out


def nodes(conn: sqlite3.Connection, cluster: Cluster | None) -> list[dict[str, Any]]:
    used = {str(r[0]) for r in conn.execute("SELECT DISTINCT node FROM instances") if r[0]}
    known = cluster.by_name() if cluster else {}
    out = []
    for name in sorted(used):
        cn = known.get(name)
        if cn is None:
            out.append({"name": name, "kind": None, "ram_mib": None, "cpu_cores": None, "gpu": None})
            continue
        n = cn.node
        out.append(
            {
                "name": name,
                "kind": cn.kind,
                "ram_mib": n.ram_mib,
                "cpu_cores": n.cpu_cores,
                "gpu": n.gpu,
            }
        )
    return out


def collect(conn: sqlite3.Connection, experiment: str, cluster: Cluster | None) -> Provenance:
    row = conn.execute(
        "SELECT mode, experiment_file FROM experiments WHERE name = ? LIMIT 1", (experiment,)
    ).fetchone()
    mode, efile = (row[0], row[1]) if row else ("unknown", None)
    local = _local(efile) or (_local(f"experiments/{Path(efile).name}") if efile else None)
    schema = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return Provenance(
        experiment=experiment,
        mode=mode,
        experiment_file=efile,
        experiment_file_sha256=sha256_file(local) if local else None,
        placement=placement(conn),
        models=models(conn, cluster),
        nodes=nodes(conn, cluster),
        versions={
            "edgejar (controller)": __version__,
            "records schema": schema[0] if schema else "?",
            "python (controller)": platform.python_version(),
        },
    )
