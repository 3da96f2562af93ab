# What berth keeps: stopped tasks for a time and a count, then forgotten with their
# directories and D-Bus objects; container logs rotated by size with offsets that run on; a
# state directory short of space refuses new work and loses nothing it recorded.
# Each test runs berthd with a config of its own and puts the usual one back.

# berthd restarted with LINES (printf %b) added to the test config; berthd_restored undoes it.
berthd_with() { # LINES
  cp /etc/berth/berthd.toml /tmp/berthd.toml.history
  printf '%b' "$1" >> /etc/berth/berthd.toml
  systemctl restart berthd || { fail "berthd did not start with: $1 $(journalctl -u berthd -n 5 --no-pager)"; return 1; }
  wait_for 30 bus_ready || { fail "berthd not on the bus"; return 1; }
}
berthd_restored() {
  cp /tmp/berthd.toml.history /etc/berth/berthd.toml
  systemctl restart berthd || fail "berthd did not start with the test config"
  wait_for 30 bus_ready || fail "berthd not back on the bus"
}

test_history_a_log_rotates_by_size_and_a_stopped_task_is_forgotten_past_its_retention() {
  ensure_images || return 1
  # 30 s: time to read the task whole before it goes, under emulation beside the other lane.
  berthd_with 'stopped_task_retention_secs = 30\nlog_max_mib = 1\n' || return 1
  # 2600 numbered lines of 1006 bytes (2.5 MiB): the log rotates twice, the first ~1 MiB is
  # left to the journal, the rest stays readable in order.
  printf '%s' '{"family":"chatty","networkMode":"none","containerDefinitions":[{"name":"c","image":"busybox","memory":32,"command":["sh","-c","pad=$(head -c 1000 /dev/zero | tr \"\\0\" x); i=0; while [ $i -lt 2600 ]; do printf \"%04d %s\\n\" $i $pad; i=$((i+1)); done"]}]}' \
    | CTL register - >/dev/null || { fail "not registered"; berthd_restored; return 1; }
  local id logs first last lines
  id=$(CTL run chatty) || { fail "run: $id"; berthd_restored; return 1; }
  wait_status 120 "$id" STOPPED || fail "chatty did not stop"
  assert_eq 0 "$(task_json "$id" | jfield containers.0.exitCode)" "chatty's exit code"
  logs=$STATE/tasks/$id/logs
  [ -f "$logs/c.log.1" ] || fail "no rotated log beside c.log: $(ls -l "$logs")"
  (( $(stat -c %s "$logs/c.log") < 1048576 )) || fail "c.log past its 1 MiB: $(stat -c %s "$logs/c.log")"
  lines=$(CTL logs "$id" | cut -c1-4)
  first=$(head -1 <<<"$lines"); last=$(tail -1 <<<"$lines")
  assert_eq 2599 "$last" "the last line through berthctl logs"
  (( 10#$first > 0 )) || fail "the first line shown ($first) should be one a rotation kept, not the first written"
  assert_eq "$((10#$last - 10#$first + 1))" "$(wc -l <<<"$lines")" "lines from the oldest kept to the last, none missing or twice"
  assert_contains "$(CTL ps --all 2>&1 >/dev/null)" "stopped tasks are kept 30s (at most 1000)" "ps --all says how far back it goes"
  assert_eq "(tt) 30 1000" "$(busctl get-property org.berth.Agent1 /org/berth/Agent1 org.berth.Agent1.Manager StoppedTaskRetention)" "StoppedTaskRetention on D-Bus"
  # Past its retention: the record, the directory (upper layers and logs) and the object go.
  wait_for 90 eval '! CTL describe "'"$id"'" >/dev/null 2>&1' || fail "task $id not forgotten 30 s after it stopped"
  [ ! -e "$STATE/tasks/$id" ] || fail "the forgotten task's directory stayed: $(ls "$STATE/tasks/$id")"
  ! busctl introspect org.berth.Agent1 "/org/berth/Agent1/task/$id" 2>/dev/null | grep -q org.berth.Agent1.Task \
    || fail "the forgotten task's D-Bus object stayed"
  ! CTL ps --all | grep -q "$id" || fail "ps --all still lists the forgotten task"
  # A restart does not bring it back.
  berthd_restored
  ! CTL describe "$id" >/dev/null 2>&1 || fail "the forgotten task came back after a restart"
}

test_history_a_state_directory_short_of_space_refuses_new_work_and_loses_nothing_recorded() {
  ensure_running || return 1
  # A berthd on another state directory clears what it does not know: no task may run now.
  [ -z "$(CTL ps | tail -n +2)" ] || { fail "tasks still run: $(CTL ps)"; return 1; }
  local img=/var/tmp/berth-small.img mnt=/run/berth-small out id
  truncate -s 48M "$img" && mkfs.ext4 -q -F -m 0 "$img" && mkdir -p "$mnt" && mount -o loop "$img" "$mnt" \
    || { fail "cannot make the small filesystem"; return 1; }
  berthd_with "state_dir = \"$mnt/state\"\nmin_free_disk_mib = 16\n" || { umount "$mnt"; return 1; }
  printf '{"family":"kept","networkMode":"none","containerDefinitions":[{"name":"c","image":"busybox","memory":32,"command":["true"]}]}' \
    | CTL register - >/dev/null || fail "register before the disk filled"
  # No image in this state directory: the task is recorded STOPPED (CannotPull).
  id=$(CTL run kept) || fail "run before the disk filled: $id"
  wait_status 60 "$id" STOPPED || fail "task $id did not stop"
  # Filled to 8 MiB free, under the 16 berth keeps.
  dd if=/dev/zero of="$mnt/fill" bs=1M 2>/dev/null
  truncate -s -8M "$mnt/fill"
  out=$(printf '{"family":"late","containerDefinitions":[{"name":"c","image":"busybox","memory":32}]}' | CTL register - 2>&1) \
    && fail "a definition was registered on a full disk: $out"
  assert_contains "$out" "RESOURCE:DISK: the state directory $mnt/state has" "register's refusal"
  assert_contains "$out" "under the 16 MiB berth keeps free" "register's refusal"
  out=$(CTL run kept 2>&1) && fail "a task was admitted on a full disk: $out"
  assert_contains "$out" "RESOURCE:DISK" "RunTask's refusal"
  out=$(CTL service create full --task-definition kept --desired 1 2>&1) && fail "a service was created on a full disk: $out"
  assert_contains "$out" "RESOURCE:DISK" "CreateService's refusal"
  # What was recorded is all there, before and after a restart.
  systemctl restart berthd && wait_for 30 bus_ready || fail "berthd did not restart on the full disk"
  assert_eq kept:1 "$(CTL definitions kept)" "the definition recorded before"
  assert_eq STOPPED "$(task_json "$id" | jfield lastStatus)" "the task recorded before"
  # Room again: new work is taken.
  rm -f "$mnt/fill"
  out=$(printf '{"family":"late","containerDefinitions":[{"name":"c","image":"busybox","memory":32}]}' | CTL register - 2>&1)
  assert_eq late:1 "$out" "register once space is freed"
  berthd_restored
  umount "$mnt" || fail "the small filesystem is still busy"
  rm -f "$img"
}
