#!/usr/bin/python
"""The node's side of edgejar_deploy in one round trip: the synced code compared (what no longer ships
removed, the venv's import path fixed) and the model files' checksums read (what no placement needs
pruned)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: edgejar_deploy_state
short_description: Compare a node's runtime and models with what the controller would send
description:
  - "Code (when C(dest) is given): finds the venv's site-packages (C(lib/python3*/site-packages); the
    venv's Python is run only when that is not one directory) and writes the C(.pth) file there that
    puts C(dest) on the import path when its content differs. Fails when site-packages itself holds a
    C(runner) package or module (it would be imported instead). Walks C(dest)/<path> for each of
    C(paths) the way rsync's quick check compares (a file's size and modification time in whole seconds,
    a symlink's target, that a directory exists; names matching C(excludes) left out) and lists every
    path where it differs from C(want) (the controller's tree, from the lookup C(edgejar_tree)). An empty
    list means rsync would send nothing. Removes what the synced paths' parent directories hold besides
    them (C(stale)), for example the modules an earlier deploy sent that no longer ship."
  - "Models: for each of C(model_paths), whether the file exists and its sha256. A multi-GB model is
    read only when it is new or changed: after reading a file, its sha256 is kept in a sidecar beside it
    (C(.<name>.sha256), JSON with the file's size, modification time and inode), trusted while all three
    still match. With C(list_dir), the model files there are listed; with C(prune), those not in
    C(model_paths) are removed with their sidecars."
  - Sending the code and the models is the role's job (rsync, get_url). C(changed) means the C(.pth) file
    was written, stale code was removed or models were pruned (a sidecar is bookkeeping, not a change).
    Supports check mode (reports what it would change, changes and writes nothing).
options:
  venv: {description: The node runtime's venv (with C(dest))., type: path}
  pth_name: {description: The .pth file in the venv's site-packages (with C(dest))., type: str}
  dest: {description: Where the code is synced to on the node (without it no code is checked)., type: path}
  paths: {description: The synced paths under dest., type: list, elements: str, default: []}
  excludes: {description: Name patterns left out (as the lookup's)., type: list, elements: str, default: []}
  want: {description: The controller's tree (edgejar_tree)., type: dict, default: {}}
  model_paths: {description: Absolute paths of the models., type: list, elements: path, default: []}
  remember:
    description: Use and write the sidecars; with C(false) every model is read in full on every run.
    type: bool
    default: true
  list_dir:
    description: Also list the files in this directory that match C(pattern) (a missing one lists nothing).
    type: path
  pattern: {description: Shell pattern of the files C(list_dir) lists., type: str, default: "*.gguf"}
  prune:
    description: Remove the files C(list_dir) lists that are not in C(model_paths), with their sidecars.
    type: bool
    default: false
author: edgejar
"""

RETURN = r"""
site: {description: The venv's site-packages., type: str, returned: with dest}
pth: {description: The .pth file's content before this run (null - missing)., type: str, returned: with dest}
pth_written: {description: The .pth file was written (or would be, --check)., type: bool, returned: with dest}
differs:
  description: Up to 20 code paths that differ, each with why (missing, extra, or what the node has).
  type: list
  returned: always
n_differs: {description: How many code paths differ in all., type: int, returned: always}
stale:
  description:
    - What the parent directories of C(paths) held besides them on the node (absolute paths), removed
      (or that would be, in check mode); names matching C(excludes) are left alone.
  type: list
  returned: always
files:
  description: model path -> {exists, sha256 (when it exists), source (sidecar or read)}.
  type: dict
  returned: always
present:
  description: The matching files in C(list_dir) before any pruning, sorted.
  type: list
  returned: when list_dir is given
removed:
  description: The model files C(prune) removed (or would remove, in check mode), sorted.
  type: list
  returned: always
"""

import glob
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgejar_code_tree import differences, read, remove, stale, tree, write_pth
from ansible.module_utils.edgejar_model_files import SumError, listed, prune, sums

# Run in the venv's Python only when its site-packages is not the one lib/python3*/site-packages.
PROBE = 'import sysconfig; print(sysconfig.get_path("purelib"))'
SHOWN = 20


def site_packages(module: AnsibleModule, venv: str) -> str:
    python = os.path.join(venv, "bin", "python")
    if not os.access(python, os.X_OK):
        module.fail_json(msg=f"{python} does not exist; run playbooks/provision.yml on this node first")
    found = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages"))
    if len(found) == 1:
        return found[0]
    rc, out, err = module.run_command([python, "-B", "-c", PROBE])
    if rc != 0 or not out.strip().startswith("/"):
        module.fail_json(
            msg=f"cannot run {python} ({(err or out).strip()[-500:]}); "
            "run playbooks/provision.yml on this node first"
        )
    return out.strip()


def code(module: AnsibleModule) -> dict[str, Any]:
    """Check the synced code, remove what no longer ships, write the .pth file."""
    p = module.params
    site = site_packages(module, p["venv"])
    shadow = [x for x in (f"{site}/runner", f"{site}/runner.py") if os.path.lexists(x)]
    if shadow:  # before anything is walked or written
        module.fail_json(msg=f"{shadow[0]} would be imported instead of {p['dest']}/runner; remove it")
    pth_path = os.path.join(site, p["pth_name"])
    pth = read(pth_path)
    write = pth != p["dest"] + "\n"
    extra = stale(p["dest"], p["paths"], p["excludes"])
    diff = differences(p["want"], tree(p["dest"], p["paths"], p["excludes"]))
    if not module.check_mode:
        for path in extra:
            remove(path)
        if write:
            write_pth(pth_path, p["dest"] + "\n")
    return {
        "changed": bool(extra) or write,
        "differs": diff[:SHOWN],
        "n_differs": len(diff),
        "stale": extra,
        "site": site,
        "pth": pth,
        "pth_written": write,
    }


def models(module: AnsibleModule) -> dict[str, Any]:
    """The model files' sums, and the pruning."""
    p = module.params
    try:
        files = sums(p["model_paths"], p["remember"], not module.check_mode, module.warn)
    except SumError as exc:
        module.fail_json(msg=str(exc))
    out: dict[str, Any] = {"changed": False, "files": files, "removed": []}
    if p["list_dir"]:
        present = listed(p["list_dir"], p["pattern"])
        out["present"] = present
        if p["prune"]:
            gone = prune(present, p["model_paths"], apply=not module.check_mode)
            out.update(changed=bool(gone), removed=gone)
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "venv": {"type": "path"},
            "pth_name": {"type": "str"},
            "dest": {"type": "path"},
            "paths": {"type": "list", "elements": "str", "default": []},
            "excludes": {"type": "list", "elements": "str", "default": []},
            "want": {"type": "dict", "default": {}},
            "model_paths": {"type": "list", "elements": "path", "default": []},
            "remember": {"type": "bool", "default": True},
            "list_dir": {"type": "path"},
            "pattern": {"type": "str", "default": "*.gguf"},
            "prune": {"type": "bool", "default": False},
        },
        required_if=[("prune", True, ("list_dir",))],
        required_together=[("dest", "venv", "pth_name")],
        supports_check_mode=True,
    )
    result: dict[str, Any] = {"differs": [], "n_differs": 0, "stale": []}
    if module.params["dest"]:
        result.update(code(module))
    held = models(module)
    code_changed = bool(result.get("changed"))
    result.update(held)
    result["changed"] = code_changed or held["changed"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
