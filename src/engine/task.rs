//! The task model: ECS's known status (`lastStatus`) and desired status kept apart, and the
//! pure transitions that turn what a backend reports into them. Times are microseconds since
//! the epoch, passed in.

use serde::{Deserialize, Serialize};

use crate::vm::sizing::{Isolation, VmSize};

use crate::capacity::{Claim, HostPort, Resources};
use crate::network::TaskNetwork;
use crate::runtime::report::HealthStatus;
use crate::runtime::{OomScope, Seen};
use crate::spec::TaskDefinition;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Provisioning,
    Pending,
    Running,
    Stopping,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Provisioning => "PROVISIONING",
            Status::Pending => "PENDING",
            Status::Running => "RUNNING",
            Status::Stopping => "STOPPING",
            Status::Stopped => "STOPPED",
        }
    }
}

/// ECS's stop codes, and two of berth's own for what only a host agent sees: the host
/// restarted under the task, or the task's holder (shim, VMM) vanished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
    HostRestarted,
    TaskLost,
}

impl StopCode {
    pub fn as_str(self) -> &'static str {
        match self {
            StopCode::TaskFailedToStart => "TaskFailedToStart",
            StopCode::EssentialContainerExited => "EssentialContainerExited",
            StopCode::UserInitiated => "UserInitiated",
            StopCode::HostRestarted => "HostRestarted",
            StopCode::TaskLost => "TaskLost",
        }
    }
}

/// What berthd found of a task when it started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Same boot: its backend's report decides.
    Seen,
    /// The host booted since: nothing of the task can be running.
    HostRestarted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub name: String,
    pub essential: bool,
    pub last_status: Status,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    /// The definition's `dockerLabels`, shown on the task.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// ECS's `healthStatus`, for a container with a health check.
    #[serde(default)]
    pub health_status: Option<HealthStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    /// `family:revision`.
    pub task_definition: String,
    pub last_status: Status,
    pub desired_status: Status,
    pub stop_code: Option<StopCode>,
    pub stopped_reason: Option<String>,
    pub containers: Vec<ContainerState>,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub stopped_at: Option<u64>,
    /// What the task holds of the capacity books while not STOPPED.
    pub reservation: Resources,
    /// Host ports it holds in the books while not STOPPED.
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
    /// Images its containers use (normal form), so an image in use is not removed.
    pub images: Vec<String>,
    /// Its addresses and published ports on berth's bridge (bridge and awsvpc modes).
    #[serde(default)]
    pub network: TaskNetwork,
    /// ECS's `startedBy`: `service:<name>` for a service's task.
    #[serde(default)]
    pub started_by: Option<String>,
    /// Container, or a microVM of its own.
    #[serde(default)]
    pub isolation: Isolation,
    /// The microVM's size, for a microVM task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmSize>,
    /// ECS's `pullStartedAt`: when berth began pulling the task's images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<u64>,
    /// ECS's `pullStoppedAt`: when the pulls ended (set once the task is handed to its
    /// backend, or stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<u64>,
    /// Its pulls are done and its backend is being given it: a stop now takes the ordinary
    /// way. Not recorded: a restart finds out from the backend.
    #[serde(skip)]
    pub handing_over: bool,
    /// The layer digests its containers run on, from when it was launched: an image's removal
    /// (or the name's new content) leaves these in place while the task lives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

impl Task {
    pub fn new(id: String, reference: String, def: &TaskDefinition, now: u64) -> Task {
        Task {
            id,
            task_definition: reference,
            last_status: Status::Provisioning,
            desired_status: Status::Running,
            stop_code: None,
            stopped_reason: None,
            containers: def
                .containers
                .iter()
                .map(|c| ContainerState {
                    name: c.name.clone(),
                    essential: c.essential,
                    last_status: Status::Pending,
                    exit_code: None,
                    reason: None,
                    labels: c.docker_labels.iter().cloned().collect(),
                    health_status: c.health_check.as_ref().map(|_| HealthStatus::Unknown),
                })
                .collect(),
            created_at: now,
            started_at: None,
            stopped_at: None,
            reservation: Resources {
                cpu_units: def.reserved_cpu_units(),
                memory_mib: def.reserved_memory_mib(),
            },
            host_ports: def
                .static_host_ports()
                .into_iter()
                .map(|(protocol, port)| HostPort { protocol, port })
                .collect(),
            images: def
                .containers
                .iter()
                .map(|c| crate::image::reference::normalize(&c.image))
                .collect(),
            network: TaskNetwork::default(),
            started_by: None,
            isolation: Isolation::Container,
            vm: None,
            pull_started_at: None,
            pull_stopped_at: None,
            handing_over: false,
            layers: Vec::new(),
        }
    }

