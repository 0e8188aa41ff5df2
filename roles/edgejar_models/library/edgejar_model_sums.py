#!/usr/bin/python
"""sha256 of model files, remembered beside each file until the file changes."""

from __future__ import annotations

DOCUMENTATION = r"""
module: edgejar_model_sums
short_description: sha256 of model files, remembered in a sidecar until the file changes
description:
  - For each path, whether the file exists and its sha256.
  - A multi-GB model is read only when it is new or changed. After reading a file, its sha256 is kept in
    a sidecar file beside it (C(.<name>.sha256), JSON with the file's size, modification time and inode).
    A later run takes the sha256 from the sidecar while all three still match. A file replaced by rsync
    or a download (a new inode) or written in place (a new modification time) is read again.
  - Writing a sidecar is bookkeeping, not a change of the node; C(changed) means C(prune) removed files.
    Under C(--check) it reads but writes and removes nothing.
options:
  paths:
    description: Absolute paths of the files.
    type: list
    elements: path
    required: true
  remember:
    description:
      - Use and write the sidecars. With C(false) every file is read in full on every run and no
        sidecar is written.
    type: bool
    default: true
  list_dir:
    description:
      - Also list the files in this directory whose names match C(pattern) (not recursive), so that a
        caller can prune them without a second round trip. A missing directory lists nothing.
    type: path
  pattern:
    description: Shell pattern of the files C(list_dir) lists.
    type: str
    default: "*.gguf"
  prune:
    description:
      - Remove the files C(list_dir) lists that are not in C(paths), with their sidecars (no second
        round trip).
    type: bool
    default: false
author: edgejar
"""

RETURN = r"""
files:
  description: path -> {exists, sha256 (when it exists), source (sidecar or read)}.
  type: dict
  returned: always
present:
  description: The matching files in C(list_dir) before any pruning, sorted (only when list_dir is given).
  type: list
  returned: when list_dir is given
removed:
  description: The files C(prune) removed (or would remove, in check mode), sorted.
  type: list
  returned: always
"""

import fnmatch
import hashlib
import json
import os
import tempfile
from collections.abc import Callable

from ansible.module_utils.basic import AnsibleModule

CHUNK = 1 << 20


def sidecar_of(path: str) -> str:
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}.sha256")


def identity(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def remembered(path: str, st: os.stat_result) -> str | None:
    """The sidecar's sha256 when it describes this very file, else None."""
    try:
        with open(sidecar_of(path), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or any(data.get(k) != v for k, v in identity(st).items()):
        return None
    sha = data.get("sha256")
    return sha if isinstance(sha, str) and len(sha) == 64 else None


def read_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remember(path: str, st: os.stat_result, sha: str) -> None:
    """Write the sidecar atomically (a temporary file renamed over it)."""
    head = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=head, prefix=".edgejar-sum-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({**identity(st), "sha256": sha}, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, sidecar_of(path))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def listed(directory: str, pattern: str) -> list[str]:
    """The regular files in `directory` whose names match `pattern`, as sorted full paths."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    paths = (os.path.join(directory, n) for n in names if fnmatch.fnmatch(n, pattern))
    return sorted(p for p in paths if os.path.isfile(p) and not os.path.islink(p))


class SumError(Exception):
    """A file that cannot be read (its message names it)."""


def sums(
    paths: list[str], use_sidecars: bool, write: bool, warn: Callable[[str], None]
) -> dict[str, dict[str, object]]:
    """path -> {exists, sha256, source}: from the sidecar while it describes the file, else read (and
    remembered when `write`). The lookup of the same name calls this on the controller."""
    files: dict[str, dict[str, object]] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            files[path] = {"exists": False}
            continue
        except OSError as exc:
            raise SumError(f"{path}: {exc.strerror}") from exc
        sha = remembered(path, st) if use_sidecars else None
        if sha is not None:
            files[path] = {"exists": True, "sha256": sha, "source": "sidecar"}
            continue
        try:
            sha = read_sha256(path)
        except OSError as exc:
            raise SumError(f"{path}: {exc.strerror}") from exc
        files[path] = {"exists": True, "sha256": sha, "source": "read"}
        if use_sidecars and write:
            try:
                remember(path, st, sha)
            except OSError as exc:
                warn(f"{path}: sha256 not remembered ({exc.strerror}); it is read again next run")
    return files


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "path", "required": True},
            "remember": {"type": "bool", "default": True},
            "list_dir": {"type": "path"},
            "pattern": {"type": "str", "default": "*.gguf"},
            "prune": {"type": "bool", "default": False},
        },
        required_if=[("prune", True, ("list_dir",))],
        supports_check_mode=True,
    )
    try:
        files = sums(module.params["paths"], module.params["remember"], not module.check_mode, module.warn)
    except SumError as exc:
        module.fail_json(msg=str(exc))
    result: dict[str, object] = {"changed": False, "files": files, "removed": []}
    if module.params["list_dir"]:
        present = listed(module.params["list_dir"], module.params["pattern"])
        result["present"] = present
        if module.params["prune"]:
            keep = set(module.params["paths"])
            gone = [path for path in present if path not in keep]
            for path in gone if not module.check_mode else []:
                for target in (path, sidecar_of(path)):
                    if os.path.lexists(target):
                        os.unlink(target)
            result.update(changed=bool(gone), removed=gone)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
