//! The autoscaler in the engine: every interval it samples each scaled service's tasks from
//! their cgroups (CPU used over CPU reserved, working set over memory reserved), asks
//! `autoscale::decide`, and sets the desired count it gives; every change is an event, a
//! `ServiceScaled` change for the faces, and a decision kept for `service why`.

use std::collections::HashMap;
use std::time::Duration;

use super::services::ServiceError;
use super::{Change, Engine, Status};
use crate::autoscale::{self, Direction, Metric, Policies, Sample};
use crate::clock::now_us;
use crate::service::model::{Scaling, ScalingDecision, MAX_DECISIONS};
use crate::service::Service;

/// CPU units a task that reserved none is measured against (one CPU).
const UNRESERVED_CPU_UNITS: u64 = 1024;

#[derive(Debug, Default)]
pub(super) struct Sampler {
    /// The last CPU reading of each task: (µs clock, CPU µs used).
    cpu: HashMap<String, (u64, u64)>,
    /// Each service's samples within the window.
    samples: HashMap<String, Vec<Sample>>,
    /// Each load-balanced service's last connection counters: (µs clock, count by target chain).
    pub(super) connections: HashMap<String, (u64, std::collections::BTreeMap<String, u64>)>,
}

/// Decisions counted by direction since berthd started, for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct DecisionCounts {
    pub out: u64,
    pub r#in: u64,
}

impl Engine {
    /// Sets (or with `None` removes) a service's scaling policies.
    pub fn set_scaling(
        &self,
        name: &str,
        policies: Option<Policies>,
    ) -> Result<Service, ServiceError> {
        if let Some(p) = &policies {
            if p.target.min_capacity > p.target.max_capacity {
                return Err(ServiceError::Invalid(format!(
                    "minCapacity {} exceeds maxCapacity {}",
                    p.target.min_capacity, p.target.max_capacity
                )));
            }
            if p.tracking.is_empty() && p.steps.is_none() {
                return Err(ServiceError::Invalid(
                    "give a target (--target-cpu, --target-memory, --target-requests) or steps (--step)".into(),
                ));
            }
        }
        let on_requests = policies.as_ref().is_some_and(|p| {
            p.tracking.iter().any(|t| t.metric == Metric::Requests)
                || p.steps
                    .iter()
                    .flat_map(|s| &s.steps)
                    .any(|s| s.metric == Metric::Requests)
        });
        let _gate = self.service_gate();
        self.change_service(name, |s| {
            if on_requests && s.load_balancers.is_empty() {
                return Err(ServiceError::Invalid(format!(
                    "requests: service {} has no loadBalancers, so no requests to count",
                    s.name
                )));
            }
            s.scaling = policies.map(|policies| Scaling {
                policies,
                recent: Vec::new(),
                last_scale_out_ms: None,
                last_scale_in_ms: None,
                decisions: s.scaling.take().map(|x| x.decisions).unwrap_or_default(),
                last: None,
            });
            Ok(())
        })
    }