    /// Makes it a microVM task of `size`: the books hold the VM's memory and the VMM's
    /// `overhead_mib` besides, and at least the task's CPU.
    pub fn in_microvm(mut self, size: VmSize, overhead_mib: u64) -> Task {
        self.isolation = Isolation::Microvm;
        self.reservation.memory_mib = size.memory_mib + overhead_mib;
        self.vm = Some(size);
        self
    }

    /// Gives the task its bridge network; its dynamic host ports join its static ones.
    pub fn with_network(mut self, network: TaskNetwork) -> Task {
        for b in &network.bindings {
            let p = HostPort {
                protocol: b.protocol,
                port: b.host_port,
            };
            if !self.host_ports.contains(&p) {
                self.host_ports.push(p);
            }
        }
        self.host_ports.sort();
        self.network = network;
        self
    }

    /// What the task asks of (or gives back to) the capacity books.
    pub fn claim(&self) -> Claim<'_> {
        Claim {
            holder: &self.id,
            resources: self.reservation,
            ports: &self.host_ports,
            addresses: self.network.addresses(),
        }
    }

    /// ECS's task `healthStatus`: UNHEALTHY when an essential container is, HEALTHY when every
    /// essential container with a check is, UNKNOWN otherwise (and when none has a check).
    pub fn health_status(&self) -> HealthStatus {
        let checked: Vec<HealthStatus> = self
            .containers
            .iter()
            .filter(|c| c.essential)
            .filter_map(|c| c.health_status)
            .collect();
        if checked.contains(&HealthStatus::Unhealthy) {
            HealthStatus::Unhealthy
        } else if !checked.is_empty() && checked.iter().all(|h| *h == HealthStatus::Healthy) {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unknown
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.last_status == Status::Stopped
    }

    /// Its images are being pulled (or it is being handed over after): its backend does not
    /// have it yet, so nothing is observed of it.
    pub fn pulling(&self) -> bool {
        self.pull_started_at.is_some() && self.pull_stopped_at.is_none() && !self.is_stopped()
    }

    /// PENDING while its images are pulled (ECS shows a pulling task PENDING).
    pub fn start_pull(&mut self, now: u64) {
        self.last_status = Status::Pending;
        self.pull_started_at = Some(now);
    }

    /// The pulls ended at `at`: the task was handed to its backend, or stops.
    pub fn end_pull(&mut self, at: u64) {
        self.handing_over = false;
        if self.pull_started_at.is_some() {
            self.pull_stopped_at.get_or_insert(at);
        }
    }

    /// `StopTask` on a task still pulling: nothing of it runs, so it is STOPPED at once.
    pub fn stop_unlaunched(&mut self, reason: String, now: u64) {
        self.end(StopCode::UserInitiated, reason, now);
    }

    /// The backend has the task: its holder process runs.
    pub fn launched(&mut self) {
        if self.last_status == Status::Provisioning {
            self.last_status = Status::Pending;
        }
    }

    /// Stops a task that never got a holder process.
    pub fn failed_to_start(&mut self, reason: String, now: u64) {
        self.end(StopCode::TaskFailedToStart, reason, now);
    }

    /// STOPPED at once, every container with it: nothing of the task runs any more.
    fn end(&mut self, code: StopCode, reason: String, now: u64) {
        self.set_stop(code, reason.clone());
        self.finish(&reason, now);
    }

    /// STOPPED; containers not yet stopped get `container_reason`.
    fn finish(&mut self, container_reason: &str, now: u64) {
        self.end_pull(now);
        for c in &mut self.containers {
            if c.last_status != Status::Stopped {
                c.last_status = Status::Stopped;
                c.reason.get_or_insert_with(|| container_reason.to_string());
            }
        }
        self.desired_status = Status::Stopped;
        self.last_status = Status::Stopped;
        self.stopped_at = Some(now);
    }

    /// Takes back a task not yet stopped when berthd starts: what happened while berthd was
    /// down is applied, and a task nothing holds any more is STOPPED with the reason.
    pub fn readopt(&mut self, found: Found, seen: &Seen, now: u64) {
        if found == Found::HostRestarted {
            return self.end(
                StopCode::HostRestarted,
                "host restarted: the task ended with the previous boot".into(),
                now,
            );
        }
        if self.pulling() {
            if !seen.holder_alive && seen.report.shim.is_none() {
                return self.failed_to_start(
                    "berthd stopped while pulling the task's images; it never ran".into(),
                    now,
                );
            }
            // Handed over just before berthd stopped: it runs.
            self.end_pull(now);
        }
        if self.last_status == Status::Provisioning {
            if !seen.holder_alive && seen.report.shim.is_none() {
                return self.end(
                    StopCode::TaskFailedToStart,
                    "berthd stopped while starting the task; it never ran".into(),
                    now,
                );
            }
            self.launched();
        }
        self.apply(seen, now);
    }

    /// Records the first reason the task is to stop; later ones do not replace it.
    fn set_stop(&mut self, code: StopCode, reason: String) {
        self.desired_status = Status::Stopped;
        if self.stop_code.is_none() {
            self.stop_code = Some(code);
            self.stopped_reason = Some(reason);
        }
    }

    /// `StopTask`: false when the task is already stopped.
    pub fn request_stop(&mut self, reason: String) -> bool {
        if self.is_stopped() {
            return false;
        }
        self.set_stop(StopCode::UserInitiated, reason);
        if self.last_status == Status::Running {
            self.last_status = Status::Stopping;
        }
        true
    }

    /// Brings the task in line with what the backend reports. Returns whether anything changed.
    pub fn apply(&mut self, seen: &Seen, now: u64) -> bool {
        let before = self.clone();
        let r = &seen.report;
        for c in &mut self.containers {
            if let Some(e) = r.exited.get(&c.name) {
                c.last_status = Status::Stopped;
                c.exit_code = Some(e.exit_code);
                if let Some(scope) = e.oom {
                    c.reason = Some(oom_reason(scope, &c.name));
                }
            } else if r.started.contains_key(&c.name) && c.last_status == Status::Pending {
                c.last_status = Status::Running;
            }
            if let (Some(h), Some(_)) = (r.health.get(&c.name), c.health_status) {
                if c.last_status == Status::Running {
                    c.health_status = Some(h.status);
                }
            }
        }
        if let Some(f) = &r.failed {
            if let Some(c) = self.containers.iter_mut().find(|c| c.name == f.container) {
                c.reason.get_or_insert_with(|| f.reason.clone());
            }
            // A failure after the container ran (a microVM's VMM dying under it) is a lost task.
            let code = if r.started.contains_key(&f.container) {
                StopCode::TaskLost
            } else {
                StopCode::TaskFailedToStart
            };
            self.set_stop(code, f.reason.clone());
        }
        let essential_exit = self
            .containers
            .iter()
            .find(|c| c.essential && c.last_status == Status::Stopped && c.exit_code.is_some())
            .map(|c| c.reason.clone().filter(|r| r.starts_with("OutOfMemory")));
        if let Some(oom) = essential_exit {
            let reason = oom.unwrap_or_else(|| "Essential container in task exited".into());
            self.set_stop(StopCode::EssentialContainerExited, reason);
        }
        // Every container has started; one that ran to its end first (a dependency of
        // another, with COMPLETE or SUCCESS) counts as started.
        let all_running = self.containers.iter().all(|c| {
            c.last_status == Status::Running
                || (c.last_status == Status::Stopped && r.started.contains_key(&c.name))
        }) && self.desired_status != Status::Stopped;
        if all_running && self.last_status <= Status::Pending {
            self.last_status = Status::Running;
            self.started_at = Some(now);
        }
        if self.desired_status == Status::Stopped
            && matches!(self.last_status, Status::Pending | Status::Running)
        {
            self.last_status = Status::Stopping;
        }
        if r.done.is_some() {
            // The shim ends a task only when asked or when an essential container exits, both
            // recorded above; a SIGTERM from outside berth is the one other way.
            self.set_stop(
                StopCode::UserInitiated,
                "Task stopped outside berth (its shim received SIGTERM)".into(),
            );
            self.finish("not started: the task stopped first", now);
        } else if !seen.holder_alive {
            let (code, reason) = if self.started_at.is_some() || !r.started.is_empty() {
                (StopCode::TaskLost, "berth's shim for this task died; its containers were killed (see shim.log in the task's state directory)")
            } else {
                (StopCode::TaskFailedToStart, "berth's shim for this task exited unexpectedly; see shim.log in the task's state directory")
            };
            self.end(code, reason.into(), now);
        }
        *self != before
    }
}

fn oom_reason(scope: OomScope, container: &str) -> String {
    match scope {
        OomScope::Container => format!(
            "OutOfMemoryError: container {container} killed due to memory usage (over its memory limit)"
        ),
        OomScope::Task => format!(
            "OutOfMemoryError: container {container} killed due to memory usage (task over its memory limit)"
        ),
    }
}

#[cfg(test)]
mod tests;
