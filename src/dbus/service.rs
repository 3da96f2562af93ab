//! `org.berth.Agent1.Service` at `/org/berth/Agent1/service/<name>`: one object per service,
//! its counts, revision, deployments and last scaling activity as properties with
//! PropertiesChanged; and the JSON `service describe` shows.

use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection, OwnedObjectPath};

use crate::engine::{service_counts, Engine};
use crate::service::Service;

pub const SERVICE_PATH_PREFIX: &str = "/org/berth/Agent1/service/";

/// Object path elements allow letters, digits and `_`: a `-` is escaped as `_2d`, as
/// systemd escapes unit names on the bus.
pub fn service_path(name: &str) -> zbus::Result<OwnedObjectPath> {
    let escaped: String = name
        .chars()
        .map(|c| match c {
            '-' => "_2d".to_string(),
            c => c.to_string(),
        })
        .collect();
    OwnedObjectPath::try_from(format!("{SERVICE_PATH_PREFIX}{escaped}"))
}

/// The service as ECS's DescribeServices shows one, with berth's scaling state.
pub fn describe(s: &Service, engine: &Engine) -> serde_json::Value {
    let live = engine.live_service_tasks(&s.name);
    let (running, pending) = service_counts(&live);
    let time = |us: u64| us as f64 / 1e6;
    serde_json::json!({
        "serviceName": s.name,
        "status": if s.deleting { "DRAINING" } else { "ACTIVE" },
        "taskDefinition": s.primary().map(|p| p.task_definition.clone()),
        "desiredCount": s.desired_count,
        "isolation": s.isolation.map(|i| i.as_str()),
        "runningCount": running,
        "pendingCount": pending,
        "deploymentConfiguration": {
            "minimumHealthyPercent": s.min_healthy_percent,
            "maximumPercent": s.max_percent,
            "deploymentCircuitBreaker": {"enable": true, "rollback": true},
        },
        "deployments": s.deployments.iter().enumerate().map(|(i, d)| {
            let mine: Vec<_> = live.iter().filter(|t| t.task_definition == d.task_definition).cloned().collect();
            let (r, p) = service_counts(&mine);
            serde_json::json!({
                "id": d.id,
                "status": if i == 0 { "PRIMARY" } else { "ACTIVE" },
                "taskDefinition": d.task_definition,
                "rolloutState": d.rollout.as_str(),
                "runningCount": r,
                "pendingCount": p,
                "failedTasks": d.failed_tasks,
                "createdAt": time(d.created_at),
            })
        }).collect::<Vec<_>>(),
        "tasks": live.iter().map(|t| serde_json::json!({
            "taskId": t.id, "taskDefinition": t.task_definition,
            "lastStatus": t.last_status.as_str(), "healthStatus": t.health_status().as_str(),
        })).collect::<Vec<_>>(),
        "events": s.events.iter().rev().map(|e| serde_json::json!({
            "createdAt": time(e.at), "message": e.message,
        })).collect::<Vec<_>>(),
        "scaling": s.scaling.as_ref().map(|sc| serde_json::json!({
            "policies": sc.policies,
            "decisions": sc.decisions,
            "last": sc.last,
        })),
        "loadBalancers": s.load_balancers,
        "targets": targets_json(engine, &s.name),
        "createdAt": time(s.created_at),
    })
}

/// The service's load-balancer targets, as `service describe` lists them.
fn targets_json(engine: &Engine, name: &str) -> Vec<serde_json::Value> {
    engine
        .targets_report(Some(name))
        .into_iter()
        .flat_map(|(_, v)| v)
        .map(|r| {
            serde_json::json!({
                "listener": r.listener.to_string(),
                "taskId": r.target.task_id,
                "target": r.target.endpoint().to_string(),
                "state": r.state.as_str(),
                "activeConnections": r.active,
                "newConnections": r.new,
            })
        })
        .collect()
}

pub struct ServiceObject {
    name: String,
    engine: Engine,
}

