# Running tasks: images, exit codes, OOM, CPU and memory limits, stop timeouts, logs, and the
# Task objects on D-Bus. Each test asserts what the container itself saw or what a user sees.

CTL() { "$BIN/berthctl" "$@"; }
# A task's own cgroup (its limits), in its systemd scope.
task_cg() { echo "/sys/fs/cgroup/berth.slice/berth-$1.scope/task"; }
IMG=/tmp/berth-images

# A busybox image made from Debian's busybox-static, as an OCI layout and as a docker-archive.
make_busybox_images() {
  [ -f $IMG/busybox.tar ] || "$REPO/examples/make-busybox-image" $IMG >/dev/null
}

ensure_images() {
  ensure_running
  make_busybox_images || return 1
  CTL image ls | grep -q '^busybox:latest' || CTL image import --name busybox:latest $IMG/layout >/dev/null
  CTL image ls | grep -q '^busybox:archived' || CTL image import $IMG/busybox.tar >/dev/null
}

# register NAME JSON-OF-CONTAINER [TASK-LEVEL-FIELDS]: one-container task in network mode none.
register() {
  printf '{"family":"%s","networkMode":"none",%s"containerDefinitions":[%s]}' "$1" "${3:+$3,}" "$2" \
    | CTL register - 2>/dev/null
}

task_json() { CTL --json describe "$1"; }
# jfield a.0.b: one field of the JSON on stdin. jq, not python3: under TCG python3 takes
# 0.4 s to start, jq a few ms, and the tests call this in loops.
jfield() {
  local k p="" ks
  IFS=. read -ra ks <<<"$1"
  for k in "${ks[@]}"; do
    if [[ $k =~ ^[0-9]+$ ]]; then p+="[$k]"; else p+="[\"$k\"]"; fi
  done
  jq -r ".$p"
}
status_is() { [ "$(task_json "$1" | jfield lastStatus)" == "$2" ]; }
# wait_status SECONDS ID STATUS: until the task is STATUS (RUNNING or STOPPED), woken by
# berthd's signals (berthctl wait), not by polling. Fails at once when the task stopped before
# RUNNING; retries while berthd is away (a test restarting it).
wait_status() {
  local deadline=$((SECONDS + $1)) out
  while :; do
    out=$(CTL wait --status "$3" --timeout "$(( deadline - SECONDS > 1 ? deadline - SECONDS : 1 ))" "$2" 2>&1) && return 0
    if [[ $out == *"will not be"* ]] || (( SECONDS >= deadline )); then
      echo "wait_status: $out" >&2
      return 1
    fi
    sleep 0.5
  done
}

test_images_import_from_oci_layout_and_docker_archive_and_both_run() {
  ensure_images || return 1
  out=$(CTL image ls)
  assert_contains "$out" "busybox:latest" "image ls"
  assert_contains "$out" "busybox:archived" "image ls"
  for img in busybox:latest busybox:archived; do
    register "img-${img#*:}" "{\"name\":\"c\",\"image\":\"$img\",\"memory\":32,\"command\":[\"sh\",\"-c\",\"echo ran from $img\"]}" >/dev/null
    id=$(CTL run "img-${img#*:}") || return 1
    wait_status 60 "$id" STOPPED || fail "task of $img did not stop"
    assert_contains "$(CTL logs "$id")" "ran from $img" "logs of the task on $img"
  done
}

test_exit_42_is_the_containers_exit_code_and_the_stop_reason() {
  ensure_images || return 1
  register exit42 '{"name":"main","image":"busybox","memory":32,"command":["sh","-c","exit 42"]}' >/dev/null
  json=$(CTL --json run exit42 --wait); rc=$?
  assert_eq 42 "$rc" "berthctl run --wait exit status"
  assert_eq 42 "$(echo "$json" | jfield containers.0.exitCode)" "containers[0].exitCode"
  assert_eq STOPPED "$(echo "$json" | jfield lastStatus)" "lastStatus"
  assert_eq EssentialContainerExited "$(echo "$json" | jfield stopCode)" "stopCode"
  assert_eq "Essential container in task exited" "$(echo "$json" | jfield stoppedReason)" "stoppedReason"
}

