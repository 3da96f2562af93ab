# Services: the count kept through task deaths and berthd crashes, rolling updates within
# minimumHealthyPercent, the circuit breaker's rollback, the autoscaler on a CPU burner, and
# the capacity wall.

svc_json() { CTL --json service describe "$1"; }
svc_field() { svc_json "$1" | jfield "$2"; }
svc_running_is() { [ "$(svc_field "$1" runningCount)" == "$2" ] && [ "$(svc_field "$1" pendingCount)" == 0 ]; }
idle_def() { # FAMILY [ENV-VALUE] [COMMAND-JSON]
  printf '{"family":"%s","networkMode":"none","containerDefinitions":[{"name":"app","image":"busybox","memory":32,"stopTimeout":5,
    "environment":[{"name":"REV","value":"%s"}],"command":%s}]}' "$1" "${2:-1}" \
    "${3:-[\"sh\",\"-c\",\"trap \\\"exit 0\\\" TERM; sleep 1000 & wait\"]}" | CTL register - >/dev/null
}

# The service's live task ids, sorted, one per line, from the task table itself.
svc_ids() { CTL --json ps | jq -r --arg by "service:$1" '.[] | select(.startedBy == $by) | .taskId' | sort; }

test_service_keeps_three_tasks_through_a_killed_task_and_a_kill_9_of_berthd() {
  ensure_images || return 1
  idle_def svc-keep || { fail "not registered"; return 1; }
  CTL service create keep --task-definition svc-keep --desired 3 >/dev/null || { fail "create refused"; return 1; }
  wait_for 180 svc_running_is keep 3 || { fail "not 3 running: $(svc_json keep)"; return 1; }
  local round victim pid old before after kept most n events new
  # Three times: one task's process killed, and berthd killed while the replacement is in
  # flight (the shim has recorded the exit; the scheduler may be starting the next task).
  for round in 1 2 3; do
    before=$(svc_ids keep)
    victim=$(head -1 <<<"$before")
    pid=$(container_pid "$victim" app) || { fail "round $round: no container pid for $victim"; return 1; }
    kill -9 "$pid"
    wait_for 30 test -f "$STATE/tasks/$victim/status/done.json" || fail "round $round: the victim's shim did not finish"
    old=$(main_pid); kill -9 "$old"
    wait_new_berthd "$old" || return 1
    # Never more than three live at once while berthd settles, and three again after.
    most=0
    for _ in 1 2 3 4 5 6; do
      n=$(svc_ids keep | wc -l); (( n > most )) && most=$n
      sleep 1
    done
    wait_for 120 svc_running_is keep 3 || fail "round $round: not 3 running after the restart: $(svc_json keep)"
    n=$(svc_ids keep | wc -l); (( n > most )) && most=$n
    (( most <= 3 )) || fail "round $round: $most live tasks at once (duplicates)"
    after=$(svc_ids keep)
    kept=$(comm -12 <(echo "$before") <(echo "$after") | wc -l)
    assert_eq 2 "$kept" "round $round: the two untouched tasks kept their ids"
    ! grep -qx "$victim" <<<"$after" || fail "round $round: the killed task $victim still counted live"
    events=$(CTL service events keep)
    assert_contains "$events" "task $victim stopped" "round $round: the stop is an event"
    # Started by the old berthd (which may have died before it wrote the event: the new one
    # then takes the task back) or by the new one.
    new=$(comm -13 <(echo "$before") <(echo "$after"))
    grep -qE "has started 1 tasks: \(task $new\)|took back task $new," <<<"$events" \
      || fail "round $round: no event for the replacement $new: $events"
  done
  assert_eq 3 "$(busctl get-property org.berth.Agent1 /org/berth/Agent1/service/keep org.berth.Agent1.Service RunningCount | cut -d' ' -f2)" "RunningCount on D-Bus"
  CTL service delete keep || fail "delete refused"
  wait_for 120 eval '! CTL service describe keep >/dev/null 2>&1' || fail "service not gone after delete"
  assert_eq 0 "$(svc_ids keep | wc -l)" "tasks left after delete"
}

