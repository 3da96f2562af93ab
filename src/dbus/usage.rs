//! What running tasks use, as `DescribeUsage` shows it for `berthctl top`: cumulative CPU
//! seconds (a client takes the rate between two samples, timed by `sampledAt` so the bus's own
//! delay does not skew it), memory in use and its limit, and pids, per task and per container.

use serde_json::{json, Value};

use crate::cgroup::stats::CgroupStats;
use crate::engine::Task;
use crate::runtime::Usage;

fn stats(s: Option<&CgroupStats>) -> Value {
    match s {
        // Memory as `docker stats` counts it: usage less the inactive file cache.
        Some(s) => json!({
            "cpuSeconds": s.cpu.usage_usec as f64 / 1e6,
            "cpuLimitCores": s.cpu_limit_cores,
            "memoryBytes": s.working_set_bytes,
            "memoryLimitBytes": s.memory_max_bytes,
            "pids": s.pids,
        }),
        None => json!({
            "cpuSeconds": null, "cpuLimitCores": null, "memoryBytes": null,
            "memoryLimitBytes": null, "pids": null,
        }),
    }
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// `sampled_at_us`: when the cgroup files were read, microseconds on the daemon's clock.
pub fn describe(tasks: &[(Task, Option<Usage>)], sampled_at_us: u64) -> Value {
    let rows: Vec<Value> = tasks
        .iter()
        .map(|(t, usage)| {
            let containers: Vec<Value> = t
                .containers
                .iter()
                .map(|c| {
                    let s = usage
                        .as_ref()
                        .and_then(|u| u.containers.iter().find(|(n, _)| n == &c.name))
                        .map(|(_, s)| s);
                    merge(
                        json!({"name": c.name, "lastStatus": c.last_status.as_str()}),
                        stats(s),
                    )
                })
                .collect();
            merge(
                json!({
                    "taskId": t.id,
                    "taskDefinition": t.task_definition,
                    "lastStatus": t.last_status.as_str(),
                    "containers": containers,
                }),
                stats(usage.as_ref().map(|u| &u.task)),
            )
        })
        .collect();
    json!({"sampledAt": sampled_at_us, "tasks": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::stats::CpuStat;

    #[test]
    fn shows_task_and_container_figures_and_nulls_for_a_container_not_started() {
        let def = crate::spec::parse(
            r#"{"family":"f","containerDefinitions":[
                {"name":"a","image":"busybox","memory":8},
                {"name":"b","image":"busybox","memory":8}]}"#,
        )
        .unwrap()
        .definition;
        let task = Task::new("t1".into(), "f:1".into(), &def, 0);
        let s = CgroupStats {
            cpu: CpuStat {
                usage_usec: 2_500_000,
                ..Default::default()
            },
            working_set_bytes: 4096,
            memory_max_bytes: Some(8 << 20),
            pids: 3,
            ..Default::default()
        };
        let usage = Usage {
            task: s.clone(),
            containers: vec![("a".into(), s)],
        };
        let v = describe(&[(task, Some(usage))], 42);
        assert_eq!(v["sampledAt"], 42);
        let t = &v["tasks"][0];
        assert_eq!(t["taskId"], "t1");
        assert_eq!(t["cpuSeconds"], 2.5);
        assert_eq!(t["containers"][0]["memoryBytes"], 4096);
        assert_eq!(t["containers"][0]["memoryLimitBytes"], 8 << 20);
        assert_eq!(t["containers"][1]["name"], "b");
        assert!(t["containers"][1]["cpuSeconds"].is_null());
    }
}
