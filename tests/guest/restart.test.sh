# Capacity books and restarts: admission refusals with their numbers, host ports, and berthd
# restarts (kill -9, systemctl restart, a new boot) that lose no task and leave nothing behind.
# Each test stops the tasks it started, so the books return to where they were.

STATE=/var/lib/berth
METRICS_URL=http://127.0.0.1:9580/metrics

# One task definition of a sleeping busybox: register_sleeper FAMILY MEMORY_RESERVATION [EXTRA].
register_sleeper() {
  printf '{"family":"%s","networkMode":"%s","containerDefinitions":[{"name":"s","image":"busybox","memoryReservation":%s,"stopTimeout":2,"command":["sleep","600"]%s}]}' \
    "$1" "${NET:-none}" "$2" "${3:+,$3}" | CTL register - >/dev/null
}

capacity_json() { CTL capacity --json; }
cap() { capacity_json | jfield "$1"; }
metric() { curl -sf "$METRICS_URL" | awk -v k="$1" '$1 == k {print $2}'; }

# The three faces agree on the remaining memory, and it is what the books say.
assert_books_agree() { # what
  local prop_mib json_mib metric_bytes
  prop_mib=$(prop RemainingMemory)
  json_mib=$(cap remainingMemory)
  metric_bytes=$(metric 'berth_host_memory_bytes{state="remaining"}')
  assert_eq "$prop_mib" "$json_mib" "$1: capacity --json remainingMemory vs RemainingMemory"
  assert_eq "$((prop_mib * 1024 * 1024))" "$metric_bytes" "$1: /metrics remaining bytes vs RemainingMemory"
  # Reserved is the sum of what the unstopped tasks hold.
  local sum
  sum=$(capacity_json | python3 -S -c 'import json,sys; d=json.load(sys.stdin); print(sum(t["memory"] for t in d["tasks"]))')
  assert_eq "$sum" "$(cap reservedMemory)" "$1: reservedMemory vs the tasks holding it"
}

stop_all() { for id in "$@"; do CTL stop "$id" >/dev/null 2>&1; done
  for id in "$@"; do wait_status 60 "$id" STOPPED || fail "task $id did not stop"; done; }

main_pid() { systemctl show -p MainPID --value berthd; }
bus_ready() { busctl get-property org.berth.Agent1 /org/berth/Agent1 org.berth.Agent1.Manager Version; }
# Waits for a berthd other than OLD_PID to serve the bus, and clears systemd's start counter so
# the tests' deliberate crashes never trip its restart limit.
wait_new_berthd() { # OLD_PID
  wait_for 60 eval '[ "$(main_pid)" != 0 ] && [ "$(main_pid)" != "'"$1"'" ] && systemctl is-active -q berthd && bus_ready' \
    || { fail "berthd did not come back: $(journalctl -u berthd -n 15 --no-pager)"; return 1; }
  systemctl reset-failed berthd 2>/dev/null
  return 0
}

# The host pid of a task's container init (the process that is PID 1 in its namespace).
container_pid() { # TASK CONTAINER
  local p
  for p in $(cat "$(task_cg "$1")/$2/cgroup.procs" 2>/dev/null); do
    [ "$(awk '/^NSpid/ {print $NF}' /proc/"$p"/status 2>/dev/null)" == 1 ] && { echo "$p"; return 0; }
  done
  return 1
}

shim_running() { pgrep -f "shim $STATE/tasks/$1\$" >/dev/null; }
mounted_under() { grep -q " $STATE/tasks/$1/" /proc/self/mountinfo; }

# A STOPPED task left nothing on the host; a RUNNING one still has all of it.
assert_cleared() { # TASK
  [ ! -d "$(task_cg "$1")" ] || fail "stopped task $1 still has its cgroup"
  # systemd notices an emptied scope asynchronously (cgroup.events); as in the scope test.
  wait_for 10 eval '! systemctl is-active -q berth-'"$1"'.scope' || fail "stopped task $1 still has its scope unit"
  wait_for 10 eval '[ ! -d "$(dirname "$(task_cg "'"$1"'")")" ]' || fail "stopped task $1 still has its scope cgroup"
  ! mounted_under "$1" || fail "stopped task $1 still has mounts: $(grep "$STATE/tasks/$1/" /proc/self/mountinfo)"
  ! shim_running "$1" || fail "stopped task $1 still has a shim"
  [ -z "$(ls -d /run/berth/"${1:0:12}"-* 2>/dev/null)" ] || fail "stopped task $1 still has libcontainer state"
}
assert_held() { # TASK
  [ -d "$(task_cg "$1")" ] || fail "running task $1 lost its cgroup"
  shim_running "$1" || fail "running task $1 has no shim"
}

