#!/usr/bin/env bash
# The CI guest's job (runner/sim/guest/stage.py copies it onto the data disk, the guest runs it as root):
# inside a standard Debian 12 machine (systemd PID 1, cgroup v2) bring a one-host simulated cluster up,
# check its memory ceiling and delegation, give it a short provision (base, llama) with no extra variables,
# run a short two-instance experiment with the tiny model, collect it, take the sim down, and check that no
# namespace, cgroup, unit, mount or process of it is left. Exit status 0 only if all held.
set -euo pipefail
D=/mnt/data
T0=$SECONDS
step() { echo "==> [$((SECONDS - T0)) s] $*"; }
# logged CMD...: run CMD, its output time-stamped into $D/out/<LOG>, its task names on the console (progress)
logged() {
  local log=$D/out/$1; shift
  set +e
  "$@" 2>&1 | while IFS= read -r line; do
    printf '%(%T)T %s\n' -1 "$line" >> "$log"
    case $line in "TASK ["* | "PLAY RECAP"* | *"ok="*"changed="*) printf '  [%s s] %s\n' "$((SECONDS - T0))" "$line" ;; esac
  done
  local rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" -eq 0 ] || { echo "FAIL ($rc): $*"; tail -30 "$log"; }
  return "$rc"
}

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

step "sim up (1 host) on systemd + cgroup v2"
python -m runner sim up --hosts host:x86
INV=$(python -m runner sim inventory)
python -m runner sim status
systemctl show ej-host.service --property=MemoryMax,Delegate,ActiveState

step "MemoryMax of a unit inside a host is enforced (delegation)"
out=$(ansible -i "$INV" host -b -m ansible.builtin.command \
  -a "systemd-run --wait -p MemoryMax=32M /usr/bin/python3 -c 'x = bytearray(256 << 20)'" 2>&1 || true)
echo "$out" | tail -3
grep -q "oom-kill" <<<"$out" || { echo "FAIL: no oom-kill of the 32M unit inside the host"; exit 1; }

# A short provision: the roles an instance needs (service user, directories, venv, the runtime's packages).
# Every role, twice (changed=0), runs in the integration tier; under TCG emulation each task takes seconds.
# The controller's wheelhouse for the guest's key, from the staged wheels (all of them: ipykernel and the
# gateway bring dependencies edgejar_llama_packages does not name): the role's build step would
# only pick the same files up again through PIP_FIND_LINKS (llama.cpp is never compiled here), and under
# emulation that costs minutes. The build path itself runs in the integration tier.
step "the controller's wheelhouse for x86_64-cpu-cp311 from the staged wheels"
python - "$D/wheels" <<'PY'
import re, shutil, sys
from pathlib import Path
import yaml
norm = lambda name: re.sub(r"[-_.]+", "_", name).lower()
wanted = {norm(re.split(r"[=<>!~\[ ]", p, maxsplit=1)[0])
          for p in yaml.safe_load(Path("roles/edgejar_llama/defaults/main.yml").read_text())["edgejar_llama_packages"]}
key = Path(".cache/wheelhouse") / f"x86_64-cpu-cp{sys.version_info.major}{sys.version_info.minor}"
key.mkdir(parents=True, exist_ok=True)
found = {norm(w.name.split("-")[0]): w for w in Path(sys.argv[1]).glob("*.whl")}
missing = wanted - found.keys()
if missing:
    sys.exit(f"the staged wheels lack {sorted(missing)}")
for wheel in found.values():  # the named packages and every dependency pip resolved beside them
    shutil.copy2(wheel, key / wheel.name)
print(f"{key}: {len(found)} wheels ({len(wanted)} named in edgejar_llama_packages)")
PY

step "provision (--tags base,llama) with no extra variables"
logged provision.log ansible-playbook -i "$INV" playbooks/provision.yml --tags base,llama

step "runner up (deploy + launch): two instances of a short hive on the one host, the tiny model"
python -m runner model tiny
mkdir -p /root/guest-exp
cat > /root/guest-exp/guest_hive.yml <<'YAML'
---
name: guest_hive
mode: hive_cluster
model: tiny
n_ctx: 512
max_tokens: 16
cycles: 3
instances:
  - {id: guest_a, role: the first mind, memory_gb: 0.5}
  - {id: guest_b, role: the second mind, memory_gb: 0.5}
YAML
EDGEJAR_INVENTORY=$INV logged up.log python -m runner up /root/guest-exp/guest_hive.yml
step "the instances run their cycles (until no instance unit is active, at most 15 min)"
S=/var/tmp/edgejar-sim
on_host() { ssh -i "$S/ssh/id_ed25519" -o UserKnownHostsFile="$S/known_hosts" -o StrictHostKeyChecking=yes \
  -o BatchMode=yes edgejar@"$(awk '/ansible_host:/ {print $2; exit}' "$INV")" "$@"; }
for _ in $(seq 90); do
  active=$(on_host systemctl list-units --plain --no-legend --state=active 'edgejar-instance@*' | wc -l)
  [ "$active" -eq 0 ] && break
  sleep 10
done
step "runner collect"
EDGEJAR_INVENTORY=$INV logged collect.log python -m runner collect
python - <<'PY'
import sqlite3
db = sqlite3.connect("results/guest_hive/results.sqlite3")
cycles = dict(db.execute("SELECT instance_id, COUNT(*) FROM cycles GROUP BY 1").fetchall())
print("cycles per instance:", cycles)
assert cycles == {"guest_a": 3, "guest_b": 3}, f"expected 3 cycles of guest_a and guest_b, got {cycles}"
PY

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
