"""The whole simulated cluster: `up`, `down`, `status`, and the leftover check that `down` reports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runner import deployed
from runner.errors import EdgejarError
from runner.sim import aptrepo, binfmt, host, launch, layout, network, preflight
from runner.sim.cgroups import HostCgroups, parse_hierarchies
from runner.sim.config import HostSpec, SimConfig
from runner.sim.inventory import repo_root, write_inventory, write_known_hosts
from runner.sim.rootfs import Rootfs, ensure_rootfs, host_arch
from runner.sim.state import StateDir
from runner.sim.system import is_same_process, log, run
from runner.sim.vm import host as vm_host
from runner.sim.vm import image as vm_image
from runner.sim.vm import qemu as vm_qemu

POWEROFF_TIMEOUT = 10.0
SSH_CHECK_TIMEOUT = 90.0  # a first login can take a minute on a loaded or emulated machine (CI guest)


# --- build / up -------------------------------------------------------------------------------------
def build(cfg: SimConfig, cache_dir: Path) -> None:
    """Build (or find in the cache) the rootfs builds and the APT repository, without booting anything."""
    preflight.require_root("build")
    preflight.check_tools(preflight.UP_TOOLS + (preflight.FOREIGN_TOOLS if _foreign(cfg) else ()))
    user = f"build {os.getpid()}"  # not the state directory's: a cluster of it may be up and need arm64
    builds = _rootfs_builds(cfg, user, cache_dir)
    if _foreign(cfg):
        binfmt.release(user)
    repo = aptrepo.ensure_repo(cache_dir, list(builds.values()))
    log(f"rootfs {', '.join(str(b.rootfs) for b in builds.values())} and APT repository {repo} are ready")


def _foreign(cfg: SimConfig) -> list[str]:
    """The foreign architectures of the cluster's hosts (arm64 Pi and Jetson hosts)."""
    return sorted({h.arch for h in cfg.hosts if h.arch and h.arch != host_arch()})


def _rootfs_builds(cfg: SimConfig, binfmt_user: str, cache_dir: Path) -> dict[str, Rootfs]:
    """arch -> its rootfs build, the controller's first; a foreign one after its binfmt entry is in place
    (for `binfmt_user`, who releases it)."""
    builds = {host_arch(): ensure_rootfs(cache_dir, cfg.user)}
    for arch in _foreign(cfg):
        binfmt.acquire(binfmt_user)
        builds[arch] = ensure_rootfs(cache_dir, cfg.user, arch)
    return builds


def up(cfg: SimConfig, state: StateDir, cache_dir: Path, keep_on_failure: bool = False) -> Path:
    """Bring the cluster up (or find it up with the same config); returns the inventory path."""
    preflight.require_root("up")
    preflight.check_tools(preflight.UP_TOOLS + (preflight.FOREIGN_TOOLS if _foreign(cfg) else ()))
    preflight.check_kernel()
    if _containers(cfg):
        way = layout.detect().require()  # before anything is created: fail at once without a ceiling
        if way == layout.SYSTEMD_V2:
            preflight.check_tools(preflight.SYSTEMD_TOOLS)
    if _vms(cfg):
        preflight.check_tools(preflight.VM_TOOLS)
    with state.lock():
        recorded = state.load()
        if recorded is not None:
            if recorded.get("phase") == "up" and state.config() == cfg and state.inventory.exists():
                broken = [h.name for h, ok, _ in check_ssh(state.config() or cfg, state) if not ok]
                if not broken:
                    log(f"already up with this config ({len(cfg.hosts)} hosts)")
                    return state.inventory
                log(f"recorded cluster is up but {', '.join(broken)} do not answer: recreating it")
            else:
                log(f"removing the earlier simulated cluster recorded in {state.root}")
            left = _down_locked(state)
            if left:
                raise EdgejarError("could not remove the earlier simulated cluster:\n  " + "\n  ".join(left))
        _check_names_free(cfg)
        network.check_subnet_free(cfg.subnet, own_bridge=None)
        state.ensure_root()
        state.save(cfg, "starting", created=time.time())
        try:
            _up_locked(cfg, state, cache_dir)
        except BaseException:
            if keep_on_failure:
                log(f"sim up failed; --keep-on-failure: everything stays for inspection in {state.root}")
            else:
                log("sim up failed: removing what it created")
                for line in _down_locked(state):
                    log(f"leftover: {line}")
            raise
        return state.inventory


