"""The code half of edgejar_deploy's node check: the tree rsync's quick check compares, what no longer
ships, the venv's .pth file. Plain Python (no Ansible import): the module edgejar_deploy_state runs it on
the node, the lookup edgejar_tree on the controller, so both sides compare by one rule."""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import tempfile


def excluded(name: str, is_dir: bool, excludes: list[str]) -> bool:
    """rsync's rule for a name pattern: it matches the name at any depth; a trailing / only directories."""
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
    """Each path where the two trees differ, with why."""
    out = []
    for rel in sorted(set(want) | set(have)):
        if rel not in have:
            out.append(f"{rel} (missing)")
        elif rel not in want:
            out.append(f"{rel} (not on the controller)")
        elif want[rel] != have[rel]:
            out.append(f"{rel} (node: {have[rel]}, controller: {want[rel]})")
    return out


def read(path: str) -> str | None:
    """A text file's content, None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def replace_text(path: str, text: str) -> None:
    """Replace a small text file atomically (root-owned, 0644): the .pth file, the deploy stamp."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".edgejar-")
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
    """Remove a file, a symlink or a whole directory."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
