"""Foreign-architecture hosts: arm64 binaries run through qemu-user, registered with binfmt_misc.

A simulated board with `arch: arm64` boots an arm64 Debian userland in its container; the kernel hands
every arm64 executable to Debian's `qemu-aarch64-static` through a binfmt_misc entry with the `F` flag
(the interpreter is opened at registration, so it works inside the container's own root). The sim
registers its own entry (`edgejar-aarch64`, flags `POCF`) unless one that serves arm64 with `F` and `C`
already exists, and removes it when the last sim that needed it goes down (a marker per state directory
under /run/edgejar-binfmt). `C` (the executable's credentials, not the caller's) is what makes a setuid
`sudo` work inside: Debian's own `qemu-aarch64` entry (systemd-binfmt) lacks it, so the sim's entry,
registered after it, is the one the kernel picks (of two entries that match, the newer; checked here).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from runner.errors import EdgejarError
from runner.sim.system import log, run

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
MARKERS = Path("/run/edgejar-binfmt")
# Debian's qemu-user-static ships it; this name makes qemu keep the program's argv[0] (flag P).
INTERPRETER = Path("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
ENTRY = "edgejar-aarch64"
# ELF header of a 64-bit little-endian AArch64 executable (e_machine 0xb7), as Debian's qemu-user-static
# registers it (/usr/lib/binfmt.d/qemu-aarch64.conf).
MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
_MAGIC_HEX = "7f454c460201010000000000000000000200b700"


def serving_entry(binfmt_dir: Path = BINFMT_DIR) -> str | None:
    """The name of an enabled entry with the F and C flags that runs arm64 executables, if any."""
    if not (binfmt_dir / "status").exists():
        return None
    for entry in sorted(binfmt_dir.iterdir()):
        if entry.name in ("register", "status"):
            continue
        try:
            text = entry.read_text()
        except OSError:
            continue
        # "interpreter PATH", "flags: POCF", "magic HEX", ...
        lines = {k.rstrip(":"): v for k, _, v in (line.partition(" ") for line in text.splitlines()[1:])}
        flags = lines.get("flags", "")
        if text.startswith("enabled") and lines.get("magic") == _MAGIC_HEX and {"F", "C"} <= set(flags):
            return entry.name
    return None


def _marker(user: str) -> Path:
    return MARKERS / hashlib.sha256(user.encode()).hexdigest()[:16]


def acquire(user: str) -> str:
    """Make arm64 executables run (mount binfmt_misc, register the entry if none serves) for `user` (a
    sim's state directory, or a build); returns the entry's name."""
    if not INTERPRETER.exists():
        raise EdgejarError(
            f"arm64 hosts need {INTERPRETER} (Debian package qemu-user-static): apt install qemu-user-static"
        )
    if not (BINFMT_DIR / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)])
    MARKERS.mkdir(parents=True, exist_ok=True)
    _marker(user).write_text(user + "\n")
    name = serving_entry()
    if name is None:
        if (BINFMT_DIR / ENTRY).exists():  # the sim's own, disabled or changed: register it afresh
            (BINFMT_DIR / ENTRY).write_text("-1")
        (BINFMT_DIR / "register").write_text(f":{ENTRY}:M::{MAGIC}:{MASK}:{INTERPRETER}:POCF")
        log(f"registered binfmt_misc entry {ENTRY}: arm64 executables run through {INTERPRETER}")
        name = ENTRY
    return name


def release(user: str) -> None:
    """`user` no longer needs arm64; the last one out removes the sim's own entry (never another's)."""
    _marker(user).unlink(missing_ok=True)
    if MARKERS.exists() and any(MARKERS.iterdir()):
        return
    own = BINFMT_DIR / ENTRY
    if own.exists():
        own.write_text("-1")
        log(f"removed binfmt_misc entry {ENTRY}")
