"""One simulated host: namespace, copy-on-write root, persona, keys, systemd-nspawn boot and teardown.

A host is `systemd-nspawn --boot` (systemd as PID 1, sshd started by systemd) on an overlayfs whose lower
layer is the shared cached rootfs and whose upper layer is the host's own, inside its own network
namespace and its own cgroups. Two workarounds for machines whose PID 1 is not systemd and whose cgroups
are hybrid v1 (the CI machines) are applied after boot:

- nspawn mounts the v1 controllers read-only in the container, so `MemoryMax=` in a unit would be
  accepted but not enforced. The host's memory/cpu/cpuacct/pids hierarchies are remounted read-write in
  its mount namespace (its cgroup namespace only shows its own subtree) and systemd is re-executed so
  that it picks them up: a unit that goes over `MemoryMax=` is then OOM-killed.
- /proc/cpuinfo and /proc/meminfo cannot be bind-mounted by nspawn itself; the persona's versions are
  bind-mounted inside the host's mount namespace with nsenter.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from runner.errors import EdgejarError
from runner.sim import launch, network
from runner.sim.cgroups import HOST_CONTROLLERS, HostCgroups
from runner.sim.config import HostSpec, SimConfig
from runner.sim.layout import SYSTEMD_V2, Layout
from runner.sim.personas import PERSONA_DIR, devicetree_files, rootfs_files
from runner.sim.rootfs import Rootfs
from runner.sim.state import StateDir
from runner.sim.system import children, is_same_process, log, run, signal_pid, start_time, wait_gone

BOOT_TIMEOUT = 120.0  # seconds for the first hosts; more hosts boot in parallel on the same cores
BOOT_TIMEOUT_PER_EXTRA_HOST = 20.0  # added for every host beyond the fourth


def boot_timeout(n_hosts: int) -> float:
    """How long `sim up` waits for all hosts' sshd: boots share the CPU, so it grows with the count."""
    return BOOT_TIMEOUT + BOOT_TIMEOUT_PER_EXTRA_HOST * max(0, n_hosts - 4)


SSH_PORT = 22


@dataclass(frozen=True)
class HostFiles:
    root: Path

    @property
    def upper(self) -> Path:
        return self.root / "upper"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def firmware(self) -> Path:
        return self.root / "firmware"

    @property
    def console_log(self) -> Path:
        return self.root / "console.log"

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"


def files_of(state: StateDir, name: str) -> HostFiles:
    return HostFiles(state.host_dir(name))


# --- up ---------------------------------------------------------------------------------------------
def prepare(
    state: StateDir, cfg: SimConfig, host: HostSpec, rootfs: Rootfs, controller_pubkey: str, layout: Layout
) -> str:
    """Network, overlay root, persona, keys and cgroups of a host; returns its known_hosts line."""
    f = files_of(state, host.name)
    f.root.mkdir(parents=True, exist_ok=True)
    if layout.require() == SYSTEMD_V2 and layout.v2_mount is not None:
        cgroups = HostCgroups.for_unit(layout.v2_mount, launch.unit_name(cfg.machine(host)))
    else:
        cgroups = HostCgroups.for_leaf(cfg.machine(host))
    # Record first: a crash from here on leaves enough for `sim down` to find everything.
    state.update_host_record(
        host.name,
        netns=cfg.netns(host),
        veth=cfg.veth(host),
        machine=cfg.machine(host),
        merged=str(f.merged),
        cgroups=cgroups.to_record(),
    )
    network.host_net_up(cfg.netns(host), cfg.veth(host), cfg.bridge, host.address, cfg.prefixlen)

    for d in (f.upper, f.work, f.merged):
        d.mkdir(exist_ok=True)
    if not _is_mountpoint(f.merged):
        run(
            [
                "mount",
                "-t",
                "overlay",
                cfg.machine(host),
                "-o",
                f"lowerdir={rootfs.rootfs},upperdir={f.upper},workdir={f.work}",
                str(f.merged),
            ]
        )
    _write_identity(cfg, host, f)
    host_key_line = _install_keys(cfg, host, f, controller_pubkey)
    cgroups.create(host.memory_mib * 1024 * 1024)
    return host_key_line


def identity_files(cfg: SimConfig, host: HostSpec) -> dict[str, str]:
    """The host's own files, either backend (absolute path inside the host -> text): name, peers, the
    sim's APT repository, the persona's files."""
    hosts_lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{host.name}", f"{cfg.gateway}\tedgejar-controller"]
    hosts_lines += [f"{h.address}\t{h.name}" for h in cfg.hosts if h.name != host.name]
    return {
        "/etc/hostname": f"{host.name}\n",
        "/etc/hosts": "\n".join(hosts_lines) + "\n",
        "/etc/apt/sources.list": f"deb [trusted=yes] {cfg.repo_url} ./\n",
        **rootfs_files(host.persona, host.name),
    }


