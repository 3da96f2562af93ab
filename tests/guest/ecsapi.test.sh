# The ECS API: the real AWS CLI (Debian's awscli) and boto3, unmodified, against berthd's
# endpoint on 127.0.0.1:9581, signing with keys from the root-only keys file.

ECS_URL=http://127.0.0.1:9581
RW_KEY=BERTHRW RW_SECRET=berth-test-secret-rw-0123456789
RO_KEY=BERTHRO RO_SECRET=berth-test-secret-ro-0123456789

# Keys are read at start: written, then berthd restarted once.
ecs_keys() {
  ensure_running
  [ -f /etc/berth/ecs-api-keys.json ] && return 0
  ( umask 077
    printf '{"keys":[{"accessKeyId":"%s","secretAccessKey":"%s","access":"read-write"},{"accessKeyId":"%s","secretAccessKey":"%s","access":"read-only"}]}\n' \
      "$RW_KEY" "$RW_SECRET" "$RO_KEY" "$RO_SECRET" > /etc/berth/ecs-api-keys.json )
  systemctl restart berthd
  wait_for 60 bus_ready || { fail "berthd did not come back"; return 1; }
}

# aws ecs ... as KEY SECRET: awsk KEY SECRET ARGS...
awsk() {
  local key=$1 secret=$2; shift 2
  AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret AWS_DEFAULT_REGION=us-east-1 \
    AWS_MAX_ATTEMPTS=1 AWS_PAGER= aws --endpoint-url "$ECS_URL" --output json ecs "$@"
}
awsrw() { awsk "$RW_KEY" "$RW_SECRET" "$@"; }

