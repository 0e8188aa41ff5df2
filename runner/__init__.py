"""edgejar's Python side: planner, Ansible bridge, simulated cluster, node runtime and monitor."""

__version__ = "0.1.0"