def new_host_key(f: HostFiles, host: HostSpec) -> tuple[str, str]:
    """A fresh ed25519 host key for this host only: (private, public) in OpenSSH format."""
    for old in (f.host_key, f.host_key.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", str(f.host_key)])
    return f.host_key.read_text(), f.host_key.with_suffix(".pub").read_text()


def known_hosts_line(host: HostSpec, public: str) -> str:
    key_type, key_b64 = public.split()[:2]
    return f"{host.address} {key_type} {key_b64}"


def _write_identity(cfg: SimConfig, host: HostSpec, f: HostFiles) -> None:
    files = {**identity_files(cfg, host), "/etc/machine-id": uuid.uuid4().hex + "\n"}
    for path, content in files.items():
        _write(f.merged, path, content, 0o644)
    for rel, data in devicetree_files(host.persona).items():
        target = f.firmware / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _install_keys(cfg: SimConfig, host: HostSpec, f: HostFiles, controller_pubkey: str) -> str:
    """A fresh host key for this host only, and the controller's key for the SSH user."""
    private, public = new_host_key(f, host)
    _write(f.merged, "/etc/ssh/ssh_host_ed25519_key", private, 0o600)
    _write(f.merged, "/etc/ssh/ssh_host_ed25519_key.pub", public, 0o644)

    uid, gid, home = passwd_entry(f.merged, cfg.user)
    ssh_dir = f.merged / home.lstrip("/") / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(controller_pubkey.strip() + "\n")
    keys.chmod(0o600)
    for p in (ssh_dir, keys):
        os.chown(p, uid, gid)
    return known_hosts_line(host, public)


def passwd_entry(root: Path, user: str) -> tuple[int, int, str]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3]), fields[5]
    raise EdgejarError(f"user {user!r} is missing from the sim rootfs: remove the rootfs cache and retry")


def _write(root: Path, path: str, content: str, mode: int) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    target.write_text(content)
    target.chmod(mode)


def boot(state: StateDir, cfg: SimConfig, host: HostSpec) -> None:
    """Start systemd-nspawn for the host, detached: in its own cgroups (own-v1) or unit (systemd-v2)."""
    f = files_of(state, host.name)
    record = state.host_record(host.name)
    cgroups = HostCgroups.from_record(record["cgroups"])
    cmd = launch.nspawn_command(
        f.merged,
        cfg.machine(host),
        host.name,
        network.NETNS_DIR / cfg.netns(host),
        f.firmware if f.firmware.is_dir() else None,
    )
    if cgroups.unit is not None:
        memory = host.memory_mib * 1024 * 1024
        run(launch.systemd_run_command(cgroups.unit, memory, f.console_log, cmd), timeout=60)
        pid = _unit_main_pid(cgroups.unit)
        state.update_host_record(host.name, nspawn_pid=pid, nspawn_start=start_time(pid))
        return
    with f.console_log.open("ab") as console:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            preexec_fn=cgroups.enter_function(),
        )
    state.update_host_record(host.name, nspawn_pid=proc.pid, nspawn_start=start_time(proc.pid))


def _unit_main_pid(unit: str) -> int:
    out = run(launch.unit_main_pid_command(unit)).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    pid = int(values.get("MainPID", "0") or 0)
    if pid <= 0:
        raise EdgejarError(f"{unit} has no main process right after systemd-run (nspawn exited at once?)")
    return pid


def wait_until_up(state: StateDir, cfg: SimConfig, host: HostSpec, deadline: float) -> None:
    """Wait for sshd to listen, then apply the persona /proc files and the cgroup workaround."""
    f = files_of(state, host.name)
    record = state.host_record(host.name)
    pid, started = record["nspawn_pid"], record["nspawn_start"]
    while True:
        if not is_same_process(pid, started):
            raise EdgejarError(f"host {host.name}: systemd-nspawn exited during boot:\n{console_tail(f)}")
        if port_open(host.address, SSH_PORT):
            break
        if time.monotonic() > deadline:
            raise EdgejarError(
                f"host {host.name}: SSH did not come up within {boot_timeout(len(cfg.hosts)):.0f} s "
                f"(a loaded machine boots slowly; retry):\n{console_tail(f)}"
            )
        time.sleep(0.2)
    kids = children(pid)
    if not kids:
        raise EdgejarError(f"host {host.name}: cannot find the container's init below nspawn PID {pid}")
    init = kids[0]
    state.update_host_record(host.name, init_pid=init, init_start=start_time(init))

    enter_mnt = ["nsenter", "-t", str(init), "-m", "--"]
    for name in ("cpuinfo", "meminfo"):
        run([*enter_mnt, "mount", "--bind", "-o", "ro", f"{PERSONA_DIR}/{name}", f"/proc/{name}"])
    for mount_point in _inner_cgroup_mounts(init):
        run([*enter_mnt, "mount", "-o", "remount,bind,rw", mount_point])
    enter_all = ["nsenter", "-t", str(init), "-a", "--"]
    remaining = max(5.0, deadline - time.monotonic())
    boot_state = run(
        [*enter_all, "systemctl", "is-system-running", "--wait"], check=False, timeout=remaining
    ).stdout.strip()
    if boot_state not in ("running", "degraded"):
        raise EdgejarError(f"host {host.name}: systemd reports {boot_state!r} after boot:\n{console_tail(f)}")
    if boot_state == "degraded":
        failed = run(
            [*enter_all, "systemctl", "--failed", "--plain", "--no-legend"], check=False
        ).stdout.split()
        log(f"host {host.name}: booted with failed units: {' '.join(u for u in failed if '.' in u)}")
    run([*enter_all, "systemctl", "daemon-reexec"], timeout=60)


