"""`python -m runner sim up|down|status|inventory`: the simulated edge cluster on this machine."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from runner.errors import EdgejarError
from runner.sim import cluster, doctor
from runner.sim.config import (
    BACKENDS,
    DEFAULT_HOSTS,
    DEFAULT_SUBNET,
    STATE_DIR_ENV,
    build_config,
    cache_dir_from_env,
    state_dir_from_env,
)
from runner.sim.rootfs import host_arch
from runner.sim.state import StateDir

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where the sim records what it created (default ${STATE_DIR_ENV} or /var/tmp/edgejar-sim)",
    )
    p = sub.add_parser(
        "sim",
        help="the simulated edge cluster on this machine",
        description=(
            "A local cluster of systemd-nspawn hosts that look like the seed hardware (Jetson AGX Orin, "
            "Raspberry Pi 5, x86), reached over real SSH. Needs root."
        ),
    )
    actions = p.add_subparsers(dest="sim_action", metavar="ACTION", required=True)

    up = actions.add_parser("up", parents=[common], help="bring the simulated cluster up")
    up.add_argument(
        "--hosts",
        help=f"NAME:KIND[:MEMORY_MIB],... with KIND jetson, rpi5 or x86 (default {DEFAULT_HOSTS})",
    )
    up.add_argument(
        "--config",
        type=Path,
        help="YAML file: hosts (name, kind, memory_mib, torch, backend, arch), subnet, bridge, prefix, "
        "repo_port, user, memory_mib, backend",
    )
    up.add_argument("--subnet", help=f"the sim's own IPv4 /24 (default {DEFAULT_SUBNET})")
    up.add_argument("--memory", type=int, metavar="MIB", help="real memory ceiling of every host in MiB")
    up.add_argument(
        "--backend",
        choices=BACKENDS,
        help="every host a container on this kernel (nspawn, the default) or a QEMU guest with its own "
        "kernel (vm: swap, addresses, reboots and OOM kills are real; docs/sim.md)",
    )
    up.add_argument(
        "--keep-on-failure", action="store_true", help="leave a failed cluster in place for inspection"
    )
    up.set_defaults(func=_up)

    build = actions.add_parser(
        "build",
        parents=[common],
        help="build (or find cached) the hosts' rootfs and the APT repo, boot nothing",
    )
    build.add_argument(
        "--config", type=Path, help="YAML sim config whose hosts' architectures to build for (arm64 too)"
    )
    build.set_defaults(func=_build)

    down = actions.add_parser(
        "down", parents=[common], help="remove the simulated cluster and report leftovers"
    )
    down.set_defaults(func=_down)

    status = actions.add_parser("status", parents=[common], help="list the hosts and whether SSH answers")
    status.set_defaults(func=_status)

    check = actions.add_parser(
        "check", help="what this machine has for the simulated cluster, what is missing and how to get it"
    )
    check.set_defaults(func=_check)

    guest = actions.add_parser(
        "guest",
        help="CI: the sim and one experiment inside a standard Debian 12 guest (QEMU), nothing left after",
    )
    guest.add_argument(
        "--build-only", action="store_true", help="build (or find cached) the guest image only"
    )
    guest.add_argument("--keep", type=Path, metavar="DIR", help="copy the guest's job log and results here")
    guest.set_defaults(func=_guest)

    inventory = actions.add_parser(
        "inventory", parents=[common], help="print the path of the simulated cluster's inventory"
    )
    inventory.set_defaults(func=_inventory)


def _state(args: argparse.Namespace) -> StateDir:
    return StateDir(args.state_dir or state_dir_from_env())


def _up(args: argparse.Namespace) -> int:
    cfg = build_config(
        config_file=args.config,
        hosts=args.hosts,
        subnet=args.subnet,
        memory_mib=args.memory,
        backend=args.backend,
    )
    path = cluster.up(cfg, _state(args), cache_dir_from_env(), keep_on_failure=args.keep_on_failure)
    print(path)
    return 0


def _build(args: argparse.Namespace) -> int:
    cluster.build(build_config(config_file=args.config), cache_dir_from_env())
    return 0


def _down(args: argparse.Namespace) -> int:
    state = _state(args)
    left = cluster.down(state)
    if left:
        log.error("\n".join(["sim down: these are left over and need a look:", *(f"  {x}" for x in left)]))
        return 1
    log.info("sim down: nothing left")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = _state(args)
    cfg, phase, hosts = cluster.status(state)
    if cfg is None:
        print(f"simulated cluster: down (nothing recorded in {state.root})")
        return 1
    print(
        f"simulated cluster: {phase}, {len(cfg.hosts)} hosts on {cfg.subnet} (bridge {cfg.bridge}), "
        f"APT repo {cfg.repo_url}"
    )
    print(f"inventory: {state.inventory}")
    native = host_arch()
    rows = [
        ("HOST", "KIND", "BACKEND", "ARCH", "GROUP", "ADDRESS", "MEMORY MiB (used/limit)", "RUNNING", "SSH")
    ]
    for h in hosts:
        memory = f"{h.memory[0] >> 20}/{h.memory[1] >> 20}" if h.memory else f"-/{h.spec.memory_mib}"
        rows.append(
            (
                h.spec.name,
                h.spec.kind,
                h.spec.backend,
                h.spec.arch or native,
                h.spec.persona.group,
                h.spec.address,
                memory,
                "yes" if h.running else "no",
                "ok" if h.ssh_ok else f"FAILED: {h.ssh_message}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0 if all(h.ssh_ok for h in hosts) else 1


def _check(args: argparse.Namespace) -> int:
    found = doctor.findings()
    print(doctor.report(found))
    return 1 if doctor.blocking(found) else 0


def _guest(args: argparse.Namespace) -> int:
    from runner.sim.guest import stage

    return stage.main(cache_dir_from_env(), build_only=args.build_only, keep=args.keep)


def _inventory(args: argparse.Namespace) -> int:
    state = _state(args)
    data = state.load()
    if not data or data.get("phase") != "up" or not state.inventory.exists():
        raise EdgejarError(
            f"the simulated cluster is not up (no inventory in {state.root}): run `python -m runner sim up`"
        )
    print(state.inventory)
    return 0
