//! The wall clock, read in one place. Pure decisions take the time as an argument; only the
//! edges (engine loop, shim, faces) call these.

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Microseconds since the epoch: task and container timestamps.
pub fn now_us() -> u64 {
    since_epoch().as_micros() as u64
}

/// Seconds since the epoch, for records that need no finer time.
pub fn now_seconds() -> u64 {
    since_epoch().as_secs()
}

/// Microseconds on the monotonic clock: for rates between two samples, which a wall clock
/// set back or forward would skew.
pub fn monotonic_us() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or_default()
}
