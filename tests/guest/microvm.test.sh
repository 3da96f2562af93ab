# MicroVM tasks (issue 10): a task in a QEMU microvm of its own, nested in this emulated guest,
# behind the same API and faces as a container task. A nested boot takes minutes here, so few
# tests boot, and those that do check several things.

vm_conf() { grep '^vm_kernel_dir' /etc/berth/berthd.toml; }

# A one-container microVM task definition.
register_vm() { # NAME CONTAINER-JSON
  printf '{"family":"%s","networkMode":"none","containerDefinitions":[%s]}' "$1" "$2" | CTL register - 2>/dev/null
}

# Waits until the task is RUNNING; fails at once when it stopped instead.
wait_running() { # ID SECONDS
  wait_status "$2" "$1" RUNNING || true
  status_is "$1" RUNNING || { fail "microVM task $1 not RUNNING: $(task_json "$1")"; return 1; }
}

# The QEMU process of a running microVM task: the one process in its task's vmm cgroup.
vmm_pid() { head -1 "$(task_cg "$1")/vmm/cgroup.procs" 2>/dev/null; }

test_microvm_without_a_kernel_is_refused_at_run_naming_the_path_and_the_fix() {
  ensure_images || return 1
  vm_conf >/dev/null || { fail "no vm_kernel_dir in berthd.toml (BERTH_GUEST_KERNEL unset?)"; return 1; }
  register_vm vm-nokernel '{"name":"c","image":"busybox","memory":64,"command":["true"]}' >/dev/null
  before=$(CTL --json ps --all | python3 -S -c 'import json,sys; print(len(json.load(sys.stdin)))')
  sed -i 's|^vm_kernel_dir = .*|vm_kernel_dir = "/nonexistent/kernel"|' /etc/berth/berthd.toml
  systemctl restart berthd
  out=$(CTL run --isolation microvm vm-nokernel 2>&1); rc=$?
  sed -i "s|^vm_kernel_dir = .*|vm_kernel_dir = \"$BERTH_GUEST_KERNEL\"|" /etc/berth/berthd.toml
  systemctl restart berthd
  [ "$rc" -ne 0 ] || fail "run --isolation microvm without a kernel succeeded: $out"
  assert_contains "$out" "/nonexistent/kernel" "the refusal names the kernel directory"
  assert_contains "$out" "fetch-guest-kernel" "the refusal names the fix"
  after=$(CTL --json ps --all | python3 -S -c 'import json,sys; print(len(json.load(sys.stdin)))')
  assert_eq "$before" "$after" "tasks after the refusal (nothing left behind)"
}

