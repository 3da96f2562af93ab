# Load balancing: a service's listener spreads new connections over its serving tasks in the
# kernel (nftables), drops a dead task, survives a kill -9 of berthd, drains a task a rolling
# update replaces, and refuses listeners and targets that cannot work, naming the field.
# Requests come to the guest's "other host" address (network.test.sh's guest_address).

# A busybox httpd whose page is a random id of its own, with a 4 MiB file: lb_def FAMILY REV
lb_def() {
  printf '{"family":"%s","containerDefinitions":[{"name":"web","image":"busybox","memory":32,"stopTimeout":2,
    "environment":[{"name":"REV","value":"%s"}],"portMappings":[{"containerPort":80}],
    "command":["sh","-c","mkdir -p /www && cat /proc/sys/kernel/random/uuid > /www/index.html && dd if=/dev/zero of=/www/big bs=1M count=4 2>/dev/null && exec httpd -f -p 80 -h /www"]}]}' \
    "$1" "$2" | CTL register - >/dev/null
}

lb_targets() { # SERVICE STATE -> how many targets are in STATE
  svc_json "$1" | jq --arg s "$2" '[.targets[] | select(.state == $s)] | length'
}
lb_target_state() { # SERVICE TASK
  svc_json "$1" | jq -r --arg t "$2" '.targets[] | select(.taskId == $t) | .state'
}
lb_chains() { nft list table ip berth 2>/dev/null | grep -c 'chain lb-'; }

# A service of N lb_def tasks behind a listener on PORT, waited on until all N take traffic:
# lb_service NAME DEFINITION N PORT WAIT-SECONDS [CREATE-OPTIONS...]
lb_service() {
  local name=$1 def=$2 n=$3 port=$4 wait=$5; shift 5
  CTL service create "$name" --task-definition "$def" --desired "$n" --load-balancer web:80 \
    --listen "0.0.0.0:$port" "$@" >/dev/null || { fail "create $name refused"; return 1; }
  wait_for "$wait" eval '[ "$(lb_targets '"$name"' healthy)" == '"$n"' ]' \
    || { fail "$name: not $n healthy targets: $(svc_json "$name" | jq -c .targets)"; return 1; }
}

# N requests, each on a new connection: the answers, one per line, FAIL for a failed one.
lb_requests() { "$REPO/tests/guest/lb-client" "$1" "$2"; } # URL N

test_balance_spreads_over_three_tasks_drops_a_killed_one_and_keeps_serving_through_kill_9_of_berthd() {
  ensure_images || return 1
  guest_address
  lb_def lb-web 1
  lb_service lbweb lb-web 3 8090 240 --deregistration-delay 5 || return 1
  local url=http://$GUEST_ADDR:8090/ answers ids n victim pid old fails
  answers=$(lb_requests "$url" 300)
  assert_eq 0 "$(grep -c FAIL <<<"$answers")" "failed requests of 300"
  ids=$(grep -v FAIL <<<"$answers" | sort | uniq -c)
  assert_eq 3 "$(wc -l <<<"$ids")" "distinct tasks answering ($ids)"
  while read -r n _; do
    (( n >= 60 && n <= 150 )) || fail "a task took $n of 300 requests, not 20-50% ($ids)"
  done <<<"$ids"
  assert_contains "$(curl -sf -m 5 http://127.0.0.1:8090/)" "-" "the listener from the host itself"
  # The faces: D-Bus, describe, metrics (promtool-clean).
  n=$(busctl get-property org.berth.Agent1 /org/berth/Agent1/service/lbweb org.berth.Agent1.Service Targets | awk '{print $2}')
  assert_eq 3 "$n" "Targets on D-Bus"
  local body
  body=$(curl -sf "$METRICS_URL")
  printf '%s\n' "$body" | promtool check metrics >/dev/null 2>&1 || fail "promtool: $(printf '%s\n' "$body" | promtool check metrics 2>&1 | head -3)"
  assert_contains "$body" 'berth_lb_healthy_targets{service="lbweb",listener="0.0.0.0:8090"} 3' "healthy targets metric"
  n=$(awk '/^berth_lb_new_connections_total\{/ {s += $2} END {print s}' <<<"$body")
  (( n >= 301 )) || fail "new connections counted: $n, 301 made"
  # A task's server killed: the task stops, leaves the targets, and no request fails after.
  victim=$(svc_json lbweb | jq -r '.targets[0].taskId')
  pid=$(container_pid "$victim" web) || { fail "no container pid for $victim"; return 1; }
  kill -9 "$pid"
  # Gone from the faces and from the kernel's rules (its chain is named by its id).
  wait_for 30 eval '[ -z "$(lb_target_state lbweb '"$victim"')" ] && ! nft list table ip berth | grep -q '"$victim"'' \
    || fail "the killed task is still a target"
  answers=$(lb_requests "$url" 30)
  assert_eq 0 "$(grep -c FAIL <<<"$answers")" "failed requests once the dead task left"
  wait_for 180 eval '[ "$(lb_targets lbweb healthy)" == 3 ]' || fail "no replacement target"
  # berthd killed while requests flow: the kernel keeps balancing, the new berthd re-adopts.
  lb_requests "$url" 60 > /tmp/lb-restart.txt &
  local loop=$!
  sleep 2
  old=$(main_pid); kill -9 "$old"
  wait_new_berthd "$old" || return 1
  wait "$loop"
  fails=$(grep -c FAIL /tmp/lb-restart.txt)
  assert_eq 0 "$fails" "failed requests through a kill -9 of berthd"
  assert_eq 1 "$(nft list chain ip berth services | grep -c 'berth-service:lbweb')" "listener rules after the restart"
  assert_eq 0 "$(grep -c FAIL <<<"$(lb_requests "$url" 10)")" "requests after the restart"
  CTL service delete lbweb >/dev/null || fail "delete refused"
  wait_for 120 eval '! CTL service describe lbweb >/dev/null 2>&1' || fail "service not gone"
  wait_for 10 eval '[ "$(lb_chains)" == 0 ]' || fail "balancer chains left: $(nft list table ip berth)"
  assert_eq 0 "$(nft list chain ip berth services | grep -c berth-service)" "listener rules left"
}

