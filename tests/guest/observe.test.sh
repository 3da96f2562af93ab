# Observability: per-container series on /metrics read by a real Prometheus server, the OOM
# counter, live usage on Task objects, and TaskStateChanged on the bus.

PROM=127.0.0.1:9090

# A Prometheus server scraping berthd every second, with its own data directory.
start_prometheus() {
  curl -sf "http://$PROM/-/ready" >/dev/null 2>&1 && return 0
  mkdir -p /tmp/prom
  cat > /tmp/prom/prometheus.yml <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: berth
    static_configs:
      - targets: ["$METRICS"]
EOF
  (cd /tmp/prom && nohup prometheus --config.file=/tmp/prom/prometheus.yml --storage.tsdb.path=/tmp/prom/data \
    --web.listen-address="$PROM" > /tmp/prom/log 2>&1 &)
  wait_for 120 curl -sf "http://$PROM/-/ready" || { fail "prometheus not ready: $(tail -5 /tmp/prom/log)"; return 1; }
}

# The first value of an instant query, empty when there is none.
prom_query() {
  curl -sf "http://$PROM/api/v1/query" --data-urlencode "query=$1" \
    | python3 -S -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}

test_observe_prometheus_sees_a_cpu_burning_container_above_0_3_cores() {
  ensure_images || return 1
  start_prometheus || return 1
  register burn '{"name":"burn","image":"busybox","cpu":1024,"memory":32,"command":["sh","-c","while :; do :; done"]}' >/dev/null
  id=$(CTL run burn) || return 1
  wait_status 60 "$id" RUNNING || fail "burn not RUNNING"
  sleep 10
  body=$(curl -sf "http://$METRICS/metrics")
  check=$(printf '%s\n' "$body" | promtool check metrics 2>&1)
  assert_eq "0" "$?" "promtool check metrics with a task running ($check)"
  assert_contains "$body" "berth_container_cpu_usage_seconds_total{task_id=\"$id\",family=\"burn\",revision=\"1\",container=\"burn\"}" "container series"
  assert_contains "$body" "berth_container_memory_limit_bytes{task_id=\"$id\",family=\"burn\",revision=\"1\",container=\"burn\"} 33554432" "container memory limit series"
  assert_eq 1 "$(prom_query 'up{job="berth"}')" "up"
  q="rate(berth_container_cpu_usage_seconds_total{task_id=\"$id\"}[5s])"
  wait_for 30 eval '[ -n "$(prom_query '"'$q'"')" ]' || fail "no rate for the task in Prometheus"
  rate=$(prom_query "$q")
  echo "rate of CPU use: $rate cores"
  python3 -S -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0.3 else 1)' "${rate:-0}" || fail "CPU rate $rate not above 0.3"
  cpu=$(busctl get-property org.berth.Agent1 "/org/berth/Agent1/task/$id" org.berth.Agent1.Task CpuUsage | awk '{print $2}')
  python3 -S -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 1 else 1)' "${cpu:-0}" || fail "CpuUsage $cpu s after 10 s of burning"
  CTL stop "$id" >/dev/null
  wait_status 60 "$id" STOPPED || fail "burn did not stop"
  assert_not_contains "$(curl -sf "http://$METRICS/metrics")" "task_id=\"$id\"" "series of a stopped task"
}

test_observe_oom_kill_counts_for_the_container_while_the_task_runs_on() {
  ensure_images || return 1
  register oomside '{"name":"main","image":"busybox","memory":32,"command":["sleep","600"]},{"name":"hog","image":"busybox","memory":32,"essential":false,"command":["dd","if=/dev/zero","of=/dev/null","bs=200M","count=1"]}' >/dev/null
  id=$(CTL run oomside) || return 1
  wait_for 60 eval '[ "$(task_json '"$id"' | jfield containers.1.lastStatus)" == STOPPED ]' || fail "hog did not end"
  series="berth_container_oom_kills_total{task_id=\"$id\",family=\"oomside\",revision=\"1\",container=\"hog\"}"
  body=$(curl -sf "http://$METRICS/metrics")
  assert_contains "$body" "$series 1" "OOM kills of the hog"
  assert_contains "$body" "berth_task_oom_kills_total{task_id=\"$id\",family=\"oomside\",revision=\"1\"} 1" "OOM kills in the task"
  assert_eq RUNNING "$(task_json "$id" | jfield lastStatus)" "the task after its non-essential container's OOM"
  CTL stop "$id" >/dev/null
  wait_status 60 "$id" STOPPED || fail "oomside did not stop"
}

