#!/usr/bin/python
"""The node's side of edgejar_code's no-op check: the venv probe and the synced tree, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: edgejar_code_state
short_description: Where the node venv imports the runtime from, and whether the synced code differs
description:
  - Runs the venv's Python once to find its site-packages, the content of the C(.pth) file there and
    where it imports C(runner) from.
  - Walks C(dest)/<path> for each of C(paths) the way rsync's quick check compares (a file's size and
    modification time in whole seconds, a symlink's target, that a directory exists; names matching
    C(excludes) left out) and lists every path where it differs from C(want) (the controller's tree, from
    the lookup C(edgejar_tree)). An empty list means rsync would send nothing.
  - Lists what the synced paths' parent directories hold besides them (C(stale)).
  - Reads only; never reports C(changed). Supports check mode.
options:
  venv: {description: The node runtime's venv., type: path, required: true}
  pth_name: {description: The .pth file in the venv's site-packages., type: str, required: true}
  dest: {description: Where the code is synced to on the node., type: path, required: true}
  paths: {description: The synced paths under dest., type: list, elements: str, required: true}
  excludes: {description: Name patterns left out (as the lookup's)., type: list, elements: str, default: []}
  want: {description: The controller's tree (edgejar_tree)., type: dict, required: true}
author: edgejar
"""

RETURN = r"""
site: {description: The venv's site-packages., type: str, returned: success}
pth: {description: The .pth file's content, or null when it is missing., type: str, returned: success}
origin: {description: The file C(runner) is imported from, or null., type: str, returned: success}
differs:
  description: Up to 20 paths that differ, each with why (missing, extra, or what the node has).
  type: list
  returned: success
n_differs: {description: How many paths differ in all., type: int, returned: success}
stale:
  description:
    - What the parent directories of C(paths) hold besides them on the node (absolute paths), for example
      the modules an earlier deploy sent that no longer ship; names matching C(excludes) are not listed.
  type: list
  returned: success
"""

import fnmatch
import json
import os
import stat

from ansible.module_utils.basic import AnsibleModule

PROBE = """
import importlib.util, json, pathlib, sys, sysconfig
site = pathlib.Path(sysconfig.get_path("purelib"))
pth = site / sys.argv[1]
spec = importlib.util.find_spec("runner")
print(json.dumps({"site": str(site), "pth": pth.read_text() if pth.exists() else None,
                  "origin": spec.origin if spec else None}))
"""
SHOWN = 20


# The lookup edgejar_tree runs this same walk on the controller.
def excluded(name: str, is_dir: bool, excludes: list[str]) -> bool:
    for pattern in excludes:
        if pattern.endswith("/") and not is_dir:
            continue
        if fnmatch.fnmatchcase(name, pattern.rstrip("/")):
            return True
    return False


def tree(root: str, paths: list[str], excludes: list[str]) -> dict[str, str]:
    """relative path -> what rsync's quick check compares, for everything under root/<path>."""
    found: dict[str, str] = {}
    todo = [p.strip("/") for p in paths]
    while todo:
        rel = todo.pop()
        full = os.path.join(root, rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        if excluded(os.path.basename(rel), is_dir, excludes):
            continue
        if stat.S_ISLNK(st.st_mode):
            found[rel] = f"l {os.readlink(full)}"
        elif is_dir:
            found[rel] = "d"
            todo.extend(f"{rel}/{name}" for name in os.listdir(full))
        elif stat.S_ISREG(st.st_mode):
            found[rel] = f"f {st.st_size} {int(st.st_mtime)}"
        else:
            found[rel] = "o"
    return found


def stale(root: str, paths: list[str], excludes: list[str]) -> list[str]:
    """What the parent directories of the synced paths hold besides them (files an earlier deploy sent
    that no longer ship), as absolute paths; excluded names are left alone."""
    tops = {p.strip("/") for p in paths}
    parents = {os.path.dirname(t) for t in tops} - {""}
    out = []
    for parent in sorted(parents):
        try:
            names = os.listdir(os.path.join(root, parent))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in sorted(names):
            full = os.path.join(root, parent, name)
            if f"{parent}/{name}" not in tops and not excluded(name, os.path.isdir(full), excludes):
                out.append(full)
    return out


def differences(want: dict[str, str], have: dict[str, str]) -> list[str]:
    out = []
    for rel in sorted(set(want) | set(have)):
        if rel not in have:
            out.append(f"{rel} (missing)")
        elif rel not in want:
            out.append(f"{rel} (not on the controller)")
        elif want[rel] != have[rel]:
            out.append(f"{rel} (node: {have[rel]}, controller: {want[rel]})")
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "venv": {"type": "path", "required": True},
            "pth_name": {"type": "str", "required": True},
            "dest": {"type": "path", "required": True},
            "paths": {"type": "list", "elements": "str", "required": True},
            "excludes": {"type": "list", "elements": "str", "default": []},
            "want": {"type": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    python = os.path.join(p["venv"], "bin", "python")
    if not os.access(python, os.X_OK):
        module.fail_json(msg=f"{python} does not exist; run playbooks/provision.yml on this node first")
    rc, out, err = module.run_command([python, "-B", "-c", PROBE, p["pth_name"]])
    if rc != 0:
        module.fail_json(
            msg=f"cannot run {python} ({(err or out).strip()[-500:]}); "
            "run playbooks/provision.yml on this node first"
        )
    try:
        probe = json.loads(out)
    except ValueError:
        module.fail_json(msg=f"{python}: unexpected probe output {out[-500:]!r}")
    diff = differences(p["want"], tree(p["dest"], p["paths"], p["excludes"]))
    extra = stale(p["dest"], p["paths"], p["excludes"])
    module.exit_json(changed=False, differs=diff[:SHOWN], n_differs=len(diff), stale=extra, **probe)


if __name__ == "__main__":
    main()