def _containers(cfg: SimConfig) -> list[HostSpec]:
    return [h for h in cfg.hosts if h.backend == "nspawn"]


def _vms(cfg: SimConfig) -> list[HostSpec]:
    return [h for h in cfg.hosts if h.backend == "vm"]


def _check_names_free(cfg: SimConfig) -> None:
    taken = []
    if network.link_exists(cfg.bridge):
        taken.append(f"network interface {cfg.bridge}")
    for h in _vms(cfg):
        if network.link_exists(cfg.tap(h)):
            taken.append(f"network interface {cfg.tap(h)}")
    for h in _containers(cfg):
        if network.netns_exists(cfg.netns(h)):
            taken.append(f"network namespace {cfg.netns(h)}")
        if network.link_exists(cfg.veth(h)):
            taken.append(f"network interface {cfg.veth(h)}")
    if taken:
        raise EdgejarError(
            "names the sim needs are in use and not recorded in its state directory: "
            + ", ".join(taken)
            + " (another simulated cluster with a different EDGEJAR_SIM_DIR? use another `bridge:`/`prefix:`)"
        )


def _up_locked(cfg: SimConfig, state: StateDir, cache_dir: Path) -> None:
    started = time.monotonic()
    machine_layout = layout.detect()
    if _containers(cfg):
        log(f"cgroup layout: {machine_layout.describe()}")
    builds = _rootfs_builds(cfg, str(state.root.resolve()), cache_dir)
    rootfs = builds[host_arch()]
    repo = aptrepo.ensure_repo(cache_dir, list(builds.values()))
    vms = _vms(cfg)
    if vms:  # built (or found) before anything is created
        image = vm_image.ensure_image(cache_dir, rootfs)
        accel = vm_qemu.accelerator(image, cache_dir)
    pubkey = _controller_key(state)
    state.save(cfg, "starting", bridge=cfg.bridge, made_netns_dir=not network.netns_dir_mounted())
    network.bridge_up(cfg.bridge, cfg.gateway, cfg.prefixlen)
    aptrepo.serve(state, repo, cfg.gateway, cfg.repo_port)
    log(
        f"booting {len(cfg.hosts)} hosts: "
        + ", ".join(f"{h.name} ({h.kind}, {h.address})" for h in cfg.hosts)
    )
    known = [
        host.prepare(state, cfg, h, builds[h.arch or host_arch()], pubkey, machine_layout)
        for h in _containers(cfg)
    ]
    if vms:
        known += [vm_host.prepare(state, cfg, h, rootfs, image, pubkey) for h in vms]
    write_known_hosts(state, known)
    for h in _containers(cfg):
        host.boot(state, cfg, h)
    for h in vms:
        vm_host.boot(state, cfg, h, image, accel)
    deadline = time.monotonic() + host.boot_timeout(len(cfg.hosts))
    for h in _containers(cfg):
        host.wait_until_up(state, cfg, h, deadline)
    if vms:
        log(f"waiting for {len(vms)} VM hosts ({accel}) to boot")
    deadline = time.monotonic() + vm_host.BOOT_TIMEOUT_S
    for h in vms:
        vm_host.wait_until_up(state, cfg, h, deadline)
    bad = [f"{h.name}: {msg}" for h, ok, msg in check_ssh(cfg, state) if not ok]
    if bad:
        raise EdgejarError("hosts booted but SSH as the sim user failed:\n  " + "\n  ".join(bad))
    inventory = write_inventory(cfg, state)
    clear_fact_cache(cfg)
    deployed.forget_inventory(inventory)  # new machines: what runner up deployed before is gone
    state.save(cfg, "up")
    log(f"up in {time.monotonic() - started:.0f} s; inventory: {inventory}")


def _controller_key(state: StateDir) -> str:
    key = state.ssh_key
    if not key.exists():
        key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgejar-sim-controller", "-f", str(key)])
    return key.with_suffix(".pub").read_text()