test_container_over_its_memory_is_oom_killed_and_a_neighbour_runs_on() {
  ensure_images || return 1
  register sleeper '{"name":"s","image":"busybox","memory":32,"command":["sleep","600"]}' >/dev/null
  register hog '{"name":"hog","image":"busybox","memory":32,"command":["dd","if=/dev/zero","of=/dev/null","bs=200M","count=1"]}' >/dev/null
  neighbour=$(CTL run sleeper) || return 1
  wait_status 60 "$neighbour" RUNNING || fail "neighbour not RUNNING"
  json=$(CTL --json run hog --wait)
  assert_eq 137 "$(echo "$json" | jfield containers.0.exitCode)" "exit code of the hog"
  assert_contains "$(echo "$json" | jfield stoppedReason)" "OutOfMemoryError" "stoppedReason"
  assert_contains "$(echo "$json" | jfield containers.0.reason)" "over its memory limit" "container reason"
  assert_eq RUNNING "$(task_json "$neighbour" | jfield lastStatus)" "the neighbour's lastStatus"
  CTL stop "$neighbour" >/dev/null
}

test_task_cpu_512_is_half_a_cpu_in_cpu_max_and_in_use() {
  ensure_images || return 1
  register spin '{"name":"spin","image":"busybox","cpu":512,"memory":32,"command":["sh","-c","while :; do :; done"]}' '"cpu":"512"' >/dev/null
  id=$(CTL run spin) || return 1
  wait_status 60 "$id" RUNNING || fail "spin not RUNNING"
  assert_eq "50000 100000" "$(cat $(task_cg "$id")/cpu.max)" "task cpu.max"
  u0=$(awk '/^usage_usec/ {print $2}' $(task_cg "$id")/cpu.stat)
  sleep 5
  u1=$(awk '/^usage_usec/ {print $2}' $(task_cg "$id")/cpu.stat)
  used=$((u1 - u0))
  echo "cpu used over 5 s: $used us"
  (( used <= 3000000 )) || fail "task used $used us of CPU in 5 s, more than about half a CPU"
  (( used >= 500000 )) || fail "task used only $used us of CPU in 5 s: the busy loop did not run"
  CTL stop "$id"
  wait_status 60 "$id" STOPPED || fail "spin did not stop"
}

test_memory_reservation_is_memory_low_and_limits_reach_the_container() {
  ensure_images || return 1
  register soft '{"name":"soft","image":"busybox","cpu":256,"memory":128,"memoryReservation":64,"command":["sleep","600"]},{"name":"heavy","image":"busybox","cpu":768,"memory":32,"essential":false,"linuxParameters":{"maxSwap":16},"command":["sleep","600"]}' >/dev/null
  id=$(CTL run soft) || return 1
  wait_status 60 "$id" RUNNING || fail "soft not RUNNING"
  assert_eq 67108864 "$(cat $(task_cg "$id")/soft/memory.low)" "container memory.low"
  assert_eq 134217728 "$(cat $(task_cg "$id")/soft/memory.max)" "container memory.max"
  w_soft=$(cat $(task_cg "$id")/soft/cpu.weight); w_heavy=$(cat $(task_cg "$id")/heavy/cpu.weight)
  echo "cpu.weight: soft (256 units) $w_soft, heavy (768 units) $w_heavy"
  (( w_soft < w_heavy )) || fail "cpu.weight of 256 units ($w_soft) not below that of 768 units ($w_heavy)"
  # maxSwap reaches the container, and the task's ceiling is the sum of its containers' (a
  # ceiling of 0 above them would deny every container its swap).
  assert_eq 16777216 "$(cat $(task_cg "$id")/heavy/memory.swap.max)" "container memory.swap.max (maxSwap 16)"
  assert_eq 16777216 "$(cat $(task_cg "$id")/memory.swap.max)" "task memory.swap.max"
  assert_eq 4096 "$(cat $(task_cg "$id")/pids.max)" "task pids.max"
  CTL stop "$id"
  wait_status 60 "$id" STOPPED || fail "soft did not stop"
  [ ! -d "$(task_cg "$id")" ] || fail "task cgroup still there after STOPPED"
  # The emptied scope is systemd's to collect, asynchronously.
  wait_for 10 eval '[ ! -d "$(dirname "$(task_cg "'"$id"'")")" ]' || fail "task scope cgroup still there after STOPPED"
}

