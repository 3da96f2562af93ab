//! `org.berth.Agent1.Task` at `/org/berth/Agent1/task/<id>`: one object per task, its
//! properties read from the engine, `PropertiesChanged` sent by [`follow`] on every change.

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::OwnedObjectPath;
use zbus::{interface, Connection};

use super::access::require_admin;
use super::BerthError;
use crate::engine::{Change, Engine, Task};

pub const TASK_PATH_PREFIX: &str = "/org/berth/Agent1/task/";

pub fn task_path(id: &str) -> zbus::Result<OwnedObjectPath> {
    OwnedObjectPath::try_from(format!("{TASK_PATH_PREFIX}{id}"))
}

/// The task as ECS's DescribeTasks shows one.
pub fn describe(t: &Task) -> serde_json::Value {
    let time = |us: Option<u64>| us.map(|u| u as f64 / 1e6);
    serde_json::json!({
        "taskId": t.id,
        "taskArn": format!("berth:task/{}", t.id),
        "taskDefinition": t.task_definition,
        "startedBy": t.started_by,
        "lastStatus": t.last_status.as_str(),
        "desiredStatus": t.desired_status.as_str(),
        "stopCode": t.stop_code.map(|c| c.as_str()),
        "stoppedReason": t.stopped_reason,
        "cpu": t.reservation.cpu_units.to_string(),
        "memory": t.reservation.memory_mib.to_string(),
        "healthStatus": t.health_status().as_str(),
        "isolation": t.isolation.as_str(),
        "vm": t.vm.map(|v| serde_json::json!({"vcpus": v.vcpus, "memoryMiB": v.memory_mib})),
        "containers": t.containers.iter().map(|c| serde_json::json!({
            "name": c.name,
            "lastStatus": c.last_status.as_str(),
            "exitCode": c.exit_code,
            "reason": c.reason,
            "essential": c.essential,
            "dockerLabels": c.labels,
            "healthStatus": c.health_status.map(|h| h.as_str()),
            "networkBindings": t.network.bindings.iter()
                .filter(|b| b.container_name == c.name).collect::<Vec<_>>(),
            "networkInterfaces": t.network.interface_of(&c.name)
                .map(|i| vec![serde_json::json!({"privateIpv4Address": i.address})])
                .unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "attachments": attachments(t),
        "createdAt": time(Some(t.created_at)),
        "startedAt": time(t.started_at),
        "stoppedAt": time(t.stopped_at),
        "pullStartedAt": time(t.pull_started_at),
        "pullStoppedAt": time(t.pull_stopped_at),
    })
}

/// ECS shows an awsvpc task's address as its ENI attachment's; berth's is on its bridge.
fn attachments(t: &Task) -> Vec<serde_json::Value> {
    t.network
        .interfaces
        .iter()
        .filter(|i| i.container.is_none())
        .map(|i| {
            serde_json::json!({
                "type": "ElasticNetworkInterface",
                "status": if t.is_stopped() { "DELETED" } else { "ATTACHED" },
                "details": [
                    {"name": "privateIPv4Address", "value": i.address},
                    {"name": "networkInterfaceId", "value": i.host_link},
                ],
            })
        })
        .collect()
}

pub struct TaskObject {
    id: String,
    engine: Engine,
}

impl TaskObject {
    fn task(&self) -> Option<Task> {
        self.engine.task(&self.id).ok()
    }

    fn field<T: Default>(&self, f: impl FnOnce(&Task) -> T) -> T {
        self.task().map(|t| f(&t)).unwrap_or_default()
    }
}

#[interface(
    name = "org.berth.Agent1.Task",
    proxy(default_service = "org.berth.Agent1")
)]
impl TaskObject {
    /// Stops the task: SIGTERM to its containers, SIGKILL after each one's stopTimeout.
    async fn stop(
        &self,
        reason: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BerthError> {
        require_admin(conn, &hdr).await?;
        self.engine.stop_task(&self.id, &reason)?;
        Ok(())
    }

    /// The task as JSON, shaped like one entry of ECS DescribeTasks.
    async fn describe(&self) -> Result<String, BerthError> {
        Ok(describe(&self.engine.task(&self.id)?).to_string())
    }

    /// Up to 64 KiB of a container's log (stdout and stderr as written) from byte `offset`
    /// of its stream; returns the bytes and the offset to ask for next. Offsets run on across
    /// the log's rotations; one older than what is kept reads from the oldest byte kept.
    /// Root's and the group's alone: a container's output may hold its secrets.
    #[zbus(out_args("data", "next_offset"))]
    async fn read_log(
        &self,
        container: String,
        offset: u64,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(Vec<u8>, u64), BerthError> {
        require_admin(conn, &hdr).await?;
        Ok(self
            .engine
            .read_log(&self.id, &container, offset, 64 * 1024)?)
    }

    /// CPU time the task has used, in seconds, read from its cgroup when asked (0 once
    /// stopped).
    #[zbus(property(emits_changed_signal = "false"))]
    fn cpu_usage(&self) -> f64 {
        self.engine
            .usage(&self.id)
            .map(|u| u.task.cpu.usage_usec as f64 / 1e6)
            .unwrap_or(0.0)
    }

    /// Memory the task uses now, in bytes (page cache included), read when asked.
    #[zbus(property(emits_changed_signal = "false"))]
    fn memory_usage(&self) -> u64 {
        self.engine
            .usage(&self.id)
            .map(|u| u.task.memory_bytes)
            .unwrap_or(0)
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn id(&self) -> String {
        self.id.clone()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn task_definition(&self) -> String {
        self.field(|t| t.task_definition.clone())
    }

    #[zbus(property)]
    fn last_status(&self) -> String {
        self.field(|t| t.last_status.as_str().to_string())
    }

    #[zbus(property)]
    fn desired_status(&self) -> String {
        self.field(|t| t.desired_status.as_str().to_string())
    }

    /// Empty until the task is stopping.
    #[zbus(property)]
    fn stop_code(&self) -> String {
        self.field(|t| {
            t.stop_code
                .map(|c| c.as_str().to_string())
                .unwrap_or_default()
        })
    }

    #[zbus(property)]
    fn stopped_reason(&self) -> String {
        self.field(|t| t.stopped_reason.clone().unwrap_or_default())
    }

    /// (name, lastStatus, exitCode or -1, reason) per container.
    #[zbus(property)]
    fn containers(&self) -> Vec<(String, String, i32, String)> {
        self.field(|t| {
            t.containers
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        c.last_status.as_str().to_string(),
                        c.exit_code.unwrap_or(-1),
                        c.reason.clone().unwrap_or_default(),
                    )
                })
                .collect()
        })
    }

    /// `container` or `microvm`.
    #[zbus(property)]
    fn isolation(&self) -> String {
        self.field(|t| t.isolation.as_str().to_string())
    }

    /// ECS's task healthStatus: HEALTHY, UNHEALTHY or UNKNOWN, from the essential containers'
    /// health checks.
    #[zbus(property)]
    fn health_status(&self) -> String {
        self.field(|t| t.health_status().as_str().to_string())
    }

    /// (name, healthStatus) of each container with a health check.
    #[zbus(property)]
    fn container_health(&self) -> Vec<(String, String)> {
        self.field(|t| {
            t.containers
                .iter()
                .filter_map(|c| Some((c.name.clone(), c.health_status?.as_str().to_string())))
                .collect()
        })
    }

    /// ECS's networkBindings: (container, container port, host port, protocol).
    #[zbus(property(emits_changed_signal = "const"))]
    fn network_bindings(&self) -> Vec<(String, u16, u16, String)> {
        self.field(|t| {
            t.network
                .bindings
                .iter()
                .map(|b| {
                    (
                        b.container_name.clone(),
                        b.container_port,
                        b.host_port,
                        b.protocol.as_str().to_string(),
                    )
                })
                .collect()
        })
    }

    /// Addresses on berth's bridge: (container, or "" for an awsvpc task's, address).
    #[zbus(property(emits_changed_signal = "const"))]
    fn addresses(&self) -> Vec<(String, String)> {
        self.field(|t| {
            t.network
                .interfaces
                .iter()
                .map(|i| {
                    (
                        i.container.clone().unwrap_or_default(),
                        i.address.to_string(),
                    )
                })
                .collect()
        })
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn created_at(&self) -> u64 {
        self.field(|t| t.created_at)
    }

    #[zbus(property)]
    fn started_at(&self) -> u64 {
        self.field(|t| t.started_at.unwrap_or(0))
    }

    #[zbus(property)]
    fn stopped_at(&self) -> u64 {
        self.field(|t| t.stopped_at.unwrap_or(0))
    }

    /// ECS's `pullStartedAt` (µs since the epoch; 0: no pull).
    #[zbus(property)]
    fn pull_started_at(&self) -> u64 {
        self.field(|t| t.pull_started_at.unwrap_or(0))
    }

    /// ECS's `pullStoppedAt` (µs; 0 while pulling or without a pull).
    #[zbus(property)]
    fn pull_stopped_at(&self) -> u64 {
        self.field(|t| t.pull_stopped_at.unwrap_or(0))
    }
}

async fn emit_task(conn: &Connection, id: &str) -> zbus::Result<()> {
    let iface = conn
        .object_server()
        .interface::<_, TaskObject>(task_path(id)?)
        .await?;
    let e: &SignalEmitter<'static> = iface.signal_emitter();
    let obj = iface.get().await;
    obj.last_status_changed(e).await?;
    obj.desired_status_changed(e).await?;
    obj.stop_code_changed(e).await?;
    obj.stopped_reason_changed(e).await?;
    obj.containers_changed(e).await?;
    obj.health_status_changed(e).await?;
    obj.container_health_changed(e).await?;
    obj.started_at_changed(e).await?;
    obj.pull_started_at_changed(e).await?;
    obj.pull_stopped_at_changed(e).await?;
    obj.stopped_at_changed(e).await
}

/// The Manager's `TaskStateChanged` for the task as it is now.
async fn announce(conn: &Connection, engine: &Engine, id: &str) -> zbus::Result<()> {
    let Ok(t) = engine.task(id) else {
        return Ok(());
    };
    super::manager::task_state_changed(
        conn,
        id,
        t.last_status.as_str(),
        t.desired_status.as_str(),
        t.stopped_reason.as_deref().unwrap_or(""),
    )
    .await
}

async fn add_task(conn: &Connection, engine: &Engine, id: &str) -> zbus::Result<()> {
    let obj = TaskObject {
        id: id.to_string(),
        engine: engine.clone(),
    };
    conn.object_server().at(task_path(id)?, obj).await?;
    Ok(())
}

async fn remove_task(conn: &Connection, id: &str) -> zbus::Result<()> {
    conn.object_server()
        .remove::<TaskObject, _>(task_path(id)?)
        .await?;
    Ok(())
}

/// Serves an object for every task there is, then follows the engine's changes until the
/// connection closes: new objects for new tasks, PropertiesChanged for changed ones.
pub async fn follow(conn: Connection, engine: Engine) {
    let mut changes = engine.subscribe();
    for t in engine.tasks(true) {
        if let Err(e) = add_task(&conn, &engine, &t.id).await {
            tracing::warn!(task = %t.id, error = %e, "cannot serve the task object");
        }
    }
    for s in engine.services() {
        if let Err(e) = super::service::add(&conn, &engine, &s.name).await {
            tracing::warn!(service = %s.name, error = %e, "cannot serve the service object");
        }
    }
    loop {
        let change = match changes.recv().await {
            Ok(c) => c,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "D-Bus face fell behind the engine's changes");
                continue;
            }
            Err(_) => return,
        };
        let result = match &change {
            Change::TaskAdded(id) => match add_task(&conn, &engine, id).await {
                Ok(()) => announce(&conn, &engine, id).await,
                Err(e) => Err(e),
            },
            Change::TaskChanged(id) => match emit_task(&conn, id).await {
                Ok(()) => announce(&conn, &engine, id).await,
                Err(e) => Err(e),
            },
            Change::TaskRemoved(id) => remove_task(&conn, id).await,
            Change::Capacity => super::manager::emit_capacity(&conn).await,
            Change::ServiceAdded(n) => super::service::add(&conn, &engine, n).await,
            Change::ServiceChanged(n) => super::service::emit(&conn, n).await,
            Change::ServiceRemoved(n) => super::service::remove(&conn, n).await,
            Change::ServiceScaled {
                name,
                from,
                to,
                reason,
            } => super::manager::service_scaled(&conn, name, *from, *to, reason).await,
        };
        // A service's counts move with its tasks.
        if let Change::TaskChanged(id) | Change::TaskAdded(id) = &change {
            if let Some(name) = engine
                .task(id)
                .ok()
                .and_then(|t| t.started_by)
                .and_then(|b| b.strip_prefix("service:").map(str::to_string))
            {
                let _ = super::service::emit(&conn, &name).await;
            }
        }
        if let Err(e) = result {
            tracing::warn!(?change, error = %e, "cannot announce a change on D-Bus");
        }
    }
}
