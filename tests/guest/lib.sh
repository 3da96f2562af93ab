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

# wait_for SECONDS CMD...: retries CMD until it succeeds, first after 0.2 s, then less often
# (at most every 1.6 s, or WAIT_PAUSE_MAX seconds where a wait is known to be long, as a
# nested boot is): under TCG a check (berthctl, curl) costs 0.2-0.6 s of CPU that the system
# under test needs.
wait_for() {
  local deadline=$((SECONDS + $1)) pause=0.2; shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS >= deadline )) && return 1
    sleep "$pause"
    case $pause in 0.2) pause=0.4 ;; 0.4) pause=0.8 ;; 0.8) pause=1.6 ;; *) pause=${WAIT_PAUSE_MAX:-1.6} ;; esac
  done
}

run_tests() {
  local passed=0 failed=0 t times=() suite_start=$SECONDS
  # BERTH_TEST_FILTER: a grep pattern picking which tests run (all by default).
  # BERTH_TEST_ONLY: the tests to run, in that order (run-all's files); else every test_*.
  local names=${BERTH_TEST_ONLY:-$(declare -F | awk '{print $3}' | grep '^test_')}
  for t in $(grep -E "${BERTH_TEST_FILTER:-.}" <<<"$names"); do
    _fail_msgs=()
    local start=$SECONDS cpu_before
    cpu_before=$(cpu_snapshot)
    ( "$t"; rc=$?
      if [ ${#_fail_msgs[@]} -gt 0 ]; then printf 'assertion: %s\n' "${_fail_msgs[@]}"; exit 1; fi
      exit $rc ) > "/tmp/$t.log" 2>&1 &
    local pid=$! limit=$((SECONDS + ${BERTH_TEST_TIMEOUT:-1500}))
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < limit )); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      pkill -KILL -P "$pid"; kill -KILL "$pid"
      echo "timed out after ${BERTH_TEST_TIMEOUT:-1500}s (BERTH_TEST_TIMEOUT)" >> "/tmp/$t.log"
    fi
    local cpu
    cpu=$(cpu_report "$cpu_before" "$(cpu_snapshot)")
    if wait "$pid"; then
      passed=$((passed + 1)); echo "ok   $t ($((SECONDS - start))s) $cpu"
      times+=("$((SECONDS - start)) ok   $t")
    else
      failed=$((failed + 1)); echo "FAIL $t ($((SECONDS - start))s) $cpu"
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

# cpu_snapshot: CPU seconds (as integer ms) used so far by the test runner, berthd, the tasks,
# the rest of the system, and in all (from /proc/stat), so each test's line says where its time
# went: under TCG a guest second is dear.
cpu_snapshot() {
  local g f out=()
  for g in system.slice/berth-vm-runner.service system.slice/berthd.service berth.slice system.slice ""; do
    f=/sys/fs/cgroup/${g:+$g/}cpu.stat
    out+=("$(awk '/^usage_usec/ {print int($2/1000); f=1} END {if (!f) print 0}' "$f" 2>/dev/null || echo 0)")
  done
  # jiffies (USER_HZ) busy = user nice system irq softirq steal; idle = idle iowait
  out+=("$(awk '/^cpu / {print ($2+$3+$4+$7+$8+$9)*10, ($5+$6)*10}' /proc/stat)")
  echo "${out[*]}"
}

# cpu_report BEFORE AFTER: "cpu: tests 12.3s berthd 4.0s tasks 8.1s system 3.0s kernel 2.2s idle 30.1s"
cpu_report() {
  local a=($1) b=($2)
  awk -v r=$((b[0]-a[0])) -v d=$((b[1]-a[1])) -v d1=$((b[1])) -v t=$((b[2]-a[2])) -v s=$((b[3]-a[3])) \
      -v busy=$((b[5]-a[5])) -v idle=$((b[6]-a[6])) 'BEGIN {
    # A restarted berthd is a new cgroup: its count started again from 0.
    if (d < 0) d = d1; other = s - r - d; if (other < 0) other = 0
    kern = busy - s - t; if (kern < 0) kern = 0
    printf "cpu: tests %.1fs berthd %.1fs tasks %.1fs system %.1fs kernel %.1fs idle %.1fs\n",
      r/1000, d/1000, t/1000, other/1000, kern/1000, idle/1000 }'
}
