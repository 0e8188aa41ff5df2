"""What `runner up` last deployed, so that an unchanged deploy is skipped (docs/e2e.md, "Relaunching").

A no-op deploy still costs a second of Ansible (its tasks and one round trip per node) before anything
starts. `runner up` therefore keeps, per inventory and node, a fingerprint of everything a deploy's
outcome depends on, recorded after a deploy that succeeded there: the checkout as rsync's quick check
sees it (paths, sizes, modification times; the code, the roles, the playbooks, the example inventory and
group_vars, the controller's model files), the inventory's own files beside it, the extra variables, and
the models the node's new placement needs. The node keeps the same fingerprint (deploy writes it into
its stamp file; a deploy without one removes the stamp). When every node's fingerprint equals the
recorded one, `runner up` runs launch.yml alone, and the launch module checks each node's stamp before it
changes anything: a node whose code changed behind the controller's back is not launched but reported,
and `runner up` deploys after all.

Pure apart from the walk and the record file; the record is changed under a lock and replaced
atomically (two runs at once, e.g. two test sessions, lose neither's entry).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from runner.files.atomic import locked, write_all

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / ".cache" / "edgejar" / "deployed.json"
# Not part of what deploy ships or reads: tools' caches, results, the launch secrets, the record itself
# (at any depth); and at the top of the checkout the project's docs, tests, benchmarks and scripts (never
# in edgejar_deploy_code_paths; a test or a benchmark that writes there while another run relaunches
# does not force a deploy).
SKIP_DIRS = frozenset(
    {".git", ".venv", ".cache", ".edgejar", ".ansible", "results", "__pycache__", ".pytest_cache",
     ".ruff_cache", ".mypy_cache", ".hypothesis", "build", "node_modules"}
)  # fmt: skip
SKIP_TOP = frozenset({"docs", "tests", "benchmarks", "molecule", "scripts", ".config"})
SKIP_FILES = frozenset({"placement.yml"})  # the placement is the launch's; its models are counted apart


def _walk(top: Path, lines: list[str], skip_top: frozenset[str] = frozenset()) -> None:
    """Append one line per file under `top` (a file or a directory): path, size, mtime in ns; leave out
    SKIP_DIRS at any depth and `skip_top` directly under `top`."""
    if top.is_file():
        st = top.stat()
        lines.append(f"{top}\0{st.st_size}\0{st.st_mtime_ns}")
        return
    for here, dirs, files in os.walk(top):
        skip = SKIP_DIRS | (skip_top if here == str(top) else frozenset())
        dirs[:] = sorted(d for d in dirs if d not in skip and not d.endswith(".egg-info"))
        for name in sorted(files):
            if name in SKIP_FILES or name.endswith((".pyc", ".tmp")):
                continue
            path = os.path.join(here, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone meanwhile (or a dangling link): not shipped either
            lines.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}")


def inventory_files(inventory: Path) -> list[Path]:
    """The inventory and what Ansible reads beside it (group_vars, host_vars)."""
    base = inventory if inventory.is_dir() else inventory.parent
    return [inventory, *(base / d for d in ("group_vars", "host_vars") if (base / d).is_dir())]


def fingerprints(
    inventory: Path,
    models: Mapping[str, Iterable[str]],
    extra_vars: Mapping[str, Any],
    root: Path = ROOT,
) -> dict[str, str]:
    """node -> the fingerprint of a deploy to it: the checkout, the inventory's files, the extra variables
    and the models the node's placement needs (a model given as a path: that file's size and time)."""
    lines: list[str] = []
    _walk(root, lines, SKIP_TOP)
    for top in inventory_files(inventory.resolve()):
        if not top.resolve().is_relative_to(root):
            _walk(top, lines)
    common = hashlib.sha256("\n".join(lines).encode())
    common.update(json.dumps(extra_vars, sort_keys=True, default=str).encode())
    out: dict[str, str] = {}
    for node, names in sorted(models.items()):
        h = common.copy()
        for name in sorted(set(names)):
            h.update(f"\nmodel\0{name}".encode())
            path = Path(name)
            if path.is_file():
                st = path.stat()
                h.update(f"\0{st.st_size}\0{st.st_mtime_ns}".encode())
        out[node] = h.hexdigest()
    return out


def _key(inventory: Path) -> str:
    return str(inventory.resolve())


def load(record: Path = RECORD) -> dict[str, dict[str, str]]:
    """The record: inventory -> node -> fingerprint. A missing or damaged record is empty (deploy)."""
    try:
        doc = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): {str(n): str(f) for n, f in v.items()} for k, v in doc.items() if isinstance(v, dict)}


def unchanged(inventory: Path, want: Mapping[str, str], record: Path = RECORD) -> bool:
    """Whether the last recorded deploy to every node of `want` had the same fingerprint."""
    have = load(record).get(_key(inventory), {})
    return bool(want) and all(have.get(node) == fp for node, fp in want.items())


def _update(record: Path, change: Callable[[dict[str, dict[str, str]]], object]) -> None:
    """Read the record, `change` it, replace it (only when it differs): under a lock, one run at a time."""
    record.parent.mkdir(parents=True, exist_ok=True)
    with locked(record.parent, "the deploy record"):
        doc = load(record)
        change(doc)
        write_all({record: json.dumps(doc, indent=1, sort_keys=True) + "\n"})


def remember(
    inventory: Path, done: Mapping[str, str], forget: Iterable[str] = (), record: Path = RECORD
) -> None:
    """Record the fingerprints of the nodes deployed (`done`), drop those of `forget` (a node that failed:
    what it holds is not known)."""

    def change(doc: dict[str, dict[str, str]]) -> None:
        mine = doc.setdefault(_key(inventory), {})
        mine.update(done)
        for node in forget:
            mine.pop(node, None)

    _update(record, change)


def forget_inventory(inventory: Path, record: Path = RECORD) -> None:
    """Drop what was recorded for `inventory` (its hosts are new machines: `sim up`, `sim down`)."""
    if record.is_file():
        _update(record, lambda doc: doc.pop(_key(inventory), None))
