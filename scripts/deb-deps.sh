#!/usr/bin/env bash
# Installs the Debian packages that edgejar's tests and the simulated cluster need (Debian 12, root).
# Only what is missing is installed; without root it lists what is missing and fails.
set -euo pipefail
packages=(
  make python3-venv git          # make test, the venv
  debootstrap                    # the simulated hosts' root filesystem (cached in /var/cache/edgejar)
  systemd-container              # systemd-nspawn: the simulated hosts
  iproute2                       # bridge, veth, network namespaces
  openssh-client                 # Ansible's SSH to the hosts
  dpkg-dev                       # dpkg-scanpackages: the local APT repository
  rsync zstd                     # used by playbooks and provisioning
  chromium                       # headless: the test that opens each report.html (tests/unit)
  qemu-system-x86 qemu-utils     # VM hosts (sim up --backend vm) and the CI guest stage (runner/sim/vm, guest)
  qemu-user-static               # arm64 hosts (arch: arm64): their programs through binfmt_misc (runner/sim/binfmt.py)
  gcc-aarch64-linux-gnu g++-aarch64-linux-gnu  # the controller's cross build of a Pi's wheel (edgejar_llama)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages (install as root): ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