    /// Samples and scales every scaled service each `interval` until berthd stops.
    pub async fn autoscale(self, interval: Duration, window: Duration) {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let names: Vec<String> = self
                .services()
                .into_iter()
                .filter(|s| s.scaling.is_some() && !s.deleting)
                .map(|s| s.name)
                .collect();
            for name in names {
                if let Err(e) = self.scale(&name, window) {
                    tracing::warn!(service = %name, error = %e, "autoscaling");
                }
            }
        }
    }

    /// The service's utilization now: the average over its RUNNING tasks, `None` until each
    /// has two CPU readings.
    fn sample(&self, name: &str) -> Option<Sample> {
        let now = now_us();
        let tasks: Vec<_> = self
            .service_tasks(name)
            .into_iter()
            .filter(|t| t.last_status == Status::Running)
            .collect();
        let mut cpu = Vec::new();
        let mut memory = Vec::new();
        for t in &tasks {
            let Some(u) = self.usage_of(t) else { continue };
            let used = u.task.cpu.usage_usec;
            let prev = self.sampler().cpu.insert(t.id.clone(), (now, used));
            let units = match t.reservation.cpu_units {
                0 => UNRESERVED_CPU_UNITS,
                n => n,
            };
            if let Some((at, before)) = prev.filter(|(at, _)| now > *at) {
                let cores = used.saturating_sub(before) as f64 / (now - at) as f64;
                cpu.push(100.0 * cores * 1024.0 / units as f64);
            }
            if t.reservation.memory_mib > 0 {
                let reserved = t.reservation.memory_mib as f64 * 1024.0 * 1024.0;
                memory.push(100.0 * u.task.working_set_bytes as f64 / reserved);
            }
        }
        let avg = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        Some(Sample {
            at_ms: now / 1000,
            cpu: avg(&cpu)?,
            memory: avg(&memory).unwrap_or(0.0),
            requests: self.requests_per_target(name, now),
        })
    }

    pub(super) fn sampler(&self) -> std::sync::MutexGuard<'_, Sampler> {
        self.sampler.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many more tasks like the service's primary the books admit, and what limits it.
    fn room(&self, s: &Service) -> Option<(u32, String)> {
        let reference = &s.primary()?.task_definition;
        let def = self.describe_definition(reference).ok()?.definition;
        let left = self.capacity().remaining;
        let (mem, cpu) = (def.reserved_memory_mib(), def.reserved_cpu_units());
        let by_mem = left.memory_mib.checked_div(mem).unwrap_or(u64::MAX);
        let by_cpu = left.cpu_units.checked_div(cpu).unwrap_or(u64::MAX);
        let (n, why) = if by_mem <= by_cpu {
            (
                by_mem,
                format!(
                    "RESOURCE:MEMORY: {} MiB remain, a task needs {mem} MiB",
                    left.memory_mib
                ),
            )
        } else {
            (
                by_cpu,
                format!(
                    "RESOURCE:CPU: {} units remain, a task needs {cpu}",
                    left.cpu_units
                ),
            )
        };
        Some((n.min(u64::from(u32::MAX)) as u32, why))
    }

    pub(super) fn scale(&self, name: &str, window: Duration) -> Result<(), ServiceError> {
        let now_ms = now_us() / 1000;
        let window_ms = window.as_millis() as u64;
        if let Some(sample) = self.sample(name) {
            let mut sampler = self.sampler();
            let v = sampler.samples.entry(name.to_string()).or_default();
            v.push(sample);
            v.retain(|s| s.at_ms + window_ms * 4 >= now_ms);
        }
        let s = self.service(name)?;
        let Some(scaling) = &s.scaling else {
            return Ok(());
        };
        let samples = self
            .sampler()
            .samples
            .get(name)
            .cloned()
            .unwrap_or_default();
        let room = self.room(&s);
        let d = autoscale::decide(&autoscale::Input {
            now_ms,
            current: s.desired_count,
            samples: &samples,
            window_ms,
            policies: &scaling.policies,
            last_scale_out_ms: scaling.last_scale_out_ms,
            last_scale_in_ms: scaling.last_scale_in_ms,
            recent: &scaling.recent,
            room,
        });
        let _gate = self.service_gate();
        let from = s.desired_count;
        let changed = self.change_service(name, |s| {
            let Some(sc) = s.scaling.as_mut() else {
                return Ok(());
            };
            let keep_from = now_ms.saturating_sub(sc.policies.scale_in_window_secs * 1000 + 60_000);
            sc.recent.retain(|(t, _)| *t >= keep_from);
            sc.recent.push((now_ms, d.recommendation));
            let record = ScalingDecision {
                at: now_us(),
                from: s.desired_count,
                to: d.desired,
                direction: d.direction.as_str().into(),
                reason: d.reason.clone(),
                cpu: d.cpu,
                memory: d.memory,
            };
            if d.direction != Direction::Hold {
                sc.decisions.push(record.clone());
                if sc.decisions.len() > MAX_DECISIONS {
                    sc.decisions.remove(0);
                }
            }
            sc.last = Some(record);
            match d.direction {
                Direction::Out => sc.last_scale_out_ms = Some(now_ms),
                Direction::In => sc.last_scale_in_ms = Some(now_ms),
                Direction::Hold => {}
            }
            if d.desired != s.desired_count {
                let msg = format!(
                    "(service {}) autoscaler: desired count {} -> {}: {}",
                    s.name, s.desired_count, d.desired, d.reason
                );
                s.event(now_us(), msg);
                s.desired_count = d.desired;
            } else if d.reason.contains("RESOURCE:") {
                s.event(
                    now_us(),
                    format!(
                        "(service {}) autoscaler held at {}: {}",
                        s.name, s.desired_count, d.reason
                    ),
                );
            }
            Ok(())
        })?;
        if changed.desired_count != from {
            self.count_decision(d.direction);
            self.emit(Change::ServiceScaled {
                name: name.to_string(),
                from,
                to: changed.desired_count,
                reason: d.reason,
            });
        }
        Ok(())
    }

    fn count_decision(&self, d: Direction) {
        let mut c = self
            .decision_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match d {
            Direction::Out => c.out += 1,
            Direction::In => c.r#in += 1,
            Direction::Hold => {}
        }
    }

    pub fn decision_counts(&self) -> DecisionCounts {
        self.decision_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
