//! Service series: desired and running counts per service, and the autoscaler's decisions by
//! direction since berthd started.

use super::tasks::Families;
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
