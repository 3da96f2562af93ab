# The container definition's sandbox fields and volumes: each container checks from inside
# that its field took effect and exits 42 when it holds (1 when not), as the ECS agent's own
# functional tests do; several of those tests run here as they are, on busybox.

AGENT_DEFS=${BERTH_REALWORLD_DIR:-$REPO/../shared/realworld/taskdefs}/ecs-agent

# exit_code_of FAMILY CONTAINER-INDEX: runs the task to its end and prints that container's exit code.
exit_code_of() {
  local id
  id=$(CTL run "$1" --wait --json | jfield taskId) || { echo "run-failed"; return 1; }
  wait_status 120 "$id" STOPPED || { echo "not-stopped"; CTL stop "$id" >/dev/null; return 1; }
  local code
  code=$(task_json "$id" | jfield "containers.$2.exitCode")
  [ "$code" == 42 ] || { echo "$code: $(task_json "$id" | jfield stoppedReason) $(CTL logs "$id" 2>&1 | tail -5)"; return 1; }
  echo 42
}

# check NAME 'CONTAINER-FIELDS' 'SHELL TEST' [TASK-FIELDS]: one container that exits 42 when TEST holds.
check() {
  local cmd
  cmd=$(python3 -S -c 'import json,sys; print(json.dumps(["sh","-c","if "+sys.argv[1]+"; then exit 42; else exit 1; fi"]))' "$3")
  printf '{"family":"%s",%s"containerDefinitions":[{"name":"c","image":"busybox","memory":64,%s"command":%s}]}' \
    "$1" "${4:+$4,}" "${2:+$2,}" "$cmd" | CTL register - >/dev/null || { fail "$1 not registered"; return 1; }
  assert_eq 42 "$(exit_code_of "$1" 0)" "$1"
}

test_definition_the_ecs_agents_own_functional_tests_pass_on_busybox() {
  ensure_images || return 1
  local f family idx
  for f in ulimit-nofile linux-tmpfs system-controls docker-volume-task-scope-tmpfs links-volumes-from-six-containers init-process-enabled; do
    family="agent-$f"
    python3 -S -c 'import json,sys
d = json.load(open(sys.argv[1]))
for c in d["containerDefinitions"]:
    c["image"] = "busybox:latest"
    # Debian kernels list tmpfs mounts with a trailing ",inode64" after size=: match up to it.
    if c.get("command"):
        c["command"] = [a.replace("size=102400k)", "size=102400k").replace("else exit 1", "else mount | grep /dev/tmpfs; exit 1") for a in c["command"]]
d["family"] = sys.argv[2]
print(json.dumps(d))' "$AGENT_DEFS/$f.json" "$family" | CTL register - >/dev/null || { fail "$f: not registered"; continue; }
    idx=$(python3 -S -c 'import json,sys; d=json.load(open(sys.argv[1])); print([c["name"] for c in d["containerDefinitions"]].index("exit"))' "$AGENT_DEFS/$f.json")
    assert_eq 42 "$(exit_code_of "$family" "$idx")" "the ECS agent's $f"
  done
}

test_definition_readonly_root_privileged_capabilities_and_no_new_privileges() {
  ensure_images || return 1
  check ro-root '"readonlyRootFilesystem":true' '! touch /x 2>/dev/null && touch /dev/shm/x'
  # CapEff bits: SYS_ADMIN is 21, MKNOD 27, NET_ADMIN 12.
  local caps='c=$((0x$(awk "/^CapEff/ {print \$2}" /proc/self/status)))'
  check caps '"linuxParameters":{"capabilities":{"add":["SYS_ADMIN"],"drop":["MKNOD"]}}' \
    "$caps; [ \$(( (c >> 21) & 1 )) = 1 ] && [ \$(( (c >> 27) & 1 )) = 0 ] && [ \$(( (c >> 12) & 1 )) = 0 ]"
  check default-caps '' "$caps; [ \$(( (c >> 21) & 1 )) = 0 ] && [ \$(( (c >> 27) & 1 )) = 1 ] && ! grep -q ' /sys .*rw,' /proc/mounts"
  check privileged '"privileged":true' "$caps; [ \$(( (c >> 21) & 1 )) = 1 ] && [ \$(( (c >> 12) & 1 )) = 1 ] && grep -q ' /sys sysfs rw' /proc/mounts"
  check nnp '"dockerSecurityOptions":["no-new-privileges"]' 'grep -q "^NoNewPrivs:[[:space:]]*1" /proc/self/status'
  check no-nnp '' 'grep -q "^NoNewPrivs:[[:space:]]*0" /proc/self/status'
}

