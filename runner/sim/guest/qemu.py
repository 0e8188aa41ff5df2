"""Boot the CI guest with QEMU: the command line (pure, unit-tested), KVM only when it really boots.

`/dev/kvm` existing says little: on some machines (PVM-based KVM, no VMX) a stock Debian kernel does not
run under it. So the accelerator is found by booting: the guest starts with KVM and must print the job's
start marker on its serial console within KVM_PROBE_S; otherwise QEMU is stopped and the guest boots
again under TCG (emulation, slower, works everywhere).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from runner.sim.guest.image import JOB_MARKER_END, JOB_MARKER_START, GuestImage
from runner.sim.system import log

KVM_PROBE_S = 60.0  # a KVM guest prints the start marker in seconds; TCG needs ~25 s to reach it
# How long a TCG boot may take to reach the job: about 25 s on an idle machine, but CI boots it beside
# the integration tier on the same two cores; a CI run (2026-12-07) saw the kernel only 1 s into its
# boot after 240 s, while the integration tier provisioned its hosts.
TCG_START_S = 900.0
MEMORY_MIB = 3072
CPUS = 2


@dataclass(frozen=True)
class Boot:
    accel: str  # "kvm" or "tcg"
    rc: int | None  # the job's exit status (None: the job never ended)
    seconds: float
    reason: str  # why rc is None, or "finished"


def command(image: GuestImage, root_disk: Path, data_disk: Path, console: Path, accel: str) -> list[str]:
    accel_args = (
        ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,tb-size=256", "-cpu", "max"]
    )
    return [
        "qemu-system-x86_64",
        *accel_args,
        "-machine",
        "q35",
        "-smp",
        str(CPUS),
        "-m",
        str(MEMORY_MIB),
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        "root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=0",
        "-drive",
        f"file={root_disk},if=virtio,format=qcow2",
        "-drive",
        f"file={data_disk},if=virtio,format=raw",
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-pci,netdev=n0",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{console}",
        "-no-reboot",
    ]


def run(
    image: GuestImage,
    root_disk: Path,
    data_disk: Path,
    console: Path,
    accel: str,
    start_s: float,
    total_s: float,
) -> Boot:
    """Boot once; wait for the start marker (start_s), then for the end marker or QEMU's exit (total_s)."""
    console.write_bytes(b"")
    started = time.monotonic()
    proc = subprocess.Popen(
        command(image, root_disk, data_disk, console, accel),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        seen_start = False
        shown = 0
        while True:
            text = console.read_text(errors="replace")
            elapsed = time.monotonic() - started
            shown = _show_progress(text, shown)
            if not seen_start and JOB_MARKER_START in text:
                seen_start = True
                log(f"guest ({accel}): the job started after {elapsed:.0f} s")
            if not seen_start and proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                return Boot(
                    accel, None, elapsed, f"no job start: QEMU exited ({err[-300:] or proc.returncode})"
                )
            if JOB_MARKER_END in text or proc.poll() is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=60)
                return Boot(accel, _end_rc(console.read_text(errors="replace")), elapsed, "finished")
            if not seen_start and elapsed > start_s:
                return Boot(accel, None, elapsed, f"no job start within {start_s:.0f} s")
            if elapsed > total_s:
                return Boot(accel, None, elapsed, f"the job did not end within {total_s:.0f} s")
            time.sleep(1.0)
    finally:
        _stop(proc)


JOB_TAG = "edgejar-guest-job["


def job_lines(text: str) -> list[str]:
    """Pure: the job's own output lines in the console text (the journal forwards them as `...job[PID]: `),
    complete lines only."""
    lines = text.split("\n")[:-1]
    return [line.split("]: ", 1)[1] for line in lines if JOB_TAG in line and "]: " in line]


def _show_progress(text: str, shown: int) -> int:
    """Log the job's lines not shown yet (progress on a long stage); returns how many are shown."""
    lines = job_lines(text)
    for line in lines[shown:]:
        log(f"guest | {line.rstrip()}")
    return max(shown, len(lines))


def _end_rc(text: str) -> int | None:
    for line in reversed(text.splitlines()):
        if JOB_MARKER_END in line and "rc=" in line:
            try:
                return int(line.split("rc=", 1)[1].split()[0])
            except ValueError:
                return None
    return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """QEMU is ours (its own session): SIGTERM, then SIGKILL, and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