def _inner_cgroup_mounts(init: int) -> list[str]:
    """Mount points of the v1 hierarchies inside the host that the host has its own cgroup in."""
    found = []
    for line in Path(f"/proc/{init}/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        post_fields = post.split()
        if len(post_fields) < 3 or post_fields[0] != "cgroup":
            continue
        options = set(post_fields[2].split(","))
        if options & set(HOST_CONTROLLERS):
            found.append(pre.split()[4])
    return found


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def console_tail(f: HostFiles, lines: int = 15) -> str:
    try:
        text = f.console_log.read_text(errors="replace")
    except OSError:
        return "  (no console log)"
    return "\n".join("  " + line for line in text.strip().splitlines()[-lines:])


def _is_mountpoint(path: Path) -> bool:
    return str(path) in mounts_below(path)


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    prefix = str(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point == prefix or mount_point.startswith(prefix + "/"):
            found.append(mount_point)
    return sorted(found, key=lambda m: m.count("/"), reverse=True)


# --- down -------------------------------------------------------------------------------------------
def request_poweroff(state: StateDir, name: str) -> None:
    """SIGTERM to nspawn: it asks the host's systemd to power off."""
    record = state.host_record(name)
    pid, started = record.get("nspawn_pid"), record.get("nspawn_start")
    if isinstance(pid, int) and is_same_process(pid, started):
        signal_pid(pid, signal.SIGTERM)


def wait_poweroff(state: StateDir, name: str, deadline: float) -> None:
    record = state.host_record(name)
    pid, started = record.get("nspawn_pid"), record.get("nspawn_start")
    if isinstance(pid, int):
        wait_gone(pid, started, max(0.0, deadline - time.monotonic()))


def remove(state: StateDir, name: str) -> list[str]:
    """Kill what is left of the host, remove its network, mounts, cgroups and files; returns leftovers."""
    record = state.host_record(name)
    left: list[str] = []
    cgroups = HostCgroups.from_record(record.get("cgroups", {}))
    if cgroups.unit is not None:
        # systemd-v2: the unit's stop powers the host off and kills what is left; --collect unloads it.
        run(launch.stop_command(cgroups.unit), check=False, timeout=launch.STOP_TIMEOUT_S + 30)
        run(["systemctl", "reset-failed", cgroups.unit], check=False)
    for key in ("init", "nspawn"):
        pid, started = record.get(f"{key}_pid"), record.get(f"{key}_start")
        if isinstance(pid, int) and is_same_process(pid, started):
            signal_pid(pid, signal.SIGKILL)
    stuck = cgroups.kill_all()
    if stuck:
        left.append(f"host {name}: processes {sorted(stuck)} survive in its cgroups")
    if record.get("netns") and record.get("veth"):
        network.host_net_down(record["netns"], record["veth"])
    merged = Path(record.get("merged") or files_of(state, name).merged)
    for mount_point in mounts_below(merged):
        run(["umount", "-l", mount_point], check=False)
    for mount_point in mounts_below(state.host_dir(name)):
        left.append(f"host {name}: {mount_point} is still mounted")
    for d in cgroups.remove():
        left.append(f"host {name}: cgroup {d} could not be removed")
    if record.get("machine"):
        propagate = Path("/run/systemd/nspawn/propagate") / record["machine"]
        if propagate.is_dir() and not mounts_below(propagate):
            run(["rm", "-rf", "--one-file-system", str(propagate)], check=False)
    if not mounts_below(state.host_dir(name)):
        run(["rm", "-rf", "--one-file-system", str(state.host_dir(name))], check=False)
    return left


def remove_empty_nspawn_dirs() -> None:
    """nspawn's own bookkeeping directories under /run, once no container uses them."""
    base = Path("/run/systemd/nspawn")
    for d in (base / "propagate", base / "locks", base):
        with contextlib.suppress(OSError):
            d.rmdir()