test_task_is_a_systemd_scope_holding_its_shim_and_containers() {
  ensure_images || return 1
  register scoped '{"name":"main","image":"busybox","memory":32,"command":["sleep","600"]}' >/dev/null
  id=$(CTL run scoped) || return 1
  wait_status 60 "$id" RUNNING || fail "scoped not RUNNING"
  assert_eq active "$(systemctl is-active "berth-$id.scope")" "systemctl is-active berth-$id.scope"
  assert_contains "$(systemctl show -p Slice --value "berth-$id.scope")" "berth.slice" "the scope's slice"
  assert_eq yes "$(systemctl show -p Delegate --value "berth-$id.scope")" "the scope's Delegate"
  assert_eq "berth task $id (scoped)" "$(systemctl show -p Description --value "berth-$id.scope")" "the scope's description"
  scope=$(dirname "$(task_cg "$id")")
  shim=$(cat "$scope/shim/cgroup.procs")
  assert_contains "$(tr '\0' ' ' < /proc/"$shim"/cmdline)" "berth-shim /var/lib/berth/tasks/$id" "the process in the scope's shim leaf (berth-shim)"
  assert_eq "" "$(cat "$scope/cgroup.procs")" "processes in the scope itself (leaves hold them)"
  [ -n "$(cat "$(task_cg "$id")/main/cgroup.procs")" ] || fail "no process in the container's cgroup"
  CTL stop "$id" >/dev/null
  wait_status 60 "$id" STOPPED || fail "scoped did not stop"
  wait_for 10 eval '! systemctl is-active -q berth-'"$id"'.scope' || fail "scope still active after STOPPED"
}

test_stop_kills_after_stop_timeout_when_sigterm_is_ignored() {
  ensure_images || return 1
  register deaf '{"name":"deaf","image":"busybox","memory":32,"stopTimeout":2,"command":["sleep","1000"]}' >/dev/null
  id=$(CTL run deaf) || return 1
  wait_status 60 "$id" RUNNING || fail "deaf not RUNNING"
  start=$SECONDS
  CTL stop "$id" --reason "maintenance window"
  wait_status 60 "$id" STOPPED || fail "deaf did not stop"
  took=$((SECONDS - start))
  json=$(task_json "$id")
  assert_eq 137 "$(echo "$json" | jfield containers.0.exitCode)" "exit code after SIGKILL"
  assert_eq UserInitiated "$(echo "$json" | jfield stopCode)" "stopCode"
  assert_eq "maintenance window" "$(echo "$json" | jfield stoppedReason)" "stoppedReason"
  (( took >= 2 )) || fail "stopped after ${took}s, before the 2 s stopTimeout"
  (( took <= 20 )) || fail "stopped only after ${took}s"
}

test_stop_of_a_process_that_exits_on_sigterm_keeps_its_exit_code() {
  ensure_images || return 1
  register polite '{"name":"polite","image":"busybox","memory":32,"command":["sh","-c","trap \"exit 3\" TERM; while :; do sleep 1; done"]}' >/dev/null
  id=$(CTL run polite) || return 1
  wait_status 60 "$id" RUNNING || fail "polite not RUNNING"
  sleep 2
  CTL stop "$id"
  wait_status 60 "$id" STOPPED || fail "polite did not stop"
  assert_eq 3 "$(task_json "$id" | jfield containers.0.exitCode)" "exit code"
}

test_missing_image_stops_the_task_with_cannot_pull() {
  ensure_images || return 1
  register ghost '{"name":"g","image":"no-such-image:1","memory":32}' >/dev/null
  id=$(CTL run ghost) || return 1
  # PENDING while berth tries to pull it from Docker Hub, which the guest cannot reach.
  wait_status 60 "$id" STOPPED || fail "the task of a missing image did not stop"
  json=$(task_json "$id")
  assert_eq STOPPED "$(echo "$json" | jfield lastStatus)" "lastStatus"
  assert_eq TaskFailedToStart "$(echo "$json" | jfield stopCode)" "stopCode"
  assert_contains "$(echo "$json" | jfield stoppedReason)" "CannotPullContainerError" "stoppedReason"
  assert_contains "$(echo "$json" | jfield stoppedReason)" "no-such-image:1" "stoppedReason"
  [ "$(echo "$json" | jfield pullStoppedAt)" != null ] || fail "no pullStoppedAt on a failed pull: $json"
  # A script waiting for it to run is told at once that it never will, and why.
  out=$(CTL wait --status RUNNING --timeout 60 "$id" 2>&1)
  assert_eq 1 "$?" "berthctl wait --status RUNNING's exit status for a stopped task"
  assert_contains "$out" "task $id is STOPPED and will not be RUNNING: CannotPullContainerError" "berthctl wait --status RUNNING"
  assert_eq "$id STOPPED" "$(CTL wait "$id")" "berthctl wait (for STOPPED)"
}

