# Registry pull: a real registry in the guest (Debian's docker-registry, TLS from a test CA,
# htpasswd auth; tests/registry/test-registry) with images pushed by skopeo. berthctl image
# pull, tasks whose image is pulled at RunTask, the registry's reasons when a pull fails, a
# registry killed mid-pull, a task stopped while it pulls, two tasks of one new image.

REG_DIR=/tmp/berth-registry
REG=127.0.0.1:5000
reg() { "$REPO/tests/registry/test-registry" "$@"; }
reg_up() { curl -s --cacert $REG_DIR/ca.crt -o /dev/null "https://$REG/v2/"; }
# Lines of the registry's access log from line $1 on that GET $2 with status $3.
reg_gets() { tail -n +"$1" $REG_DIR/registry.log | grep -c "\"GET $2 [^\"]*\" $3 " || true; }
reg_log_lines() { wc -l < $REG_DIR/registry.log; }

# The registry up with its images, and berthd trusting its CA with the login in its file.
ensure_registry() {
  ensure_running
  if [ ! -f $REG_DIR/pushed ]; then
    reg start $REG_DIR 5000 && BIG_MIB=8 reg push $REG_DIR && touch $REG_DIR/pushed \
      || { fail "the test registry did not start: $(tail -5 $REG_DIR/registry.log 2>&1)"; return 1; }
  elif ! reg_up; then
    reg resume $REG_DIR || { fail "the test registry did not resume"; return 1; }
  fi
  if ! grep -q '^registry_ca_files' /etc/berth/berthd.toml; then
    printf '{"auths":{"%s":{"auth":"%s"}}}' $REG "$(printf 'berth:s3cret-pw' | base64)" > /etc/berth/registry-auth.json
    chmod 600 /etc/berth/registry-auth.json
    # A registry silent 10 s fails the pull (not the production minute).
    printf 'registry_ca_files = ["%s/ca.crt"]\nimage_pull_inactivity_timeout_secs = 10\n' $REG_DIR >> /etc/berth/berthd.toml
    systemctl restart berthd && wait_for 30 bus_ready || { fail "berthd did not restart with the registry settings"; return 1; }
  fi
}

# pull_def FAMILY IMAGE [EXTRA-CONTAINER-FIELDS]: one container of IMAGE that echoes and exits.
pull_def() {
  printf '{"family":"%s","networkMode":"none","containerDefinitions":[{"name":"c","image":"%s","memory":32%s,"command":["sh","-c","echo pulled-and-ran"]}]}' \
    "$1" "$2" "${3:-}" | CTL register - >/dev/null
}

# The Manager's ListPulls entry for IMAGE: "LAYERS_DONE LAYERS BYTES_DONE BYTES", or nothing.
pull_progress() {
  busctl --json=short call org.berth.Agent1 /org/berth/Agent1 org.berth.Agent1.Manager ListPulls 2>/dev/null \
    | jq -r --arg i "$1" '.data[0][] | select(.[0] == $i) | "\(.[1]) \(.[2]) \(.[3]) \(.[4])"'
}

pulls_counted() {
  curl -sf "http://$METRICS/metrics" | awk '/^berth_image_pull_duration_seconds_count\{result="success"\}/ {n = $2} END {print n + 0}'
}
no_pull() { [ -z "$(pull_progress "$1")" ]; }

# Loopback slowed to 2 MB/s (the registry's only link), so a pull lasts long enough to be cut
# and what the registry sent is about what berthd took (under emulation berthd's own speed is
# anyone's guess, and socket buffers hold megabytes); queued, not dropped (a drop stalls TCP for
# seconds). Unix sockets (D-Bus) are not slowed.
slow_loopback() { tc qdisc replace dev lo root tbf rate 16mbit burst 64kb limit 4mb || echo "slow_loopback: no tbf here; the pull runs at full speed" >&2; }
fast_loopback() { tc qdisc del dev lo root 2>/dev/null || true; }

