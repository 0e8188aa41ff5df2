"""A VM host's seed disk: its own files (identity, keys, persona, first network), copied in at first boot.

The network each VM host starts with is the one its board ships with: NetworkManager on the Pi (Raspberry
Pi OS) and the Jetson (L4T), systemd-networkd on the x86 host (a Debian server), each with the sim address
as a static address on eth0 (`net.ifnames=0`). The networkd file is `50-...` so that a configuration the
node roles write (`10-edgejar-eth0.network`, netplan's `10-netplan-eth0.network`) takes precedence, as
it would over a distribution's default.

`files()` is pure (unit-tested); `make_disk()` writes them and makes the ext4 image with `mke2fs -d`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from runner.sim.config import HostSpec, SimConfig
from runner.sim.personas import devicetree_files
from runner.sim.system import run
from runner.sim.vm.image import MARKER_DIR, SEED_LABEL

NETWORKD_FILE = "/etc/systemd/network/50-edgejar-sim.network"
NM_FILE = "/etc/NetworkManager/system-connections/edgejar-sim.nmconnection"
NM_CONNECTION = "edgejar-sim"
STACKS = {"jetson": "networkmanager", "rpi5": "networkmanager", "x86": "networkd"}


@dataclass(frozen=True)
class SeedFile:
    content: bytes
    mode: int = 0o644
    owner: tuple[int, int] = (0, 0)


def stack(host: HostSpec) -> str:
    """The network service the host's board runs: `networkmanager` or `networkd`."""
    return STACKS[host.kind]


def network_files(cfg: SimConfig, host: HostSpec) -> dict[str, SeedFile]:
    address = f"{host.address}/{cfg.prefixlen}"
    chosen = stack(host)
    marker = {f"{MARKER_DIR}/{chosen}": SeedFile(b"")}
    if chosen == "networkd":
        text = f"[Match]\nName=eth0\n\n[Network]\nAddress={address}\nLinkLocalAddressing=no\n"
        return {**marker, NETWORKD_FILE: SeedFile(text.encode())}
    conn_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{host.name}.{cfg.prefix}.edgejar-sim")
    text = (
        f"[connection]\nid={NM_CONNECTION}\nuuid={conn_uuid}\ntype=ethernet\ninterface-name=eth0\n"
        "autoconnect=true\n\n[ethernet]\n\n"
        f"[ipv4]\nmethod=manual\naddress1={address}\n\n[ipv6]\nmethod=disabled\n"
    )
    return {**marker, NM_FILE: SeedFile(text.encode(), 0o600)}


def files(
    cfg: SimConfig,
    host: HostSpec,
    identity: dict[str, str],
    host_key: tuple[str, str],
    controller_pubkey: str,
    user: tuple[int, int, str],
) -> dict[str, SeedFile]:
    """Every file the seed copies into the host's root (path inside the host -> file)."""
    uid, gid, home = user
    private, public = host_key
    out = {path: SeedFile(text.encode()) for path, text in identity.items()}
    out["/etc/ssh/ssh_host_ed25519_key"] = SeedFile(private.encode(), 0o600)
    out["/etc/ssh/ssh_host_ed25519_key.pub"] = SeedFile(public.encode())
    out[f"{home}/.ssh/authorized_keys"] = SeedFile(
        (controller_pubkey.strip() + "\n").encode(), 0o600, (uid, gid)
    )
    out.update(network_files(cfg, host))
    return out


def make_disk(
    staging: Path,
    image: Path,
    seed: dict[str, SeedFile],
    host: HostSpec,
    rootfs: Path,
    private_dirs: dict[str, tuple[int, int]],
) -> None:
    """Write the files (and the persona's device tree) under `staging`, then the ext4 seed image.

    The seed is copied with `cp -a`, which also sets the owner and mode of every directory on its way:
    each one takes those of the same directory in the rootfs (root 0755 where the rootfs has none), but
    `private_dirs` (path -> owner), which are 0700 (`~/.ssh`)."""
    if staging.exists():
        shutil.rmtree(staging)
    root = staging / "root"
    for path, f in seed.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content)
        target.chmod(f.mode)
        os.chown(target, *f.owner)
    for d in sorted({p for path in seed for p in Path(path).parents if p != Path("/")}):
        _like(root / str(d).lstrip("/"), rootfs / str(d).lstrip("/"))
    for d, owner in private_dirs.items():
        (root / d.lstrip("/")).chmod(0o700)
        os.chown(root / d.lstrip("/"), *owner)
    for rel, data in devicetree_files(host.persona).items():
        target = staging / "firmware" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    image.unlink(missing_ok=True)
    run(["mke2fs", "-q", "-t", "ext4", "-L", SEED_LABEL, "-d", str(staging), str(image), "16M"])
    shutil.rmtree(staging)


def _like(target: Path, model: Path) -> None:
    """Owner and mode of `model` (a directory of the rootfs) on `target`; root 0755 when it has none."""
    try:
        st = model.stat()
        mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
    except OSError:
        mode, owner = 0o755, (0, 0)
    target.chmod(mode)
    os.chown(target, *owner)