test_service_rolling_update_never_drops_below_three_and_a_crashing_revision_rolls_back() {
  ensure_images || return 1
  idle_def svc-roll 1 || { fail "not registered"; return 1; }
  CTL service create roll --task-definition svc-roll --desired 3 --min-healthy-percent 100 --max-percent 200 >/dev/null
  wait_for 180 svc_running_is roll 3 || { fail "not 3 running: $(svc_json roll)"; return 1; }
  idle_def svc-roll 2 >/dev/null
  CTL service update roll --task-definition svc-roll:2 || { fail "update refused"; return 1; }
  local i low=99 running done=no
  for i in $(seq 240); do
    running=$(svc_json roll | python3 -S -c 'import json,sys; print(sum(1 for t in json.load(sys.stdin)["tasks"] if t["lastStatus"] == "RUNNING"))')
    (( running < low )) && low=$running
    if [ "$(svc_field roll deployments.0.rolloutState)" == COMPLETED ] && [ "$(svc_json roll | python3 -S -c 'import json,sys; s=json.load(sys.stdin); print(all(t["taskDefinition"] == "svc-roll:2" for t in s["tasks"]) and len(s["tasks"]) == 3)')" == True ]; then
      done=yes; break
    fi
    sleep 1
  done
  assert_eq yes "$done" "all tasks on svc-roll:2 and the deployment COMPLETED ($(svc_json roll))"
  (( low >= 3 )) || fail "only $low RUNNING at one sample during the update"
  idle_def svc-roll 3 '["sh","-c","exit 1"]' >/dev/null
  CTL service update roll --task-definition svc-roll:3
  wait_for 240 eval '[ "$(svc_field roll taskDefinition)" == svc-roll:2 ] && CTL service events roll | grep -q "rolling back to svc-roll:2"' \
    || fail "no rollback: $(CTL service events roll | head -5)"
  assert_contains "$(CTL service events roll)" "deployment of svc-roll:3 failed" "the circuit breaker's event"
  wait_for 180 svc_running_is roll 3 || fail "not back to 3 on svc-roll:2"
  CTL service delete roll
  wait_for 120 eval '! CTL service describe roll >/dev/null 2>&1' || fail "roll not deleted"
}

test_service_autoscaler_scales_a_cpu_burner_out_then_back_in_and_explains_itself() {
  ensure_images || return 1
  # Each task burns its quarter CPU for 40 s from its start, then idles.
  printf '%s' '{"family":"svc-burn","networkMode":"none","cpu":"256","memory":"64","containerDefinitions":[{"name":"app","image":"busybox","memory":64,"stopTimeout":5,
    "command":["sh","-c","end=$(( $(date +%s) + 40 )); while [ $(date +%s) -lt $end ]; do :; done; trap \"exit 0\" TERM; sleep 1000 & wait"]}]}' \
    | CTL register - >/dev/null || { fail "not registered"; return 1; }
  local signals=/tmp/service-scaled.log
  timeout 300 busctl monitor --system --match "type='signal',interface='org.berth.Agent1.Manager',member='ServiceScaled'" > $signals 2>&1 &
  local mon=$!
  CTL service create burn --task-definition svc-burn --desired 1 >/dev/null
  CTL service scaling burn --min 1 --max 3 --target-cpu 50 --scale-out-cooldown 10s --scale-in-cooldown 10s --scale-in-window 20s \
    || { fail "scaling refused"; kill $mon; return 1; }
  wait_for 120 eval '[ "$(svc_field burn desiredCount)" -ge 2 ]' || fail "no scale-out: $(CTL service why burn)"
  wait_for 240 eval '[ "$(svc_field burn desiredCount)" == 1 ]' || fail "not back to 1: $(CTL service why burn)"
  kill $mon 2>/dev/null
  local why
  why=$(CTL service why burn)
  assert_contains "$why" "out  1 -> " "service why shows the scale-out"
  assert_contains "$why" "vs target 50%" "service why shows the inputs"
  assert_contains "$why" "in   " "service why shows the scale-in"
  assert_contains "$(cat $signals)" "ServiceScaled" "the ServiceScaled signal"
  local m
  m=$(curl -sf "http://$METRICS/metrics")
  assert_contains "$m" 'berth_autoscaler_decisions_total{direction="out"}' "decisions metric"
  assert_contains "$m" 'berth_service_desired_tasks{service="burn"} 1' "desired metric"
  CTL service delete burn
  wait_for 120 eval '! CTL service describe burn >/dev/null 2>&1' || fail "burn not deleted"
}

test_service_scale_out_against_a_full_host_stops_at_capacity_with_a_resource_event() {
  ensure_images || return 1
  local each
  each=$(( $(prop RemainingMemory) * 2 / 5 ))
  printf '{"family":"svc-big","networkMode":"none","memory":"%s","containerDefinitions":[{"name":"app","image":"busybox","stopTimeout":5,"command":["sh","-c","trap \\"exit 0\\" TERM; sleep 1000 & wait"]}]}' "$each" \
    | CTL register - >/dev/null || { fail "not registered"; return 1; }
  CTL service create big --task-definition svc-big --desired 4 >/dev/null
  wait_for 120 eval 'CTL service events big | grep -q "unable to place a task: RESOURCE:MEMORY"' || fail "no RESOURCE event: $(CTL service events big | head -3)"
  wait_for 120 svc_running_is big 2 || fail "the two that fit are not running: $(svc_json big)"
  assert_eq 4 "$(svc_field big desiredCount)" "desired count kept"
  CTL service delete big
  wait_for 120 eval '! CTL service describe big >/dev/null 2>&1' || fail "big not deleted"
}