test_pull_berthctl_pulls_with_progress_and_runtask_pulls_what_the_store_lacks() {
  ensure_registry || return 1
  local out err id pulled_before
  pulled_before=$(pulls_counted)
  # New to the store: 33 MB fetched, hashed and unpacked, seconds under emulation, past a few
  # of berthctl's looks at its progress.
  CTL image rm $REG/big:1 >/dev/null 2>&1
  out=$(CTL image pull $REG/big:1 2>/tmp/pull.err) || { fail "image pull: $out $(cat /tmp/pull.err)"; return 1; }
  err=$(cat /tmp/pull.err)
  assert_contains "$out" "$REG/big:1 sha256:" "image pull prints the name and id"
  assert_contains "$err" "pulling $REG/big:1" "image pull says what it pulls"
  assert_contains "$err" "/5 layers" "image pull shows layers and bytes as they arrive"
  assert_contains "$(CTL image ls)" "$REG/big:1" "image ls after the pull"
  # RunTask of an image the store lacks: PENDING while it pulls, then it runs.
  pull_def pulled $REG/busybox:1 || { fail "not registered"; return 1; }
  CTL image ls | grep -q "^$REG/busybox:1 " && CTL image rm $REG/busybox:1
  id=$(CTL run pulled) || { fail "run: $id"; return 1; }
  wait_status 180 "$id" STOPPED || { fail "the pulled task did not stop: $(task_json "$id")"; return 1; }
  local t
  t=$(task_json "$id")
  assert_eq 0 "$(jfield containers.0.exitCode <<<"$t")" "the pulled image ran ($(jfield stoppedReason <<<"$t"))"
  assert_contains "$(CTL logs "$id" 2>&1)" "pulled-and-ran" "the container's output"
  [ "$(jfield pullStartedAt <<<"$t")" != null ] || fail "describe shows no pullStartedAt: $t"
  [ "$(jfield pullStoppedAt <<<"$t")" != null ] || fail "describe shows no pullStoppedAt: $t"
  local started
  started=$(busctl get-property org.berth.Agent1 "/org/berth/Agent1/task/$id" org.berth.Agent1.Task PullStartedAt | awk '{print $2}')
  [ "${started:-0}" -gt 0 ] || fail "PullStartedAt on D-Bus: $started"
  # A second task of it does not pull again (default behavior: only what the store lacks).
  id=$(CTL run pulled) || { fail "second run: $id"; return 1; }
  wait_status 120 "$id" STOPPED || fail "the second task did not stop"
  assert_eq null "$(task_json "$id" | jfield pullStartedAt)" "a cached image is not pulled"
  assert_eq $(( pulled_before + 2 )) "$(pulls_counted)" "pulls counted in berth_image_pull_duration_seconds"
  local body
  body=$(curl -sf "http://$METRICS/metrics")
  printf '%s\n' "$body" | promtool check metrics >/dev/null 2>&1 || fail "promtool check metrics: $(printf '%s\n' "$body" | promtool check metrics 2>&1 | head -5)"
}

test_pull_a_failed_pull_stops_the_task_with_the_registrys_reason() {
  ensure_registry || return 1
  local id t
  # repositoryCredentials: the login is the secret's, not the file's: a wrong one is refused.
  printf '{"username":"berth","password":"wrong"}' > /etc/berth/secrets/bad-login
  printf '{"username":"berth","password":"s3cret-pw"}' > /etc/berth/secrets/good-login
  CTL image rm $REG/multi:1 >/dev/null 2>&1
  pull_def private-bad $REG/multi:1 ',"repositoryCredentials":{"credentialsParameter":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:bad-login"}'
  pull_def private-good $REG/multi:1 ',"repositoryCredentials":{"credentialsParameter":"good-login"}'
  pull_def no-such-tag $REG/busybox:nope
  id=$(CTL run private-bad) || { fail "run: $id"; return 1; }
  wait_status 120 "$id" STOPPED || fail "private-bad did not stop"
  t=$(task_json "$id")
  assert_contains "$(jfield stoppedReason <<<"$t")" "CannotPullContainerError: $REG/multi:1" "ECS's error, naming the image"
  assert_contains "$(jfield stoppedReason <<<"$t")" "unauthorized" "the registry's reason"
  assert_eq TaskFailedToStart "$(jfield stopCode <<<"$t")" "stopCode"
  assert_not_contains "$(CTL image ls)" "$REG/multi:1" "nothing stored from a refused pull"
  id=$(CTL run no-such-tag) || { fail "run: $id"; return 1; }
  wait_status 120 "$id" STOPPED || fail "no-such-tag did not stop"
  assert_contains "$(task_json "$id" | jfield stoppedReason)" "manifest unknown" "an unknown tag's reason"
  # The right login; the image is an index (arm64, amd64): the amd64 one runs.
  id=$(CTL run private-good) || { fail "run: $id"; return 1; }
  wait_status 120 "$id" STOPPED || fail "private-good did not stop"
  assert_eq 0 "$(task_json "$id" | jfield containers.0.exitCode)" "the index's amd64 image ran ($(task_json "$id" | jfield stoppedReason))"
  rm -f /etc/berth/secrets/bad-login /etc/berth/secrets/good-login
}