test_capacity_memory_fills_then_refuses_with_the_numbers_and_a_stop_makes_room() {
  ensure_images || return 1
  register_sleeper fill 300
  assert_books_agree "before" || return 1
  local reg remaining n ids=() i id out
  reg=$(prop RegisteredMemory); remaining=$(prop RemainingMemory)
  n=$((remaining / 300))
  for ((i = 0; i < n; i++)); do
    id=$(CTL run fill) || { fail "task $((i + 1)) of $n refused: $id"; stop_all "${ids[@]}"; return 1; }
    ids+=("$id")
    assert_eq "$((remaining - (i + 1) * 300))" "$(prop RemainingMemory)" "RemainingMemory after $((i + 1)) tasks"
  done
  assert_books_agree "full"
  before=$(CTL ps --all | wc -l)
  out=$(CTL run fill 2>&1) && fail "task $((n + 1)) was admitted: $out"
  assert_contains "$out" "RESOURCE:MEMORY: needs 300 MiB, $((remaining - n * 300)) MiB of $reg MiB remain" "refusal"
  assert_eq "$before" "$(CTL ps --all | wc -l)" "tasks after a refusal (nothing started)"
  CTL stop "${ids[0]}" >/dev/null
  wait_status 60 "${ids[0]}" STOPPED || fail "first task did not stop"
  assert_eq "$((remaining - (n - 1) * 300))" "$(prop RemainingMemory)" "RemainingMemory after a stop"
  assert_books_agree "after a stop"
  id=$(CTL run fill) || fail "no room after a stop: $id"
  ids+=("$id")
  stop_all "${ids[@]:1}"
  assert_eq "$remaining" "$(prop RemainingMemory)" "RemainingMemory once all stopped"
  assert_books_agree "after"
}

test_capacity_second_task_on_host_port_8080_is_refused_naming_the_holder() {
  ensure_images || return 1
  # The example web server, host networking, port 8080.
  CTL register "$REPO/examples/web-host.json" >/dev/null || return 1
  first=$(CTL run web-host) || { fail "first task refused: $first"; return 1; }
  wait_status 60 "$first" RUNNING || { fail "web-host not RUNNING: $(task_json "$first" | jfield stoppedReason)"; return 1; }
  wait_for 30 curl -sf http://127.0.0.1:8080/etc/passwd || fail "nothing served on the host's port 8080"
  assert_contains "$(curl -sf http://127.0.0.1:8080/etc/passwd)" "root:x:0:0" "the image's /etc/passwd, served from the container"
  assert_eq "$(hostname)" "$(nsenter -t "$(container_pid "$first" httpd)" -u hostname)" "the container's hostname in host mode"
  NET=host register_sleeper port8080 16 '"portMappings":[{"containerPort":8080}]'
  out=$(CTL run port8080 2>&1) && fail "second task admitted: $out"
  assert_contains "$out" "RESOURCE:PORTS: tcp/8080 held by task $first" "refusal"
  ports=$(busctl get-property org.berth.Agent1 /org/berth/Agent1 org.berth.Agent1.Manager ReservedPorts)
  assert_contains "$ports" "\"tcp\" 8080 \"$first\"" "ReservedPorts"
  assert_contains "$(CTL capacity)" "tcp/8080" "berthctl capacity table"
  assert_eq 1 "$(cap reservedPorts.tcp)" "capacity --json reservedPorts.tcp"
  stop_all "$first"
  # The metrics port is the host's own.
  NET=host register_sleeper port9580 16 '"portMappings":[{"containerPort":9580}]'
  out2=$(CTL run port9580 2>&1) && fail "a task took berthd's metrics port: $out2"
  assert_contains "$out2" "RESOURCE:PORTS: tcp/9580 reserved for the host" "metrics port refusal"
  # Freed by the stop: the next one fits.
  second=$(CTL run port8080) || fail "port not freed by the stop: $second"
  wait_status 60 "$second" RUNNING || fail "second task not RUNNING: $(task_json "$second" | jfield stoppedReason)"
  stop_all "$second"
  assert_eq 0 "$(cap reservedPorts.tcp)" "reservedPorts.tcp after stops"
}

