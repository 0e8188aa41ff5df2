"""The CI guest's QEMU command line per accelerator, how its result is read, and `sim check`'s report."""

from __future__ import annotations

from pathlib import Path

from runner.sim import doctor
from runner.sim.guest import qemu
from runner.sim.guest.datadisk import lock_constraints
from runner.sim.guest.image import JOB_MARKER_END, JOB_RUNNER, GuestImage

IMAGE = GuestImage(Path("/var/cache/edgejar/ci-guest-x"))


def cmd(accel: str) -> list[str]:
    return qemu.command(IMAGE, Path("/w/root.qcow2"), Path("/w/data.img"), Path("/w/console.log"), accel)


def test_tcg_emulates_a_cpu_with_a_large_translation_cache() -> None:
    c = cmd("tcg")
    assert c[c.index("-accel") + 1] == "tcg,tb-size=256"
    assert c[c.index("-cpu") + 1] == "max"  # AVX2/FMA for the portable llama.cpp build


def test_kvm_uses_the_host_cpu() -> None:
    c = cmd("kvm")
    assert c[c.index("-accel") + 1] == "kvm" and c[c.index("-cpu") + 1] == "host"


def test_guest_boots_the_cached_kernel_on_a_throwaway_overlay_with_the_data_disk() -> None:
    c = cmd("tcg")
    assert c[c.index("-kernel") + 1] == str(IMAGE.kernel)
    drives = [c[i + 1] for i, a in enumerate(c) if a == "-drive"]
    assert drives == ["file=/w/root.qcow2,if=virtio,format=qcow2", "file=/w/data.img,if=virtio,format=raw"]
    assert "root=/dev/vda" in c[c.index("-append") + 1]
    assert "-no-reboot" in c  # the job's poweroff ends QEMU


def test_job_status_is_read_from_the_end_marker() -> None:
    assert qemu._end_rc(f"boot...\n{JOB_MARKER_END} rc=0\n") == 0
    assert qemu._end_rc(f"{JOB_MARKER_END} rc=3\nreboot: Power down\n") == 3
    assert qemu._end_rc("kernel panic\n") is None
    assert JOB_MARKER_END in JOB_RUNNER  # the guest side prints what the host side reads


def test_check_report_names_what_is_missing_and_how_to_get_it() -> None:
    found = [
        doctor.Finding("root", True, "yes"),
        doctor.Finding(
            "tools", False, "missing tools: debootstrap (package debootstrap); install them with: ..."
        ),
        doctor.Finding("CI guest: QEMU", False, "apt-get install -y qemu-utils", required=False),
    ]
    text = doctor.report(found)
    assert "MISSING  tools: missing tools: debootstrap (package debootstrap)" in text
    assert "optional CI guest: QEMU" in text
    assert text.endswith("cannot run here: tools")
    assert [f.name for f in doctor.blocking(found)] == ["tools"]


def test_the_jobs_own_lines_are_shown_as_progress_and_only_complete_ones() -> None:
    console = (
        "[   35.8] edgejar-guest-job[312]: EDGEJAR-GUEST-JOB-START\n"
        "[   36.1] systemd[1]: Started foo.service.\n"
        "edgejar-guest login: [   52.8] edgejar-guest-job[340]: ok       Linux: linux\n"
        "[   60.0] edgejar-guest-job[340]:   [90 s] TASK [edgejar_base : Install packages]\n"
        "[   61.0] edgejar-guest-job[340]: ==> [91 s] half a li"
    )
    assert qemu.job_lines(console) == [
        "EDGEJAR-GUEST-JOB-START",
        "ok       Linux: linux",
        "  [90 s] TASK [edgejar_base : Install packages]",
    ]


def test_the_guests_wheels_are_constrained_to_the_node_lock_for_the_guests_python() -> None:
    """The guest's Debian python3 (3.11.2) is not necessarily the one running pip (a 3.11.7 venv): the
    markers are evaluated for the guest's, hashes left out."""
    lock = (
        "# header\n"
        "numpy==2.4.6 ; python_full_version == '3.11.*' \\\n    --hash=sha256:" + "a" * 64 + "\n"
        "numpy==2.2.6 ; python_full_version < '3.11' \\\n    --hash=sha256:" + "b" * 64 + "\n"
        "soupsieve==2.10 ; python_full_version < '3.11.5' \\\n    --hash=sha256:" + "c" * 64 + "\n"
        "soupsieve==4.1.4 ; python_full_version >= '3.11.5' \\\n    --hash=sha256:" + "d" * 64 + "\n"
        "aiohttp==3.14.5 \\\n    --hash=sha256:" + "e" * 64 + "\n"
    )
    assert lock_constraints(lock, "3.11.2") == "numpy==2.4.6\nsoupsieve==2.10\naiohttp==3.14.5\n"
    assert lock_constraints(lock, "3.11.7") == "numpy==2.4.6\nsoupsieve==4.1.4\naiohttp==3.14.5\n"