test_microvm_task_waits_for_a_healthy_writer_shares_a_volume_logs_an_oom_kill_and_exits_42_on_the_guest_kernel() {
  ensure_images || return 1
  # main starts once the writer is HEALTHY (its check, run in the guest, sees the note on the
  # task volume both mount), then says the note and the kernel it runs on; the writer says a
  # line on stderr and idles, deaf to SIGTERM, until killed at its stopTimeout; the hog, not
  # essential, reads 16 MB into its 8 (more than the guest has free would be refused outright
  # by its overcommit check: dd would exit 1, not be OOM-killed).
  # main waits for the hog to end too: once, beside a busy lane, the task ended before the hog
  # was OOM-killed, and the stop's SIGKILL (137, no OOM) was what ended it.
  # The times are long for nested emulation beside the other lane (CI saw, on the agent's
  # console: 46 s to create the writer, a check's exec a minute, so a 5 s check timed out each
  # time): main's startTimeout, the check's timeout and its startPeriod (failures inside it do
  # not count; the first pass makes the writer HEALTHY).
  register vm-exit42 '{"name":"main","image":"busybox","memory":124,"mountPoints":[{"sourceVolume":"shared","containerPath":"/shared"}],
      "dependsOn":[{"containerName":"writer","condition":"HEALTHY"},{"containerName":"hog","condition":"COMPLETE"}],"startTimeout":900,
      "command":["sh","-c","cat /shared/note; uname -r; uname -r | grep -q cloud-amd64 && exit 42; exit 1"]},
    {"name":"writer","image":"busybox","essential":false,"memoryReservation":16,"mountPoints":[{"sourceVolume":"shared","containerPath":"/shared"}],
      "healthCheck":{"command":["CMD-SHELL","test -s /shared/note"],"interval":10,"timeout":60,"retries":10,"startPeriod":300},
      "stopTimeout":2,"command":["sh","-c","echo from-the-writer > /shared/note; echo writer-on-stderr >&2; trap \"\" TERM; sleep 3000 & wait"]},
    {"name":"hog","image":"busybox","essential":false,"memory":8,"command":["dd","if=/dev/zero","of=/dev/null","bs=16M","count=1"]}' \
    '"volumes":[{"name":"shared","host":{}}]' >/dev/null || { fail "not registered"; return 1; }
  reserved=$(prop ReservedMemory)
  json=$(CTL --json run --isolation microvm --wait vm-exit42); rc=$?
  if [ "$rc" != 42 ]; then
    echo "the task as it stopped: $(echo "$json" | jq -c '{stopCode, stoppedReason, containers: [.containers[] | {name, lastStatus, healthStatus, exitCode, reason}]}')"
    echo "its shim's log: $(tail -20 "/var/lib/berth/tasks/$(echo "$json" | jfield taskId)/shim.log" 2>&1)"
    echo "its guest's console: $(tail -30 "/var/lib/berth/tasks/$(echo "$json" | jfield taskId)/console.log" 2>&1)"
  fi
  assert_eq 42 "$rc" "berthctl run --wait exit status (42 only on the cloud kernel)"
  assert_eq microvm "$(echo "$json" | jfield isolation)" "isolation"
  assert_eq 148 "$(echo "$json" | jfield vm.memoryMiB)" "the VM's memory (124 + 16 + 8 MiB)"
  assert_eq 404 "$(echo "$json" | jfield memory)" "the task's reservation: the VM and its VMM's 256 MiB"
  assert_eq 42 "$(echo "$json" | jfield containers.0.exitCode)" "containers[0].exitCode"
  assert_eq EssentialContainerExited "$(echo "$json" | jfield stopCode)" "stopCode"
  id=$(echo "$json" | jfield taskId)
  out=$(CTL logs "$id" main)
  assert_contains "$out" "from-the-writer" "main's log: the note the writer left on the shared task volume"
  assert_contains "$out" "cloud-amd64" "main's log: the guest kernel's release"
  assert_contains "$(CTL logs "$id" writer)" "writer-on-stderr" "the writer's stderr in its log"
  assert_eq HEALTHY "$(echo "$json" | jfield containers.1.healthStatus)" "the writer's health, judged from checks run in the guest"
  assert_eq 137 "$(echo "$json" | jfield containers.1.exitCode)" "exit code of the writer, which ignores SIGTERM: killed after its 2 s stopTimeout"
  assert_eq 137 "$(echo "$json" | jfield containers.2.exitCode)" "exit code of the hog, OOM-killed in the guest"
  assert_contains "$(echo "$json" | jfield containers.2.reason)" "over its memory limit" "the hog's reason, from the guest's memory.events"
  journalctl --sync 2>/dev/null
  assert_contains "$(journalctl BERTH_TASK_ID="$id" BERTH_CONTAINER=main --no-pager -o cat)" "from-the-writer" "the journal, with berth's fields"
  assert_eq "$reserved" "$(prop ReservedMemory)" "ReservedMemory after the task"
  wait_for 10 eval '[ ! -d "$(dirname "$(task_cg "'"$id"'")")" ]' || fail "the task's scope is still there"
  [ -s "/var/lib/berth/tasks/$id/console.log" ] || fail "no guest console log"
}

