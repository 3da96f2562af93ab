//! systemd's notify protocol: READY=1 once serving, STOPPING=1 on the way out, and the
//! watchdog fed at half its interval. Silent no-ops when not started by systemd.

use sd_notify::NotifyState;

pub fn ready() {
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot notify systemd of readiness");
    }
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// Feeds the watchdog if systemd asked for one (WatchdogSec=).
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = std::time::Duration::from_micros(usec / 2);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
        }
    }))
}
