//! The task model: ECS's known status (`lastStatus`) and desired status kept apart, and the
//! pure transitions that turn what a backend reports into them. Times are microseconds since
//! the epoch, passed in.

use serde::{Deserialize, Serialize};

use crate::capacity::Resources;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
}

impl StopCode {
    pub fn as_str(self) -> &'static str {
        match self {
            StopCode::TaskFailedToStart => "TaskFailedToStart",
            StopCode::EssentialContainerExited => "EssentialContainerExited",
            StopCode::UserInitiated => "UserInitiated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub name: String,
    pub essential: bool,
    pub last_status: Status,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
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
    /// Images its containers use (normal form), so an image in use is not removed.
    pub images: Vec<String>,
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
                })
                .collect(),
            created_at: now,
            started_at: None,
            stopped_at: None,
            reservation: Resources {
                cpu_units: def.reserved_cpu_units(),
                memory_mib: def.reserved_memory_mib(),
            },
            images: def
                .containers
                .iter()
                .map(|c| crate::image::reference::normalize(&c.image))
                .collect(),
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.last_status == Status::Stopped
    }

    /// The backend has the task: its holder process runs.
    pub fn launched(&mut self) {
        if self.last_status == Status::Provisioning {
            self.last_status = Status::Pending;
        }
    }

    /// Stops a task that never got a holder process.
    pub fn failed_to_start(&mut self, reason: String, now: u64) {
        self.set_stop(StopCode::TaskFailedToStart, reason.clone());
        for c in &mut self.containers {
            c.last_status = Status::Stopped;
            c.reason.get_or_insert_with(|| reason.clone());
        }
        self.last_status = Status::Stopped;
        self.stopped_at = Some(now);
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
        }
        if let Some(f) = &r.failed {
            if let Some(c) = self.containers.iter_mut().find(|c| c.name == f.container) {
                c.reason.get_or_insert_with(|| f.reason.clone());
            }
            self.set_stop(StopCode::TaskFailedToStart, f.reason.clone());
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
        let all_running = self
            .containers
            .iter()
            .all(|c| c.last_status == Status::Running);
        if all_running && self.last_status <= Status::Pending {
            self.last_status = Status::Running;
            self.started_at = Some(now);
        }
        if self.desired_status == Status::Stopped
            && matches!(self.last_status, Status::Pending | Status::Running)
        {
            self.last_status = Status::Stopping;
        }
        if r.done.is_some() || !seen.holder_alive {
            if r.done.is_none() {
                self.set_stop(
                    StopCode::TaskFailedToStart,
                    "berth's shim for this task exited unexpectedly; see shim.log in the task's state directory".into(),
                );
            }
            for c in &mut self.containers {
                if c.last_status != Status::Stopped {
                    c.last_status = Status::Stopped;
                    c.reason
                        .get_or_insert_with(|| "not started: the task stopped first".into());
                }
            }
            self.desired_status = Status::Stopped;
            self.last_status = Status::Stopped;
            self.stopped_at = Some(now);
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