test_microvm_a_host_path_volume_is_refused_naming_the_field() {
  ensure_images || return 1
  register vm-hostvol '{"name":"c","image":"busybox","memory":64,"mountPoints":[{"sourceVolume":"logs","containerPath":"/l"}],"command":["true"]}' \
    '"volumes":[{"name":"logs","host":{"sourcePath":"/var/log"}}]' >/dev/null || { fail "not registered"; return 1; }
  out=$(CTL run --isolation microvm vm-hostvol 2>&1) && fail "a microVM task with a host path volume ran: $out"
  assert_contains "$out" "volumes[0] (logs): host.sourcePath /var/log" "the refusal names the field"
}

# A service's microVM task, seen as a container task is (the Isolation property, its cgroup's
# memory.max, its line in `berthctl capacity`, its container's memory series and log), lives
# through a kill -9 of berthd with the same VMM and no second task, then is lost two ways,
# each replaced: a frozen VM (its agent silent past vm_agent_timeout_secs, 60 in the test
# config) and a killed VMM. Two full boots; the second replacement is only seen to start (one
# VM at a time: two nested VMs at once share the guest's two emulated CPUs), and the
# service's delete stops it mid-boot. (A stop's SIGKILL after stopTimeout is the writer's, in
# the test above.)
test_microvm_service_survives_berthd_kill_9_and_replaces_a_frozen_vm_and_a_killed_vmm() {
  VM_SERVICE=
  microvm_service; rc=$?
  if [ -n "$VM_SERVICE" ]; then
    CTL service delete "$VM_SERVICE" >/dev/null 2>&1
    WAIT_PAUSE_MAX=6 wait_for 180 eval '! CTL service describe "'"$VM_SERVICE"'" >/dev/null 2>&1' || fail "service $VM_SERVICE not gone after delete"
  fi
  return $rc
}

# The checks of a running microVM task's faces and of berthd's kill -9 under it.
microvm_faces_and_kill_9() { # TASK
  local a=$1 vmm max series old
  assert_eq microvm "$(busctl get-property org.berth.Agent1 "/org/berth/Agent1/task/$a" org.berth.Agent1.Task Isolation | awk '{print $2}' | tr -d '"')" "the Isolation property"
  vmm=$(vmm_pid "$a")
  [ -n "$vmm" ] || fail "no VMM in task $a's cgroup"
  # QEMU runs as berth-vmm with what the shim handed it: it cannot even look at berth's state.
  assert_eq berth-vmm "$(stat -c %U "/proc/$vmm")" "the VMM's user"
  assert_contains "$(ls -l "/proc/$vmm/fd/" 2>&1)" "vmlinuz" "the kernel handed to the VMM as a descriptor"
  runuser -u berth-vmm -- ls /var/lib/berth/tasks >/dev/null 2>&1 && fail "berth-vmm can list berth's tasks"
  max=$(cat "$(task_cg "$a")/memory.max")
  assert_eq $(((128 + 256) << 20)) "$max" "the task cgroup's memory.max: the VM (128 MiB) and the VMM's 256 MiB"
  assert_contains "$(CTL capacity | grep "$a")" "(microVM: VM 128 MiB + VMM 256 MiB)" "berthctl capacity shows the VMM's overhead"
  # The agent's answers to the shim's pings carry the container's usage.
  series="^berth_container_memory_usage_bytes{task_id=\"$a\".*container=\"s\"} [1-9]"
  wait_for 60 eval 'curl -s "http://$METRICS/metrics" | grep -q "$series"' \
    || fail "no memory series of the microVM's container: $(curl -s "http://$METRICS/metrics" | grep "$a" | head -5)"
  # Under nested emulation beside the other lane the output has come over a minute late.
  wait_for 120 eval 'CTL logs "'"$a"'" s | grep -q sleeping' || fail "the container's output is not in its log: $(CTL logs "$a" s 2>&1 | tail -3)"
  # berthd dies; the VM lives on, the new berthd takes the task back, and the service keeps
  # its one task.
  old=$(main_pid); kill -9 "$old"
  wait_new_berthd "$old" || return 1
  wait_status 30 "$a" RUNNING || fail "task $a not RUNNING after berthd's kill -9"
  assert_eq "$vmm" "$(vmm_pid "$a")" "the VMM across berthd's kill -9"
  assert_eq "" "$(vm_svc_task_besides "$a")" "another task of the service after berthd's kill -9"
}

