#!/usr/bin/env bash
# `make demo`: bring the simulated edge cluster up and run the planner's part of the main job on it.
# (Deploying and launching the experiment units builds on this once those playbooks exist.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo needs root: the simulated cluster uses network namespaces and systemd-nspawn" >&2
  exit 2
fi
bash scripts/deb-deps.sh

step "the tiny test model (random weights, real GGUF)"
$PY -m runner model tiny

step "simulated cluster: a Jetson Orin AGX, two Raspberry Pi 5 and an x86 host (first run builds the rootfs cache)"
$PY -m runner sim up
INV=$($PY -m runner sim inventory)
$PY -m runner sim status

step "the nodes as the inventory describes them, and the seed experiments checked"
$PY -m runner validate -i "$INV" experiments/*.yml

for f in experiments/*.yml; do
  step "where $(basename "$f" .yml) would run, and why"
  $PY -m runner place -i "$INV" --dry-run --explain "$f"
done

step "all four seed experiments at once: they do not fit this cluster, and place says why (exit 2)"
if $PY -m runner place -i "$INV" --dry-run experiments/*.yml; then
  echo "unexpected: the full set fitted" >&2
fi

step "placing split brain and the hive cluster for real: host_vars written next to the sim inventory"
$PY -m runner place -i "$INV" experiments/split_brain.yml experiments/hive_cluster.yml
ls "$(dirname "$INV")"/host_vars/*/placement.yml

cat <<MSG

The simulated cluster is still up: ssh-able hosts, inventory at $INV
  ansible -i $INV all -m ansible.builtin.ping
  .venv/bin/python -m runner sim status
  .venv/bin/python -m runner sim down      # remove everything it created
MSG
