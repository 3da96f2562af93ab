//! A service as berth keeps it: the desired count, its deployments (newest first, the
//! primary), the tasks it has started and not yet seen stop, its failure back-off, its events,
//! and its autoscaling state. Plain data, persisted whole as JSON like a task.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::autoscale::Policies;
use crate::vm::sizing::Isolation;

/// Events kept per service, newest last.
pub const MAX_EVENTS: usize = 100;
/// Scaling decisions kept for `service why`.
pub const MAX_DECISIONS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Rollout {
    InProgress,
    Completed,
    Failed,
}

impl Rollout {
    pub fn as_str(self) -> &'static str {
        match self {
            Rollout::InProgress => "IN_PROGRESS",
            Rollout::Completed => "COMPLETED",
            Rollout::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    /// `family:revision`.
    pub task_definition: String,
    pub rollout: Rollout,
    /// Tasks of this deployment that failed (exited on their own, failed to start).
    pub failed_tasks: u32,
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub at: u64,
    pub message: String,
}

/// One autoscaler decision that changed (or was kept from changing) the count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingDecision {
    pub at: u64,
    pub from: u32,
    pub to: u32,
    pub direction: String,
    pub reason: String,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scaling {
    pub policies: Policies,
    /// Recent recommendations (ms, count) for the scale-in window.
    #[serde(default)]
    pub recent: Vec<(u64, u32)>,
    pub last_scale_out_ms: Option<u64>,
    pub last_scale_in_ms: Option<u64>,
    /// The decisions that changed the desired count, oldest first.
    #[serde(default)]
    pub decisions: Vec<ScalingDecision>,
    /// The latest evaluation, whatever it decided (a hold says why nothing changed).
    #[serde(default)]
    pub last: Option<ScalingDecision>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub name: String,
    pub desired_count: u32,
    pub min_healthy_percent: u32,
    pub max_percent: u32,
    /// Newest first: `deployments[0]` is the primary.
    pub deployments: Vec<Deployment>,
    /// Tasks it started that it has not yet seen STOPPED: how it knows, after a restart too,
    /// which stops are news.
    pub tasks: BTreeSet<String>,
    /// Task failures in a row, and no launch before `retry_at` (µs).
    pub failures: u32,
    pub retry_at: Option<u64>,
    pub events: Vec<Event>,
    pub scaling: Option<Scaling>,
    pub created_at: u64,
    /// Being deleted: its tasks are stopping, then it goes.
    pub deleting: bool,
    /// The isolation its tasks get; `None`: the daemon's choice for the definition.
    #[serde(default)]
    pub isolation: Option<Isolation>,
    /// ECS's `loadBalancers`: listeners spreading new connections over its serving tasks.
    #[serde(default)]
    pub load_balancers: Vec<crate::balance::LoadBalancer>,
    /// Tasks taken out of the load balancer on their way to a stop, by id.
    #[serde(default)]
    pub draining: BTreeMap<String, Drain>,
}

/// A task being drained: no new connections; stopped with `reason` once its connections end
/// or at `until` (µs), the deregistration delay after `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drain {
    pub since: u64,
    pub until: u64,
    pub reason: String,
}

impl Service {
    pub fn new(name: &str, task_definition: &str, desired: u32, now: u64) -> Service {
        let mut s = Service {
            name: name.to_string(),
            desired_count: desired,
            min_healthy_percent: 100,
            max_percent: 200,
            deployments: Vec::new(),
            tasks: BTreeSet::new(),
            failures: 0,
            retry_at: None,
            events: Vec::new(),
            scaling: None,
            created_at: now,
            deleting: false,
            isolation: None,
            load_balancers: Vec::new(),
            draining: BTreeMap::new(),
        };
        s.deploy(task_definition, now);
        s
    }

    pub fn primary(&self) -> Option<&Deployment> {
        self.deployments.first()
    }

    /// A new primary deployment of `task_definition`; the others drain.
    pub fn deploy(&mut self, task_definition: &str, now: u64) {
        let id = format!(
            "ecs-svc/{}-{}",
            self.name,
            self.deployments.len() as u64 + now % 1_000_000
        );
        self.deployments.insert(
            0,
            Deployment {
                id,
                task_definition: task_definition.to_string(),
                rollout: Rollout::InProgress,
                failed_tasks: 0,
                created_at: now,
            },
        );
        self.failures = 0;
        self.retry_at = None;
        self.event(
            now,
            format!(
                "(service {}) deployment of {task_definition} started",
                self.name
            ),
        );
    }

    /// Records an event; whether it did (the same message again is not news).
    pub fn event(&mut self, at: u64, message: String) -> bool {
        // A back-off retried, a wall still there: said once.
        if self.events.last().is_some_and(|e| e.message == message) {
            return false;
        }
        self.events.push(Event { at, message });
        if self.events.len() > MAX_EVENTS {
            self.events.remove(0);
        }
        true
    }

    /// The host ports its load balancers listen on.
    pub fn listener_ports(&self) -> Vec<crate::capacity::HostPort> {
        self.load_balancers
            .iter()
            .map(|l| l.listener_port())
            .collect()
    }

    /// The newest deployment after the primary that completed: where a rollback goes.
    pub fn last_completed(&self) -> Option<&Deployment> {
        self.deployments
            .iter()
            .skip(1)
            .find(|d| d.rollout == Rollout::Completed)
    }

    pub fn last_scaling(&self) -> Option<&ScalingDecision> {
        self.scaling.as_ref().and_then(|s| s.decisions.last())
    }
}
