"""The aarch64 stage's cluster: one simulated Raspberry Pi 5 that runs the board's arm64 Debian userland.

A container like the integration tier's hosts, whose programs are arm64 and run through qemu-user
(binfmt_misc, registered by the sim while it is up): its facts, package names, Python tag and wheel key
are a Pi's (`aarch64-a76-cp311`). On its own subnet, bridge, prefix, repository port and state directory,
apart from the other stages' clusters (so they can run at once) and from a developer's. Brought up once
for the stage and always taken down. Everything on it runs emulated: every Ansible task takes seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.sim import binfmt
from tests.integration.conftest import Sim, sim_session, skip_reason

ARM_STATE_DIR = Path(os.environ.get("EDGEJAR_TEST_ARM_DIR", "/var/tmp/edgejar-sim-armtest"))
ARM_CONFIG = """\
subnet: 10.231.49.0/24
bridge: ejrbr0
prefix: ejr
repo_port: 8089
hosts:
  - {name: rpi1, kind: rpi5, arch: arm64, memory_mib: 2048}
"""
UP_TIMEOUT = 2400  # a first run builds the arm64 rootfs under emulation (about 10 minutes)


def arm_skip_reason() -> str | None:
    reason = skip_reason()
    if reason:
        return reason
    if not binfmt.INTERPRETER.exists():
        return f"arm64 hosts need {binfmt.INTERPRETER} (apt-get install qemu-user-static)"
    if not Path("/proc/sys/fs/binfmt_misc").is_dir():
        return "arm64 hosts need the kernel's binfmt_misc"
    return None


@pytest.fixture(scope="session")
def arm_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    reason = arm_skip_reason()
    if reason:
        pytest.skip(reason)
    yield from sim_session(
        ARM_STATE_DIR, ARM_CONFIG, tmp_path_factory.mktemp("arm-sim"), "arm64 host", UP_TIMEOUT
    )


@pytest.fixture(scope="session")
def runner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ansible-runner-arm")
