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
  wait_for "$2" eval 'status_is "'"$1"'" RUNNING || status_is "'"$1"'" STOPPED' || true
  status_is "$1" RUNNING || { fail "microVM task $1 not RUNNING: $(task_json "$1")"; return 1; }
}

# The QEMU process of a running microVM task: the one process in its task's vmm cgroup.
vmm_pid() { head -1 "$(task_cg "$1")/vmm/cgroup.procs" 2>/dev/null; }

test_microvm_without_a_kernel_is_refused_at_run_naming_the_path_and_the_fix() {
  ensure_images || return 1
  vm_conf >/dev/null || { fail "no vm_kernel_dir in berthd.toml (BERTH_GUEST_KERNEL unset?)"; return 1; }
  register_vm vm-nokernel '{"name":"c","image":"busybox","memory":64,"command":["true"]}' >/dev/null
  before=$(CTL --json ps --all | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  sed -i 's|^vm_kernel_dir = .*|vm_kernel_dir = "/nonexistent/kernel"|' /etc/berth/berthd.toml
  systemctl restart berthd
  out=$(CTL run --isolation microvm vm-nokernel 2>&1); rc=$?
  sed -i "s|^vm_kernel_dir = .*|vm_kernel_dir = \"$BERTH_GUEST_KERNEL\"|" /etc/berth/berthd.toml
  systemctl restart berthd
  [ "$rc" -ne 0 ] || fail "run --isolation microvm without a kernel succeeded: $out"
  assert_contains "$out" "/nonexistent/kernel" "the refusal names the kernel directory"
  assert_contains "$out" "fetch-guest-kernel" "the refusal names the fix"
  after=$(CTL --json ps --all | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  assert_eq "$before" "$after" "tasks after the refusal (nothing left behind)"
}

test_microvm_task_runs_on_the_guest_kernel_exits_42_and_gives_its_memory_back() {
  ensure_images || return 1
  register_vm vm-exit42 '{"name":"main","image":"busybox","memory":100,"command":["sh","-c","uname -r | grep -q cloud-amd64 && exit 42; uname -r; exit 1"]}' >/dev/null
  reserved=$(prop ReservedMemory)
  json=$(CTL --json run --isolation microvm --wait vm-exit42); rc=$?
  assert_eq 42 "$rc" "berthctl run --wait exit status (42 only on the cloud kernel)"
  assert_eq microvm "$(echo "$json" | jfield isolation)" "isolation"
  assert_eq 128 "$(echo "$json" | jfield vm.memoryMiB)" "the VM's memory (100 MiB rounded up to the smallest VM)"
  assert_eq 384 "$(echo "$json" | jfield memory)" "the task's reservation: the VM and its VMM's 256 MiB"
  assert_eq 42 "$(echo "$json" | jfield containers.0.exitCode)" "containers[0].exitCode"
  assert_eq EssentialContainerExited "$(echo "$json" | jfield stopCode)" "stopCode"
  id=$(echo "$json" | jfield taskId)
  assert_eq "$reserved" "$(prop ReservedMemory)" "ReservedMemory after the task"
  wait_for 10 eval '[ ! -d "$(dirname "$(task_cg "'"$id"'")")" ]' || fail "the task's scope is still there"
  [ -s "/var/lib/berth/tasks/$id/console.log" ] || fail "no guest console log"
}

# Stops the microVM tasks a test started, whatever became of the test: a VM left running would
# hold its memory in the books of every test after it.
stop_vm_tasks() {
  local id
  for id in "$@"; do
    status_is "$id" STOPPED || CTL stop "$id" >/dev/null 2>&1
  done
  for id in "$@"; do
    wait_for 120 status_is "$id" STOPPED || fail "microVM task $id did not stop"
  done
}

test_microvm_stop_honours_stop_timeout_and_a_killed_vmm_stops_its_task() {
  VM_TASKS=()
  microvm_stop_and_vmm_kill; rc=$?
  stop_vm_tasks "${VM_TASKS[@]}"
  return $rc
}

microvm_stop_and_vmm_kill() {
  ensure_images || return 1
  register_vm vm-sleep '{"name":"s","image":"busybox","memory":64,"stopTimeout":2,"command":["sleep","3000"]}' >/dev/null
  a=$(CTL run --isolation microvm vm-sleep) || return 1
  VM_TASKS+=("$a")
  assert_eq microvm "$(busctl get-property org.berth.Agent1 "/org/berth/Agent1/task/$a" org.berth.Agent1.Task Isolation | awk '{print $2}' | tr -d '"')" "the Isolation property"
  wait_running "$a" 800 || return 1
  [ -n "$(vmm_pid "$a")" ] || fail "no VMM in task $a's cgroup"
  max=$(cat "$(task_cg "$a")/memory.max")
  assert_eq $(((128 + 256) << 20)) "$max" "the task cgroup's memory.max: the VM (128 MiB) and the VMM's 256 MiB"
  CTL stop "$a" >/dev/null
  wait_for 120 status_is "$a" STOPPED || fail "task $a did not stop"
  assert_eq 137 "$(task_json "$a" | jfield containers.0.exitCode)" "exit code of a sleep killed after its 2 s stopTimeout"
  # One VM at a time: two nested VMs at once share the guest's two emulated CPUs.
  b=$(CTL run --isolation microvm vm-sleep) || return 1
  VM_TASKS+=("$b")
  wait_running "$b" 800 || return 1
  kill -9 "$(vmm_pid "$b")"
  wait_for 60 status_is "$b" STOPPED || { fail "task $b not STOPPED after its VMM was killed"; return 1; }
  assert_contains "$(task_json "$b" | jfield stoppedReason)" "VMM (qemu-system-x86_64) exited" "stoppedReason"
  assert_eq TaskLost "$(task_json "$b" | jfield stopCode)" "stopCode of a task whose VMM died"
  assert_eq 137 "$(task_json "$b" | jfield containers.0.exitCode)" "exit code of a container whose VM died"
  wait_for 10 eval '[ ! -d "$(dirname "$(task_cg "'"$b"'")")" ]' || fail "task $b's scope is still there"
}
