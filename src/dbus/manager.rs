//! `org.berth.Agent1.Manager`: task definitions and the host's capacity.

use crate::vm::sizing::Isolation;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::OwnedObjectPath;
use zbus::{interface, Connection};

use super::access::require_admin;
use super::capacity;
use super::images;
use super::service::{self as service_face, service_path};
use super::task::{describe, task_path};
use super::usage;
use super::{BerthError, MANAGER_PATH};
use crate::autoscale::Policies;
use crate::engine::{Engine, ServiceSpec};
use crate::spec::policy::GroupPolicy;

pub struct Manager {
    engine: Engine,
    group: GroupPolicy,
}

impl Manager {
    pub fn new(engine: Engine, group: GroupPolicy) -> Manager {
        Manager { engine, group }
    }

    /// Refuses a caller other than root a definition the group policy keeps from the group.
    fn check_group(&self, uid: u32, def: &crate::spec::TaskDefinition) -> Result<(), BerthError> {
        let refused = crate::spec::policy::refusals(def, &self.group);
        if uid == 0 || refused.is_empty() {
            return Ok(());
        }
        Err(BerthError::AccessDenied(format!(
            "berthd's config keeps from the berth group (uid {uid}): {}; root may, or the \
             operator may allow it with the key named in /etc/berth/berthd.toml",
            refused.join("; ")
        )))
    }

    /// [`Manager::check_group`] for a registered definition; one that does not exist is left
    /// for the call itself to report.
    fn check_group_ref(&self, uid: u32, reference: &str) -> Result<(), BerthError> {
        match self.engine.describe_definition(reference) {
            Ok(reg) => self.check_group(uid, &reg.definition),
            Err(_) => Ok(()),
        }
    }
}

/// The `isolation` of a method's options; any other option is refused by name.
fn isolation_option(
    method: &str,
    options: &std::collections::HashMap<String, String>,
) -> Result<Option<Isolation>, BerthError> {
    let mut isolation = None;
    for (k, v) in options {
        match k.as_str() {
            "isolation" => {
                isolation = Some(Isolation::parse(v).map_err(BerthError::InvalidArgument)?)
            }
            "loadBalancers" if method == "CreateServiceWith" => {}
            other => {
                let known = if method == "CreateServiceWith" {
                    "isolation, loadBalancers"
                } else {
                    "isolation"
                };
                return Err(BerthError::InvalidArgument(format!(
                    "{method}: unknown option {other:?} (known: {known})"
                )));
            }
        }
    }
    Ok(isolation)
}

/// `CreateServiceWith`'s `loadBalancers`: ECS's list as JSON, with berth's `listen` and
/// `deregistrationDelaySeconds`.
fn load_balancers_option(
    options: &std::collections::HashMap<String, String>,
) -> Result<Vec<crate::balance::LoadBalancer>, BerthError> {
    let Some(text) = options.get("loadBalancers") else {
        return Ok(Vec::new());
    };
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| BerthError::InvalidArgument(format!("loadBalancers: not JSON: {e}")))?;
    crate::balance::parse(&v).map_err(BerthError::InvalidArgument)
}