microvm_service() {
  ensure_images || return 1
  register_vm vm-svc '{"name":"s","image":"busybox","memory":64,"stopTimeout":2,"command":["sh","-c","echo sleeping; exec sleep 3000"]}' >/dev/null
  CTL service create vmsvc --task-definition vm-svc --desired 1 --isolation microvm >/dev/null || { fail "create refused"; return 1; }
  VM_SERVICE=vmsvc
  assert_eq microvm "$(svc_field vmsvc isolation)" "the service's isolation"
  WAIT_PAUSE_MAX=6 wait_for 800 svc_running_is vmsvc 1 || { fail "not 1 running: $(svc_json vmsvc)"; return 1; }
  local frozen victim
  frozen=$(svc_json vmsvc | jfield tasks.0.taskId)
  assert_eq microvm "$(task_json "$frozen" | jfield isolation)" "the service's task's isolation"
  microvm_faces_and_kill_9 "$frozen" || return 1
  kill -STOP "$(vmm_pid "$frozen")"
  wait_status 150 "$frozen" STOPPED || { fail "task $frozen not STOPPED after its VM froze"; return 1; }
  assert_contains "$(task_json "$frozen" | jfield stoppedReason)" "agent did not answer" "stoppedReason of a frozen VM's task"
  assert_eq TaskLost "$(task_json "$frozen" | jfield stopCode)" "stopCode of a task whose agent went silent"
  wait_for 10 eval '[ ! -d "$(dirname "$(task_cg "'"$frozen"'")")" ]' || fail "task $frozen's scope (and its frozen VMM) is still there"
  WAIT_PAUSE_MAX=6 wait_for 800 eval 'svc_running_is vmsvc 1 && [ "$(svc_json vmsvc | jfield tasks.0.taskId)" != "'"$frozen"'" ]' \
    || { fail "the service did not replace its frozen task: $(svc_json vmsvc)"; return 1; }
  victim=$(svc_json vmsvc | jfield tasks.0.taskId)
  assert_eq microvm "$(task_json "$victim" | jfield isolation)" "the replacement's isolation"
  kill -9 "$(vmm_pid "$victim")"
  wait_status 60 "$victim" STOPPED || { fail "task $victim not STOPPED after its VMM was killed"; return 1; }
  assert_contains "$(task_json "$victim" | jfield stoppedReason)" "VMM (qemu-system-x86_64) exited" "stoppedReason"
  assert_eq TaskLost "$(task_json "$victim" | jfield stopCode)" "stopCode of a task whose VMM died"
  assert_eq 137 "$(task_json "$victim" | jfield containers.0.exitCode)" "exit code of a container whose VM died"
  wait_for 120 eval '[ -n "$(vm_svc_task_besides "'"$frozen"'" "'"$victim"'")" ]' \
    || { fail "the service started no task after its VMM was killed: $(svc_json vmsvc)"; return 1; }
  assert_eq microvm "$(task_json "$(vm_svc_task_besides "$frozen" "$victim")" | jfield isolation)" "the second replacement's isolation"
}

# A task of vm-svc that is not stopped and none of the ids given.
vm_svc_task_besides() { # ID...
  CTL --json ps | python3 -S -c 'import json,sys
ids = [t["taskId"] for t in json.load(sys.stdin) if t["taskDefinition"].startswith("vm-svc:") and t["taskId"] not in sys.argv[1:]]
print(ids[0] if ids else "")' "$@"
}

