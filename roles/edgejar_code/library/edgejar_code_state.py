#!/usr/bin/python
"""The node's side of edgejar_code in one round trip: compare the synced tree, remove what no longer ships,
put the code directory on the venv's import path."""

from __future__ import annotations

DOCUMENTATION = r"""
module: edgejar_code_state
short_description: Compare the node's synced runtime with the controller's and fix its import path
description:
  - Finds the venv's site-packages (C(lib/python3*/site-packages); the venv's Python is run only when
    that is not one directory) and writes the C(.pth) file there that puts C(dest) on the import path
    when its content differs. Fails when site-packages itself holds a C(runner) package or module (it
    would be imported instead).
  - Walks C(dest)/<path> for each of C(paths) the way rsync's quick check compares (a file's size and
    modification time in whole seconds, a symlink's target, that a directory exists; names matching
    C(excludes) left out) and lists every path where it differs from C(want) (the controller's tree, from
    the lookup C(edgejar_tree)). An empty list means rsync would send nothing.
  - Removes what the synced paths' parent directories hold besides them (C(stale)), for example the
    modules an earlier deploy sent that no longer ship.
  - The tree is only compared here; sending it is rsync's job (role edgejar_transfer). C(changed) means
    the C(.pth) file was written or stale paths were removed. Supports check mode (reports what it would
    change, changes nothing).
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
pth: {description: The .pth file's content before this run (null - missing)., type: str, returned: success}
pth_written: {description: The .pth file was written (or would be, --check)., type: bool, returned: success}
differs:
  description: Up to 20 paths that differ, each with why (missing, extra, or what the node has).
  type: list
  returned: success
n_differs: {description: How many paths differ in all., type: int, returned: success}
stale:
  description:
    - What the parent directories of C(paths) held besides them on the node (absolute paths), removed
      (or that would be, in check mode); names matching C(excludes) are left alone.
  type: list
  returned: success
"""

import fnmatch
import glob
import os
import shutil
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

# Run in the venv's Python only when its site-packages is not the one lib/python3*/site-packages.
PROBE = 'import sysconfig; print(sysconfig.get_path("purelib"))'
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


def read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_pth(path: str, text: str) -> None:
    """Replace the .pth file atomically (root-owned, 0644)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".edgejar-pth.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


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
    module.exit_json(
        changed=bool(extra) or write,
        differs=diff[:SHOWN],
        n_differs=len(diff),
        stale=extra,
        site=site,
        pth=pth,
        pth_written=write,
    )


if __name__ == "__main__":
    main()
