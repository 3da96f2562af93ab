//! The service scheduler's decision, pure: from the service and what became of its tasks, which
//! tasks to start (of which revision) and which to stop, as ECS's rolling update does within
//! `minimumHealthyPercent`/`maximumPercent`; replacement of failed and unhealthy tasks with a
//! back-off that grows; the deployment circuit breaker and its rollback.

use super::model::{Rollout, Service};
use crate::engine::{Status, StopCode};
use crate::runtime::report::HealthStatus;

/// What the scheduler needs of one of the service's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub id: String,
    pub task_definition: String,
    pub last_status: Status,
    pub desired_stopped: bool,
    pub health: HealthStatus,
    /// Whether any container has a health check.
    pub checked: bool,
    pub stop_code: Option<StopCode>,
    pub stopped_reason: Option<String>,
    pub created_at: u64,
    /// Taken out of the service's load balancer on its way to a stop: as good as stopping.
    pub draining: bool,
}

impl TaskView {
    fn live(&self) -> bool {
        self.last_status != Status::Stopped && !self.desired_stopped && !self.draining
    }

    /// RUNNING and, if it has checks, HEALTHY: what a rolling update counts, and what a load
    /// balancer sends connections to.
    pub fn healthy(&self) -> bool {
        self.live()
            && self.last_status == Status::Running
            && (!self.checked || self.health == HealthStatus::Healthy)
    }

    /// Draining and not yet stopped: it still holds its place (maximumPercent, a fixed port)
    /// and an old deployment is not done while it serves its last connections.
    fn draining_now(&self) -> bool {
        self.draining && self.last_status != Status::Stopped && !self.desired_stopped
    }

    fn unhealthy(&self) -> bool {
        self.live() && self.last_status == Status::Running && self.health == HealthStatus::Unhealthy
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// Task definitions to run, one task each.
    pub start: Vec<String>,
    pub stop: Vec<(String, String)>,
    /// Those of `stop` a load balancer may drain first (replaced by a deployment, scaled in);
    /// an unhealthy task or a deleted service's stops at once.
    pub drainable: Vec<String>,
}

/// Back-off after `failures` task failures in a row: none for the first, then 2 s doubling
/// up to a minute.
pub fn backoff_us(failures: u32) -> u64 {
    if failures <= 1 {
        return 0;
    }
    let secs = 1u64 << (failures - 1).min(6);
    secs.min(60) * 1_000_000
}

/// The circuit breaker's threshold for a deployment of `desired` tasks (ECS's rule).
pub fn failure_threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(3, 200)
}

/// Accounts for the service's tasks that stopped since last time: events, failure counts,
/// back-off, the circuit breaker. Returns whether anything changed.
pub fn account(s: &mut Service, tasks: &[TaskView], now: u64) -> bool {
    let before = s.clone();
    // A task started for the service is one of its own even if the service's record missed it
    // (berthd died between starting it and writing the service, or the write failed): taken
    // back here, so its stop is accounted like any other.
    for t in tasks.iter().filter(|t| t.last_status != Status::Stopped) {
        if s.tasks.insert(t.id.clone()) {
            s.event(
                now,
                format!(
                    "(service {}) took back task {}, started before the service was last recorded (berthd restarted or could not write it)",
                    s.name, t.id
                ),
            );
        }
    }
    for t in tasks.iter().filter(|t| t.last_status == Status::Stopped) {
        if !s.tasks.remove(&t.id) {
            continue;
        }
        let reason = t.stopped_reason.clone().unwrap_or_default();
        let failed = !matches!(t.stop_code, Some(StopCode::UserInitiated) | None);
        s.event(
            now,
            format!("(service {}) task {} stopped: {reason}", s.name, t.id),
        );
        if !failed {
            continue;
        }
        s.failures += 1;
        let wait = backoff_us(s.failures);
        s.retry_at = (wait > 0).then_some(now + wait);
        if wait > 0 {
            s.event(
                now,
                format!(
                    "(service {}) {} task failures in a row: next launch in {} s",
                    s.name,
                    s.failures,
                    wait / 1_000_000
                ),
            );
        }
        if let Some(d) = s
            .deployments
            .iter_mut()
            .find(|d| d.task_definition == t.task_definition)
        {
            d.failed_tasks += 1;
        }
    }
    if tasks.iter().any(|t| {
        t.healthy()
            && s.primary()
                .is_some_and(|p| p.task_definition == t.task_definition)
    }) {
        s.failures = 0;
        s.retry_at = None;
    }
    trip_breaker(s, now);
    *s != before
}

