"""edgejar_deploy's node check without Ansible's module machinery: parameters in, one result out. The
action plugin edgejar_deploy_state runs it on the node through the open connection (a small standard
library program, no module payload); the module of the same name wraps it for ansible-doc and for
callers that run the module itself."""

from __future__ import annotations

import glob
import os
import subprocess
from collections.abc import Callable
from typing import Any

from ansible.module_utils.edgejar_code_tree import differences, read, remove, replace_text, stale, tree
from ansible.module_utils.edgejar_model_files import SumError, listed, prune, sums

# Run in the venv's Python only when its site-packages is not the one lib/python3*/site-packages.
PROBE = 'import sysconfig; print(sysconfig.get_path("purelib"))'
SHOWN = 20


class CheckFailed(Exception):
    """The node cannot be checked (the message says why and what to do)."""


def site_packages(venv: str) -> str:
    python = os.path.join(venv, "bin", "python")
    if not os.access(python, os.X_OK):
        raise CheckFailed(f"{python} does not exist; run playbooks/provision.yml on this node first")
    found = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages"))
    if len(found) == 1:
        return found[0]
    proc = subprocess.run([python, "-B", "-c", PROBE], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip().startswith("/"):
        raise CheckFailed(
            f"cannot run {python} ({(proc.stderr or proc.stdout).strip()[-500:]}); "
            "run playbooks/provision.yml on this node first"
        )
    return proc.stdout.strip()


def code(p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """Check the synced code, remove what no longer ships, write the .pth file."""
    site = site_packages(p["venv"])
    shadow = [x for x in (f"{site}/runner", f"{site}/runner.py") if os.path.lexists(x)]
    if shadow:  # before anything is walked or written
        raise CheckFailed(f"{shadow[0]} would be imported instead of {p['dest']}/runner; remove it")
    pth_path = os.path.join(site, p["pth_name"])
    pth = read(pth_path)
    write = pth != p["dest"] + "\n"
    extra = stale(p["dest"], p["paths"], p["excludes"])
    diff = differences(p["want"], tree(p["dest"], p["paths"], p["excludes"]))
    if not check_mode:
        for path in extra:
            remove(path)
        if write:
            replace_text(pth_path, p["dest"] + "\n")
    return {
        "changed": bool(extra) or write,
        "differs": diff[:SHOWN],
        "n_differs": len(diff),
        "stale": extra,
        "site": site,
        "pth": pth,
        "pth_written": write,
    }


def models(p: dict[str, Any], check_mode: bool, warn: Callable[[str], None]) -> dict[str, Any]:
    """The model files' sums, and the pruning."""
    try:
        files = sums(p["model_paths"], p["remember"], not check_mode, warn)
    except SumError as exc:
        raise CheckFailed(str(exc)) from exc
    out: dict[str, Any] = {"changed": False, "files": files, "removed": []}
    if p["list_dir"]:
        present = listed(p["list_dir"], p["pattern"])
        out["present"] = present
        if p["prune"]:
            gone = prune(present, p["model_paths"], apply=not check_mode)
            out.update(changed=bool(gone), removed=gone)
    return out


def stamp(path: str, fingerprint: str, check_mode: bool) -> bool:
    """The deploy stamp (`runner up`'s fingerprint of this deploy, docs/e2e.md): written when given,
    removed when not (a deploy run any other way), so that launch can tell a node that holds what
    `runner up` last deployed. Bookkeeping, like the models' sidecars: not reported as a change.
    Returns whether it differed."""
    want = fingerprint + "\n" if fingerprint else None
    if read(path) == want:
        return False
    if not check_mode:
        if want is None:
            os.unlink(path)
        else:
            replace_text(path, want)
    return True


def check(p: dict[str, Any], check_mode: bool, warn: Callable[[str], None]) -> dict[str, Any]:
    """The whole check for validated parameters `p`; raises CheckFailed."""
    result: dict[str, Any] = {"differs": [], "n_differs": 0, "stale": []}
    if p.get("stamp"):
        result["stamp_differed"] = stamp(p["stamp"], p.get("fingerprint") or "", check_mode)
    if p["dest"]:
        result.update(code(p, check_mode))
    code_changed = bool(result.get("changed"))
    held = models(p, check_mode, warn)
    result.update(held)
    result["changed"] = code_changed or held["changed"]
    return result
