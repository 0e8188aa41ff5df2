"""One VM host of the simulated cluster: a QEMU guest with its own kernel on the sim's bridge.

Same name, address, persona, SSH user, controller key and checked host key as an nspawn host; what differs
is the machine: the kernel is the guest's own (swapon, `ip addr`, reboots and the OOM killer are real),
its memory (`-m`) is the host's ceiling, and it reaches the bridge through a tap device. Its disk is a
throw-away qcow2 overlay of the cached image (runner/sim/vm/image.py); its own files come from a seed
disk (runner/sim/vm/seed.py). QEMU runs in its own session; `sim down` stops it and removes the tap.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from runner.errors import EdgejarError
from runner.sim import host as nspawn_host
from runner.sim.config import HostSpec, SimConfig
from runner.sim.host import HostFiles, files_of
from runner.sim.rootfs import Rootfs
from runner.sim.state import StateDir
from runner.sim.system import is_same_process, run, start_time
from runner.sim.vm import qemu, seed
from runner.sim.vm.image import VmImage

BOOT_TIMEOUT_S = 420.0  # TCG hosts boot in 30-90 s each, on shared cores; a first boot also makes keys


def root_disk(f: HostFiles) -> Path:
    return f.root / "root.qcow2"


def seed_disk(f: HostFiles) -> Path:
    return f.root / "seed.img"


def prepare(
    state: StateDir, cfg: SimConfig, host: HostSpec, rootfs: Rootfs, image: VmImage, controller_pubkey: str
) -> str:
    """Tap, disks and seed of a VM host; returns its known_hosts line."""
    f = files_of(state, host.name)
    f.root.mkdir(parents=True, exist_ok=True)
    tap = cfg.tap(host)
    state.update_host_record(host.name, backend="vm", tap=tap, machine=cfg.machine(host))
    if not _link_exists(tap):
        run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
    run(["ip", "link", "set", tap, "master", cfg.bridge, "up"])
    root_disk(f).unlink(missing_ok=True)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "raw", str(root_disk(f))])
    private, public = nspawn_host.new_host_key(f, host)
    uid, gid, home = nspawn_host.passwd_entry(rootfs.rootfs, cfg.user)
    identity = nspawn_host.identity_files(cfg, host)
    files = seed.files(cfg, host, identity, (private, public), controller_pubkey, (uid, gid, home))
    seed.make_disk(f.root / "seed", seed_disk(f), files, host, rootfs.rootfs, {f"{home}/.ssh": (uid, gid)})
    return nspawn_host.known_hosts_line(host, public)


def boot(state: StateDir, cfg: SimConfig, host: HostSpec, image: VmImage, accel: str) -> None:
    f = files_of(state, host.name)
    f.console_log.write_bytes(b"")
    cmd = qemu.command(
        image,
        root_disk(f),
        seed_disk(f),
        f.console_log,
        cfg.tap(host),
        host.address,
        host.memory_mib,
        accel,
        cfg.machine(host),
    )
    with (f.root / "qemu.log").open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    state.update_host_record(host.name, qemu_pid=proc.pid, qemu_start=start_time(proc.pid), accel=accel)


def wait_until_up(state: StateDir, cfg: SimConfig, host: HostSpec, deadline: float) -> None:
    """Wait for sshd, then for systemd to finish booting (over SSH, as the sim user)."""
    from runner.sim.cluster import ssh_command  # the one SSH command line of the sim

    f = files_of(state, host.name)
    record = state.host_record(host.name)
    pid, started = record["qemu_pid"], record["qemu_start"]
    while True:
        if not is_same_process(pid, started):
            log_tail = _tail(f.root / "qemu.log", 5)
            raise EdgejarError(
                f"host {host.name}: QEMU exited during boot:\n{log_tail}\n{nspawn_host.console_tail(f)}"
            )
        if nspawn_host.port_open(host.address, nspawn_host.SSH_PORT):
            break
        if time.monotonic() > deadline:
            raise EdgejarError(
                f"host {host.name} (VM): SSH did not come up within {BOOT_TIMEOUT_S:.0f} s "
                f"(a loaded machine boots slowly; retry):\n{nspawn_host.console_tail(f)}"
            )
        time.sleep(1.0)
    remaining = max(10.0, deadline - time.monotonic())
    proc = subprocess.run(
        ssh_command(cfg, state, host, "systemctl", "is-system-running", "--wait"),
        capture_output=True,
        text=True,
        timeout=remaining,
        check=False,
    )
    boot_state = proc.stdout.strip()
    if boot_state not in ("running", "degraded"):
        raise EdgejarError(
            f"host {host.name} (VM): systemd reports {boot_state or proc.stderr.strip()!r} after boot:\n"
            f"{nspawn_host.console_tail(f)}"
        )


def running(state: StateDir, name: str) -> bool:
    record = state.host_record(name)
    return is_same_process(record.get("qemu_pid"), record.get("qemu_start"))


def remove(state: StateDir, name: str) -> list[str]:
    """Stop QEMU (the host's power is cut: its disks are thrown away), remove the tap and the files."""
    record = state.host_record(name)
    pid = record.get("qemu_pid")
    left: list[str] = []
    if isinstance(pid, int) and is_same_process(pid, record.get("qemu_start")):
        qemu.stop(pid)
        if is_same_process(pid, record.get("qemu_start")):
            left.append(f"host {name}: QEMU (PID {pid}) survives SIGKILL")
    tap = record.get("tap")
    if tap and _link_exists(tap):
        run(["ip", "link", "del", tap], check=False)
        if _link_exists(tap):
            left.append(f"host {name}: tap {tap} could not be removed")
    if not left:
        run(["rm", "-rf", "--one-file-system", str(state.host_dir(name))], check=False)
    return left


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text.strip().splitlines()[-lines:])
