# Networking: bridge (the default) and awsvpc tasks on berth's bridge, ports published through
# berth's nftables table, links, DNS files, network metrics, and what a crash or a stop leaves.
# Each test stops the tasks it started.

GUEST_ADDR=192.0.2.10   # on a dummy link of the guest's: "another host's" view of a port
BRIDGE_GW=172.29.0.1

net_register() { echo "$1" | CTL register - >/dev/null; }

# A busybox httpd serving PAGE on port 80 (the container's name in it): httpd_def NAME PAGE [PORTMAPPINGS]
httpd_def() {
  printf '{"name":"%s","image":"busybox","memory":32,"stopTimeout":2,"command":["sh","-c","mkdir -p /www && echo %s > /www/index.html && exec httpd -f -p 80 -h /www"]%s}' \
    "$1" "$2" "${3:+,\"portMappings\":$3}"
}

guest_address() {
  ip link show berthtest0 >/dev/null 2>&1 && return 0
  ip link add berthtest0 type dummy && ip addr add $GUEST_ADDR/24 dev berthtest0 && ip link set berthtest0 up
}

published_rules() { nft -a list chain ip berth publish 2>/dev/null | grep -c 'berth-task:'; }
task_links() { ip -br link | grep -c '^bv'; }
netns_files() { ls /run/berth/netns 2>/dev/null | wc -l; }
host_port_of() { task_json "$1" | jfield "containers.$2.networkBindings.0.hostPort"; }
page() { curl -sf -m 5 "$1"; }

# Nothing of any task's network is left: no rule, no veth, no namespace.
assert_no_task_network() { # what
  assert_eq 0 "$(published_rules)" "$1: task rules in berth's table"
  assert_eq 0 "$(task_links)" "$1: task veths"
  assert_eq 0 "$(netns_files)" "$1: network namespaces"
}

run_running() { # FAMILY -> task id, RUNNING
  local id
  id=$(CTL run "$1") || { fail "run $1: $id"; return 1; }
  wait_status 90 "$id" RUNNING || { fail "$1 not RUNNING: $(task_json "$id" | jfield stoppedReason)"; return 1; }
  echo "$id"
}

