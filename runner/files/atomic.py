"""Replace a set of files all together or not at all."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from runner.errors import EdgejarError

log = logging.getLogger(__name__)


def write_all(files: Mapping[Path, str]) -> list[Path]:
    """Write every file whose content differs, atomically as a set. Returns the files that changed.

    Each new content goes to a temporary file beside its target first; only when all are staged are
    they renamed into place. If a rename fails, the files already replaced get their old content back
    and the error is raised: the set is never left half-written.
    """
    changed = {
        p: text for p, text in files.items() if not (p.is_file() and p.read_text(encoding="utf-8") == text)
    }
    staged: list[tuple[Path, Path]] = []
    created_dirs: list[Path] = []
    try:
        for path, text in changed.items():
            for parent in reversed(path.parents):
                if not parent.exists():
                    parent.mkdir()
                    created_dirs.append(parent)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            staged.append((Path(tmp), path))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for d in reversed(created_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    done: list[tuple[Path, str | None]] = []
    try:
        for tmp, path in staged:
            old = path.read_text(encoding="utf-8") if path.is_file() else None
            os.replace(tmp, path)
            done.append((path, old))
    except BaseException:
        for path, old in reversed(done):
            if old is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(old, encoding="utf-8")
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return sorted(changed)


@contextlib.contextmanager
def locked(directory: Path, what: str, wait_s: float = 300.0) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (flock on the directory itself: no lock file is left
    behind). A second holder waits, saying so on stderr, and gives up after `wait_s` seconds."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: waiting for another run that holds %s", what, directory)
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EdgejarError(
                            f"{what}: {directory} is still locked by another run after {wait_s:g} s"
                        ) from None
                    time.sleep(0.1)
        yield
    finally:
        os.close(fd)
