#!/usr/bin/env bash
# Runs edgejar's checks in stages and prints a pass/fail summary at the end.
# Usage: scripts/test.sh [stage...]   (stages: lint unit runtime integration molecule guest; default: all)
# The guest stage (a Debian 12 VM under QEMU, about 25 minutes under emulation) shares nothing with the
# host's simulated cluster, so when integration runs too it starts beside it, right after the rootfs build,
# and its result and log come at the guest's turn (docs/sim.md, "The CI guest").
# A stage whose tests all skipped is reported SKIP with pytest's reason, never PASS. With CI=true
# (.ci/run sets it) a skipped integration tier (integration, molecule, guest) fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(lint unit runtime integration molecule guest)

declare -a names results
skip() {  # skip NAME REASON: a stage that did not run; under CI=true an integration-tier skip is a failure
  local name=$1 reason=$2
  case "${CI:-}:$name" in
    true:integration* | true:molecule* | true:guest*)
      results+=("FAIL  $name: skipped ($reason), and CI=true needs the integration tier to run") ;;
    *) results+=("SKIP  $name: $reason") ;;
  esac
}
run() {  # run NAME CMD...
  local name=$1; shift
  echo "==> $name [$(date +%T)]: $*"
  local start=$SECONDS
  if "$@"; then results+=("PASS  $name ($((SECONDS - start)) s)"); else results+=("FAIL  $name ($((SECONDS - start)) s)"); fi
  names+=("$name")
}

run_pytest() {  # run_pytest NAME PYTEST_ARGS...: like run, with pytest's own counts in the summary
  local name=$1; shift
  echo "==> $name [$(date +%T)]: python -m pytest $*"
  local start=$SECONDS log counts rc
  log=$(mktemp)
  python -m pytest -rfEs "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  counts=$(grep -E '^=* ?[0-9]+ (passed|failed|skipped|error|errors|deselected)|^=* ?no tests ran' "$log" \
    | tail -1 | sed -E 's/=+//g; s/ in [0-9.]+s.*//; s/^ +//')
  [ -n "$counts" ] || counts="no result"
  if { [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ]; } && ! grep -qE '[0-9]+ (passed|xfailed|xpassed)' <<<"$counts"; then
    # Nothing passed: every test skipped (or none collected). Say why, with pytest's first reason.
    local reason
    reason=$(grep -m1 -E '^SKIPPED \[' "$log" | sed -E 's/^SKIPPED \[[0-9]+\] [^ ]+: //' | cut -c1-160)
    skip "$name" "$counts: ${reason:-no test ran}"
  elif [ "$rc" -eq 0 ]; then results+=("PASS  $name: $counts ($((SECONDS - start)) s)")
  else
    results+=("FAIL  $name: $counts ($((SECONDS - start)) s)")
    # The failing tests by name, so that the summary (all a cut-off CI log may keep) says which.
    local line
    while IFS= read -r line; do results+=("      $line"); done \
      < <(grep -E '^(FAILED|ERROR) ' "$log" | cut -c1-200 | head -20)
  fi
  rm -f "$log"
  names+=("$name")
}

guest_pid="" guest_log="" guest_start=0
start_guest() {  # the guest stage in the background (its output into a log shown at the guest's turn)
  guest_log=$(mktemp) guest_start=$SECONDS
  echo "==> guest [$(date +%T)]: python -m runner sim guest (in the background, beside the integration tier)"
  # The guest's own duration goes to $guest_log.took (it usually ends before the stages beside it).
  (t0=$(date +%s); python -m runner sim guest; rc=$?; echo $(($(date +%s) - t0)) >"$guest_log.took"; exit $rc) \
    >"$guest_log" 2>&1 &
  guest_pid=$!
}
# Interrupted: stop a background guest (it stops its VM and removes its disks on SIGTERM).
trap '[ -z "$guest_pid" ] || { pkill -TERM -P "$guest_pid"; wait "$guest_pid"; rm -f "$guest_log"*; }' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wants() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

for stage in "${stages[@]}"; do
  case $stage in
    lint)
      run ruff ruff check runner tests benchmarks playbooks/callback_plugins roles
      run ruff-format ruff format --check runner tests benchmarks playbooks/callback_plugins roles
      run yamllint yamllint -s .
      run ansible-lint ansible-lint --profile production playbooks roles
      ;;
    unit)
      run_pytest unit-tests -q tests/unit
      ;;
    runtime)
      # Real llama-cpp-python processes on loopback; here a missing llama_cpp is a failure, not a skip.
      EDGEJAR_REQUIRE_LLAMA=1 run_pytest runtime-tests -q tests/runtime
      ;;
    integration)
      # The simulated cluster (python -m runner sim): its rootfs is built once and cached outside the
      # repository (/var/cache/edgejar); the tests bring their own cluster up and always take it down.
      if [ "$(id -u)" -ne 0 ]; then
        echo "integration tests need root (systemd-nspawn, network namespaces): skipped" >&2
        skip integration "not root"
      else
        run sim-build python -m runner sim build
        if wants guest; then start_guest; fi
        run_pytest integration-tests -q tests/integration
      fi
      ;;
    molecule)
      run ansible-lint-sim ansible-lint --profile production molecule tests/integration/playbooks
      if [ "$(id -u)" -ne 0 ]; then
        echo "molecule runs on the simulated cluster, which needs root: skipped" >&2
        skip molecule "not root"
      else
        run molecule molecule test --all
      fi
      ;;
    guest)
      # A standard Debian 12 guest (systemd PID 1, cgroup v2) under QEMU runs the sim and one experiment
      # inside (docs/sim.md, "The CI guest"); the guest image is built once and cached in /var/cache/edgejar.
      if [ "$(id -u)" -ne 0 ]; then
        skip guest "not root"
      elif [ -n "$guest_pid" ]; then
        echo "==> guest [$(date +%T)]: waiting for the background guest (started $((SECONDS - guest_start)) s ago)"
        wait "$guest_pid"
        rc=$?
        guest_pid=""
        cat "$guest_log"
        took="$(cat "$guest_log.took" 2>/dev/null || echo '?') s, beside the integration tier"
        rm -f "$guest_log" "$guest_log.took"
        if [ "$rc" -eq 0 ]; then results+=("PASS  guest ($took)"); else results+=("FAIL  guest ($took)"); fi
        names+=(guest)
      else
        run guest python -m runner sim guest
      fi
      ;;
    *) echo "unknown stage: $stage" >&2; exit 2 ;;
  esac
done

echo
echo "==================== summary ===================="
failed=0 passed=0 skipped=0
for r in "${results[@]}"; do
  echo "$r"
  case $r in FAIL*) failed=$((failed + 1)) ;; PASS*) passed=$((passed + 1)) ;; SKIP*) skipped=$((skipped + 1)) ;; esac
done
echo "$passed passed, $skipped skipped, $failed failed"
[ "$failed" -eq 0 ]