test_restart_kill_9_readopts_17_running_tasks_and_records_3_exits_with_their_codes() {
  ensure_images || return 1
  register_sleeper idle 16
  printf '%s' '{"family":"trapper","networkMode":"none","containerDefinitions":[{"name":"t","image":"busybox","memoryReservation":16,"command":["sh","-c","trap \"exit 3\" USR1; trap \"exit 4\" USR2; trap \"exit 5\" TERM; while true; do sleep 0.2; done"]}]}' \
    | CTL register - >/dev/null
  local reserved0 idle=() trap=() id i
  reserved0=$(prop ReservedMemory)
  for ((i = 0; i < 17; i++)); do idle+=("$(CTL run idle)") || return 1; done
  for ((i = 0; i < 3; i++)); do trap+=("$(CTL run trapper)") || return 1; done
  for id in "${idle[@]}" "${trap[@]}"; do
    wait_status 120 "$id" RUNNING || { fail "task $id not RUNNING before the crash: $(task_json "$id") $(tail -5 "$STATE/tasks/$id/shim.log")"; stop_all "${idle[@]}" "${trap[@]}"; return 1; }
  done
  declare -A pid_before
  for id in "${idle[@]}"; do pid_before[$id]=$(container_pid "$id" s); done
  local reserved20 old
  reserved20=$(prop ReservedMemory)
  assert_eq "$((reserved0 + 20 * 16))" "$reserved20" "ReservedMemory with 20 tasks"
  old=$(main_pid)
  # Frozen, berthd sees nothing of what follows; then it dies without a word.
  kill -STOP "$old"
  i=0
  for sig in USR1 USR2 TERM; do
    kill -"$sig" "$(container_pid "${trap[$i]}" t)"; i=$((i + 1))
  done
  for id in "${trap[@]}"; do
    wait_for 30 test -f "$STATE/tasks/$id/status/done.json" || fail "task $id's shim did not finish"
  done
  kill -KILL "$old"
  wait_new_berthd "$old" || return 1
  for id in "${idle[@]}"; do
    wait_status 30 "$id" RUNNING || fail "task $id not RUNNING after the restart: $(task_json "$id" | jfield stoppedReason)"
    assert_eq "${pid_before[$id]}" "$(container_pid "$id" s)" "task $id's container pid across the restart"
  done
  i=3
  for id in "${trap[@]}"; do
    wait_status 30 "$id" STOPPED || fail "task $id not STOPPED after the restart"
    assert_eq "$i" "$(task_json "$id" | jfield containers.0.exitCode)" "exit code of task $id"
    assert_eq EssentialContainerExited "$(task_json "$id" | jfield stopCode)" "stopCode of task $id"
    assert_cleared "$id"
    i=$((i + 1))
  done
  assert_eq "$((reserved0 + 17 * 16))" "$(prop ReservedMemory)" "ReservedMemory after the restart"
  assert_books_agree "after kill -9"
  # The new berthd commands the re-adopted shims.
  stop_all "${idle[@]}"
  for id in "${idle[@]}"; do assert_cleared "$id"; done
  assert_eq "$reserved0" "$(prop ReservedMemory)" "ReservedMemory once all stopped"
}

