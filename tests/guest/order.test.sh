# Multi-container tasks: essential containers, dependsOn and startTimeout, per-container
# stopTimeout, health checks, shared pid/ipc namespaces, environment files and the default
# seccomp filter. Containers check from inside and exit 42 when what they saw holds.

# agent_def NAME FAMILY: one of the ECS agent's own definitions, on the busybox image.
agent_def() {
  python3 -S -c 'import json,sys
d = json.load(open(sys.argv[1]))
for c in d["containerDefinitions"]:
    c["image"] = "busybox:latest"
d["family"] = sys.argv[2]
print(json.dumps(d))' "${BERTH_REALWORLD_DIR:-$REPO/../shared/realworld/taskdefs}/ecs-agent/$1.json" "$2" \
    | CTL register - >/dev/null
}
cfield() { task_json "$1" | jfield "containers.$2.$3"; }
container_stopped() { [ "$(cfield "$1" "$2" lastStatus)" == STOPPED ]; }
health_is() { [ "$(task_json "$1" | jfield "$2")" == "$3" ]; }

test_order_containers_start_as_dependson_says_and_the_essential_exit_ends_the_task() {
  ensure_images || return 1
  # init runs to success first; side starts after it and keeps running; main waits for both,
  # then checks the order they wrote in the shared volume.
  printf '%s' '{"family":"ordered","networkMode":"none","volumes":[{"name":"l"}],"containerDefinitions":[
    {"name":"main","image":"busybox","memory":32,"mountPoints":[{"sourceVolume":"l","containerPath":"/l"}],
     "dependsOn":[{"containerName":"init","condition":"SUCCESS"},{"containerName":"side","condition":"START"}],
     "command":["sh","-c","for i in $(seq 150); do grep -q side /l/order && break; sleep 0.2; done; echo main >> /l/order; [ \"$(cat /l/order | tr \"\\n\" \" \")\" = \"init side main \" ] && exit 42; cat /l/order; exit 1"]},
    {"name":"init","image":"busybox","memory":32,"essential":false,"mountPoints":[{"sourceVolume":"l","containerPath":"/l"}],
     "command":["sh","-c","sleep 1; echo init >> /l/order"]},
    {"name":"side","image":"busybox","memory":32,"essential":false,"mountPoints":[{"sourceVolume":"l","containerPath":"/l"}],
     "dependsOn":[{"containerName":"init","condition":"COMPLETE"}],
     "command":["sh","-c","trap \"exit 143\" TERM; echo side >> /l/order; sleep 1000 & wait"]}]}' | CTL register - >/dev/null || { fail "not registered"; return 1; }
  local id
  id=$(CTL run ordered) || { fail "run: $id"; return 1; }
  wait_status 180 "$id" STOPPED || { fail "ordered did not stop: $(task_json "$id")"; CTL stop "$id"; return 1; }
  assert_eq 42 "$(cfield "$id" 0 exitCode)" "main saw init, side, main in that order ($(CTL logs "$id" 2>&1 | tail -3))"
  assert_eq 0 "$(cfield "$id" 1 exitCode)" "init's exit code (a non-essential exit does not end the task)"
  assert_eq 143 "$(cfield "$id" 2 exitCode)" "side ended by SIGTERM when the essential main exited"
  assert_eq EssentialContainerExited "$(task_json "$id" | jfield stopCode)" "stopCode"
  # As ECS reports it: every container STOPPED, the task's reason the essential container's.
  assert_eq "Essential container in task exited" "$(task_json "$id" | jfield stoppedReason)" "stoppedReason"
  local i
  for i in 0 1 2; do assert_eq STOPPED "$(cfield "$id" "$i" lastStatus)" "container $i's lastStatus"; done
}

