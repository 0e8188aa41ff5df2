"""The VM stage's cluster: two simulated hosts that are QEMU guests with their own kernel (`--backend vm`).

A Raspberry Pi 5 (NetworkManager, as Raspberry Pi OS) and an x86 host (systemd-networkd, as a Debian
server), on their own subnet, bridge, prefix, repository port and state directory, apart from the
integration tier's cluster (so both can run at once) and from a developer's. Brought up once for the
stage and always taken down. Under TCG (no usable KVM) each host has one emulated vCPU: every Ansible
task takes seconds, so the tests run the roles on both hosts at once where they can.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Sim, sim_session, skip_reason

VM_STATE_DIR = Path(os.environ.get("EDGEJAR_TEST_VM_DIR", "/var/tmp/edgejar-sim-vmtest"))
VM_CONFIG = """\
subnet: 10.231.46.0/24
bridge: ejvbr0
prefix: ejv
repo_port: 8086
backend: vm
hosts:
  - {name: rpi1, kind: rpi5}
  - {name: host, kind: x86}
"""
UP_TIMEOUT = 1800  # a first run builds the rootfs and the VM image (minutes); later runs boot in 1-3 min


def vm_skip_reason() -> str | None:
    reason = skip_reason()
    if reason:
        return reason
    missing = [t for t in ("qemu-system-x86_64", "qemu-img", "mke2fs") if shutil.which(t) is None]
    if missing:
        return f"VM hosts need {', '.join(missing)} (apt-get install qemu-system-x86 qemu-utils e2fsprogs)"
    if not Path("/dev/net/tun").exists():
        return "VM hosts need /dev/net/tun (tap devices on the sim's bridge)"
    return None


@pytest.fixture(scope="session")
def vm_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    reason = vm_skip_reason()
    if reason:
        pytest.skip(reason)
    yield from sim_session(VM_STATE_DIR, VM_CONFIG, tmp_path_factory.mktemp("vm-sim"), "VM hosts", UP_TIMEOUT)


@pytest.fixture(scope="session")
def runner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ansible-runner-vm")
