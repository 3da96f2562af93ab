# Guest test helpers: assertions that say what was expected and what was seen, and a runner
# that runs every test_* function, prints each result and closes with "N passed, N failed".
# Sourced by tests/guest/run-all; runs as root inside the test guest.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BERTH_BIN:-$REPO/target/debug}
_fail_msgs=()

fail() { _fail_msgs+=("$*"); return 1; }

assert_eq() { # expected actual what
  [ "$1" == "$2" ] || fail "$3: expected '$1', got '$2'"
}

assert_contains() { # haystack needle what
  [[ "$1" == *"$2"* ]] || fail "$3: expected to contain '$2', got: ${1:0:600}"
}

assert_not_contains() {
  [[ "$1" != *"$2"* ]] || fail "$3: expected not to contain '$2', got: ${1:0:600}"
}

# wait_for SECONDS CMD...: retries CMD every 0.2 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS >= deadline )) && return 1
    sleep 0.2
  done
}

run_tests() {
  local passed=0 failed=0 t times=() suite_start=$SECONDS
  # BERTH_TEST_FILTER: a grep pattern picking which tests run (all by default).
  # BERTH_TEST_ONLY: the tests to run, in that order (run-all's files); else every test_*.
  local names=${BERTH_TEST_ONLY:-$(declare -F | awk '{print $3}' | grep '^test_')}
  for t in $(grep -E "${BERTH_TEST_FILTER:-.}" <<<"$names"); do
    _fail_msgs=()
    local start=$SECONDS
    ( "$t"; rc=$?
      if [ ${#_fail_msgs[@]} -gt 0 ]; then printf 'assertion: %s\n' "${_fail_msgs[@]}"; exit 1; fi
      exit $rc ) > "/tmp/$t.log" 2>&1 &
    local pid=$! limit=$((SECONDS + ${BERTH_TEST_TIMEOUT:-1500}))
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < limit )); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      pkill -KILL -P "$pid"; kill -KILL "$pid"
      echo "timed out after ${BERTH_TEST_TIMEOUT:-1500}s (BERTH_TEST_TIMEOUT)" >> "/tmp/$t.log"
    fi
    if wait "$pid"; then
      passed=$((passed + 1)); echo "ok   $t ($((SECONDS - start))s)"
      times+=("$((SECONDS - start)) ok   $t")
    else
      failed=$((failed + 1)); echo "FAIL $t ($((SECONDS - start))s)"
      times+=("$((SECONDS - start)) FAIL $t")
      sed 's/^/     | /' "/tmp/$t.log" | tail -n 40
    fi
  done
  print_times "${times[@]}"
  # For tests/all's table across lanes.
  if [ -n "${BERTH_LANE:-}" ] && mkdir -p "$REPO/target/lanes" 2>/dev/null; then
    printf '%s\n' "${times[@]}" > "$REPO/target/lanes/times-$BERTH_LANE.txt"
  fi
  echo "guest${BERTH_LANE:+ ($BERTH_LANE)}: $passed passed, $failed failed in $((SECONDS - suite_start))s"
  [ "$failed" -eq 0 ]
}

# The tests' wall times, slowest first, and their sum: where the suite's time goes.
print_times() { # "SECONDS STATUS NAME"...
  local sum=0 line
  echo "guest test times${BERTH_LANE:+ ($BERTH_LANE)}, slowest first:"
  while read -r line; do
    [ -n "$line" ] || continue
    set -- $line
    printf '  %5ss  %s %s\n' "$1" "$2" "$3"
    sum=$((sum + $1))
  done < <(printf '%s\n' "$@" | sort -rn)
  printf '  %5ss  in all\n' "$sum"
}
