//! Services: keep `desiredCount` tasks of a task definition running, roll new revisions out
//! within `minimumHealthyPercent`/`maximumPercent`, replace failed and unhealthy tasks with a
//! back-off, trip a circuit breaker and roll back; the autoscaler changes the desired count.
//! `model` and `scheduler` are plain data and pure decisions; the engine carries them out.

pub mod model;
pub mod scheduler;

pub use model::{Deployment, Event, Rollout, Scaling, ScalingDecision, Service};
