"""'Subnet already in use': what `ip -j addr` / `ip -j route` output counts as a conflict."""

from __future__ import annotations

from runner.sim.network import subnet_conflicts

ADDRS = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.168.1.5", "prefixlen": 24}]},
    {"ifname": "docker0", "addr_info": [{"family": "inet", "local": "10.231.42.1", "prefixlen": 16}]},
    {"ifname": "ejbr0", "addr_info": [{"family": "inet", "local": "10.231.43.1", "prefixlen": 24}]},
]
ROUTES = [
    {"dst": "default", "gateway": "192.168.1.1", "dev": "eth0"},
    {"dst": "10.50.0.0/16", "gateway": "192.168.1.1", "dev": "eth0"},
    {"dst": "10.231.43.1", "dev": "ejbr0", "table": "local", "type": "local"},
    {"dst": "192.168.1.0/24", "dev": "eth0"},
]


def test_free_subnet() -> None:
    assert subnet_conflicts("10.232.0.0/24", ADDRS, ROUTES) == []


def test_an_address_whose_network_overlaps() -> None:
    # docker0's 10.231.0.0/16 covers every 10.231.N.0/24, not just the one its address is in.
    found = subnet_conflicts("10.231.200.0/24", ADDRS, ROUTES)
    assert [str(c) for c in found] == ["10.231.42.1/16 is configured on docker0"]


def test_routes_count_but_not_default_or_local_ones() -> None:
    found = subnet_conflicts("10.50.7.0/24", ADDRS, ROUTES)
    assert [str(c) for c in found] == ["a route to 10.50.0.0/16 goes through eth0"]


def test_our_own_bridge_is_ignored() -> None:
    assert [str(c) for c in subnet_conflicts("10.231.43.0/24", ADDRS, ROUTES, ignore_device="docker0")] == [
        "10.231.43.1/24 is configured on ejbr0"
    ]
    assert subnet_conflicts("10.231.43.0/24", ADDRS[:2] + ADDRS[3:], ROUTES, ignore_device="ejbr0") == []
