"""VM hosts of the simulated cluster (`sim up --backend vm`): the pure parts.

The QEMU command line, the seed disk's files (identity, keys, first network per board) and the image
recipe. The VM hosts themselves boot in tests/vm (their own stage: QEMU guests with their own kernel).
"""

from __future__ import annotations

from pathlib import Path

from runner.sim.config import build_config
from runner.sim.rootfs import Rootfs
from runner.sim.vm import image, qemu, seed


def cfg_and_hosts():  # type: ignore[no-untyped-def]
    cfg = build_config(hosts="jetson:jetson,rpi1:rpi5,host:x86", backend="vm")
    return cfg, {h.name: h for h in cfg.hosts}


def test_qemu_command_tcg_and_kvm() -> None:
    vm = image.VmImage(Path("/c/vm"))
    cmd = qemu.command(
        vm, Path("/h/root.qcow2"), Path("/h/seed.img"), Path("/h/console.log"), "ejt-rpi1", "10.231.42.12",
        1024, "tcg", "ej-rpi1",
    )  # fmt: skip
    text = " ".join(cmd)
    assert cmd[0] == "qemu-system-x86_64"
    assert "-accel tcg,tb-size=128 -cpu max -smp 1" in text
    assert "-m 1024" in text  # the host's real memory ceiling is the guest's memory
    assert "-kernel /c/vm/vmlinuz -initrd /c/vm/initrd.img" in text
    assert "net.ifnames=0" in cmd[cmd.index("-append") + 1]  # eth0, as on the nspawn hosts
    assert "file=/h/seed.img,if=virtio,format=raw,readonly=on" in cmd
    assert "tap,id=n0,ifname=ejt-rpi1,script=no,downscript=no" in cmd
    assert "virtio-net-pci,netdev=n0,mac=52:54:00:e7:2a:0c" in cmd
    assert "-no-reboot" not in cmd  # a reboot inside the host (edgejar_memcg) must come back up
    kvm = qemu.command(vm, Path("r"), Path("s"), Path("c"), "t", "10.0.0.1", 512, "kvm", "n")
    assert kvm[kvm.index("-accel") + 1] == "kvm" and "host" in kvm


def test_mac_address_is_stable_and_distinct_per_address() -> None:
    assert qemu.mac_address("10.231.42.11") == "52:54:00:e7:2a:0b"
    assert qemu.mac_address("10.231.42.11") != qemu.mac_address("10.231.43.11")


def test_each_board_starts_with_its_own_network_service() -> None:
    cfg, hosts = cfg_and_hosts()
    assert [seed.stack(hosts[n]) for n in ("jetson", "rpi1", "host")] == [
        "networkmanager",
        "networkmanager",
        "networkd",
    ]
    pi = seed.network_files(cfg, hosts["rpi1"])
    keyfile = pi[seed.NM_FILE]
    assert keyfile.mode == 0o600  # NetworkManager ignores keyfiles others can read
    text = keyfile.content.decode()
    assert "interface-name=eth0" in text and "method=manual" in text and "address1=10.231.42.12/24" in text
    assert f"{image.MARKER_DIR}/networkmanager" in pi and seed.NETWORKD_FILE not in pi
    x86 = seed.network_files(cfg, hosts["host"])
    assert "Address=10.231.42.13/24" in x86[seed.NETWORKD_FILE].content.decode()
    assert f"{image.MARKER_DIR}/networkd" in x86
    # The roles' files (10-edgejar-eth0.network, netplan's 10-netplan-eth0.network) sort first and win.
    assert Path(seed.NETWORKD_FILE).name > "10-netplan-eth0.network"


def test_seed_files_carry_identity_keys_and_owner() -> None:
    cfg, hosts = cfg_and_hosts()
    out = seed.files(
        cfg, hosts["rpi1"], {"/etc/hostname": "rpi1\n"}, ("PRIVATE", "ssh-ed25519 AAAA root@rpi1"),
        "ssh-ed25519 CTRL controller\n", (1000, 1000, "/home/edgejar"),
    )  # fmt: skip
    assert out["/etc/hostname"].content == b"rpi1\n"
    assert out["/etc/ssh/ssh_host_ed25519_key"].mode == 0o600
    keys = out["/home/edgejar/.ssh/authorized_keys"]
    assert (
        keys.content == b"ssh-ed25519 CTRL controller\n" and keys.owner == (1000, 1000) and keys.mode == 0o600
    )
    assert seed.NM_FILE in out


def test_image_recipe_follows_the_rootfs() -> None:
    a, b = Rootfs(Path("/c/rootfs-a"), "aaaa"), Rootfs(Path("/c/rootfs-b"), "bbbb")
    assert image.recipe_hash(a) != image.recipe_hash(b)
    assert image.image_dir(Path("/c"), a).name == f"vm-host-{image.recipe_hash(a)}"
    assert "linux-image-amd64" in image.PACKAGES and "network-manager" in image.PACKAGES
