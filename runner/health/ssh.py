"""One persistent OpenSSH connection per node: ControlMaster/ControlPersist with a per-node control socket
in a private runtime directory. Host keys are checked as the inventory says (never turned off here)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import stat
import subprocess
from pathlib import Path

from runner.errors import EdgejarError
from runner.health.targets import Target

CONNECT_TIMEOUT_S = 5
PERSIST_S = 120  # how long an idle master outlives its last use (the CLI's next run reuses it)
SSH_UNREACHABLE = 255  # ssh's own exit status for connection, authentication and host-key failures


def runtime_dir() -> Path:
    """A directory only this user can enter: $XDG_RUNTIME_DIR/edgejar-health or /tmp/edgejar-health-<uid>.

    Created 0700 when missing; refused when it is a symlink, someone else's, or open to others."""
    uid = os.getuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(xdg) / "edgejar-health" if xdg and Path(xdg).is_dir() else Path(f"/tmp/edgejar-health-{uid}")
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        raise EdgejarError(
            f"{path}: the SSH control directory must be a directory owned by uid {uid} with mode 0700; "
            "remove it or fix its owner/mode"
        )
    return path


def control_path(directory: Path, target: Target) -> Path:
    """Per node and per destination: two clusters with the same node names never share a socket."""
    key = f"{target.node}|{target.user}|{target.host}|{target.port}|{target.key_file}|{target.extra_args}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return directory / f"{target.node[:40]}-{digest}.sock"


def ssh_argv(
    target: Target,
    remote: list[str],
    control: Path,
    *,
    persist_s: int = PERSIST_S,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
) -> list[str]:
    """The ssh command line that runs `remote` (quoted for the remote shell) over the node's master."""
    argv = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={control}",
        "-o",
        f"ControlPersist={persist_s}s",
        "-o",
        f"ConnectTimeout={connect_timeout_s}",
        "-o",
        "ServerAliveInterval=2",
        "-o",
        "ServerAliveCountMax=2",
    ]
    if target.port:
        argv += ["-p", str(target.port)]
    if target.key_file:
        argv += ["-i", target.key_file]
    argv += [*target.extra_args, target.destination, "--", shlex.join(remote)]
    return argv


def local_argv(remote: list[str]) -> list[str]:
    return list(remote)


def close_master(control: Path) -> None:
    """Tell the node's master to exit (nothing when there is none)."""
    if control.exists():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={control}", "-O", "exit", "edgejar-health"],
            capture_output=True,
            timeout=10,
            check=False,
        )
