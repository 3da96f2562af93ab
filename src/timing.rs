//! Launch step timings as debug events under the target `berth::timing`, silent unless
//! `BERTH_LOG` asks for them (`BERTH_LOG=info,berth::timing=debug`): `bench/run` reads them
//! from the journal, with the shim's own steps from its status files, to name where launch
//! time goes from measurement.

use std::time::Instant;

/// A step of starting `task` that began at `since` has ended.
pub fn step(task: &str, step: &str, since: Instant) {
    tracing::debug!(
        target: "berth::timing",
        task = %task,
        step = %step,
        us = since.elapsed().as_micros() as u64
    );
}

/// A moment of starting `task` on the wall clock (microseconds since the epoch), to set
/// against the shim's own timestamps.
pub fn mark(task: &str, step: &str, at_us: u64) {
    tracing::debug!(target: "berth::timing", task = %task, step = %step, at = at_us);
}