test_restart_kill_9_at_random_points_of_run_task_leaves_running_or_cleanly_stopped_tasks() {
  ensure_images || return 1
  register_sleeper crashy 16
  local round old id status
  for round in 1 2 3 4 5; do
    old=$(main_pid)
    CTL run crashy >/dev/null 2>&1 &
    sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
    kill -KILL "$old"
    wait "$!" 2>/dev/null
    wait_new_berthd "$old" || return 1
  done
  local ids
  ids=$(CTL --json ps --all | python3 -S -c 'import json,sys; print(" ".join(t["taskId"] for t in json.load(sys.stdin) if t["taskDefinition"].startswith("crashy:")))')
  for id in $ids; do
    wait_status 60 "$id" RUNNING 2>/dev/null; status=$(task_json "$id" | jfield lastStatus)
    [ "$status" == RUNNING ] || [ "$status" == STOPPED ] || fail "task $id neither RUNNING nor STOPPED: $(task_json "$id" | jfield lastStatus)"
    status=$(task_json "$id" | jfield lastStatus)
    echo "task $id: $status $(task_json "$id" | jfield stoppedReason 2>/dev/null)"
    case $status in
      RUNNING) assert_held "$id" ;;
      STOPPED) assert_cleared "$id" ;;
    esac
  done
  # No cgroup, shim or libcontainer state for a task the books do not hold: none for a task
  # of these crashes that stopped, none for a task berth does not know at all. (A stopped
  # task of an earlier test is that test's to check; it is named, not failed, here.)
  local live known
  live=$(CTL --json ps | jq -r '.[].taskId' | tr '\n' ' ')
  known=$(CTL --json ps --all | jq -r '.[].taskId' | tr '\n' ' ')
  for d in /sys/fs/cgroup/berth.slice/berth-*.scope; do
    [ -d "$d" ] || continue
    id=${d##*/berth-}; id=${id%.scope}
    [[ " $live " == *" $id "* ]] && continue
    if [[ " $known " == *" $id "* && " $ids " != *" $id "* ]]; then
      wait_for 30 eval '[ ! -d "'"$d"'" ]' || echo "note: the scope of $id, a stopped task of an earlier test, is still there"
      continue
    fi
    wait_for 30 eval '[ ! -d "'"$d"'" ]' || {
      fail "orphaned task scope $d: $(systemctl show -p ActiveState,SubState,CollectMode "berth-$id.scope" | tr '\n' ' ') procs: $(cat "$d"/cgroup.procs "$d"/*/cgroup.procs 2>/dev/null | tr '\n' ' ') task: $(CTL --json describe "$id" 2>&1 | head -c 300) journal: $(journalctl -u berthd --no-pager -o cat | grep "$id" | tail -5 | tr '\n' '|')"
    }
  done
  for s in $(pgrep -af '(berth-shim|berthd shim) ' | awk '{print $NF}'); do
    [[ " $live " == *" $(basename "$s") "* ]] || fail "orphaned shim for $s"
  done
  assert_books_agree "after crashes"
  stop_all $(for id in $ids; do status_is "$id" RUNNING && echo "$id"; done)
}

# A local user's process whose command line reads as a shim's: of a task directory `tasks/..`
# (a berthd that trusted /proc/*/cmdline took `..` for a task and cleared tasks/../volumes,
# every shared volume) and of a task id berth never made. Both run on, and nothing of berth's
# moves.
fake_shim() { # TASK_DIR
  setpriv --reuid=65534 --regid=65534 --clear-groups \
    bash -c 'exec -a /usr/bin/berthd tail -f /dev/null shim "$0"' "$1" >/dev/null 2>&1 &
  echo $!
}

test_restart_systemctl_restart_keeps_tasks_ignores_processes_posing_as_shims_and_the_new_berthd_stops_them() {
  ensure_images || return 1
  register_sleeper kept 16
  a=$(CTL run kept) && b=$(CTL run kept) || return 1
  for id in "$a" "$b"; do wait_status 60 "$id" RUNNING || fail "task $id not RUNNING"; done
  pa=$(container_pid "$a" s)
  reserved=$(prop ReservedMemory)
  mkdir -p "$STATE/volumes/kept-data" && echo precious > "$STATE/volumes/kept-data/file"
  local f1 f2
  f1=$(fake_shim "$STATE/tasks/..") f2=$(fake_shim "$STATE/tasks/0123456789abcdef0123456789abcdef")
  wait_for 10 eval 'tr "\0" " " < /proc/'"$f2"'/cmdline | grep -q "shim $STATE/tasks/0123"' || fail "the second fake shim did not start"
  systemctl restart berthd || fail "systemctl restart failed"
  wait_for 30 bus_ready || fail "berthd not back on the bus"
  kill -0 "$f1" 2>/dev/null || fail "berthd killed a user's process posing as the shim of tasks/.."
  kill -0 "$f2" 2>/dev/null || fail "berthd killed a user's process posing as the shim of a task it never made"
  assert_eq precious "$(cat "$STATE/volumes/kept-data/file" 2>&1)" "a shared volume's file after berthd met a process posing as the shim of tasks/.."
  kill "$f1" "$f2" 2>/dev/null; rm -rf "$STATE/volumes/kept-data"
  assert_eq RUNNING "$(task_json "$a" | jfield lastStatus)" "task a after systemctl restart"
  assert_eq "$pa" "$(container_pid "$a" s)" "task a's container pid"
  assert_eq "$reserved" "$(prop ReservedMemory)" "ReservedMemory after systemctl restart"
  json=$(CTL --json stop "$a")
  wait_status 30 "$a" STOPPED || fail "re-adopted task did not stop"
  assert_eq 137 "$(task_json "$a" | jfield containers.0.exitCode)" "exit code of sleep killed after stopTimeout 2"
  assert_cleared "$a"
  stop_all "$b"
}