test_balance_rolling_update_drains_a_long_download_and_fails_no_request() {
  ensure_images || return 1
  guest_address
  lb_def lb-roll 1
  lb_def lb-roll 2
  lb_service lbroll lb-roll:1 1 8091 180 || return 1
  local url=http://$GUEST_ADDR:8091/ old old_page new_page after download loop answers n
  old=$(svc_json lbroll | jq -r '.targets[0].taskId')
  old_page=$(curl -sf -m 5 "$url")
  # A slow download from the old task, and a steady stream of requests, through the update.
  # 4 MiB at 32 KiB/s through a small receive window: two minutes of the old task sending,
  # longer than the rollout takes under emulation.
  "$REPO/tests/guest/lb-client" "${url}big" --slow /tmp/lb-big 32768 & download=$!
  rm -f /tmp/lb-loop.stop
  "$REPO/tests/guest/lb-client" "$url" --until /tmp/lb-loop.stop > /tmp/lb-loop.txt &
  loop=$!
  # Both clients under way before the update: each Python start costs seconds of emulated CPU
  # beside the other lane, and a download not yet connected leaves nothing to drain (CI saw it).
  wait_for 60 eval '(( $(svc_json lbroll | jq --arg t "'"$old"'" ".targets[] | select(.taskId == \$t) | .activeConnections") >= 1 ))' \
    || fail "the download never reached the old task: $(svc_json lbroll | jq -c .targets)"
  wait_for 60 eval '[ -s /tmp/lb-loop.txt ]' || fail "the request loop made no request"
  CTL service update lbroll --task-definition lb-roll:2 >/dev/null || fail "update refused"
  wait_for 180 eval '[ "$(lb_target_state lbroll '"$old"')" == draining ]' \
    || fail "the old task never drained: $(svc_json lbroll | jq -c '.targets, .events[:3]')"
  # New connections go to the new task only, while the old one still serves its download.
  after=$(lb_requests "$url" 20)
  assert_eq 0 "$(grep -c FAIL <<<"$after")" "failed requests while draining"
  new_page=$(sort -u <<<"$after")
  assert_eq 1 "$(wc -l <<<"$new_page")" "one task answers while the old drains ($after)"
  [ "$new_page" != "$old_page" ] || fail "the draining task took new connections"
  kill -0 "$download" 2>/dev/null || fail "the download ended before the drain was seen (too fast to prove anything)"
  n=$(svc_json lbroll | jq --arg t "$old" '.targets[] | select(.taskId == $t) | .activeConnections')
  (( n >= 1 )) || fail "the draining task's download is not among its open connections ($n)"
  wait "$download" || fail "the draining task's download failed"
  assert_eq 4194304 "$(stat -c %s /tmp/lb-big)" "downloaded bytes"
  # Its connection ended, so it stops long before the default 300 s delay.
  wait_for 30 eval '[ "$(task_json '"$old"' | jfield lastStatus)" == STOPPED ]' || fail "the drained task did not stop"
  assert_contains "$(CTL service events lbroll)" "draining task $old (deployment of lb-roll:2 replaced it)" "drain start event"
  assert_contains "$(CTL service events lbroll)" "task $old drained (its connections ended" "drain event"
  touch /tmp/lb-loop.stop; wait "$loop"
  answers=$(wc -l < /tmp/lb-loop.txt)
  assert_eq 0 "$(grep -c FAIL /tmp/lb-loop.txt)" "failed requests of $answers during the rolling update"
  (( answers >= 20 )) || fail "only $answers requests made during the update"
  CTL service delete lbroll >/dev/null || fail "delete refused"
  wait_for 120 eval '! CTL service describe lbroll >/dev/null 2>&1' || fail "service not gone"
}