/// A primary deployment with too many failed tasks is FAILED; if an older one completed,
/// berth rolls back to it.
fn trip_breaker(s: &mut Service, now: u64) {
    let threshold = failure_threshold(s.desired_count);
    let Some(p) = s.deployments.first_mut() else {
        return;
    };
    if p.rollout != Rollout::InProgress || p.failed_tasks < threshold {
        return;
    }
    p.rollout = Rollout::Failed;
    let failed = p.task_definition.clone();
    let msg = format!("(service {}) deployment of {failed} failed: {} tasks failed (circuit breaker threshold {threshold})", s.name, p.failed_tasks);
    s.event(now, msg);
    let good = s.last_completed().map(|d| d.task_definition.clone());
    if let Some(good) = good {
        s.event(now, format!("(service {}) rolling back to {good}", s.name));
        s.deploy(&good, now);
    }
}

/// What to start and stop now.
pub fn plan(s: &Service, tasks: &[TaskView], now: u64) -> Actions {
    let mut a = Actions::default();
    let Some(primary) = s.primary() else { return a };
    let live: Vec<&TaskView> = tasks.iter().filter(|t| t.live()).collect();
    if s.deleting {
        a.stop = live
            .iter()
            .map(|t| (t.id.clone(), format!("service {} deleted", s.name)))
            .collect();
        return a;
    }
    for t in live.iter().filter(|t| t.unhealthy()) {
        a.stop
            .push((t.id.clone(), "Task failed container health checks".into()));
    }
    let live: Vec<&TaskView> = live.into_iter().filter(|t| !t.unhealthy()).collect();
    let (mine, old): (Vec<&TaskView>, Vec<&TaskView>) = live
        .iter()
        .partition(|t| t.task_definition == primary.task_definition);
    let d = s.desired_count;
    let max_total = (u64::from(d) * u64::from(s.max_percent) / 100).max(u64::from(d)) as usize;
    let min_healthy = (u64::from(d) * u64::from(s.min_healthy_percent)).div_ceil(100) as usize;
    // Start the primary's missing tasks within maximumPercent, unless backing off or failed.
    let backing_off = s.retry_at.is_some_and(|t| now < t);
    if !backing_off && primary.rollout != Rollout::Failed {
        let need = (d as usize).saturating_sub(mine.len());
        let draining = tasks.iter().filter(|t| t.draining_now()).count();
        let room = max_total.saturating_sub(live.len() + draining);
        a.start = vec![primary.task_definition.clone(); need.min(room)];
    }
    // Stop within minimumHealthyPercent: old tasks that are not healthy first, then healthy
    // old ones while enough healthy tasks remain, then the primary's extra ones.
    let mut healthy = live.iter().filter(|t| t.healthy()).count();
    let extra_mine = mine.len().saturating_sub(d as usize);
    for t in newest_first(&old) {
        if t.healthy() {
            if healthy <= min_healthy {
                break;
            }
            healthy -= 1;
        }
        a.stop.push((
            t.id.clone(),
            format!("deployment of {} replaced it", primary.task_definition),
        ));
        a.drainable.push(t.id.clone());
    }
    // Scale-in stops the primary's extra tasks at once, those not yet healthy first.
    for t in newest_first(&mine).into_iter().take(extra_mine) {
        a.stop
            .push((t.id.clone(), format!("service {} scaled in to {d}", s.name)));
        a.drainable.push(t.id.clone());
    }
    a
}

/// Not yet healthy first, then the newest: the order tasks are given up in.
fn newest_first<'a>(v: &[&'a TaskView]) -> Vec<&'a TaskView> {
    let mut v = v.to_vec();
    v.sort_by_key(|t| (t.healthy(), std::cmp::Reverse(t.created_at)));
    v
}

/// The deployments' states once the tasks are where they should be: a primary with its
/// desired count healthy and no old task left is COMPLETED, the drained old ones go.
pub fn settle(s: &mut Service, tasks: &[TaskView], now: u64) -> bool {
    let Some(primary) = s.deployments.first().cloned() else {
        return false;
    };
    let def = primary.task_definition.clone();
    let healthy = tasks
        .iter()
        .filter(|t| t.healthy() && t.task_definition == def)
        .count();
    let old_live = tasks
        .iter()
        .any(|t| (t.live() || t.draining_now()) && t.task_definition != def);
    let mut changed = false;
    if !old_live {
        // Drained deployments go; while the primary is in progress, the last good one stays
        // for a rollback.
        let keep = (primary.rollout == Rollout::InProgress)
            .then(|| s.last_completed().cloned())
            .flatten();
        let mut list = vec![primary];
        list.extend(keep);
        if list != s.deployments {
            s.deployments = list;
            changed = true;
        }
    }
    if s.deployments[0].rollout == Rollout::InProgress
        && !old_live
        && healthy >= s.desired_count as usize
    {
        s.deployments[0].rollout = Rollout::Completed;
        s.deployments.truncate(1);
        s.event(
            now,
            format!("(service {}) has reached a steady state.", s.name),
        );
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests;