test_observe_task_state_changed_signals_a_short_tasks_whole_life() {
  ensure_images || return 1
  register short '{"name":"s","image":"busybox","memory":32,"command":["sleep","2"]}' >/dev/null
  busctl --system --match "type='signal',interface='org.berth.Agent1.Manager',member='TaskStateChanged'" monitor > /tmp/tsc.log 2>&1 &
  mon=$!
  sleep 1
  CTL run short --wait >/dev/null; id=$(CTL --json ps --all | python3 -S -c 'import json,sys; print([t["taskId"] for t in json.load(sys.stdin) if t["taskDefinition"]=="short:1"][-1])')
  sleep 1
  kill "$mon"
  # The lastStatus is the string right after the id in each signal's body.
  seen=$(awk -v id="\"$id\";" '$2 == id {getline; print $2}' /tmp/tsc.log | tr -d '";' | tr '\n' ' ')
  echo "lastStatus sequence: $seen"
  for st in PENDING RUNNING STOPPED; do
    assert_contains "$seen" "$st" "TaskStateChanged statuses of task $id"
  done
}

# A sample's value on /metrics (0 when the series is absent): metric_value 'NAME{LABELS}'.
metric_value() {
  curl -sf "http://$METRICS/metrics" | awk -v m="$1" '$1 == m {v = $2} END {print v + 0}'
}

test_observe_ten_tasks_of_three_containers_in_promtool_top_and_the_launch_and_stop_series() {
  ensure_images || return 1
  local sleeper='{"name":"%s","image":"busybox","memory":8,"command":["sleep","600"]}'
  # shellcheck disable=SC2059
  register trio "$(printf "$sleeper,$sleeper,$sleeper" a b c)" >/dev/null
  register trioburn "{\"name\":\"a\",\"image\":\"busybox\",\"memory\":8,\"command\":[\"sh\",\"-c\",\"while :; do :; done\"]},$(printf "$sleeper,$sleeper" b c)" >/dev/null
  launches=$(metric_value berth_task_launch_duration_seconds_count)
  stops=$(metric_value 'berth_task_stops_total{reason="UserInitiated"}')
  local id ids=()
  id=$(CTL run trioburn) || return 1
  ids+=("$id")
  for _ in 1 2 3 4 5 6 7 8 9; do
    id=$(CTL run trio) || return 1
    ids+=("$id")
  done
  for id in "${ids[@]}"; do
    wait_status 180 "$id" RUNNING || fail "task $id not RUNNING"
  done
  wait_for 5 eval '[ "$(metric_value berth_task_launch_duration_seconds_count)" == '"$((launches + 10))"' ]' \
    || fail "launch histogram count $(metric_value berth_task_launch_duration_seconds_count), want $((launches + 10))"
  body=$(curl -sf "http://$METRICS/metrics")
  check=$(printf '%s\n' "$body" | promtool check metrics 2>&1)
  assert_eq "0" "$?" "promtool check metrics with 10 tasks of 3 containers ($check)"
  n=$(printf '%s\n' "$body" | grep -c '^berth_container_cpu_usage_seconds_total{.*family="trio\(burn\)\?"')
  assert_eq 30 "$n" "container CPU series of the 10 tasks"
  assert_contains "$body" 'berth_task_launch_duration_seconds_bucket{le="+Inf"}' "launch histogram"

  # berthctl top: every container of the 10 with its memory, and the burner's CPU rate.
  top=$(CTL --json top --once) || fail "berthctl top --once --json failed"
  summary=$(python3 - "${ids[*]}" "$top" <<'PY'
import json, sys
ids = set(sys.argv[1].split()); v = json.loads(sys.argv[2])
ours = [t for t in v["tasks"] if t["taskId"] in ids]
cs = [c for t in ours for c in t["containers"]]
print(len(ours), len(cs), sum(1 for c in cs if c["lastStatus"] == "RUNNING" and c["memoryBytes"] > 0),
      max((c["cpuPercent"] or 0) for c in cs))
PY
)
  echo "top: tasks containers running-with-memory max-cpu%: $summary"
  read -r tasks containers with_mem max_cpu <<<"$summary"
  assert_eq 10 "$tasks" "tasks in berthctl top"
  assert_eq 30 "$containers" "containers in berthctl top"
  assert_eq 30 "$with_mem" "RUNNING containers with memory in use"
  python3 -S -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 30 else 1)' "${max_cpu:-0}" \
    || fail "the burning container shows ${max_cpu}% CPU in top, want above 30%"
  table=$(CTL top --once)
  assert_contains "$table" "MEM USAGE / LIMIT" "top's header"
  assert_contains "$table" "${ids[0]:0:12}  -" "top's line for the burning task"
  assert_contains "$table" "/ 8.0MiB" "a container's memory limit in top"

  for id in "${ids[@]}"; do CTL stop "$id" >/dev/null; done
  for id in "${ids[@]}"; do
    wait_status 120 "$id" STOPPED || fail "task $id did not stop"
  done
  wait_for 5 eval '[ "$(metric_value '"'"'berth_task_stops_total{reason="UserInitiated"}'"'"')" == '"$((stops + 10))"' ]' \
    || fail "UserInitiated stops $(metric_value 'berth_task_stops_total{reason="UserInitiated"}'), want $((stops + 10))"
}
