#!/usr/bin/env bash
# Runs edgejar's checks in stages and prints a pass/fail summary at the end.
# Usage: scripts/test.sh [stage...]   (stages: lint unit integration; default: all)
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(lint unit integration)

declare -a names results
run() {  # run NAME CMD...
  local name=$1; shift
  echo "==> $name: $*"
  local start=$SECONDS
  if "$@"; then results+=("PASS  $name ($((SECONDS - start)) s)"); else results+=("FAIL  $name ($((SECONDS - start)) s)"); fi
  names+=("$name")
}

for stage in "${stages[@]}"; do
  case $stage in
    lint)
      run ruff ruff check runner tests benchmarks
      run ruff-format ruff format --check runner tests benchmarks
      run yamllint yamllint -s .
      run ansible-lint ansible-lint --profile production playbooks roles
      ;;
    unit)
      run unit-tests python -m pytest -q tests/unit
      ;;
    integration)
      if [ "$(id -u)" -ne 0 ]; then
        echo "integration tests need root (systemd-nspawn, network namespaces): skipped" >&2
        results+=("SKIP  integration (not root)")
      else
        run integration-tests python -m pytest -q tests/integration
      fi
      ;;
    *) echo "unknown stage: $stage" >&2; exit 2 ;;
  esac
done

echo
echo "==================== summary ===================="
failed=0
for r in "${results[@]}"; do echo "$r"; case $r in FAIL*) failed=$((failed + 1)) ;; esac; done
echo "$(( ${#results[@]} - failed )) passed or skipped, $failed failed"
[ "$failed" -eq 0 ]