#[interface(
    name = "org.berth.Agent1.Manager",
    proxy(
        default_service = "org.berth.Agent1",
        default_path = "/org/berth/Agent1"
    )
)]
impl Manager {
    /// Registers an ECS task definition (JSON). Returns `family:revision` and the fields kept
    /// but ignored on one host.
    #[zbus(out_args("task_definition", "ignored"))]
    async fn register_task_definition(
        &self,
        json: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(String, Vec<String>), BerthError> {
        let uid = require_admin(conn, &hdr).await?;
        if let Ok(v) = crate::spec::parse(&json) {
            self.check_group(uid, &v.definition)?;
        }
        let reg = self.engine.register_definition(&json)?;
        tracing::info!(task_definition = %reg.reference(), "registered");
        Ok((reg.reference(), reg.ignored))
    }

    /// Active `family:revision` references whose family starts with `family_prefix`.
    async fn list_task_definitions(&self, family_prefix: String) -> Vec<String> {
        self.engine.list_definitions(&family_prefix)
    }

    /// The task definition as registered (JSON), with `family`, `revision`, `status`.
    async fn describe_task_definition(
        &self,
        reference: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, BerthError> {
        let reg = self.engine.describe_definition(&reference)?;
        let mut json = reg.json.clone();
        if !super::access::may_caller_change(conn, &hdr).await {
            super::access::redact_definition(&mut json);
        }
        if let Some(obj) = json.as_object_mut() {
            obj.insert("revision".into(), reg.revision.into());
            obj.insert(
                "status".into(),
                if reg.active { "ACTIVE" } else { "INACTIVE" }.into(),
            );
            obj.insert("ignoredFields".into(), reg.ignored.clone().into());
        }
        Ok(json.to_string())
    }

    /// Marks `family:revision` inactive.
    async fn deregister_task_definition(
        &self,
        reference: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, BerthError> {
        require_admin(conn, &hdr).await?;
        Ok(self.engine.deregister_definition(&reference)?)
    }

    /// Creates a service keeping `desired` tasks of `task_definition` running, rolled out
    /// within `min_healthy_percent`/`max_percent`. Returns its object path.
    // Five wire arguments plus the header and connection zbus injects.
    #[allow(clippy::too_many_arguments)]
    async fn create_service(
        &self,
        name: String,
        task_definition: String,
        desired: u32,
        min_healthy_percent: u32,
        max_percent: u32,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BerthError> {
        let uid = require_admin(conn, &hdr).await?;
        self.check_group_ref(uid, &task_definition)?;
        let s = self.engine.create_service(&ServiceSpec {
            name,
            task_definition,
            desired_count: desired,
            min_healthy_percent,
            max_percent,
            isolation: None,
            load_balancers: Vec::new(),
        })?;
        Ok(service_path(&s.name)?)
    }

    /// `CreateService` with `options`, as `RunTaskWith` takes them: `isolation` for every
    /// task of the service.
    #[allow(clippy::too_many_arguments)]
    async fn create_service_with(
        &self,
        name: String,
        task_definition: String,
        desired: u32,
        min_healthy_percent: u32,
        max_percent: u32,
        options: std::collections::HashMap<String, String>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BerthError> {
        let uid = require_admin(conn, &hdr).await?;
        self.check_group_ref(uid, &task_definition)?;
        let isolation = isolation_option("CreateServiceWith", &options)?;
        let load_balancers = load_balancers_option(&options)?;
        let s = self.engine.create_service(&ServiceSpec {
            name,
            task_definition,
            desired_count: desired,
            min_healthy_percent,
            max_percent,
            isolation,
            load_balancers,
        })?;
        Ok(service_path(&s.name)?)
    }

    /// A new revision (`""` keeps it: a rolling deployment otherwise) and/or a new desired
    /// count (`-1` keeps it).
    async fn update_service(
        &self,
        name: String,
        task_definition: String,
        desired: i64,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BerthError> {
        let uid = require_admin(conn, &hdr).await?;
        if !task_definition.is_empty() {
            self.check_group_ref(uid, &task_definition)?;
        } else if let Ok(s) = self.engine.service(&name) {
            // Scaling root's service up runs more of what root registered: the same limits.
            if let Some(d) = s.deployments.first() {
                self.check_group_ref(uid, &d.task_definition)?;
            }
        }
        let desired = match desired {
            -1 => None,
            d => Some(u32::try_from(d).map_err(|_| {
                BerthError::InvalidArgument(format!("desired count {d} must be 0 or more"))
            })?),
        };
        let def = (!task_definition.is_empty()).then_some(task_definition.as_str());
        self.engine.update_service(&name, def, desired)?;
        Ok(())
    }

    /// Stops the service's tasks (each with its stop timeout); the service goes when they have.
    async fn delete_service(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BerthError> {
        require_admin(conn, &hdr).await?;
        self.engine.delete_service(&name)?;
        Ok(())
    }

    async fn list_services(&self) -> Vec<String> {
        self.engine.services().into_iter().map(|s| s.name).collect()
    }

    /// The service as JSON (ECS DescribeServices' shape, with events and scaling decisions).
    async fn describe_service(&self, name: String) -> Result<String, BerthError> {
        let s = self.engine.service(&name)?;
        Ok(service_face::describe(&s, &self.engine).to_string())
    }

    /// Sets the service's scalable target and policies (JSON as `service describe` shows
    /// them under `scaling.policies`); `""` removes them.
    async fn put_scaling_policy(
        &self,
        name: String,
        policies: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BerthError> {
        require_admin(conn, &hdr).await?;
        let parsed: Option<Policies> = if policies.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str(&policies)
                    .map_err(|e| BerthError::InvalidArgument(format!("scaling policies: {e}")))?,
            )
        };
        self.engine.set_scaling(&name, parsed)?;
        Ok(())
    }

    /// The autoscaler changed a service's desired count, and why.
    #[zbus(signal)]
    async fn service_scaled(
        emitter: &SignalEmitter<'_>,
        name: &str,
        from: u32,
        to: u32,
        reason: &str,
    ) -> zbus::Result<()>;

    /// Starts a task of `task_definition` (`FAMILY` or `FAMILY:REVISION`). Returns its id and
    /// object path. A task that cannot start is still created, and STOPPED with the cause.
    #[zbus(out_args("id", "path"))]
    async fn run_task(
        &self,
        task_definition: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(String, OwnedObjectPath), BerthError> {
        let uid = require_admin(conn, &hdr).await?;
        self.check_group_ref(uid, &task_definition)?;
        // Planning a task writes its bundle and spawns its shim: blocking work, kept off the
        // async workers that serve the bus and /metrics.
        let engine = self.engine.clone();
        let task = tokio::task::spawn_blocking(move || engine.run_task(&task_definition))
            .await
            .map_err(|e| BerthError::Failed(format!("RunTask stopped: {e}")))??;
        tracing::info!(task = %task.id, task_definition = %task.task_definition, "task created");
        Ok((task.id.clone(), task_path(&task.id)?))
    }

    /// Starts a task of `task_definition` with `options`: `isolation` (`container` or
    /// `microvm`; without it the daemon chooses: `fargate_isolation` for a FARGATE-only
    /// definition, else `default_isolation`). An unknown option is refused by name.
    #[zbus(out_args("id", "path"))]
    async fn run_task_with(
        &self,
        task_definition: String,
        options: std::collections::HashMap<String, String>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(String, OwnedObjectPath), BerthError> {
        let uid = require_admin(conn, &hdr).await?;
        self.check_group_ref(uid, &task_definition)?;
        let isolation = isolation_option("RunTaskWith", &options)?;
        let engine = self.engine.clone();
        let task = tokio::task::spawn_blocking(move || {
            engine.run_task_as(&task_definition, None, isolation)
        })
        .await
        .map_err(|e| BerthError::Failed(format!("RunTaskWith stopped: {e}")))??;
        tracing::info!(task = %task.id, task_definition = %task.task_definition,
            isolation = task.isolation.as_str(), "task created");
        Ok((task.id.clone(), task_path(&task.id)?))
    }

    /// Stops task `id` with `reason` (empty: "Task stopped by user").
    async fn stop_task(
        &self,
        id: String,
        reason: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BerthError> {
        require_admin(conn, &hdr).await?;
        self.engine.stop_task(&id, &reason)?;
        Ok(())
    }

    /// Tasks as (id, taskDefinition, lastStatus, desiredStatus, path); stopped ones when `all`.
    async fn list_tasks(
        &self,
        all: bool,
    ) -> Result<Vec<(String, String, String, String, OwnedObjectPath)>, BerthError> {
        self.engine
            .tasks(all)
            .into_iter()
            .map(|t| {
                Ok((
                    t.id.clone(),
                    t.task_definition.clone(),
                    t.last_status.as_str().to_string(),
                    t.desired_status.as_str().to_string(),
                    task_path(&t.id)?,
                ))
            })
            .collect()
    }

    /// Task `id` as JSON, shaped like one entry of ECS DescribeTasks.
    async fn describe_task(&self, id: String) -> Result<String, BerthError> {
        Ok(describe(&self.engine.task(&id)?).to_string())
    }

    /// Imports an image from `archive`, a readable file descriptor carrying a tar stream: an
    /// OCI image layout, a `docker save` tarball or a skopeo `docker-archive`. `name` (may be
    /// empty) overrides the name the archive gives. Returns the name and image id.
    #[zbus(out_args("name", "id"))]
    async fn import_image(
        &self,
        archive: zbus::OwnedFd,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(String, String), BerthError> {
        let uid = require_admin(conn, &hdr).await?;
        images::import(&self.engine, &self.group, uid, archive.into(), name).await
    }

    /// Pulls `reference` from its registry (or a mirror) into the store, as `docker pull`
    /// does; returns when it is there, with the name and image id. Progress: `ListPulls`.
    #[zbus(out_args("name", "id"))]
    async fn pull_image(
        &self,
        reference: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(String, String), BerthError> {
        let uid = require_admin(conn, &hdr).await?;
        images::pull(&self.engine, &self.group, uid, &reference).await
    }

    /// Pulls in flight as (name, layers done, layers, bytes done, bytes).
    async fn list_pulls(&self) -> Vec<(String, u64, u64, u64, u64)> {
        images::pulls(&self.engine)
    }

    /// Images as (name, id, bytes, importedAt seconds since the epoch).
    async fn list_images(&self) -> Vec<(String, String, u64, u64)> {
        self.engine
            .images()
            .list()
            .into_iter()
            .map(|r| (r.name, r.id, r.size, r.imported_at))
            .collect()
    }

    /// Removes an image no running task uses.
    async fn remove_image(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BerthError> {
        require_admin(conn, &hdr).await?;
        Ok(self.engine.remove_image(&name)?)
    }

    /// The capacity books as JSON: registered, reserved and remaining CPU units, MiB and ports,
    /// the ports kept for the host, and the tasks holding reservations.
    async fn describe_capacity(&self) -> String {
        capacity::describe(&self.engine.capacity(), &self.engine.tasks(false)).to_string()
    }

    /// What each running task and its containers use now, as JSON: cumulative CPU seconds,
    /// memory in use and its limit, pids, and `sampledAt` (microseconds, monotonic) to take
    /// rates between two calls. `berthctl top` shows it.
    async fn describe_usage(&self) -> String {
        let rows: Vec<_> = self
            .engine
            .tasks(false)
            .into_iter()
            .map(|t| {
                let u = self.engine.usage_of(&t);
                (t, u)
            })
            .collect();
        usage::describe(&rows, crate::clock::monotonic_us()).to_string()
    }

    /// Sent on every change of a task's status, from PROVISIONING to STOPPED.
    #[zbus(signal)]
    async fn task_state_changed(
        emitter: &SignalEmitter<'_>,
        id: &str,
        last_status: &str,
        desired_status: &str,
        reason: &str,
    ) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// How long and how many stopped tasks are kept, as (seconds, tasks); past either, berth
    /// forgets the oldest (the journal keeps their logs).
    #[zbus(property(emits_changed_signal = "const"))]
    fn stopped_task_retention(&self) -> (u64, u64) {
        let r = self.engine.history().retention;
        (r.max_age_us / 1_000_000, r.max_count as u64)
    }

    /// When the oldest stopped task still kept stopped, in microseconds since the epoch (0:
    /// none kept): how far back `ListTasks(all)` goes.
    #[zbus(property(emits_changed_signal = "false"))]
    fn oldest_stopped_task(&self) -> u64 {
        self.engine.history().oldest_stopped_at.unwrap_or(0)
    }

    /// CPU units the host registers (1024 per online CPU).
    #[zbus(property)]
    fn registered_cpu(&self) -> u64 {
        self.engine.capacity().registered.cpu_units
    }

    /// MiB the host registers (MemTotal less the configured reserve).
    #[zbus(property)]
    fn registered_memory(&self) -> u64 {
        self.engine.capacity().registered.memory_mib
    }

    /// CPU units reserved by tasks not yet stopped.
    #[zbus(property)]
    fn reserved_cpu(&self) -> u64 {
        self.engine.capacity().reserved.cpu_units
    }

    #[zbus(property)]
    fn reserved_memory(&self) -> u64 {
        self.engine.capacity().reserved.memory_mib
    }

    #[zbus(property)]
    fn remaining_cpu(&self) -> u64 {
        self.engine.capacity().remaining.cpu_units
    }

    #[zbus(property)]
    fn remaining_memory(&self) -> u64 {
        self.engine.capacity().remaining.memory_mib
    }

    /// Host ports held by tasks, as (protocol, port, task id).
    #[zbus(property)]
    fn reserved_ports(&self) -> Vec<(String, u16, String)> {
        self.engine
            .capacity()
            .ports
            .held()
            .map(|(p, id)| (p.protocol.as_str().to_string(), p.port, id.clone()))
            .collect()
    }
}

/// Sends `TaskStateChanged` from the Manager object.
pub async fn task_state_changed(
    conn: &Connection,
    id: &str,
    last_status: &str,
    desired_status: &str,
    reason: &str,
) -> zbus::Result<()> {
    let iface = conn
        .object_server()
        .interface::<_, Manager>(MANAGER_PATH)
        .await?;
    Manager::task_state_changed(
        iface.signal_emitter(),
        id,
        last_status,
        desired_status,
        reason,
    )
    .await
}

/// Announces the capacity properties after an admission or a release.
pub async fn service_scaled(
    conn: &Connection,
    name: &str,
    from: u32,
    to: u32,
    reason: &str,
) -> zbus::Result<()> {
    let e = SignalEmitter::new(conn, MANAGER_PATH)?;
    Manager::service_scaled(&e, name, from, to, reason).await
}

pub async fn emit_capacity(conn: &Connection) -> zbus::Result<()> {
    let iface = conn
        .object_server()
        .interface::<_, Manager>(MANAGER_PATH)
        .await?;
    let e = iface.signal_emitter();
    let m = iface.get().await;
    m.reserved_cpu_changed(e).await?;
    m.reserved_memory_changed(e).await?;
    m.remaining_cpu_changed(e).await?;
    m.remaining_memory_changed(e).await?;
    m.reserved_ports_changed(e).await
}