test_network_bridge_is_the_default_and_serves_static_and_dynamic_ports_everywhere() {
  ensure_images && guest_address || return 1
  net_register "{\"family\":\"web-static\",\"containerDefinitions\":[$(httpd_def web static-page '[{"containerPort":80,"hostPort":8080}]')]}"
  net_register "{\"family\":\"web-dynamic\",\"containerDefinitions\":[$(httpd_def web dynamic-page '[{"containerPort":80}]')]}"
  local a b port
  a=$(run_running web-static) || return 1
  b=$(run_running web-dynamic) || { stop_all "$a"; return 1; }
  wait_for 30 page http://localhost:8080/ || fail "nothing on localhost:8080"
  assert_eq static-page "$(page http://localhost:8080/)" "localhost:8080"
  assert_eq static-page "$(page http://$GUEST_ADDR:8080/)" "the guest's address:8080"
  assert_contains "$(task_json "$a" | jfield containers.0.networkInterfaces.0.privateIpv4Address)" "172.29." "the container's bridge address"
  port=$(host_port_of "$b" 0)
  (( port >= 49153 && port <= 65535 )) || fail "dynamic port $port outside 49153-65535"
  wait_for 30 page "http://localhost:$port/" || fail "nothing on the dynamic port $port"
  assert_eq dynamic-page "$(page "http://$GUEST_ADDR:$port/")" "the dynamic port from the guest's address"
  assert_contains "$(busctl get-property org.berth.Agent1 "/org/berth/Agent1/task/$b" org.berth.Agent1.Task NetworkBindings)" "\"web\" 80 $port \"tcp\"" "NetworkBindings on D-Bus"
  assert_contains "$(CTL capacity)" "tcp/$port" "the dynamic port in the books"
  # Both directions counted, from the container's side.
  local m
  m=$(curl -sf "$METRICS_URL" | grep "^berth_container_network_transmit_bytes_total{task_id=\"$a\"")
  [ -n "$m" ] && (( ${m##* } > 0 )) || fail "no transmitted bytes for the serving container: '$m'"
  curl -sf "$METRICS_URL" | grep -q "^berth_task_network_receive_packets_total{task_id=\"$b\"" || fail "no task network series for $b"
  stop_all "$a" "$b"
  assert_no_task_network "after both stopped"
  page http://localhost:8080/ >/dev/null && fail "port 8080 still served after the stop"
  return 0
}

test_network_second_bridge_task_on_host_port_8080_is_refused_with_resource_ports() {
  ensure_images || return 1
  net_register "{\"family\":\"web-8080\",\"containerDefinitions\":[$(httpd_def web p '[{"containerPort":80,"hostPort":8080}]')]}"
  local a out
  a=$(run_running web-8080) || return 1
  out=$(CTL run web-8080 2>&1) && fail "second task on 8080 admitted: $out"
  assert_contains "$out" "RESOURCE:PORTS: tcp/8080 held by task $a" "refusal"
  assert_eq 1 "$(published_rules)" "rules: only the first task's"
  assert_eq 1 "$(task_links)" "veths: only the first task's"
  stop_all "$a"
  assert_no_task_network "after the stop"
}

test_network_links_reach_the_linked_container_by_its_alias() {
  ensure_images || return 1
  net_register "{\"family\":\"linked\",\"containerDefinitions\":[$(httpd_def db db-page),
    {\"name\":\"client\",\"image\":\"busybox\",\"memory\":32,\"links\":[\"db:database\"],
     \"command\":[\"sh\",\"-c\",\"cat /etc/hosts; for i in \$(seq 100); do wget -qO- http://database/ && exit 0; sleep 0.2; done; exit 1\"]}]}"
  local id
  id=$(CTL run linked) || { fail "run: $id"; return 1; }
  wait_status 90 "$id" STOPPED || { fail "linked task did not stop"; stop_all "$id"; return 1; }
  local logs
  logs=$(CTL logs "$id" client)
  assert_contains "$logs" "db-page" "the client's fetch from http://database/"
  assert_contains "$logs" "database db" "the link's /etc/hosts entry"
  assert_eq 0 "$(task_json "$id" | jfield containers.1.exitCode)" "client's exit code"
  assert_no_task_network "after the task stopped"
}

test_network_awsvpc_containers_share_localhost_and_the_task_address_serves_the_host() {
  ensure_images || return 1
  net_register "{\"family\":\"vpc\",\"networkMode\":\"awsvpc\",\"containerDefinitions\":[$(httpd_def srv vpc-page),
    {\"name\":\"cli\",\"image\":\"busybox\",\"memory\":32,\"essential\":false,
     \"command\":[\"sh\",\"-c\",\"for i in \$(seq 100); do wget -qO- http://localhost/ && exit 0; sleep 0.2; done; exit 1\"]}]}"
  local id addr
  id=$(run_running vpc) || return 1
  addr=$(task_json "$id" | python3 -S -c 'import json,sys; t=json.load(sys.stdin); print({d["name"]: d["value"] for d in t["attachments"][0]["details"]}["privateIPv4Address"])')
  assert_contains "$addr" "172.29." "the task's address (attachments)"
  assert_eq "$addr" "$(task_json "$id" | jfield containers.1.networkInterfaces.0.privateIpv4Address)" "both containers on the task's address"
  wait_for 30 page "http://$addr/" || fail "nothing served on the task's address $addr"
  assert_eq vpc-page "$(page "http://$addr/")" "the task's address from the host"
  wait_for 30 eval '[ "$(task_json '"$id"' | jfield containers.1.lastStatus)" == STOPPED ]' || fail "cli did not finish"
  assert_contains "$(CTL logs "$id" cli)" "vpc-page" "cli's fetch over localhost"
  assert_eq 1 "$(netns_files)" "one namespace for the awsvpc task"
  stop_all "$id"
  assert_no_task_network "after the stop"
}

test_network_container_reaches_the_host_side_and_gets_the_dns_files_it_asked_for() {
  ensure_images || return 1
  local www pid
  www=$(mktemp -d); echo host-page > "$www/index.html"
  busybox httpd -f -p "$BRIDGE_GW:9999" -h "$www" & pid=$!
  net_register '{"family":"outbound","containerDefinitions":[{"name":"c","image":"busybox","memory":32,
    "hostname":"outbound-box","dnsServers":["192.0.2.53"],"dnsSearchDomains":["corp.example"],
    "extraHosts":[{"hostname":"extra.example","ipAddress":"192.0.2.77"}],
    "command":["sh","-c","cat /etc/resolv.conf /etc/hosts; hostname; wget -qO- http://'$BRIDGE_GW':9999/"]}]}'
  local id logs
  id=$(CTL run outbound --wait --json | jfield taskId) || { kill $pid; return 1; }
  kill $pid
  logs=$(CTL logs "$id")
  assert_contains "$logs" "host-page" "the page from the bridge's host side"
  assert_contains "$logs" "nameserver 192.0.2.53" "dnsServers in resolv.conf"
  assert_contains "$logs" "search corp.example" "dnsSearchDomains in resolv.conf"
  assert_contains "$logs" "192.0.2.77	extra.example" "extraHosts in /etc/hosts"
  assert_contains "$logs" "outbound-box" "hostname"
  assert_eq 0 "$(task_json "$id" | jfield containers.0.exitCode)" "exit code"
}

test_network_kill_9_keeps_ports_serving_with_no_duplicate_rule_and_a_stop_leaves_nothing_of_bridge_or_awsvpc_tasks() {
  ensure_images && guest_address || return 1
  net_register "{\"family\":\"web-crash\",\"containerDefinitions\":[$(httpd_def web crash-page '[{"containerPort":80,"hostPort":8081},{"containerPort":80}]')]}"
  # Beside it, a bridge task of two containers and an awsvpc task: every veth and namespace of
  # theirs must go at their stop by the berthd that did not start them.
  net_register "{\"family\":\"pair-crash\",\"containerDefinitions\":[$(httpd_def one one-page),$(httpd_def two two-page)]}"
  net_register "{\"family\":\"vpc-crash\",\"networkMode\":\"awsvpc\",\"containerDefinitions\":[$(httpd_def srv vpc-page)]}"
  local id old rules_before port pair vpc
  id=$(run_running web-crash) || return 1
  pair=$(run_running pair-crash) || { stop_all "$id"; return 1; }
  vpc=$(run_running vpc-crash) || { stop_all "$id" "$pair"; return 1; }
  assert_eq 4 "$(task_links)" "veths before the crash (1 + 2 bridge containers, 1 awsvpc task)"
  port=$(task_json "$id" | jfield containers.0.networkBindings.1.hostPort)
  wait_for 30 page http://localhost:8081/ || fail "nothing on 8081 before the crash"
  rules_before=$(published_rules)
  assert_eq 2 "$rules_before" "rules of the task's two bindings"
  old=$(main_pid)
  kill -KILL "$old"
  wait_new_berthd "$old" || return 1
  wait_status 30 "$id" RUNNING || fail "task not re-adopted"
  assert_eq crash-page "$(page http://localhost:8081/)" "8081 after the restart"
  assert_eq crash-page "$(page "http://$GUEST_ADDR:$port/")" "the dynamic port after the restart"
  assert_eq "$rules_before" "$(published_rules)" "rules after the restart (none duplicated)"
  assert_eq 4 "$(task_links)" "veths after the restart"
  # The re-adopted task keeps its port in the books.
  out=$(CTL run web-crash 2>&1) && fail "a second task took 8081: $out"
  assert_contains "$out" "RESOURCE:PORTS: tcp/8081" "8081 still held after the restart"
  stop_all "$id" "$pair" "$vpc"
  assert_no_task_network "after the stop"
  nft list table ip berth >/dev/null || fail "berth's table is gone"
}

test_network_subnet_clashing_with_a_host_route_stops_berthd_with_the_reason() {
  ensure_running || return 1
  ip link add clashtest0 type dummy && ip addr add 10.98.0.1/16 dev clashtest0 && ip link set clashtest0 up
  cp /etc/berth/berthd.toml /tmp/berthd.toml.saved
  printf 'bridge_name = "berthclash0"\nbridge_subnet = "10.98.4.0/24"\n' >> /etc/berth/berthd.toml
  systemctl restart berthd 2>/dev/null
  wait_for 30 eval '[ "$(systemctl show -p ExecMainStatus --value berthd)" == 78 ]' \
    || fail "berthd did not exit 78: $(systemctl show -p ExecMainStatus --value berthd)"
  local log
  log=$(journalctl -u berthd -n 20 --no-pager)
  assert_contains "$log" "bridge_subnet 10.98.4.0/24 overlaps the host's route to 10.98.0.0/16 on link clashtest0" "the reason"
  ip link show berthclash0 >/dev/null 2>&1 && fail "a bridge was made for a clashing subnet"
  cp /tmp/berthd.toml.saved /etc/berth/berthd.toml
  ip link del clashtest0
  systemctl reset-failed berthd; systemctl start berthd
  wait_for 30 bus_ready || fail "berthd did not come back"
}

test_network_the_ecs_agents_bridge_static_host_port_definition_answers_on_5180() {
  ensure_images || return 1
  python3 -S -c 'import json,sys
d = json.load(open(sys.argv[1]))
for c in d["containerDefinitions"]:
    c["image"] = "busybox:latest"
d["family"] = "agent-port-5180"
print(json.dumps(d))' "${BERTH_REALWORLD_DIR:-$REPO/../shared/realworld/taskdefs}/ecs-agent/bridge-static-host-port.json" \
    | CTL register - >/dev/null || { fail "not registered"; return 1; }
  local id out="" i
  id=$(run_running agent-port-5180) || return 1
  for i in $(seq 60); do
    out=$(busybox nc -w 2 127.0.0.1 5180 </dev/null 2>/dev/null) && [ "$out" == foobar ] && break
    sleep 0.3
  done
  assert_eq foobar "$out" "what nc -l said through host port 5180"
  # nc -l answers once, then the essential container ends the task.
  wait_status 60 "$id" STOPPED || { fail "task did not stop after its one answer"; stop_all "$id"; }
  assert_no_task_network "after the task ended"
}

# CVE-2020-8558's attack on berth's bridge (route_localnet is on there for localhost:PORT): a
# neighbour on the bridge that routes 127.0.0.1 to the bridge's address reaches a server the
# host bound to 127.0.0.1 alone, unless berth's input rules drop it. The neighbour is a network
# namespace plugged into the bridge as a task's is, with the guest's own ip and curl (what a
# container with NET_ADMIN could do). Proved both ways: blocked with berth's rules, reached
# once the test takes them out (then a restart of berthd puts them back).
attacker() { ip netns exec berth-attacker "$@"; }
loopback_secret() { attacker curl -sf -m 3 http://127.0.0.1:18081/secret; }

test_network_a_neighbour_on_the_bridge_cannot_reach_a_server_the_host_bound_to_127_0_0_1() {
  ensure_running
  ip link show berth0 >/dev/null 2>&1 || { fail "no berth0 bridge"; return 1; }
  mkdir -p /tmp/loopback-only && echo host-secret > /tmp/loopback-only/secret
  python3 -m http.server 18081 --bind 127.0.0.1 --directory /tmp/loopback-only >/dev/null 2>&1 &
  local server=$!
  ip netns add berth-attacker && ip link add atk0 type veth peer name atk1 \
    && ip link set atk1 master berth0 up && ip link set atk0 netns berth-attacker \
    && attacker ip addr add 172.29.255.250/16 dev atk0 && attacker ip link set atk0 up \
    && attacker sysctl -qw net.ipv4.conf.all.route_localnet=1 \
    && attacker ip route add 127.0.0.1/32 via "$BRIDGE_GW" dev atk0 \
    || fail "cannot plug the neighbour into the bridge"
  wait_for 60 page http://127.0.0.1:18081/secret || fail "the host's loopback server did not start"
  out=$(loopback_secret 2>&1)
  assert_not_contains "$out" "host-secret" "what the neighbour read from the host's 127.0.0.1:18081"
  nft flush chain ip berth input
  wait_for 20 loopback_secret \
    || fail "without berth's input rules the attack did not get through either (the test proves nothing)"
  kill "$server"
  ip netns del berth-attacker; ip link del atk1 2>/dev/null
  systemctl restart berthd && wait_for 30 bus_ready || fail "berthd did not come back"
  assert_contains "$(nft list chain ip berth input)" "drop" "berth's input rules after its restart"
}