test_restart_after_a_new_boot_tasks_are_stopped_as_host_restarted_and_capacity_is_whole() {
  ensure_images || return 1
  register_sleeper rebooted 16
  reserved0=$(prop ReservedMemory)
  a=$(CTL run rebooted) && b=$(CTL run rebooted) || return 1
  for id in "$a" "$b"; do wait_status 60 "$id" RUNNING || fail "task $id not RUNNING"; done
  systemctl stop berthd
  # A new boot has a new boot id; berthd keeps the one it last ran in. (The shims still run
  # here, which a real reboot would have ended: berthd must clear them itself.)
  python3 -S -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("UPDATE meta SET value=? WHERE key=?", ("an-earlier-boot", "boot_id")); c.commit()' "$STATE/berth.db"
  systemctl start berthd || { fail "berthd did not start: $(journalctl -u berthd -n 15 --no-pager)"; return 1; }
  for id in "$a" "$b"; do
    assert_eq STOPPED "$(task_json "$id" | jfield lastStatus)" "task $id after the new boot"
    assert_eq HostRestarted "$(task_json "$id" | jfield stopCode)" "stopCode"
    assert_eq "host restarted: the task ended with the previous boot" "$(task_json "$id" | jfield stoppedReason)" "stoppedReason"
    assert_cleared "$id"
  done
  assert_eq "$reserved0" "$(prop ReservedMemory)" "ReservedMemory after the new boot"
  assert_books_agree "after a new boot"
}

# Puts FILE in place of berth.db, starts berthd, and checks it refuses with MESSAGE, exits 78
# (no restart loop) and leaves the file as it was.
refused_state_file() { # what MESSAGE
  local sum_before sum_after
  sum_before=$(md5sum < "$STATE/berth.db")
  systemctl start berthd 2>/dev/null && fail "$1: berthd started"
  assert_eq 78 "$(systemctl show -p ExecMainStatus --value berthd)" "$1: exit status"
  assert_contains "$(journalctl -u berthd -n 5 --no-pager)" "$2" "$1: the log says why"
  sum_after=$(md5sum < "$STATE/berth.db")
  assert_eq "$sum_before" "$sum_after" "$1: berth.db checksum"
  systemctl reset-failed berthd
}

test_restart_with_a_damaged_or_newer_state_file_is_refused_and_the_file_untouched() {
  ensure_running
  systemctl stop berthd
  local keep=/tmp/berth-db-keep
  rm -rf "$keep"; mkdir -p "$keep"
  mv "$STATE"/berth.db* "$keep"/
  head -c 100000 /dev/urandom > "$STATE/berth.db"
  refused_state_file "random bytes" "is not a berth state database"
  rm -f "$STATE"/berth.db*
  cp -a "$keep"/berth.db* "$STATE"/
  python3 -S -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("PRAGMA user_version = 99"); c.commit(); c.close()' "$STATE/berth.db"
  refused_state_file "schema 99" "has schema version 99, newer than this berthd knows"
  rm -f "$STATE"/berth.db*
  mv "$keep"/berth.db* "$STATE"/
  systemctl start berthd || fail "berthd did not start on its own state again"
}