test_definition_shared_memory_swap_and_disable_networking() {
  ensure_images || return 1
  check shm '"linuxParameters":{"sharedMemorySize":100}' '[ "$(df -k /dev/shm | awk "NR==2 {print \$2}")" = 102400 ]'
  check swap '"linuxParameters":{"maxSwap":32}' '[ "$(cat /sys/fs/cgroup/memory.swap.max)" = 33554432 ]'
  # A namespace of its own with loopback alone, and loopback up (as Docker gives it): flags bit 0.
  check no-net '"disableNetworking":true' '[ "$(grep -c : /proc/net/dev)" = 1 ] && grep -q "lo:" /proc/net/dev && [ $(( $(cat /sys/class/net/lo/flags) & 1 )) = 1 ]'
  check lo-none '' '[ "$(grep -c : /proc/net/dev)" = 1 ] && [ $(( $(cat /sys/class/net/lo/flags) & 1 )) = 1 ]' '"networkMode":"none"'
  check with-net '' 'grep -q "eth0:" /proc/net/dev'
  printf '{"family":"labelled","containerDefinitions":[{"name":"c","image":"busybox","memory":32,"dockerLabels":{"team":"berth"},"command":["true"]}]}' \
    | CTL register - >/dev/null
  local id
  id=$(CTL run labelled --wait --json | jfield taskId)
  assert_eq berth "$(task_json "$id" | jfield containers.0.dockerLabels.team)" "dockerLabels on the task"
}

test_definition_volumes_bind_host_paths_read_only_and_share_task_volumes() {
  ensure_images || return 1
  local host
  host=$(mktemp -d); echo from-host > "$host/in"
  check host-vol '"mountPoints":[{"sourceVolume":"h","containerPath":"/h"},{"sourceVolume":"r","containerPath":"/r","readOnly":true}]' \
    'grep -q from-host /h/in && echo from-container > /h/out && grep -q from-host /r/in && ! touch /r/x 2>/dev/null' \
    "\"volumes\":[{\"name\":\"h\",\"host\":{\"sourcePath\":\"$host\"}},{\"name\":\"r\",\"host\":{\"sourcePath\":\"$host\"}}]"
  assert_eq from-container "$(cat "$host/out" 2>/dev/null)" "the container's write, seen on the host"
  # A task volume shared by two containers: the writer's file reaches the reader.
  printf '%s' '{"family":"shared-vol","volumes":[{"name":"scratch"}],"containerDefinitions":[
    {"name":"writer","image":"busybox","memory":32,"essential":false,"mountPoints":[{"sourceVolume":"scratch","containerPath":"/s"}],"command":["sh","-c","echo hi > /s/f"]},
    {"name":"reader","image":"busybox","memory":32,"volumesFrom":[{"sourceContainer":"writer","readOnly":true}],
     "command":["sh","-c","for i in $(seq 100); do [ -f /s/f ] && ! touch /s/y 2>/dev/null && exit 42; sleep 0.2; done; exit 1"]}]}' \
    | CTL register - >/dev/null
  local id
  id=$(CTL run shared-vol --wait --json | jfield taskId)
  wait_status 60 "$id" STOPPED || fail "shared-vol did not stop"
  assert_eq 42 "$(task_json "$id" | jfield containers.1.exitCode)" "reader saw the writer's file, read-only"
  [ ! -e "$STATE/tasks/$id/volumes" ] || fail "the task's volumes outlived it: $(ls "$STATE/tasks/$id/volumes")"
}

