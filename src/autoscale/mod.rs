//! The built-in autoscaler's arithmetic: a service's scalable target and policies (target
//! tracking as ECS and the Kubernetes HPA do it, and step policies), and the decision, a pure
//! function of the samples, the policies, the last actions and the time. Nothing here reads a
//! cgroup or starts a task: the service scheduler feeds it and carries out what it says.

mod decide;
mod policy;

pub use decide::{decide, Decision, Direction, Input, Sample};
pub use policy::{
    parse_steps, parse_steps_file, Metric, Policies, ScalableTarget, Step, StepPolicy,
    TargetTracking,
};