test_balance_refuses_held_listener_ports_and_targets_the_definition_lacks() {
  ensure_images || return 1
  lb_def lb-bad 1
  net_register "{\"family\":\"lb-host\",\"networkMode\":\"host\",\"containerDefinitions\":[$(httpd_def web p '[{"containerPort":8097}]')]}"
  net_register "{\"family\":\"lb-8093\",\"containerDefinitions\":[$(httpd_def web p '[{"containerPort":80,"hostPort":8093}]')]}"
  local out id
  CTL service create lbfirst --task-definition lb-bad --desired 0 --load-balancer web:80 --listen 8093 >/dev/null \
    || { fail "first listener refused"; return 1; }
  out=$(CTL service create lbsecond --task-definition lb-bad --desired 0 --load-balancer web:80 --listen 0.0.0.0:8093 2>&1)
  assert_contains "$out" "RESOURCE:PORTS: tcp/8093 held by service lbfirst's load balancer listener" "a second listener on the port"
  out=$(CTL run lb-8093 2>&1)
  assert_contains "$out" "RESOURCE:PORTS: tcp/8093 held by service lbfirst" "a task wanting the listener's port"
  busybox nc -l -p 8094 >/dev/null 2>&1 & local nc=$!
  sleep 0.5
  out=$(CTL service create lbproc --task-definition lb-bad --desired 0 --load-balancer web:80 --listen 8094 2>&1)
  kill "$nc" 2>/dev/null
  assert_contains "$out" "tcp/8094 is in use on the host" "a port a host process listens on"
  out=$(CTL service create lbdb --task-definition lb-bad --desired 0 --load-balancer db:80 2>&1)
  assert_contains "$out" 'loadBalancers[0].containerName: lb-bad:1 has no container "db"' "unknown container"
  out=$(CTL service create lb81 --task-definition lb-bad --desired 0 --load-balancer web:81 2>&1)
  assert_contains "$out" "loadBalancers[0].containerPort: container web of lb-bad:1 maps no TCP port 81" "unmapped port"
  out=$(CTL service create lbhost --task-definition lb-host --desired 2 --load-balancer web:8097 2>&1)
  assert_contains "$out" "loadBalancers[0].containerPort: lb-host:1 uses networkMode host" "host mode"
  for s in lbsecond lbproc lbdb lb81 lbhost; do
    CTL service describe "$s" >/dev/null 2>&1 && fail "service $s was made"
  done
  # The port given back with the service; then a task holds it, and a listener is refused.
  CTL service delete lbfirst >/dev/null
  wait_for 60 eval '! CTL service describe lbfirst >/dev/null 2>&1' || fail "lbfirst not gone"
  id=$(CTL run lb-8093) || { fail "run lb-8093 once the listener went: $id"; return 1; }
  out=$(CTL service create lbthird --task-definition lb-bad --desired 0 --load-balancer web:80 --listen 8093 2>&1)
  assert_contains "$out" "RESOURCE:PORTS: tcp/8093 held by task $id" "a listener on a task's port"
  CTL stop "$id" >/dev/null
  wait_status 60 "$id" STOPPED || fail "lb-8093 did not stop"
}

test_balance_autoscaler_scales_out_on_requests_per_target() {
  ensure_images || return 1
  guest_address
  lb_def lb-scale 1
  lb_service lbscale lb-scale 1 8095 180 --deregistration-delay 5 || return 1
  local out
  CTL service scaling lbscale --min 1 --max 2 --target-requests 30 --scale-out-cooldown 10s \
    || { fail "scaling refused"; return 1; }
  # Some 4 connections a second: ~240 a minute on one target, eight times the target.
  rm -f /tmp/lb-scale.stop
  "$REPO/tests/guest/lb-client" "http://$GUEST_ADDR:8095/" --until /tmp/lb-scale.stop >/dev/null &
  local loop=$!
  wait_for 90 eval '[ "$(svc_field lbscale desiredCount)" == 2 ]' || fail "no scale-out on requests: $(CTL service why lbscale)"
  touch /tmp/lb-scale.stop; wait "$loop"
  assert_contains "$(CTL service why lbscale)" "/min vs target 30/min" "service why shows requests per target"
  # A service without a load balancer has no requests to scale on.
  idle_def lb-noscale
  CTL service create lbnone --task-definition lb-noscale --desired 0 >/dev/null
  out=$(CTL service scaling lbnone --min 0 --max 2 --target-requests 30 2>&1)
  assert_contains "$out" "service lbnone has no loadBalancers" "requests without a load balancer"
  CTL service delete lbnone >/dev/null
  CTL service delete lbscale >/dev/null || fail "delete refused"
  wait_for 120 eval '! CTL service describe lbscale >/dev/null 2>&1' || fail "service not gone"
}