test_definition_devices_are_made_from_the_hosts_and_a_missing_one_fails_the_task_naming_it() {
  ensure_images || return 1
  check device '"linuxParameters":{"devices":[{"hostPath":"/dev/null","containerPath":"/dev/hostnull","permissions":["read","write"]}]}' \
    '[ -c /dev/hostnull ] && echo x > /dev/hostnull && [ ! -e /dev/vda ]'
  # The device cgroup: a node of the guest's disk made inside cannot be read, unless privileged.
  local maj min
  maj=$((0x$(stat -c %t /dev/vda))); min=$((0x$(stat -c %T /dev/vda)))
  check dev-fenced '' "mknod /dev/disk b $maj $min && ! dd if=/dev/disk of=/dev/null bs=512 count=1 2>/dev/null" '"networkMode":"none"'
  check dev-privileged '"privileged":true' "mknod /dev/disk b $maj $min && dd if=/dev/disk of=/dev/null bs=512 count=1 2>/dev/null" '"networkMode":"none"'
  # The ECS agent's own: /dev/xvda does not exist in this guest.
  python3 -S -c 'import json,sys
d = json.load(open(sys.argv[1]))
for c in d["containerDefinitions"]:
    c["image"] = "busybox:latest"
d["family"] = "agent-devices"
print(json.dumps(d))' "$AGENT_DEFS/linux-devices.json" | CTL register - >/dev/null || { fail "not registered"; return 1; }
  local id
  id=$(CTL run agent-devices) || { fail "run refused: $id"; return 1; }
  wait_status 60 "$id" STOPPED || fail "task with a missing device did not stop"
  assert_contains "$(task_json "$id" | jfield stoppedReason)" "linuxParameters.devices hostPath /dev/xvda" "stoppedReason"
  assert_eq TaskFailedToStart "$(task_json "$id" | jfield stopCode)" "stopCode"
}

test_definition_a_described_file_registers_secrets_come_from_files_and_what_one_host_lacks_is_refused_at_run() {
  ensure_images || return 1
  local out id
  # A file as `aws ecs describe-task-definition` prints it: the definition under taskDefinition.
  out=$(printf '{"taskDefinition":{"family":"described","taskDefinitionArn":"arn:aws:ecs:eu-west-1:123456789012:task-definition/described:7","revision":7,"status":"ACTIVE","containerDefinitions":[{"name":"c","image":"busybox","memory":32,"command":["true"]}]},"tags":[{"key":"team","value":"berth"}]}' | CTL register - 2>&1)
  assert_contains "$out" "described:1" "a described file registers as the definition it wraps"
  assert_contains "$out" "ignored: (beside taskDefinition) tags" "the keys beside it are reported"
  out=$(printf '{"taskDefinition":{"family":"described-bad","containerDefinitions":[{"name":"c","image":"busybox","memory":32,"privileged":"yes"}]}}' | CTL register - 2>&1) && fail "a wrapped definition skipped the checks: $out"
  assert_contains "$out" "containerDefinitions[0].privileged: must be true or false" "the wrapped definition's own checks"
  # An EBS volume given at RunTask: registered as ECS does, refused at run naming the field.
  printf '{"family":"ebs","volumes":[{"name":"data","configuredAtLaunch":true}],"containerDefinitions":[{"name":"c","image":"busybox","memory":32,"mountPoints":[{"sourceVolume":"data","containerPath":"/data"}],"command":["true"]}]}' \
    | CTL register - >/dev/null || { fail "ebs not registered"; return 1; }
  out=$(CTL run ebs 2>&1) && fail "a task of an EBS volume given at launch ran: $out"
  assert_contains "$out" "volumes[0] (data).configuredAtLaunch" "RunTask refusal"
  # secrets: each valueFrom is a file beneath secrets_dir; the value reaches the container and
  # no face shows it.
  printf 's3cret-value\n' > /etc/berth/secrets/db-password
  check secrets '"environment":[{"name":"DB","value":"plain"}],"secrets":[{"name":"DB","valueFrom":"arn:aws:ssm:eu-west-1:123456789012:parameter/db-password"}]' '[ "$DB" = s3cret-value ]'
  id=$(CTL --json ps --all | jq -r '[.[] | select(.taskDefinition | startswith("secrets:"))][-1].taskId')
  # Where berthd wrote the value down, root alone reads it.
  assert_eq 600 "$(stat -c %a "$STATE/tasks/$id/plan.json")" "the task's plan's mode"
  assert_eq 600 "$(stat -c %a "$STATE/tasks/$id/containers/c/bundle/config.json")" "the container's config's mode"
  ! runuser -u tester -- cat "$STATE/tasks/$id/containers/c/bundle/config.json" >/dev/null 2>&1 || fail "another user reads the container's config"
  # A file that is not there, or a link out of the directory: the task fails naming the entry.
  ln -sf /etc/shadow /etc/berth/secrets/shadow-link
  printf '{"family":"secret-link","containerDefinitions":[{"name":"c","image":"busybox","memory":32,"secrets":[{"name":"S","valueFrom":"shadow-link"}],"command":["true"]}]}' \
    | CTL register - >/dev/null
  id=$(CTL run secret-link) || { fail "secret-link refused: $id"; return 1; }
  wait_status 60 "$id" STOPPED || fail "secret-link did not stop"
  out=$(task_json "$id" | jfield stoppedReason)
  assert_contains "$out" "secrets[0] (S)" "stoppedReason names the secret"
  assert_contains "$out" "symbolic link" "stoppedReason says why"
  ! grep -q "root:" <<<"$out" || fail "stoppedReason shows the linked file: $out"
  rm -f /etc/berth/secrets/shadow-link /etc/berth/secrets/db-password
}