impl ServiceObject {
    fn field<T: Default>(&self, f: impl FnOnce(&Service) -> T) -> T {
        self.engine
            .service(&self.name)
            .map(|s| f(&s))
            .unwrap_or_default()
    }

    fn counts(&self) -> (u32, u32) {
        service_counts(&self.engine.live_service_tasks(&self.name))
    }
}

#[interface(
    name = "org.berth.Agent1.Service",
    proxy(default_service = "org.berth.Agent1")
)]
impl ServiceObject {
    /// The service as JSON, shaped like one entry of ECS DescribeServices.
    async fn describe(&self) -> String {
        self.engine
            .service(&self.name)
            .map(|s| describe(&s, &self.engine).to_string())
            .unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[zbus(property)]
    fn desired_count(&self) -> u32 {
        self.field(|s| s.desired_count)
    }

    #[zbus(property)]
    fn running_count(&self) -> u32 {
        self.counts().0
    }

    #[zbus(property)]
    fn pending_count(&self) -> u32 {
        self.counts().1
    }

    /// The primary deployment's `family:revision`.
    #[zbus(property)]
    fn task_definition(&self) -> String {
        self.field(|s| {
            s.primary()
                .map(|p| p.task_definition.clone())
                .unwrap_or_default()
        })
    }

    /// (id, taskDefinition, rolloutState) of each deployment, the primary first.
    #[zbus(property)]
    fn deployments(&self) -> Vec<(String, String, String)> {
        self.field(|s| {
            s.deployments
                .iter()
                .map(|d| {
                    (
                        d.id.clone(),
                        d.task_definition.clone(),
                        d.rollout.as_str().to_string(),
                    )
                })
                .collect()
        })
    }

    /// (listener, task id, target address:port, state, open connections) of each load-balancer
    /// target; state is initial (not yet probed), healthy or draining. Read when wanted: the
    /// kernel's connections change without a signal.
    #[zbus(property(emits_changed_signal = "false"))]
    fn targets(&self) -> Vec<(String, String, String, String, u32)> {
        self.engine
            .targets_report(Some(&self.name))
            .into_iter()
            .flat_map(|(_, v)| v)
            .map(|r| {
                let endpoint = r.target.endpoint().to_string();
                (
                    r.listener.to_string(),
                    r.target.task_id,
                    endpoint,
                    r.state.as_str().to_string(),
                    r.active,
                )
            })
            .collect()
    }

    /// The autoscaler's last decision: "from -> to: reason", or "" when it has made none.
    #[zbus(property)]
    fn last_scaling_activity(&self) -> String {
        self.field(|s| {
            s.last_scaling()
                .map(|d| format!("{} -> {}: {}", d.from, d.to, d.reason))
                .unwrap_or_default()
        })
    }
}

pub async fn add(conn: &Connection, engine: &Engine, name: &str) -> zbus::Result<()> {
    let obj = ServiceObject {
        name: name.to_string(),
        engine: engine.clone(),
    };
    conn.object_server().at(service_path(name)?, obj).await?;
    Ok(())
}

pub async fn remove(conn: &Connection, name: &str) -> zbus::Result<()> {
    conn.object_server()
        .remove::<ServiceObject, _>(service_path(name)?)
        .await?;
    Ok(())
}

/// PropertiesChanged for everything a change may have moved; a service whose tasks changed
/// moves its counts too.
pub async fn emit(conn: &Connection, name: &str) -> zbus::Result<()> {
    let iface = conn
        .object_server()
        .interface::<_, ServiceObject>(service_path(name)?)
        .await?;
    let e: &SignalEmitter<'static> = iface.signal_emitter();
    let obj = iface.get().await;
    obj.desired_count_changed(e).await?;
    obj.running_count_changed(e).await?;
    obj.pending_count_changed(e).await?;
    obj.task_definition_changed(e).await?;
    obj.deployments_changed(e).await?;
    obj.last_scaling_activity_changed(e).await
}
