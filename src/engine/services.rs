//! Services in the engine: create, update, delete, describe, and the loop that carries out
//! the scheduler's plan each second: start and stop tasks, record events, keep deployments.
//! A service's tasks are the tasks started by `service:<name>`, so a restarted berthd finds
//! them in its task table and starts no duplicates.

use std::time::Duration;

use super::{Change, Engine, Status, Task, TaskError};
use crate::clock::now_us;
use crate::service::scheduler::{self, TaskView};
use crate::service::Service;
use crate::store::StoreError;

const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no service {0}")]
    NotFound(String),
    #[error("service {0} exists; update it or delete it first")]
    Exists(String),
    #[error("service name \"{0}\" must be 1-255 letters, digits, hyphens or underscores")]
    InvalidName(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `service create` asks for.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub task_definition: String,
    pub desired_count: u32,
    pub min_healthy_percent: u32,
    pub max_percent: u32,
    pub isolation: Option<crate::vm::sizing::Isolation>,
    pub load_balancers: Vec<crate::balance::LoadBalancer>,
}

pub fn started_by(name: &str) -> String {
    format!("service:{name}")
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn view(t: &Task, draining: bool) -> TaskView {
    TaskView {
        id: t.id.clone(),
        task_definition: t.task_definition.clone(),
        last_status: t.last_status,
        desired_stopped: t.desired_status == Status::Stopped,
        health: t.health_status(),
        checked: t
            .containers
            .iter()
            .any(|c| c.essential && c.health_status.is_some()),
        stop_code: t.stop_code,
        stopped_reason: t.stopped_reason.clone(),
        created_at: t.created_at,
        draining,
    }
}

/// (running, pending) tasks of a service.
pub fn counts(tasks: &[Task]) -> (u32, u32) {
    let running = tasks
        .iter()
        .filter(|t| t.last_status == Status::Running)
        .count() as u32;
    let pending = tasks
        .iter()
        .filter(|t| matches!(t.last_status, Status::Provisioning | Status::Pending))
        .count() as u32;
    (running, pending)
}

/// Records the service's whole state, then holds it: the store first, as for tasks.
fn keep(state: &mut super::State, s: &Service) -> Result<(), StoreError> {
    let json = serde_json::to_string(s).unwrap_or_default();
    state.store.put_service(&s.name, &json)?;
    state.services.insert(s.name.clone(), s.clone());
    Ok(())
}

fn release_listeners(state: &mut super::State, s: &Service) {
    state.books.release_listeners(&s.name, &s.listener_ports());
}

impl Engine {
    /// The full reference (`family:revision`) of an active definition.
    fn active_reference(&self, reference: &str) -> Result<String, ServiceError> {
        let reg = self
            .describe_definition(reference)
            .map_err(TaskError::from)?;
        if !reg.active {
            return Err(TaskError::Inactive(reg.reference()).into());
        }
        Ok(reg.reference())
    }

    pub fn create_service(&self, spec: &ServiceSpec) -> Result<Service, ServiceError> {
        let _gate = self.service_gate();
        if !valid_name(&spec.name) {
            return Err(ServiceError::InvalidName(spec.name.clone()));
        }
        if spec.max_percent < 100 || spec.min_healthy_percent > 100 {
            return Err(ServiceError::Invalid(format!(
                "maximumPercent {} must be at least 100 and minimumHealthyPercent {} at most 100",
                spec.max_percent, spec.min_healthy_percent
            )));
        }
        let reference = self.active_reference(&spec.task_definition)?;
        self.check_runnable(&reference)?;
        self.check_disk().map_err(TaskError::from)?;
        // Refused now, not at each launch: a microVM service this host or this definition
        // cannot run would only fill its events with the same failure.
        if spec.isolation.is_some() {
            self.microvm_size(&reference, spec.isolation)?;
        }
        self.check_load_balancers(&spec.load_balancers, &reference)?;
        let mut s = Service::new(&spec.name, &reference, spec.desired_count, now_us());
        s.min_healthy_percent = spec.min_healthy_percent;
        s.max_percent = spec.max_percent;
        s.isolation = spec.isolation;
        s.load_balancers = spec.load_balancers.clone();
        {
            let mut state = self.lock();
            if state.services.contains_key(&spec.name) {
                return Err(ServiceError::Exists(spec.name.clone()));
            }
            Engine::hold_listeners(&mut state, &s)?;
            if let Err(e) = keep(&mut state, &s) {
                release_listeners(&mut state, &s);
                return Err(e.into());
            }
        }
        self.emit(Change::ServiceAdded(s.name.clone()));
        Ok(s)
    }

    /// A new revision (a rolling deployment) and/or a new desired count.
    pub fn update_service(
        &self,
        name: &str,
        task_definition: Option<&str>,
        desired: Option<u32>,
    ) -> Result<Service, ServiceError> {
        let reference = task_definition
            .map(|r| self.active_reference(r))
            .transpose()?;
        if let Some(r) = &reference {
            self.check_runnable(r)?;
            self.check_load_balancers(&self.service(name)?.load_balancers, r)?;
        }
        let _gate = self.service_gate();
        let s = self.change_service(name, |s| {
            if let Some(r) = &reference {
                if s.primary().map(|p| &p.task_definition) != Some(r) {
                    s.deploy(r, now_us());
                }
            }
            if let Some(d) = desired {
                if d != s.desired_count {
                    let msg = format!(
                        "(service {}) desired count {} -> {d}",
                        s.name, s.desired_count
                    );
                    s.event(now_us(), msg);
                    s.desired_count = d;
                }
            }
            Ok(())
        })?;
        Ok(s)
    }

    /// Stops the service's tasks (each with its stop timeout); the service goes once they have.
    pub fn delete_service(&self, name: &str) -> Result<Service, ServiceError> {
        let _gate = self.service_gate();
        self.change_service(name, |s| {
            s.deleting = true;
            s.desired_count = 0;
            s.event(
                now_us(),
                format!("(service {}) deleting: stopping its tasks", s.name),
            );
            Ok(())
        })
    }

    /// Applies `f` to the service, records it and announces it.
    pub(super) fn change_service(
        &self,
        name: &str,
        f: impl FnOnce(&mut Service) -> Result<(), ServiceError>,
    ) -> Result<Service, ServiceError> {
        let s = {
            let mut state = self.lock();
            let s = state
                .services
                .get_mut(name)
                .ok_or_else(|| ServiceError::NotFound(name.to_string()))?;
            let mut next = s.clone();
            f(&mut next)?;
            keep(&mut state, &next)?;
            next
        };
        self.emit(Change::ServiceChanged(name.to_string()));
        Ok(s)
    }

    pub fn services(&self) -> Vec<Service> {
        self.lock().services.values().cloned().collect()
    }

    pub fn service(&self, name: &str) -> Result<Service, ServiceError> {
        self.lock()
            .services
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(name.to_string()))
    }

    /// The service's tasks (stopped ones too, while the engine keeps them).
    pub fn service_tasks(&self, name: &str) -> Vec<Task> {
        let by = started_by(name);
        self.lock()
            .tasks
            .values()
            .filter(|t| t.started_by.as_deref() == Some(by.as_str()))
            .cloned()
            .collect()
    }

    /// The service's tasks not yet STOPPED.
    pub fn live_service_tasks(&self, name: &str) -> Vec<Task> {
        let mut tasks = self.service_tasks(name);
        tasks.retain(|t| !t.is_stopped());
        tasks
    }

    /// Keeps every service at its count until berthd stops.
    pub async fn schedule_services(self) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            // Collected first: a guard in the `for` expression would live through the loop.
            let names: Vec<String> = self.lock().services.keys().cloned().collect();
            for name in names {
                if let Err(e) = self.schedule(&name) {
                    tracing::warn!(service = %name, error = %e, "service scheduling");
                }
            }
        }
    }

    /// Held while a service is read, acted on and written back, by the scheduler and by the
    /// faces' changes alike, so neither overwrites the other's.
    pub(super) fn service_gate(&self) -> std::sync::MutexGuard<'_, ()> {
        self.service_gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn schedule(&self, name: &str) -> Result<(), ServiceError> {
        let _gate = self.service_gate();
        let now = now_us();
        let tasks = self.service_tasks(name);
        let mut s = self.service(name)?;
        let troubled = self.balancer_trouble(&mut s, now);
        let Some(views) = self.balanced_views(&s, &tasks) else {
            if troubled {
                self.change_service(name, |cur| {
                    *cur = s;
                    Ok(())
                })?;
            }
            return Ok(());
        };
        let mut changed = troubled | scheduler::account(&mut s, &views, now);
        changed |= scheduler::settle(&mut s, &views, now);
        let actions = scheduler::plan(&s, &views, now);
        for (id, reason) in &actions.stop {
            if actions.drainable.contains(id) && self.start_draining(&mut s, id, reason, now) {
                changed = true;
                continue;
            }
            self.stop_task(id, reason)?;
        }
        changed |= self.finish_draining(&mut s, &tasks, now)?;
        changed |= self.start_tasks(&mut s, &actions.start, now);
        if s.deleting && views.iter().all(|v| v.last_status == Status::Stopped) {
            let mut state = self.lock();
            state.store.delete_service(name)?;
            state.services.remove(name);
            release_listeners(&mut state, &s);
            drop(state);
            self.emit(Change::ServiceRemoved(name.to_string()));
            return Ok(());
        }
        if changed {
            self.change_service(name, |cur| {
                *cur = s;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Starts the plan's tasks until the books refuse one; their ids and any refusal go to
    /// the service's events. Whether the service changed.
    fn start_tasks(&self, s: &mut Service, references: &[String], now: u64) -> bool {
        let name = s.name.clone();
        let mut changed = false;
        let mut started = Vec::new();
        for reference in references {
            match self.run_task_as(reference, Some(&started_by(&name)), s.isolation) {
                Ok(t) => {
                    s.tasks.insert(t.id.clone());
                    started.push(t.id);
                    changed = true;
                }
                Err(TaskError::Capacity(refusal)) => {
                    s.event(
                        now,
                        format!("(service {name}) is unable to place a task: {refusal}"),
                    );
                    changed = true;
                    break;
                }
                Err(e) => {
                    s.event(now, format!("(service {name}) cannot start a task: {e}"));
                    changed = true;
                    break;
                }
            }
        }
        if !started.is_empty() {
            // ECS's words, so scripts that read its events read these.
            let ids: Vec<String> = started.iter().map(|id| format!("(task {id})")).collect();
            let msg = format!(
                "(service {name}) has started {} tasks: {}.",
                started.len(),
                ids.join(" ")
            );
            s.event(now, msg);
        }
        changed
    }
}

#[cfg(test)]
mod tests;