test_definition_host_wide_sysctl_is_refused_naming_the_field() {
  ensure_running || return 1
  local out
  out=$(printf '{"family":"bad-sysctl","containerDefinitions":[{"name":"c","image":"busybox","memory":32,"systemControls":[{"namespace":"vm.swappiness","value":"1"}]}]}' | CTL register - 2>&1) && fail "registered: $out"
  assert_contains "$out" 'containerDefinitions[0].systemControls[0].namespace: "vm.swappiness" is not namespaced' "refusal"
}

test_definition_command_entrypoint_environment_working_directory_and_user_forms() {
  ensure_images || return 1
  # Each container checks one field and exits 42; "last" waits for all of them to complete.
  local body='if '"'"'%s'"'"'; then exit 42; else exit 1; fi'
  python3 - "$body" <<'PY' | CTL register - >/dev/null || { fail "not registered"; return 1; }
import json, sys
body = sys.argv[1]
def c(name, test, **fields):
    d = {"name": name, "image": "busybox", "memory": 32, "essential": False,
         "command": ["sh", "-c", body.replace("'%s'", test)]}
    d.update(fields)
    return d
cs = [
    c("user-name", '[ "$(id -u):$(id -g)" = 65534:65534 ]', user="nobody"),
    c("user-uid-gid", '[ "$(id -u):$(id -g)" = 1234:5678 ]', user="1234:5678"),
    c("user-name-group", '[ "$(id -u):$(id -g)" = 65534:0 ]', user="nobody:root"),
    c("workdir-env", '[ "$(pwd)" = /tmp ] && [ "$X" = "y z" ]', workingDirectory="/tmp",
      environment=[{"name": "X", "value": "y z"}]),
    {"name": "entrypoint", "image": "busybox", "memory": 32, "essential": False,
     "entryPoint": ["sh", "-c"], "command": ["exit 42"]},
]
last = {"name": "last", "image": "busybox", "memory": 32, "command": ["true"],
        "dependsOn": [{"containerName": x["name"], "condition": "COMPLETE"} for x in cs]}
print(json.dumps({"family": "fields", "networkMode": "none", "containerDefinitions": cs + [last]}))
PY
  local id i names=(user-name user-uid-gid user-name-group workdir-env entrypoint)
  id=$(CTL run fields) || { fail "run: $id"; return 1; }
  wait_status 180 "$id" STOPPED || { fail "fields did not stop"; CTL stop "$id"; return 1; }
  for i in "${!names[@]}"; do
    assert_eq 42 "$(task_json "$id" | jfield "containers.$i.exitCode")" "${names[$i]} ($(task_json "$id" | jfield stoppedReason))"
  done
  printf '{"family":"ghost-user","networkMode":"none","containerDefinitions":[{"name":"c","image":"busybox","memory":32,"user":"ghost"}]}' | CTL register - >/dev/null
  id=$(CTL run ghost-user) || { fail "run refused: $id"; return 1; }
  wait_status 60 "$id" STOPPED || fail "ghost-user did not stop"
  assert_contains "$(task_json "$id" | jfield stoppedReason)" "ghost" "the unknown user is named"
}
