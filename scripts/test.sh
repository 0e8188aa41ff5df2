#!/usr/bin/env bash
# Runs edgejar's checks in stages and prints a pass/fail summary at the end.
# Usage: scripts/test.sh [stage...]   (stages: lint unit runtime integration molecule aarch64 guest vm;
# default: all)
# The guest stage (a Debian 12 VM under QEMU, about 25 minutes under emulation) and the vm stage (VM hosts
# with their own kernel, tests/vm) share nothing with the integration tier's simulated cluster, so when
# integration runs too they run beside it (the guest right after the rootfs build, the VM hosts when the
# guest has ended), and their results and logs come at their turn (docs/sim.md, "The CI guest", "VM hosts").
# A stage whose tests all skipped is reported SKIP with pytest's reason, never PASS. With CI=true
# (.ci/run sets it) a skipped integration tier (integration, molecule, aarch64, guest, vm) fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(lint unit runtime integration molecule aarch64 guest vm)

declare -a names results
skip() {  # skip NAME REASON: a stage that did not run; under CI=true an integration-tier skip is a failure
  local name=$1 reason=$2
  case "${CI:-}:$name" in
    true:integration* | true:molecule* | true:aarch64* | true:guest* | true:vm*)
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
  local start=$SECONDS log rc
  log=$(mktemp)
  python -m pytest -rfEs "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  pytest_result "$name" "$log" "$rc" "$((SECONDS - start)) s"
  rm -f "$log"
  names+=("$name")
}

pytest_result() {  # pytest_result NAME LOG RC TOOK: the summary line(s) of a pytest run from its log
  local name=$1 log=$2 rc=$3 took=$4 counts
  counts=$(grep -E '^=* ?[0-9]+ (passed|failed|skipped|error|errors|deselected)|^=* ?no tests ran' "$log" \
    | tail -1 | sed -E 's/=+//g; s/ in [0-9.]+s.*//; s/^ +//')
  [ -n "$counts" ] || counts="no result"
  if { [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ]; } && ! grep -qE '[0-9]+ (passed|xfailed|xpassed)' <<<"$counts"; then
    # Nothing passed: every test skipped (or none collected). Say why, with pytest's first reason.
    local reason
    reason=$(grep -m1 -E '^SKIPPED \[' "$log" | sed -E 's/^SKIPPED \[[0-9]+\] [^ ]+: //' | cut -c1-160)
    skip "$name" "$counts: ${reason:-no test ran}"
  elif [ "$rc" -eq 0 ]; then results+=("PASS  $name: $counts ($took)")
  else
    results+=("FAIL  $name: $counts ($took)")
    # The failing tests by name, so that the summary (all a cut-off CI log may keep) says which.
    local line
    while IFS= read -r line; do results+=("      $line"); done \
      < <(grep -E '^(FAILED|ERROR) ' "$log" | cut -c1-200 | head -20)
  fi
}

# Stages in the background (guest, vm): each one's output goes to a log shown at its turn, its own
# duration to <log>.took (they usually end before the stages beside them).
declare -A bg_pid bg_log bg_start
start_background() {  # start_background NAME [AFTER_PID] -- CMD...: AFTER_PID: start when that one ended
  local name=$1 after=${2:-}; shift 2
  [ "$1" = "--" ] && shift
  bg_log[$name]=$(mktemp) bg_start[$name]=$SECONDS
  echo "==> $name [$(date +%T)]: $* (in the background, beside the integration tier${after:+, after the stage before it})"
  (
    if [ -n "$after" ]; then while kill -0 "$after" 2>/dev/null; do sleep 5; done; fi
    t0=$(date +%s); "$@"; rc=$?; echo $(($(date +%s) - t0)) >"${bg_log[$name]}.took"; exit $rc
  ) >"${bg_log[$name]}" 2>&1 &
  bg_pid[$name]=$!
}
wait_background() {  # wait_background NAME: wait for it, show its log; sets bg_rc and bg_took
  local name=$1
  echo "==> $name [$(date +%T)]: waiting for the background $name (started $((SECONDS - bg_start[$name])) s ago)"
  wait "${bg_pid[$name]}"
  bg_rc=$?
  unset "bg_pid[$name]"
  cat "${bg_log[$name]}"
  bg_took="$(cat "${bg_log[$name]}.took" 2>/dev/null || echo '?') s, beside the integration tier"
}
stop_background() {  # interrupted: stop what runs in the background (each cleans up on SIGTERM)
  local name
  for name in "${!bg_pid[@]}"; do pkill -TERM -P "${bg_pid[$name]}"; done
  for name in "${!bg_pid[@]}"; do wait "${bg_pid[$name]}"; done
  for name in "${!bg_log[@]}"; do rm -f "${bg_log[$name]}"*; done
}
trap stop_background EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wants() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

for stage in "${stages[@]}"; do
  case $stage in
    lint)
      run ruff ruff check runner tests benchmarks scripts playbooks/callback_plugins roles
      run ruff-format ruff format --check runner tests benchmarks scripts playbooks/callback_plugins roles
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
        # One emulated machine at a time beside the integration tier (they share the two cores with it):
        # the VM hosts start when the guest has ended.
        if wants guest; then start_background guest "" -- python -m runner sim guest; fi
        if wants vm; then start_background vm "${bg_pid[guest]:-}" -- python -m pytest -rfEs -q tests/vm; fi
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
      elif [ -n "${bg_pid[guest]:-}" ]; then
        wait_background guest
        if [ "$bg_rc" -eq 0 ]; then results+=("PASS  guest ($bg_took)"); else results+=("FAIL  guest ($bg_took)"); fi
        names+=(guest)
      else
        run guest python -m runner sim guest
      fi
      ;;
    aarch64)
      # A simulated Pi with the board's arm64 userland (qemu-user through binfmt_misc): the controller's
      # cross-built a76 wheel installed on it, an instance running there (docs/sim.md, "arm64 hosts").
      if [ "$(id -u)" -ne 0 ]; then
        skip aarch64 "not root"
      else
        run_pytest aarch64-tests -q tests/aarch64
      fi
      ;;
    vm)
      # VM hosts (QEMU guests with their own kernel): the roles' kernel-level paths for real (swap,
      # addresses, the Pi's reboot, OOM kills), docs/sim.md "VM hosts".
      if [ "$(id -u)" -ne 0 ]; then
        skip vm "not root"
      elif [ -n "${bg_pid[vm]:-}" ]; then
        wait_background vm
        pytest_result vm-tests "${bg_log[vm]}" "$bg_rc" "$bg_took"
        names+=(vm-tests)
      else
        run_pytest vm-tests -q tests/vm
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