def ssh_command(cfg: SimConfig, state: StateDir, h: HostSpec, *remote: str) -> list[str]:
    """An ssh command line to a host as the sim user, with host-key checking against the sim's known_hosts."""
    return [
        "ssh",
        "-i",
        str(state.ssh_key),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={state.known_hosts}",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "ControlPath=none",
        f"{cfg.user}@{h.address}",
        *remote,
    ]


def check_ssh(cfg: SimConfig, state: StateDir) -> list[tuple[HostSpec, bool, str]]:
    """Log in to every host (in parallel) and run `sudo -n true`: SSH, host key and sudo all work."""

    def one(h: HostSpec) -> tuple[HostSpec, bool, str]:
        try:
            proc = subprocess.run(
                ssh_command(cfg, state, h, "sudo", "-n", "true"),
                capture_output=True,
                text=True,
                timeout=SSH_CHECK_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return h, False, "timed out"
        if proc.returncode == 0:
            return h, True, "ok"
        return h, False, (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]

    with ThreadPoolExecutor(max_workers=max(1, len(cfg.hosts))) as pool:
        return list(pool.map(one, cfg.hosts))


def clear_fact_cache(cfg: SimConfig) -> None:
    """Drop cached Ansible facts of the sim's host names (the repo's ansible.cfg caches facts in .cache/).

    The sim's hosts share their names with the real cluster's and are new machines at every `sim up`.
    The jsonfile cache names its files after the host, with a versioned prefix in ansible-core 2.19
    (`s1_jetson`).
    """
    cache = repo_root() / ".cache" / "ansible-facts"
    if not cache.is_dir():
        return
    names = {h.name for h in cfg.hosts}
    for f in cache.iterdir():
        stem = f.name.split("_", 1)[1] if re.fullmatch(r"[A-Za-z0-9]+_.+", f.name) else f.name
        if f.name in names or stem in names:
            f.unlink(missing_ok=True)


# --- down -------------------------------------------------------------------------------------------
def down(state: StateDir) -> list[str]:
    """Remove everything the sim created; returns what could not be removed (empty when clean)."""
    preflight.require_root("down")
    preflight.check_tools(preflight.DOWN_TOOLS)
    with state.lock():
        return _down_locked(state)


def _down_locked(state: StateDir) -> list[str]:
    recorded = state.load() or {}
    cfg = state.config()
    names = state.recorded_hosts()
    if cfg is None and not names and not state.repo_server_file.exists():
        if state.root.exists() and not host.mounts_below(state.root):
            shutil.rmtree(state.root, ignore_errors=True)
        log(f"nothing recorded in {state.root}: nothing to remove")
        return []
    _close_control_masters(state)
    vms = [n for n in names if state.host_record(n).get("backend") == "vm"]
    containers = [n for n in names if n not in vms]
    for name in containers:
        host.request_poweroff(state, name)
    deadline = time.monotonic() + POWEROFF_TIMEOUT
    for name in containers:
        host.wait_poweroff(state, name, deadline)
    left: list[str] = []
    for name in vms:
        left += vm_host.remove(state, name)
    for name in containers:
        left += host.remove(state, name)
    if containers:
        host.remove_empty_nspawn_dirs()
    server_left = aptrepo.stop(state)
    if server_left:
        left.append(server_left)
    if recorded.get("bridge"):
        network.bridge_down(recorded["bridge"])
    if recorded.get("made_netns_dir"):
        network.release_netns_dir()
    # A no-op unless this sim (or an interrupted `up` of it) needed arm64.
    binfmt.release(str(state.root.resolve()))
    if cfg is not None:
        clear_fact_cache(cfg)
    deployed.forget_inventory(state.inventory)
    left += find_leftovers(cfg, state, names, recorded.get("bridge"))
    if not left and state.root.exists():
        shutil.rmtree(state.root, ignore_errors=True)
    if names:
        log(f"removed {len(names)} hosts: {', '.join(names)}")
    return left


def _close_control_masters(state: StateDir) -> None:
    """End the SSH ControlPersist masters that Ansible left for the sim's hosts."""
    if not state.control_dir.is_dir():
        return
    for sock in state.control_dir.iterdir():
        run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "edgejar-sim"], check=False, timeout=10)


