//! Service series: desired and running counts per service, the load balancers' targets and
//! connections, and the autoscaler's decisions by direction since berthd started.

use super::tasks::Families;
use crate::balance::TargetState;
use crate::engine::{service_counts, Engine};

pub fn collect(engine: &Engine, f: &mut Families) {
    for s in engine.services() {
        let (running, pending) = service_counts(&engine.live_service_tasks(&s.name));
        let l = [("service", s.name.as_str())];
        f.gauge(
            "berth_service_desired_tasks",
            "Tasks the service is to keep running.",
            &l,
            f64::from(s.desired_count),
        );
        f.gauge(
            "berth_service_running_tasks",
            "The service's tasks that are RUNNING.",
            &l,
            f64::from(running),
        );
        f.gauge(
            "berth_service_pending_tasks",
            "The service's tasks not yet RUNNING.",
            &l,
            f64::from(pending),
        );
    }
    balancers(engine, f);
    let c = engine.decision_counts();
    let help = "Autoscaler decisions that changed a service's desired count, by direction.";
    for (direction, n) in [("out", c.out), ("in", c.r#in)] {
        f.counter(
            "berth_autoscaler_decisions_total",
            help,
            &[("direction", direction)],
            n as f64,
        );
    }
}

/// Per listener, its healthy targets; per target, its open connections (conntrack) and the new
/// connections it took (the kernel's counter in its chain).
fn balancers(engine: &Engine, f: &mut Families) {
    for (service, targets) in engine.targets_report(None) {
        let mut healthy: std::collections::BTreeMap<String, u32> = Default::default();
        for t in &targets {
            let listener = t.listener.to_string();
            let n = healthy.entry(listener.clone()).or_default();
            if t.state == TargetState::Healthy {
                *n += 1;
            }
            let l = [
                ("service", service.as_str()),
                ("listener", listener.as_str()),
                ("task_id", t.target.task_id.as_str()),
            ];
            f.gauge(
                "berth_lb_active_connections",
                "Open connections the service's load balancer sent to the target.",
                &l,
                f64::from(t.active),
            );
            if let Some(n) = t.new {
                f.counter(
                    "berth_lb_new_connections_total",
                    "New connections the service's load balancer sent to the target since it joined.",
                    &l,
                    n as f64,
                );
            }
        }
        for (listener, n) in healthy {
            f.gauge(
                "berth_lb_healthy_targets",
                "Targets taking new connections behind the listener.",
                &[
                    ("service", service.as_str()),
                    ("listener", listener.as_str()),
                ],
                f64::from(n),
            );
        }
    }
}
