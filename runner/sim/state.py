"""The sim's state directory: what `sim up` created, recorded before it is created.

Layout (default /var/tmp/edgejar-sim, or $EDGEJAR_SIM_DIR):

    state.json          config and phase ("starting", "up")
    repo-server.json    PID and start time of the APT repo's HTTP server
    ssh/id_ed25519      controller key pair (the hosts' authorized key)
    known_hosts         every host's own host key, as recorded at `sim up`
    inventory.yml       Ansible inventory of the simulated cluster
    group_vars -> <repo>/group_vars, host_vars/   (next to the inventory, where Ansible looks)
    cp/                 SSH ControlPersist sockets of connections to the hosts
    hosts/<name>/       host.json (netns, cgroups, PIDs), overlay upper/work/merged, keys, console.log

Everything is recorded before the thing it describes exists, so `sim down` can remove what a crashed
`sim up` left halfway.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import EdgejarError
from runner.sim.config import STATE_DIR_ENV, SimConfig


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def repo_server_file(self) -> Path:
        return self.root / "repo-server.json"

    @property
    def ssh_key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.yml"

    @property
    def control_dir(self) -> Path:
        return self.root / "cp"

    @property
    def hosts_dir(self) -> Path:
        return self.root / "hosts"

    def host_dir(self, name: str) -> Path:
        return self.hosts_dir / name

    def host_record_file(self, name: str) -> Path:
        return self.host_dir(name) / "host.json"

    def ensure_root(self) -> None:
        """Make the state directory (0755), or check the one that is there: the sim keeps root's SSH key
        and known_hosts in it, under a predictable name in a world-writable parent (/var/tmp), so a
        directory that someone else owns, that others may write, or that is a symlink is refused."""
        try:
            self.root.mkdir(mode=0o755, parents=False)
        except FileExistsError:
            pass
        except FileNotFoundError:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(mode=0o755)
        st = os.lstat(self.root)
        problem = None
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            problem = "is not a directory (a symlink or a file)"
        elif st.st_uid != os.geteuid():
            problem = f"belongs to uid {st.st_uid}, not to this user ({os.geteuid()})"
        elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problem = f"is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
        if problem:
            raise EdgejarError(
                f"sim state directory {self.root} {problem}: it holds the SSH key and known_hosts of the "
                f"simulated cluster; remove it or choose another with ${STATE_DIR_ENV}"
            )

    @property
    def lock_file(self) -> Path:
        return self.root.parent / f".{self.root.name}.lock"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise `sim up`/`sim down` on one state directory (the lock file sits beside it).

        The lock file is removed when the state directory is gone at the end (after `sim down`).
        """
        self.root.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.lock_file
        with lock_path.open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EdgejarError(
                    f"another `sim up` or `sim down` is running on {self.root} (lock {lock_path})"
                ) from None
            try:
                yield
            finally:
                if not self.root.exists():
                    lock_path.unlink(missing_ok=True)
                fcntl.flock(fh, fcntl.LOCK_UN)

    # --- records -------------------------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        return read_json(self.state_file)

    def config(self) -> SimConfig | None:
        data = self.load()
        if not data or "config" not in data:
            return None
        return SimConfig.from_dict(data["config"])

    def save(self, config: SimConfig, phase: str, **extra: Any) -> None:
        data = self.load() or {}
        data.update(extra)
        data["config"] = config.to_dict()
        data["phase"] = phase
        write_json(self.state_file, data)

    def host_record(self, name: str) -> dict[str, Any]:
        return read_json(self.host_record_file(name)) or {}

    def update_host_record(self, name: str, **values: Any) -> None:
        record = self.host_record(name)
        record.update(values)
        write_json(self.host_record_file(name), record)

    def recorded_hosts(self) -> list[str]:
        if not self.hosts_dir.is_dir():
            return []
        return sorted(p.name for p in self.hosts_dir.iterdir() if p.is_dir())


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic write (temp file + rename), so a crash never leaves a half-written record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