test_ecsapi_the_aws_cli_registers_runs_waits_for_and_describes_a_task() {
  ensure_images || return 1
  ecs_keys || return 1
  command -v aws >/dev/null || { fail "no aws CLI in the guest image"; return 1; }
  printf '%s' '{"family":"ecsapi-exit","networkMode":"none","containerDefinitions":[{"name":"app","image":"busybox","memory":32,"command":["sh","-c","exit 3"]}]}' > /tmp/ecsapi-def.json
  local out arn task
  out=$(awsrw register-task-definition --cli-input-json file:///tmp/ecsapi-def.json) || { fail "register: $out"; return 1; }
  arn=$(jq -r .taskDefinition.taskDefinitionArn <<<"$out")
  assert_eq "arn:aws:ecs:us-east-1:000000000000:task-definition/ecsapi-exit:1" "$arn" "taskDefinitionArn"
  assert_contains "$(awsrw list-task-definitions --family-prefix ecsapi-exit)" "$arn" "list-task-definitions"
  out=$(awsrw run-task --task-definition ecsapi-exit) || { fail "run-task: $out"; return 1; }
  task=$(jq -r '.tasks[0].taskArn' <<<"$out")
  assert_contains "$task" "arn:aws:ecs:us-east-1:000000000000:task/default/" "taskArn"
  awsrw wait tasks-stopped --tasks "$task" || fail "aws ecs wait tasks-stopped"
  out=$(awsrw describe-tasks --tasks "$task")
  assert_eq STOPPED "$(jq -r '.tasks[0].lastStatus' <<<"$out")" "lastStatus"
  assert_eq 3 "$(jq -r '.tasks[0].containers[0].exitCode' <<<"$out")" "exit code"
  assert_eq EssentialContainerExited "$(jq -r '.tasks[0].stopCode' <<<"$out")" "stopCode"
  assert_contains "$(jq -r '.tasks[0].stoppedReason' <<<"$out")" "Essential container in task exited" "stoppedReason"
  out=$(awsrw describe-tasks --tasks nosuchtask)
  assert_eq MISSING "$(jq -r '.failures[0].reason' <<<"$out")" "an unknown task is a failure"
  assert_contains "$(awsrw list-tasks --desired-status STOPPED --family ecsapi-exit)" "$task" "list-tasks"
  assert_contains "$(awsrw list-clusters)" "arn:aws:ecs:us-east-1:000000000000:cluster/default" "list-clusters"
  # boto3, with the same key.
  out=$(AWS_ACCESS_KEY_ID=$RW_KEY AWS_SECRET_ACCESS_KEY=$RW_SECRET AWS_DEFAULT_REGION=us-east-1 python3 -c '
import boto3, sys
c = boto3.client("ecs", endpoint_url=sys.argv[1])
t = c.describe_tasks(tasks=[sys.argv[2]])["tasks"][0]
print(t["lastStatus"], t["containers"][0]["exitCode"], t["stoppedAt"].year > 2000)
' "$ECS_URL" "$task" 2>&1)
  assert_eq "STOPPED 3 True" "$out" "boto3 describe_tasks"
  out=$(awsrw deregister-task-definition --task-definition ecsapi-exit:1)
  assert_eq INACTIVE "$(jq -r .taskDefinition.status <<<"$out")" "deregistered"
}

test_ecsapi_refuses_wrong_signatures_unknown_keys_read_only_writes_and_unknown_operations() {
  ecs_keys || return 1
  local out
  out=$(awsk "$RW_KEY" wrong-secret-0123456789 list-clusters 2>&1)
  assert_contains "$out" "(InvalidSignatureException)" "a wrong secret"
  out=$(awsk NOSUCHKEY "$RW_SECRET" list-clusters 2>&1)
  assert_contains "$out" "(UnrecognizedClientException)" "an unknown key"
  assert_contains "$(awsk "$RO_KEY" "$RO_SECRET" list-clusters)" "cluster/default" "a read-only key reads"
  out=$(awsk "$RO_KEY" "$RO_SECRET" run-task --task-definition ecsapi-exit 2>&1)
  assert_contains "$out" "(AccessDeniedException)" "a read-only key cannot RunTask"
  out=$(curl -s -H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: AmazonEC2ContainerServiceV20141113.Frobnicate' \
    --aws-sigv4 "aws:amz:us-east-1:ecs" --user "$RW_KEY:$RW_SECRET" -d '{}' "$ECS_URL/")
  assert_eq UnknownOperationException "$(jq -r '.__type' <<<"$out")" "an unknown operation ($out)"
  out=$(curl -s -H 'X-Amz-Target: AmazonEC2ContainerServiceV20141113.ListClusters' -d '{}' "$ECS_URL/")
  assert_eq MissingAuthenticationTokenException "$(jq -r '.__type' <<<"$out")" "an unsigned request"
  out=$(awsrw describe-clusters --clusters prod)
  assert_eq MISSING "$(jq -r '.failures[0].reason' <<<"$out")" "another cluster"
  out=$(awsrw list-tasks --cluster prod 2>&1)
  assert_contains "$out" "(ClusterNotFoundException)" "a task list of another cluster"
}

test_ecsapi_the_aws_cli_creates_a_service_rolls_it_to_a_new_revision_and_waits_until_stable() {
  ensure_images || return 1
  ecs_keys || return 1
  local rev out
  for rev in 1 2; do
    printf '{"family":"ecsapi-svc","networkMode":"none","containerDefinitions":[{"name":"app","image":"busybox","memory":32,"stopTimeout":2,"environment":[{"name":"REV","value":"%s"}],"command":["sh","-c","trap \\"exit 0\\" TERM; sleep 1000 & wait"]}]}' "$rev" > /tmp/ecsapi-svc.json
    awsrw register-task-definition --cli-input-json file:///tmp/ecsapi-svc.json >/dev/null || { fail "register rev $rev"; return 1; }
  done
  out=$(awsrw create-service --service-name ecsapisvc --task-definition ecsapi-svc:1 --desired-count 2) || { fail "create-service: $out"; return 1; }
  assert_eq "arn:aws:ecs:us-east-1:000000000000:service/default/ecsapisvc" "$(jq -r .service.serviceArn <<<"$out")" "serviceArn"
  awsrw wait services-stable --services ecsapisvc || fail "not stable: $(awsrw describe-services --services ecsapisvc | jq -c '.services[0] | {deployments, runningCount, events: .events[:3]}')"
  awsrw update-service --service ecsapisvc --task-definition ecsapi-svc:2 >/dev/null || fail "update-service"
  awsrw wait services-stable --services ecsapisvc || fail "not stable after the update"
  out=$(awsrw describe-services --services ecsapisvc)
  assert_eq "arn:aws:ecs:us-east-1:000000000000:task-definition/ecsapi-svc:2" "$(jq -r '.services[0].deployments[0].taskDefinition' <<<"$out")" "the primary deployment"
  assert_eq 2 "$(jq -r '.services[0].runningCount' <<<"$out")" "runningCount"
  assert_contains "$(jq -r '.services[0].events[].message' <<<"$out")" "has reached a steady state" "events"
  assert_contains "$(awsrw list-services)" "service/default/ecsapisvc" "list-services"
  out=$(awsrw delete-service --service ecsapisvc 2>&1)
  assert_contains "$out" "(InvalidParameterException)" "delete without force while scaled above 0"
  awsrw delete-service --service ecsapisvc --force >/dev/null || fail "delete --force"
  wait_for 120 eval '[ "$(awsrw describe-services --services ecsapisvc | jq -r ".failures[0].reason")" == MISSING ]' || fail "service not gone"
}
