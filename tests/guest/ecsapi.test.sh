# The ECS API: the real AWS CLI (Debian's awscli) and boto3, unmodified, against berthd's
# endpoint on 127.0.0.1:9581, signing with keys from the root-only keys file.
# Each aws or python process costs 10-20 s of emulated CPU (botocore's models load every time):
# the CLI drives the headline paths, and one boto3 script per test makes the many small checks.

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

# aws ecs ... with the read-write key.
awsrw() {
  AWS_ACCESS_KEY_ID=$RW_KEY AWS_SECRET_ACCESS_KEY=$RW_SECRET AWS_DEFAULT_REGION=us-east-1 \
    AWS_MAX_ATTEMPTS=1 AWS_PAGER= aws --endpoint-url "$ECS_URL" --output json ecs "$@"
}

# Runs a boto3 script (stdin) with ARGS; it has `ecs(key, secret)` (a client), `rw` (the
# read-write one), `err(fn)` (the error code a call raises, or "none") and `out` (a dict
# printed as JSON at the end).
boto() {
  local script; script=$(cat)
  python3 - "$@" <<EOF
import boto3, botocore.config, json, sys
def ecs(key, secret):
    return boto3.client("ecs", endpoint_url="$ECS_URL", region_name="us-east-1",
        aws_access_key_id=key, aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}))
rw = ecs("$RW_KEY", "$RW_SECRET")
def err(fn):
    try:
        fn()
        return "none"
    except rw.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
out = {}
$script
print(json.dumps(out, default=str))
EOF
}