test_logs_reach_the_file_and_the_journal_with_berth_fields() {
  ensure_images || return 1
  register talk '{"name":"talker","image":"busybox","memory":32,"command":["sh","-c","echo to-stdout; echo to-stderr >&2"]}' >/dev/null
  id=$(CTL run talk --wait --json | jfield taskId) || return 1
  out=$(CTL logs "$id" talker)
  assert_contains "$out" "to-stdout" "berthctl logs"
  assert_contains "$out" "to-stderr" "berthctl logs"
  journalctl --sync 2>/dev/null
  j=$(journalctl BERTH_TASK_ID="$id" BERTH_CONTAINER=talker --no-pager -o cat)
  assert_contains "$j" "to-stdout" "journal"
  assert_contains "$(journalctl BERTH_TASK_ID="$id" -o verbose --no-pager)" "BERTH_FAMILY=talk" "journal fields"
}

test_task_object_on_dbus_shows_status_and_containers() {
  ensure_images || return 1
  register obj '{"name":"o","image":"busybox","memory":32,"command":["sh","-c","exit 7"]}' >/dev/null
  id=$(CTL run obj --wait --json | jfield taskId) || return 1
  path=/org/berth/Agent1/task/$id
  assert_contains "$(busctl introspect org.berth.Agent1 "$path")" "org.berth.Agent1.Task" "introspect"
  assert_eq '"STOPPED"' "$(busctl get-property org.berth.Agent1 "$path" org.berth.Agent1.Task LastStatus | cut -d' ' -f2)" "LastStatus"
  assert_contains "$(busctl get-property org.berth.Agent1 "$path" org.berth.Agent1.Task Containers)" '"o" "STOPPED" 7' "Containers"
  assert_contains "$(CTL ps --all)" "$id" "ps --all"
  assert_not_contains "$(CTL ps)" "$id" "ps"
}

test_task_larger_than_the_host_is_refused_with_resource_memory() {
  ensure_images || return 1
  register huge '{"name":"h","image":"busybox","memory":999999,"command":["true"]}' >/dev/null
  out=$(CTL run huge 2>&1) && fail "run of a too large task succeeded"
  assert_contains "$out" "RESOURCE:MEMORY: needs 999999 MiB" "refusal"
}

test_image_in_use_cannot_be_removed() {
  ensure_images || return 1
  CTL image import --name busybox:inuse $IMG/layout >/dev/null || return 1
  register inuse '{"name":"u","image":"busybox:inuse","memory":32,"command":["sleep","600"]}' >/dev/null
  id=$(CTL run inuse) || return 1
  out=$(CTL image rm busybox:inuse 2>&1) && fail "rm of an image in use succeeded"
  assert_contains "$out" "$id" "refusal names the task"
  CTL stop "$id"
  wait_status 60 "$id" STOPPED || fail "inuse did not stop"
  CTL image rm busybox:inuse || fail "rm after stop failed"
}

# Images are hostile input: each of these layers reaches through a link (or `..`) for a
# directory of the host's. Each import is refused naming the entry, and the directory is as
# it was: its file there, not linked again, nothing planted.
test_images_a_malicious_layer_is_refused_and_the_host_is_unchanged() {
  ensure_running
  local victim=/tmp/victim kind out d
  rm -rf "$victim" && mkdir -p "$victim" && echo precious > "$victim/precious"
  d=$(mktemp -d)
  for kind in link-whiteout link-write opaque hardlink dotdot; do
    "$REPO/tests/guest/make-evil-image" "$d/$kind.tar" "$kind" "$victim" || { fail "cannot make the $kind image"; continue; }
    out=$(CTL image import "$d/$kind.tar" 2>&1) && fail "the $kind image was imported: $out"
    assert_contains "$out" "layer" "the refusal of the $kind image names its layer: $out"
    assert_eq precious "$(cat "$victim/precious" 2>&1)" "$victim/precious after the $kind image"
    assert_eq 1 "$(stat -c %h "$victim/precious")" "links to $victim/precious after the $kind image"
    assert_eq "precious" "$(ls "$victim")" "what $victim holds after the $kind image"
    assert_not_contains "$(CTL image ls)" "evil:$kind" "image ls after the $kind image"
  done
  rm -rf "$d" "$victim"
}