test_order_a_dependency_that_cannot_hold_or_times_out_stops_the_task_naming_it() {
  ensure_images || return 1
  printf '%s' '{"family":"dep-fails","networkMode":"none","containerDefinitions":[
    {"name":"app","image":"busybox","memory":32,"command":["true"],"dependsOn":[{"containerName":"migrate","condition":"SUCCESS"}]},
    {"name":"migrate","image":"busybox","memory":32,"essential":false,"command":["sh","-c","exit 3"]}]}' | CTL register - >/dev/null
  printf '%s' '{"family":"dep-late","networkMode":"none","containerDefinitions":[
    {"name":"app","image":"busybox","memory":32,"command":["true"],"startTimeout":3,"dependsOn":[{"containerName":"slow","condition":"COMPLETE"}]},
    {"name":"slow","image":"busybox","memory":32,"essential":false,"stopTimeout":2,"command":["sleep","1000"]}]}' | CTL register - >/dev/null
  local a b
  a=$(CTL run dep-fails) && b=$(CTL run dep-late) || { fail "run refused"; return 1; }
  wait_status 120 "$a" STOPPED || fail "dep-fails did not stop"
  wait_status 120 "$b" STOPPED || fail "dep-late did not stop"
  assert_contains "$(task_json "$a" | jfield stoppedReason)" "container app: dependency migrate exited with code 3 (condition SUCCESS)" "dep-fails reason"
  assert_eq TaskFailedToStart "$(task_json "$a" | jfield stopCode)" "dep-fails stopCode"
  assert_contains "$(task_json "$b" | jfield stoppedReason)" "container app: dependency slow did not reach COMPLETE within 3 s (startTimeout)" "dep-late reason"
  assert_eq 137 "$(cfield "$b" 1 exitCode)" "the dependency that ran on was stopped with the task (sleep ignores SIGTERM as PID 1)"
  local out
  out=$(printf '{"family":"dep-cycle","containerDefinitions":[{"name":"a","image":"busybox","memory":32,"dependsOn":[{"containerName":"b","condition":"START"}]},{"name":"b","image":"busybox","memory":32,"dependsOn":[{"containerName":"a","condition":"START"}]}]}' | CTL register - 2>&1) && fail "a cycle registered: $out"
  assert_contains "$out" "containerDefinitions[0].dependsOn: dependency cycle: a -> b -> a" "cycle refusal"
}

test_order_each_container_gets_its_own_stop_timeout_as_in_the_ecs_agents_test() {
  ensure_images || return 1
  agent_def stop-timeout-dependson-start agent-stop-timeout || { fail "not registered"; return 1; }
  local id
  id=$(CTL run agent-stop-timeout) || { fail "run: $id"; return 1; }
  wait_status 180 "$id" STOPPED || { fail "did not stop"; CTL stop "$id"; return 1; }
  assert_eq 0 "$(cfield "$id" 0 exitCode)" "parent ran its 10 s"
  assert_eq 137 "$(cfield "$id" 1 exitCode)" "dependency1 (stopTimeout 2) killed"
  assert_eq 0 "$(cfield "$id" 2 exitCode)" "dependency2 (stopTimeout 20) finished its sleep and trap"
  assert_contains "$(CTL logs "$id" dependency2 2>&1)" "caught" "dependency2's SIGTERM trap ran"
}

test_order_health_checks_run_inside_the_container_and_a_healthy_dependency_starts_the_next() {
  ensure_images || return 1
  # The ECS agent's own: the check writes test.txt in the shared volume; "healthy" waits for
  # HEALTHY, then cats it.
  agent_def dependson-healthy-shared-volume agent-healthy || { fail "not registered"; return 1; }
  # A check that passes only inside the container (the file exists there alone), and one that
  # always fails with retries 1.
  printf '%s' '{"family":"checked","networkMode":"none","containerDefinitions":[
    {"name":"good","image":"busybox","memory":32,"command":["sh","-c","touch /only-here; exec sleep 1000"],
     "healthCheck":{"command":["CMD-SHELL","test -f /only-here && [ \"$(id -u)\" = 0 ]"],"interval":5,"timeout":10,"retries":2}},
    {"name":"bad","image":"busybox","memory":32,"essential":false,"command":["sleep","1000"],
     "healthCheck":{"command":["CMD","false"],"interval":5,"retries":1}}]}' | CTL register - >/dev/null
  local a b
  a=$(CTL run agent-healthy) && b=$(CTL run checked) || { fail "run refused"; return 1; }
  wait_for 180 container_stopped "$a" 0 || fail "the HEALTHY-dependent container did not run to its end"
  assert_eq 0 "$(cfield "$a" 0 exitCode)" "healthy read test.txt the check wrote ($(CTL logs "$a" 2>&1 | tail -2))"
  assert_contains "$(CTL logs "$a" 2>&1)" "hi" "the check's line in test.txt"
  assert_eq HEALTHY "$(cfield "$a" 1 healthStatus)" "healthy-dependency's healthStatus"
  wait_for 120 health_is "$b" containers.1.healthStatus UNHEALTHY || fail "bad never UNHEALTHY: $(task_json "$b")"
  wait_for 120 health_is "$b" healthStatus HEALTHY || fail "task not HEALTHY (good passes, bad is not essential): $(task_json "$b")"
  assert_eq HEALTHY "$(cfield "$b" 0 healthStatus)" "good's healthStatus"
  local path=/org/berth/Agent1/task/$b
  assert_eq '"HEALTHY"' "$(busctl get-property org.berth.Agent1 "$path" org.berth.Agent1.Task HealthStatus | cut -d' ' -f2)" "HealthStatus on D-Bus"
  assert_contains "$(busctl get-property org.berth.Agent1 "$path" org.berth.Agent1.Task ContainerHealth)" '"bad" "UNHEALTHY"' "ContainerHealth on D-Bus"
  CTL stop "$a" >/dev/null; CTL stop "$b" >/dev/null
  wait_status 60 "$b" STOPPED || fail "checked did not stop"
}