test_pull_a_registry_killed_mid_pull_stops_the_task_and_the_retry_fetches_only_what_is_missing() {
  ensure_registry || return 1
  CTL image rm $REG/big:1 >/dev/null 2>&1
  pull_def big $REG/big:1 || { fail "not registered"; return 1; }
  local from id p
  from=$(( $(reg_log_lines) + 1 ))
  slow_loopback
  id=$(CTL run big) || { fast_loopback; fail "run: $id"; return 1; }
  # Killed once a third of the bytes are in (busybox's layer is in the store already).
  for _ in $(seq 600); do
    p=$(pull_progress $REG/big:1)
    [ -n "$p" ] && set -- $p && [ "$4" -gt 0 ] && [ $(( $3 * 3 )) -ge "$4" ] && break
    sleep 0.1
  done
  reg stop $REG_DIR
  fast_loopback
  [ -n "$p" ] || { fail "the pull ended before the registry could be killed: $(task_json "$id")"; return 1; }
  echo "registry killed at $p (layers done, layers, bytes done, bytes)"
  wait_status 120 "$id" STOPPED || fail "the task did not stop when its registry died"
  local reason
  reason=$(task_json "$id" | jfield stoppedReason)
  assert_contains "$reason" "CannotPullContainerError: $REG/big:1" "the reason names the image ($reason; killed at $p)"
  assert_not_contains "$(CTL image ls)" "$REG/big:1" "nothing half-pulled in the store"
  reg resume $REG_DIR || { fail "the registry did not come back"; return 1; }
  id=$(CTL run big) || { fail "second run: $id"; return 1; }
  wait_status 180 "$id" STOPPED || fail "the second try did not stop"
  assert_eq 0 "$(task_json "$id" | jfield containers.0.exitCode)" "the retry ran ($(task_json "$id" | jfield stoppedReason))"
  # No layer came whole twice: what the first try finished was kept, a cut one resumed.
  local twice
  twice=$(tail -n +"$from" $REG_DIR/registry.log | grep -o '"GET /v2/big/blobs/sha256:[0-9a-f]* [^"]*" 200 ' | sort | uniq -d)
  assert_eq "" "$twice" "blobs fetched whole twice"
}

test_pull_a_task_stopped_while_pulling_stops_at_once_and_two_tasks_pull_one_image_once() {
  ensure_registry || return 1
  CTL image rm $REG/zstd:1 >/dev/null 2>&1
  pull_def zstd $REG/zstd:1 || { fail "not registered"; return 1; }
  local id a b from
  # A frozen registry: the task waits PENDING in its pull; StopTask ends it there and then.
  kill -STOP "$(cat $REG_DIR/pid)"
  id=$(CTL run zstd) || { kill -CONT "$(cat $REG_DIR/pid)"; fail "run: $id"; return 1; }
  assert_eq PENDING "$(task_json "$id" | jfield lastStatus)" "a pulling task's lastStatus"
  CTL stop "$id" >/dev/null
  assert_eq STOPPED "$(task_json "$id" | jfield lastStatus)" "stopped while pulling: at once"
  assert_eq UserInitiated "$(task_json "$id" | jfield stopCode)" "stopCode"
  kill -CONT "$(cat $REG_DIR/pid)"
  # Its pull ends on its own (it fails on the frozen registry or finishes); then two tasks of
  # the image, new to the store again, start at once and share one pull.
  wait_for 60 no_pull $REG/zstd:1 || fail "the stopped task's pull never ended"
  CTL image rm $REG/zstd:1 >/dev/null 2>&1
  from=$(( $(reg_log_lines) + 1 ))
  a=$(CTL run zstd) && b=$(CTL run zstd) || { fail "runs refused"; return 1; }
  wait_status 180 "$a" STOPPED && wait_status 180 "$b" STOPPED || fail "the two tasks did not stop"
  assert_eq 0 "$(task_json "$a" | jfield containers.0.exitCode)" "first task ran ($(task_json "$a" | jfield stoppedReason))"
  assert_eq 0 "$(task_json "$b" | jfield containers.0.exitCode)" "second task ran ($(task_json "$b" | jfield stoppedReason))"
  assert_eq 1 "$(reg_gets "$from" /v2/zstd/manifests/1 200)" "manifest fetches for the two tasks"
}
