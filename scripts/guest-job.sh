#!/usr/bin/env bash
# The CI guest's job (runner/sim/guest/stage.py copies it onto the data disk, the guest runs it as root):
# inside a standard Debian 12 machine (systemd PID 1, cgroup v2) bring the simulated cluster up, provision
# it with no extra variables, run one experiment with the tiny model, collect it, take the sim down, and
# check that no namespace, cgroup, unit, mount or process of it is left. Exit status 0 only if all held.
set -euo pipefail
D=/mnt/data
T0=$SECONDS
step() { echo "==> [$((SECONDS - T0)) s] $*"; }

step "guest: kernel $(uname -r), PID 1 $(cat /proc/1/comm), /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup)"
# The layout fixture of a standard v2 host (tests/unit/fixtures/cgroup/debian12-v2), recorded here.
cp /proc/self/cgroup "$D/out/proc_cgroup"
grep -E ' - (cgroup2?|tmpfs) ' /proc/self/mountinfo | grep /sys/fs/cgroup > "$D/out/mountinfo" || true
cp /sys/fs/cgroup/cgroup.controllers "$D/out/cgroup.controllers"

step "repository; the venv made on the CI machine with the same Debian python3, mounted where it was made"
cp -a "$D/repo" /root/edgejar
cd /root/edgejar
VENV=$(cat "$D/venv-path")
mkdir -p "$VENV" && mount --bind "$D/venv" "$VENV"
export PATH=$VENV/bin:$PATH PYTHONPATH=/root/edgejar
export EDGEJAR_CACHE_DIR=$D/cache PIP_NO_INDEX=1 PIP_FIND_LINKS=$D/wheels
export ANSIBLE_TIMEOUT=120   # SSH under emulation is slow to answer
python -m runner sim check

step "sim up (2 hosts) on systemd + cgroup v2"
python -m runner sim up --hosts jetson:jetson,host:x86
INV=$(python -m runner sim inventory)
python -m runner sim status
for unit in ej-jetson.service ej-host.service; do
  systemctl show "$unit" --property=MemoryMax,Delegate,ActiveState
done

step "MemoryMax of a unit inside a host is enforced (delegation)"
out=$(ansible -i "$INV" jetson -b -m ansible.builtin.command \
  -a "systemd-run --wait -p MemoryMax=32M /usr/bin/python3 -c 'x = bytearray(256 << 20)'" 2>&1 || true)
echo "$out" | tail -3
grep -q "oom-kill" <<<"$out" || { echo "FAIL: no oom-kill of the 32M unit inside the host"; exit 1; }

step "provision with no extra variables (its second run's changed=0 is checked by the integration tier)"
ansible-playbook -i "$INV" playbooks/provision.yml > "$D/out/provision.log" 2>&1 || {
  tail -30 "$D/out/provision.log"; exit 1; }
grep -A4 'PLAY RECAP' "$D/out/provision.log"

step "runner up (deploy + launch): split_brain with the tiny model"
python -m runner model tiny
EDGEJAR_INVENTORY=$INV python -m runner up experiments/split_brain.yml
sleep 45
step "runner collect"
EDGEJAR_INVENTORY=$INV python -m runner collect
ls results/split_brain
EDGEJAR_INVENTORY=$INV python -m runner down || true

step "sim down, then nothing may be left"
python -m runner sim down
left=0
check() { if [ -n "$2" ]; then echo "LEFT: $1: $2"; left=1; fi; }
check "network namespaces" "$(ip netns list | grep -E '^ej-' || true)"
check "interfaces" "$(ip -o link | grep -E ' ej(br0|v-)' || true)"
check "units" "$(systemctl list-units --all --plain --no-legend 'ej-*' || true)"
check "cgroups" "$(find /sys/fs/cgroup -maxdepth 3 -name 'ej-*' || true)"
check "mounts" "$(grep -E 'edgejar-sim' /proc/self/mountinfo || true)"
check "processes" "$(ps -eo pid,args | grep -E '[s]ystemd-nspawn|[e]dgejar-sim' || true)"
[ "$left" -eq 0 ] || exit 1
step "done: nothing left"