test_order_pid_and_ipc_mode_task_share_namespaces_and_host_shares_the_hosts() {
  ensure_images || return 1
  printf '%s' '{"family":"shared-ns","networkMode":"none","pidMode":"task","ipcMode":"task","volumes":[{"name":"v"}],"containerDefinitions":[
    {"name":"a","image":"busybox","memory":32,"essential":false,"mountPoints":[{"sourceVolume":"v","containerPath":"/v"}],
     "command":["sh","-c","echo from-a > /dev/shm/note; readlink /proc/self/ns/pid > /v/pid; readlink /proc/self/ns/ipc > /v/ipc; exec sleep 1001"]},
    {"name":"b","image":"busybox","memory":32,"mountPoints":[{"sourceVolume":"v","containerPath":"/v"}],
     "dependsOn":[{"containerName":"a","condition":"START"}],
     "command":["sh","-c","for i in $(seq 100); do [ -s /v/ipc ] && break; sleep 0.2; done; [ \"$(readlink /proc/self/ns/pid)\" = \"$(cat /v/pid)\" ] && [ \"$(readlink /proc/self/ns/ipc)\" = \"$(cat /v/ipc)\" ] && ps | grep -q \"[s]leep 1001\" && [ \"$(cat /dev/shm/note)\" = from-a ] && exit 42; exit 1"]}]}' \
    | CTL register - >/dev/null || { fail "not registered"; return 1; }
  assert_eq 42 "$(exit_code_of shared-ns 1)" "b shares a's pid and ipc namespaces, sees its sleep and its /dev/shm file"
  local host_ipc
  host_ipc=$(readlink /proc/1/ns/ipc)
  check pid-host '' 'grep -q systemd /proc/1/comm' '"pidMode":"host","networkMode":"none"'
  check ipc-host '' "[ \"\$(readlink /proc/self/ns/ipc)\" = \"$host_ipc\" ]" '"ipcMode":"host","networkMode":"none"'
  check pid-own '' '[ "$(cat /proc/1/comm)" = sh ]' '"networkMode":"none"'
}

test_order_environment_files_and_the_default_seccomp_filter() {
  ensure_images || return 1
  local f=/tmp/berth-app.env
  printf '# app settings\nFROM_FILE=yes\nBOTH=file\n' > $f
  check envfile "\"environmentFiles\":[{\"value\":\"$f\",\"type\":\"s3\"}],\"environment\":[{\"name\":\"BOTH\",\"value\":\"definition\"}]" \
    '[ "$FROM_FILE" = yes ] && [ "$BOTH" = definition ]'
  printf '{"family":"envfile-missing","networkMode":"none","containerDefinitions":[{"name":"c","image":"busybox","memory":32,"environmentFiles":[{"value":"/tmp/none.env","type":"s3"}]}]}' | CTL register - >/dev/null
  local id
  id=$(CTL run envfile-missing) || { fail "run refused: $id"; return 1; }
  wait_status 60 "$id" STOPPED || fail "the task with a missing environment file did not stop"
  assert_contains "$(task_json "$id" | jfield stoppedReason)" "container c: environmentFiles[0] /tmp/none.env: No such file" "stoppedReason names the file"
  ! grep -q " $STATE/tasks/$id/" /proc/self/mountinfo || fail "a mount was left by the task that never started"
  [ ! -d "/sys/fs/cgroup/berth.slice/berth-$id.scope" ] || fail "a scope was left by the task that never started"
  # Seccomp 2 is filter mode: the default filter is on; privileged has none.
  check seccomp '' 'grep -q "^Seccomp:[[:space:]]*2" /proc/self/status' '"networkMode":"none"'
  check seccomp-privileged '"privileged":true' 'grep -q "^Seccomp:[[:space:]]*0" /proc/self/status' '"networkMode":"none"'
}
