"""Hardware personas: the files through which a simulated host looks like a Jetson, a Pi 5 or an x86 box.

A persona is pure data plus renderers for the files that facts code reads on real boards:
`/etc/nv_tegra_release`, the device-tree model and compatible strings (under `/sys/firmware/devicetree`,
which `/proc/device-tree` links to on real boards), `/proc/cpuinfo` and `/proc/meminfo`. The memory and
CPU count that these files show are the board's, not the simulated host's real ceiling, which comes from
its cgroup (see `memory_mib` in the sim config).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from runner.errors import InputError

# Where the fake /proc files are placed inside a host; `sim up` bind-mounts them over /proc after boot.
PERSONA_DIR = "/usr/lib/edgejar-sim/persona"
FACT_FILE = "/etc/ansible/facts.d/edgejar_sim.fact"


@dataclass(frozen=True)
class Persona:
    kind: str
    group: str  # inventory group of this hardware kind (same names as the real inventory)
    description: str
    model: str | None  # device-tree model (None: no device tree, as on x86)
    compatible: tuple[str, ...]
    cores: int
    mem_total_kb: int  # what /proc/meminfo shows as MemTotal
    default_memory_mib: int  # real memory ceiling of the simulated host (cgroup), overridable
    board_arch: str  # architecture of the real board (the simulated userland is the controller's)
    nv_tegra_release: str | None = None


JETSON_ORIN = Persona(
    kind="jetson",
    group="jetson_orin",
    description="NVIDIA Jetson AGX Orin 64 GB developer kit (L4T R36.4 / JetPack 6.1)",
    model="NVIDIA Jetson AGX Orin Developer Kit",
    compatible=("nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234"),
    cores=12,
    mem_total_kb=64_335_836,
    default_memory_mib=2048,
    board_arch="aarch64",
    nv_tegra_release=(
        "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, "
        "DATE: Fri Sep 13 04:36:44 UTC 2024\n"
        "# KERNEL_VARIANT: oot\n"
        "TARGET_USERSPACE_LIB_DIR=nvidia\n"
        "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n"
    ),
)

RPI5 = Persona(
    kind="rpi5",
    group="rpi5",
    description="Raspberry Pi 5 Model B 8 GB (Raspberry Pi OS bookworm)",
    model="Raspberry Pi 5 Model B Rev 1.0",
    compatible=("raspberrypi,5-model-b", "brcm,bcm2712"),
    cores=4,
    mem_total_kb=8_245_320,
    default_memory_mib=1024,
    board_arch="aarch64",
)

X86 = Persona(
    kind="x86",
    group="x86",
    description="x86-64 coordinator, 8 cores, 32 GB",
    model=None,
    compatible=(),
    cores=8,
    mem_total_kb=32_815_148,
    default_memory_mib=1536,
    board_arch="x86_64",
)

PERSONAS: dict[str, Persona] = {p.kind: p for p in (JETSON_ORIN, RPI5, X86)}
KIND_ALIASES: dict[str, str] = {
    "jetson": "jetson",
    "jetson-orin": "jetson",
    "jetson_orin": "jetson",
    "orin": "jetson",
    "rpi5": "rpi5",
    "rpi": "rpi5",
    "pi5": "rpi5",
    "x86": "x86",
    "x86_64": "x86",
    "amd64": "x86",
}


def persona(kind: str) -> Persona:
    """The persona for a kind name or alias (case-insensitive); InputError names the known kinds."""
    key = KIND_ALIASES.get(kind.strip().lower())
    if key is None:
        known = ", ".join(sorted(PERSONAS))
        raise InputError(f"unknown host kind {kind!r}: known kinds are {known}")
    return PERSONAS[key]


def cpuinfo(p: Persona) -> str:
    """/proc/cpuinfo in the layout of the board's kernel.

    The boards get the mainline arm64 layout (one `processor` block per core, no `model name`), so that
    Ansible, which on an x86_64 userland counts `processor` and `model name` lines alike, reports the
    board's core count; the Pi adds its `Revision/Serial/Model` trailer.
    """
    blocks: list[str] = []
    for i in range(p.cores):
        if p.kind == "x86":
            blocks.append(
                f"processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
                "model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nphysical id\t: 0\n"
                f"siblings\t: {p.cores}\ncore id\t\t: {i}\ncpu cores\t: {p.cores}\n"
                "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov sse sse2 avx avx2\n"
            )
        elif p.kind == "jetson":
            blocks.append(
                f"processor\t: {i}\nBogoMIPS\t: 62.50\n"
                "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                "asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm paca pacg\n"
                "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd42\n"
                "CPU revision\t: 1\n"
            )
        else:
            blocks.append(
                f"processor\t: {i}\nBogoMIPS\t: 108.00\n"
                "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                "asimdrdm lrcpc dcpop asimddp\n"
                "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\n"
                "CPU revision\t: 1\n"
            )
    text = "\n".join(blocks) + "\n"
    if p.kind == "rpi5":
        text += f"Revision\t: d04170\nSerial\t\t: 2d6a1c0e5f3b9a71\nModel\t\t: {p.model}\n"
    return text


def meminfo(p: Persona) -> str:
    """/proc/meminfo with the board's totals (static: the real usage is in the host's cgroup)."""
    total = p.mem_total_kb
    free = total * 85 // 100
    available = total * 90 // 100
    fields = [
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", available),
        ("Buffers", total // 200),
        ("Cached", total // 25),
        ("SwapCached", 0),
        ("Active", total // 20),
        ("Inactive", total // 40),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Dirty", 0),
        ("AnonPages", total // 40),
        ("Mapped", total // 100),
        ("Shmem", total // 500),
        ("Slab", total // 100),
        ("SReclaimable", total // 200),
        ("SUnreclaim", total // 200),
        ("CommitLimit", total // 2),
        ("Committed_AS", total // 20),
    ]
    return "".join(f"{name + ':':<16}{value:>8} kB\n" for name, value in fields)


def devicetree_files(p: Persona) -> dict[str, bytes]:
    """Files under /sys/firmware (NUL-terminated strings, as the kernel exposes them); empty for x86."""
    if p.model is None:
        return {}
    return {
        "devicetree/base/model": p.model.encode() + b"\0",
        "devicetree/base/compatible": b"".join(c.encode() + b"\0" for c in p.compatible),
    }


def sim_fact(p: Persona, name: str) -> str:
    """A local fact (`ansible_local.edgejar_sim`) that says the host is simulated and what it plays."""
    data = {
        "simulated": True,
        "name": name,
        "kind": p.kind,
        "model": p.model or "",
        "board_arch": p.board_arch,
        "cores": p.cores,
        "mem_total_kb": p.mem_total_kb,
    }
    return json.dumps(data, sort_keys=True) + "\n"


def rootfs_files(p: Persona, name: str) -> dict[str, str]:
    """Files written into a host's own filesystem layer (absolute path inside the host -> text)."""
    files = {
        FACT_FILE: sim_fact(p, name),
        f"{PERSONA_DIR}/meminfo": meminfo(p),
        f"{PERSONA_DIR}/cpuinfo": cpuinfo(p),
    }
    if p.nv_tegra_release is not None:
        files["/etc/nv_tegra_release"] = p.nv_tegra_release
    if p.kind == "rpi5":
        files["/boot/firmware/cmdline.txt"] = (
            "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 "
            "fsck.repair=yes rootwait quiet\n"
        )
        files["/boot/firmware/config.txt"] = "# Raspberry Pi 5 (edgejar sim)\narm_64bit=1\ndtparam=audio=on\n"
    return files
