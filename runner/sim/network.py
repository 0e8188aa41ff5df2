"""The sim network: a bridge owning one /24 on the controller, and a network namespace per host.

Each host's namespace has `eth0` (a veth whose peer is on the bridge), its own address and no default
route; the controller keeps ip_forward as it is and adds no NAT, so the hosts reach the controller's
bridge address (SSH in, the APT repo out) and each other, nothing else.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import EdgejarError
from runner.sim.system import run

NETNS_DIR = Path("/run/netns")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_dir_mounted() -> bool:
    """`ip netns add` bind-mounts /run/netns on itself the first time it runs on a machine."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == str(NETNS_DIR):
            return True
    return False


def release_netns_dir() -> None:
    """Undo the /run/netns mount that our first `ip netns add` made, once no namespace is left in it."""
    if NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()) and netns_dir_mounted():
        run(["umount", str(NETNS_DIR)], check=False)
        if not netns_dir_mounted():
            with contextlib.suppress(OSError):
                NETNS_DIR.rmdir()


def bridge_up(name: str, address: str, prefixlen: int) -> None:
    if not link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge"])
    run(["ip", "addr", "replace", f"{address}/{prefixlen}", "dev", name])
    run(["ip", "link", "set", name, "up"])


def bridge_down(name: str) -> None:
    if link_exists(name):
        run(["ip", "link", "del", name], check=False)


def host_net_up(netns: str, veth: str, bridge: str, address: str, prefixlen: int) -> None:
    """Namespace `netns` with eth0=address on the bridge (through veth `veth`), loopback up."""
    if not netns_exists(netns):
        run(["ip", "netns", "add", netns])
    if not link_exists(veth):
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    run(["ip", "-n", netns, "addr", "replace", f"{address}/{prefixlen}", "dev", "eth0"])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])
    run(["ip", "-n", netns, "link", "set", "eth0", "up"])


def host_net_down(netns: str, veth: str) -> None:
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False)
    if netns_exists(netns):
        run(["ip", "netns", "del", netns], check=False)


# --- "subnet already in use" ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Conflict:
    what: str  # "address" or "route"
    network: str
    device: str

    def __str__(self) -> str:
        if self.what == "address":
            return f"{self.network} is configured on {self.device}"
        return f"a route to {self.network} goes through {self.device}"


def subnet_conflicts(
    subnet: str,
    addresses: list[dict[str, Any]],
    routes: list[dict[str, Any]],
    ignore_device: str | None = None,
) -> list[Conflict]:
    """What on this machine already uses addresses of `subnet`, from `ip -j addr` and `ip -j route` output.

    Our own bridge (ignore_device) does not count; neither do default routes or the kernel's local table.
    """
    net = ipaddress.IPv4Network(subnet)
    found: list[Conflict] = []
    for link in addresses:
        dev = str(link.get("ifname", "?"))
        if dev == ignore_device:
            continue
        for info in link.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            iface = ipaddress.IPv4Interface(f"{info['local']}/{info.get('prefixlen', 32)}")
            if iface.network.overlaps(net):
                found.append(Conflict("address", str(iface), dev))
    for route in routes:
        dst = route.get("dst", "")
        dev = str(route.get("dev", "?"))
        if dst in ("", "default") or dev == ignore_device:
            continue
        if route.get("type", "unicast") != "unicast" or route.get("table") == "local":
            continue
        try:
            rnet = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if rnet.prefixlen == 0:
            continue
        if rnet.overlaps(net):
            found.append(Conflict("route", str(rnet), dev))
    return found


def check_subnet_free(subnet: str, own_bridge: str | None) -> None:
    addresses = json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    conflicts = subnet_conflicts(subnet, addresses, routes, ignore_device=own_bridge)
    if conflicts:
        detail = "; ".join(str(c) for c in conflicts)
        raise EdgejarError(
            f"subnet {subnet} is already in use on this machine ({detail}); "
            "pick another with `sim up --subnet 10.231.N.0/24` or `subnet:` in the sim config"
        )