test_ecsapi_the_aws_cli_registers_runs_waits_for_and_describes_a_task() {
  ensure_images || return 1
  ecs_keys || return 1
  command -v aws >/dev/null || { fail "no aws CLI in the guest image"; return 1; }
  printf '%s' '{"family":"ecsapi-exit","networkMode":"none","containerDefinitions":[{"name":"app","image":"busybox","memory":32,"command":["sh","-c","exit 3"]}]}' > /tmp/ecsapi-def.json
  local out arn task
  out=$(awsrw register-task-definition --cli-input-json file:///tmp/ecsapi-def.json) || { fail "register: $out"; return 1; }
  arn=$(jq -r .taskDefinition.taskDefinitionArn <<<"$out")
  assert_eq "arn:aws:ecs:us-east-1:000000000000:task-definition/ecsapi-exit:1" "$arn" "taskDefinitionArn"
  out=$(awsrw run-task --task-definition ecsapi-exit --tags key=team,value=web) || { fail "run-task: $out"; return 1; }
  task=$(jq -r '.tasks[0].taskArn' <<<"$out")
  assert_contains "$task" "arn:aws:ecs:us-east-1:000000000000:task/default/" "taskArn"
  awsrw wait tasks-stopped --tasks "$task" || fail "aws ecs wait tasks-stopped"
  out=$(awsrw describe-tasks --tasks "$task" --include TAGS)
  assert_eq STOPPED "$(jq -r '.tasks[0].lastStatus' <<<"$out")" "lastStatus"
  assert_eq 3 "$(jq -r '.tasks[0].containers[0].exitCode' <<<"$out")" "exit code"
  assert_eq EssentialContainerExited "$(jq -r '.tasks[0].stopCode' <<<"$out")" "stopCode"
  assert_contains "$(jq -r '.tasks[0].stoppedReason' <<<"$out")" "Essential container in task exited" "stoppedReason"
  assert_eq "team=web" "$(jq -r '.tasks[0].tags[] | "\(.key)=\(.value)"' <<<"$out")" "the task's tags"
  # boto3: lists, the container instance, tags by ARN, deregistration.
  out=$(boto "$arn" "$task" <<'EOF'
arn, task = sys.argv[1], sys.argv[2]
t = rw.describe_tasks(tasks=[task])["tasks"][0]
out["boto3"] = [t["lastStatus"], t["containers"][0]["exitCode"], t["stoppedAt"].year > 2000]
out["missing"] = rw.describe_tasks(tasks=["nosuchtask"])["failures"][0]["reason"]
out["listed_def"] = arn in rw.list_task_definitions(familyPrefix="ecsapi-exit")["taskDefinitionArns"]
out["listed_task"] = task in rw.list_tasks(desiredStatus="STOPPED", family="ecsapi-exit")["taskArns"]
out["clusters"] = rw.list_clusters()["clusterArns"]
ci = rw.list_container_instances()["containerInstanceArns"]
d = rw.describe_container_instances(containerInstances=ci)["containerInstances"][0]
out["instance"] = {r["name"]: r.get("integerValue") for r in d["registeredResources"]}
out["instance_status"] = d["status"]
rw.tag_resource(resourceArn=arn, tags=[{"key": "owner", "value": "ops"}, {"key": "tier", "value": "1"}])
rw.untag_resource(resourceArn=arn, tagKeys=["tier"])
out["def_tags"] = rw.list_tags_for_resource(resourceArn=arn)["tags"]
out["aws_prefix"] = err(lambda: rw.tag_resource(resourceArn=arn, tags=[{"key": "aws:x", "value": "v"}]))
out["deregistered"] = rw.deregister_task_definition(taskDefinition="ecsapi-exit:1")["taskDefinition"]["status"]
EOF
) || { fail "boto3: $out"; return 1; }
  assert_eq '["STOPPED",3,true]' "$(jq -c .boto3 <<<"$out")" "boto3 describe_tasks"
  assert_eq MISSING "$(jq -r .missing <<<"$out")" "an unknown task is a failure"
  assert_eq "true true" "$(jq -r '"\(.listed_def) \(.listed_task)"' <<<"$out")" "list_task_definitions, list_tasks"
  assert_eq '["arn:aws:ecs:us-east-1:000000000000:cluster/default"]' "$(jq -c .clusters <<<"$out")" "list_clusters"
  assert_eq ACTIVE "$(jq -r .instance_status <<<"$out")" "the container instance's status"
  assert_eq "$(CTL --json capacity | jfield registeredMemory)" "$(jq -r .instance.MEMORY <<<"$out")" "the instance's registered memory is the books'"
  assert_eq '[{"key":"owner","value":"ops"}]' "$(jq -c .def_tags <<<"$out")" "the definition's tags after tag and untag"
  assert_eq InvalidParameterException "$(jq -r .aws_prefix <<<"$out")" "a tag under aws:"
  assert_eq INACTIVE "$(jq -r .deregistered <<<"$out")" "deregistered"
}

test_ecsapi_refuses_wrong_signatures_unknown_keys_read_only_writes_and_unknown_operations() {
  ecs_keys || return 1
  local out
  out=$(boto <<EOF
out["wrong_secret"] = err(lambda: ecs("$RW_KEY", "wrong-secret-0123456789").list_clusters())
out["unknown_key"] = err(lambda: ecs("NOSUCHKEY", "$RW_SECRET").list_clusters())
ro = ecs("$RO_KEY", "$RO_SECRET")
out["ro_reads"] = ro.list_clusters()["clusterArns"]
out["ro_runs"] = err(lambda: ro.run_task(taskDefinition="ecsapi-exit"))
out["ro_tags"] = err(lambda: ro.tag_resource(resourceArn=ro.list_clusters()["clusterArns"][0], tags=[{"key": "a", "value": "b"}]))
out["other_cluster"] = rw.describe_clusters(clusters=["prod"])["failures"][0]["reason"]
out["other_cluster_tasks"] = err(lambda: rw.list_tasks(cluster="prod"))
EOF
) || { fail "boto3: $out"; return 1; }
  assert_eq InvalidSignatureException "$(jq -r .wrong_secret <<<"$out")" "a wrong secret"
  assert_eq UnrecognizedClientException "$(jq -r .unknown_key <<<"$out")" "an unknown key"
  assert_contains "$(jq -c .ro_reads <<<"$out")" "cluster/default" "a read-only key reads"
  assert_eq AccessDeniedException "$(jq -r .ro_runs <<<"$out")" "a read-only key cannot RunTask"
  assert_eq AccessDeniedException "$(jq -r .ro_tags <<<"$out")" "a read-only key cannot tag"
  assert_eq MISSING "$(jq -r .other_cluster <<<"$out")" "another cluster"
  assert_eq ClusterNotFoundException "$(jq -r .other_cluster_tasks <<<"$out")" "a task list of another cluster"
  out=$(curl -s -H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: AmazonEC2ContainerServiceV20141113.Frobnicate' \
    --aws-sigv4 "aws:amz:us-east-1:ecs" --user "$RW_KEY:$RW_SECRET" -d '{}' "$ECS_URL/")
  assert_eq UnknownOperationException "$(jq -r '.__type' <<<"$out")" "an unknown operation ($out)"
  out=$(curl -s -H 'X-Amz-Target: AmazonEC2ContainerServiceV20141113.ListClusters' -d '{}' "$ECS_URL/")
  assert_eq MissingAuthenticationTokenException "$(jq -r '.__type' <<<"$out")" "an unsigned request"
}

test_ecsapi_the_aws_cli_creates_a_service_rolls_it_to_a_new_revision_and_waits_until_stable() {
  ensure_images || return 1
  ecs_keys || return 1
  local out
  out=$(boto <<'EOF'
for rev in ("1", "2"):
    rw.register_task_definition(family="ecsapi-svc", networkMode="none", containerDefinitions=[{
        "name": "app", "image": "busybox", "memory": 32, "stopTimeout": 2,
        "environment": [{"name": "REV", "value": rev}],
        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]}])
EOF
) || { fail "register: $out"; return 1; }
  out=$(awsrw create-service --service-name ecsapisvc --task-definition ecsapi-svc:1 --desired-count 2) || { fail "create-service: $out"; return 1; }
  assert_eq "arn:aws:ecs:us-east-1:000000000000:service/default/ecsapisvc" "$(jq -r .service.serviceArn <<<"$out")" "serviceArn"
  awsrw wait services-stable --services ecsapisvc || fail "not stable: $(svc_json ecsapisvc)"
  awsrw update-service --service ecsapisvc --task-definition ecsapi-svc:2 >/dev/null || fail "update-service"
  awsrw wait services-stable --services ecsapisvc || fail "not stable after the update: $(svc_json ecsapisvc)"
  out=$(boto <<'EOF'
s = rw.describe_services(services=["ecsapisvc"])["services"][0]
out["primary"] = s["deployments"][0]["taskDefinition"]
out["deployments"] = len(s["deployments"])
out["running"] = s["runningCount"]
out["events"] = [e["message"] for e in s["events"]]
out["listed"] = rw.list_services()["serviceArns"]
out["unforced"] = err(lambda: rw.delete_service(service="ecsapisvc"))
out["deleted"] = rw.delete_service(service="ecsapisvc", force=True)["service"]["serviceName"]
EOF
) || { fail "boto3: $out"; return 1; }
  assert_eq "arn:aws:ecs:us-east-1:000000000000:task-definition/ecsapi-svc:2" "$(jq -r .primary <<<"$out")" "the primary deployment"
  assert_eq "1 2" "$(jq -r '"\(.deployments) \(.running)"' <<<"$out")" "one deployment and runningCount once stable"
  assert_contains "$(jq -r '.events[]' <<<"$out")" "has reached a steady state" "events"
  assert_contains "$(jq -c .listed <<<"$out")" "service/default/ecsapisvc" "list_services"
  assert_eq InvalidParameterException "$(jq -r .unforced <<<"$out")" "delete without force while scaled above 0"
  assert_eq ecsapisvc "$(jq -r .deleted <<<"$out")" "delete with force"
  wait_for 120 eval '! CTL service describe ecsapisvc >/dev/null 2>&1' || fail "service not gone: $(svc_json ecsapisvc)"
}