def find_leftovers(cfg: SimConfig | None, state: StateDir, names: list[str], bridge: str | None) -> list[str]:
    """Namespaces, interfaces, mounts, cgroups and processes of the sim that still exist."""
    machines: dict[str, tuple[str, str]] = {}  # machine -> (netns, veth)
    taps = {cfg.tap(h) for h in _vms(cfg)} if cfg is not None else set()
    if cfg is not None:
        for h in _containers(cfg):
            machines[cfg.machine(h)] = (cfg.netns(h), cfg.veth(h))
    left = []
    for name in names:
        rec = state.host_record(name)
        if rec.get("backend") == "vm":
            taps.add(rec.get("tap", ""))
            if is_same_process(rec.get("qemu_pid"), rec.get("qemu_start")):
                left.append(f"QEMU of host {name} (PID {rec['qemu_pid']})")
        elif rec.get("machine"):
            machines[rec["machine"]] = (rec.get("netns", ""), rec.get("veth", ""))
    left += [f"network interface {tap}" for tap in sorted(taps) if tap and network.link_exists(tap)]
    for machine, (netns, veth) in sorted(machines.items()):
        if netns and network.netns_exists(netns):
            left.append(f"network namespace {netns}")
        if veth and network.link_exists(veth):
            left.append(f"network interface {veth}")
        for d in _cgroup_dirs_named(machine) + _cgroup_dirs_named(launch.unit_name(machine)):
            left.append(f"cgroup {d}")
        if _unit_loaded(launch.unit_name(machine)):
            left.append(f"systemd unit {launch.unit_name(machine)}")
    if bridge and network.link_exists(bridge):
        left.append(f"bridge {bridge}")
    for mount_point in host.mounts_below(state.root):
        left.append(f"mount {mount_point}")
    if aptrepo.server_running(state):
        left.append("APT repo server process")
    return left


def _cgroup_dirs_named(leaf: str, max_depth: int = 6) -> list[Path]:
    """Cgroup directories called `leaf` in any hierarchy (they may sit below another shell's cgroup)."""
    mounts = {h.mount for h in parse_hierarchies(Path("/proc/self/cgroup").read_text(), _mountinfo())}
    found = []
    for mount in mounts:
        base_depth = len(mount.parts)
        for dirpath, dirnames, _ in os.walk(mount):
            depth = len(Path(dirpath).parts) - base_depth
            if leaf in dirnames:
                found.append(Path(dirpath) / leaf)
                dirnames.remove(leaf)
            if depth >= max_depth:
                dirnames.clear()
    return found


def _unit_loaded(unit: str) -> bool:
    """A host's transient service is still known to the machine's systemd (systemd-v2 machines)."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return False
    out = run(["systemctl", "show", "--property=LoadState", "--value", unit], check=False).stdout.strip()
    return out not in ("", "not-found")


def _mountinfo() -> str:
    return Path("/proc/self/mountinfo").read_text()


# --- status -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostStatus:
    spec: HostSpec
    running: bool
    ssh_ok: bool
    ssh_message: str
    memory: tuple[int, int] | None


def status(state: StateDir) -> tuple[SimConfig | None, str, list[HostStatus]]:
    """(config, phase, per-host status); config is None when no cluster is recorded."""
    cfg = state.config()
    recorded = state.load() or {}
    if cfg is None:
        return None, "down", []
    ssh = {h.name: (ok, msg) for h, ok, msg in check_ssh(cfg, state)} if state.ssh_key.exists() else {}
    result = []
    for h in cfg.hosts:
        rec = state.host_record(h.name)
        ok, msg = ssh.get(h.name, (False, "no key"))
        if rec.get("backend") == "vm":  # its memory is the guest's own (`free` inside); not read from here
            result.append(HostStatus(h, vm_host.running(state, h.name), ok, msg, None))
            continue
        running = is_same_process(rec.get("nspawn_pid"), rec.get("nspawn_start"))
        cgroups = HostCgroups.from_record(rec.get("cgroups", {}))
        result.append(HostStatus(h, running, ok, msg, cgroups.memory_usage() if running else None))
    return cfg, str(recorded.get("phase", "?")), result
