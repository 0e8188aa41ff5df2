#!/usr/bin/env bash
# uvicorn with and without its fast parts, interleaved on one simulated cluster (docs/serving.md,
# "Benchmark"): A without uvloop and httptools in the node venvs (asyncio's loop, the pure-Python h11
# parser), B with them; the replicas and the front door restarted after each switch (uvicorn picks its
# loop and parser when it starts), then benchmarks/serving.py with the arguments given. Three rounds of
# A then B; the node venvs end as provisioned (B).
#
#   .venv/bin/python -m runner sim up && ansible-playbook -i "$(.venv/bin/python -m runner sim inventory)" \
#     playbooks/provision.yml && .venv/bin/python -m runner model tiny
#   bash benchmarks/serving_uvloop_ab.sh --requests 600 --concurrency 6 --tokens 8 [--door-cpu 0]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PATH=$PWD/.venv/bin:$PATH
INV=$(python -m runner sim inventory)
ROUNDS=${ROUNDS:-3}
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT

on_nodes() { ansible -i "$INV" edgejar_nodes -b -m ansible.builtin.shell -a "$1" >/dev/null; }

# The locked wheels of the two packages for the nodes' key, from the controller's wheelhouse.
cp .cache/wheelhouse/x86_64-cpu-cp311/{uvloop,httptools}-*.whl "$WHEELS"/
ansible -i "$INV" edgejar_nodes -b -m ansible.builtin.copy -a "src=$WHEELS/ dest=/var/tmp/uvicorn-ab/" >/dev/null

switch() {
  if [ "$1" = B ]; then
    on_nodes "/opt/edgejar/venv/bin/pip install -q --no-index --no-deps /var/tmp/uvicorn-ab/*.whl"
  else
    on_nodes "/opt/edgejar/venv/bin/pip uninstall -q -y uvloop httptools"
  fi
  on_nodes "systemctl restart 'edgejar-instance@*' 'edgejar-frontdoor*'"
  sleep 15
}

for round in $(seq "$ROUNDS"); do
  for variant in A B; do
    switch "$variant"
    echo "== $variant round $round: $*"
    python benchmarks/serving.py "$@" | grep -E '^\{"one_at_a_time'
  done
done
on_nodes "rm -rf /var/tmp/uvicorn-ab"
