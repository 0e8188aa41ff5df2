#!/usr/bin/env bash
# Runs edgejar's checks in stages and prints a pass/fail summary at the end.
# Usage: scripts/test.sh [stage...]   (stages: lint unit runtime integration molecule; default: all)
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(lint unit runtime integration molecule)

declare -a names results
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
  python -m pytest "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  counts=$(grep -E '^=* ?[0-9]+ (passed|failed|skipped|error|errors|deselected)' "$log" | tail -1 \
    | sed -E 's/=+//g; s/ in [0-9.]+s.*//; s/^ +//')
  [ -n "$counts" ] || counts="no result"
  if [ "$rc" -eq 0 ]; then results+=("PASS  $name: $counts ($((SECONDS - start)) s)")
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
        results+=("SKIP  integration (not root)")
      else
        run sim-build python -m runner sim build
        run_pytest integration-tests -q tests/integration
      fi
      ;;
    molecule)
      run ansible-lint-sim ansible-lint --profile production molecule tests/integration/playbooks
      if [ "$(id -u)" -ne 0 ]; then
        echo "molecule runs on the simulated cluster, which needs root: skipped" >&2
        results+=("SKIP  molecule (not root)")
      else
        run molecule molecule test --all
      fi
      ;;
    *) echo "unknown stage: $stage" >&2; exit 2 ;;
  esac
done

echo
echo "==================== summary ===================="
failed=0 passed=0
for r in "${results[@]}"; do
  echo "$r"
  case $r in FAIL*) failed=$((failed + 1)) ;; PASS* | SKIP*) passed=$((passed + 1)) ;; esac
done
echo "$passed passed or skipped, $failed failed"
[ "$failed" -eq 0 ]