# berthd restarted with VMM PATH in its config, or with the default one when PATH is empty.
with_vmm() { # PATH
  sed -i '/^vmm = /d' /etc/berth/berthd.toml
  [ -z "$1" ] || echo "vmm = \"$1\"" >> /etc/berth/berthd.toml
  systemctl restart berthd && wait_for 30 bus_ready
}

# A guest taken over by its task's code, played by tests/guest/hostile-vmm in QEMU's place (no
# boot): names that climb out of the task directory, replays, unasked answers and floods
# reach no file of the host's, and a guest that stops listening cannot keep its task running.
test_microvm_a_hostile_guest_writes_nothing_outside_its_task_and_cannot_refuse_a_stop() {
  ensure_images || return 1
  HOSTILE=$(mktemp -d /tmp/hostile.XXXXXX)
  cp "$REPO/tests/guest/hostile-vmm" "$HOSTILE/" && chmod 755 "$HOSTILE"
  echo names > "$HOSTILE/hostile-mode"
  with_vmm "$HOSTILE/hostile-vmm" || fail "berthd did not restart with the hostile VMM"
  hostile_guest; rc=$?
  with_vmm "" || fail "berthd did not restart with its own VMM"
  rm -rf "$HOSTILE"
  return $rc
}

hostile_guest() {
  register_vm vm-hostile '{"name":"c","image":"busybox","memory":64,"stopTimeout":2,"command":["true"]}' >/dev/null
  local json id b dir
  json=$(CTL --json run --isolation microvm --wait vm-hostile)
  id=$(echo "$json" | jfield taskId)
  [ -n "$id" ] || { fail "the hostile guest's task did not run: $json"; return 1; }
  dir=/var/lib/berth/tasks/$id
  assert_eq 3 "$(echo "$json" | jfield containers.0.exitCode)" "exit code: the one exit reported after the start, not the 99 before it nor the 4 after"
  local f
  for f in /tmp/hostile-started /tmp/hostile-exit /tmp/hostile-usage /var/lib/berth/tmp; do
    [ -z "$(ls -d "$f"* 2>/dev/null)" ] || fail "the guest made $(ls -d "$f"* | head -3) on the host"
  done
  assert_eq "" "$(ls "$dir/status" | grep -v -e '^c\.' -e '^shim\.json$' -e '^done\.json$' -e '^failed\.json$')" "status files of names outside the plan"
  assert_contains "$(CTL logs "$id" c)" "hello from a hostile guest" "the container's own output in its log"
  assert_not_contains "$(CTL logs "$id" c)" "forged" "the container's log"
  assert_eq "" "$(ls "$dir/logs" | grep -v '^c\.log$')" "log files of names outside the plan"
  local size
  size=$(stat -c %s "$dir/console.log")
  [ "$size" -le $((4 << 20)) ] || fail "a console log of $size bytes: the guest's flood was not bounded at 4 MiB"
  assert_contains "$(cat "$dir/shim.log")" "dropped the agent's started for" "the shim's account of what it dropped"
  # A guest that never reads again, and talks on so it never seems lost, is still stopped.
  echo deaf > "$HOSTILE/hostile-mode"
  b=$(CTL run --isolation microvm vm-hostile) || return 1
  wait_status 60 "$b" RUNNING || { fail "the deaf guest's task is not RUNNING: $(task_json "$b")"; return 1; }
  assert_eq berth-vmm "$(stat -c %U "/proc/$(vmm_pid "$b")")" "the hostile VMM's user"
  CTL stop "$b" >/dev/null
  wait_status 90 "$b" STOPPED || { fail "the task of a guest that ignores its stop did not stop"; CTL stop "$b" >/dev/null; return 1; }
  assert_eq 137 "$(task_json "$b" | jfield containers.0.exitCode)" "exit code of a container whose VM was killed"
  assert_contains "$(task_json "$b")" "did not end its containers within 32s of the stop" "the reason"
}
