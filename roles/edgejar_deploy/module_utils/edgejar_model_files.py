"""The models half of edgejar_deploy's node check: each model file's sha256, remembered in a sidecar
beside it until the file changes, and the model files no placement needs. Plain Python (no Ansible
import): the module edgejar_deploy_state runs it on the node, the lookup edgejar_model_sums on the
controller."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tempfile
from collections.abc import Callable

CHUNK = 1 << 20


class SumError(Exception):
    """A file that cannot be read (its message names it)."""


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


def sums(
    paths: list[str], use_sidecars: bool, write: bool, warn: Callable[[str], None]
) -> dict[str, dict[str, object]]:
    """path -> {exists, sha256, source}: from the sidecar while it describes the file, else read (and
    remembered when `write`)."""
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


def prune(present: list[str], keep: list[str], apply: bool) -> list[str]:
    """Remove the files of `present` not in `keep`, with their sidecars (nothing when not `apply`);
    returns those files."""
    wanted = set(keep)
    gone = [path for path in present if path not in wanted]
    for path in gone if apply else []:
        for target in (path, sidecar_of(path)):
            if os.path.lexists(target):
                os.unlink(target)
    return gone
