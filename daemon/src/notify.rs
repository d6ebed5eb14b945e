//! What systemd hears from us through `NOTIFY_SOCKET`: READY, STATUS, RELOADING, STOPPING and
//! the watchdog keep-alive. Without `NOTIFY_SOCKET` every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd; check NOTIFY_SOCKET and NotifyAccess=");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Starts a reload: systemd 253+ needs `MONOTONIC_USEC` with `RELOADING=1`.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read CLOCK_MONOTONIC for the reload notification");
            send(&[NotifyState::Reloading]);
        }
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pings the watchdog at half its interval when systemd asked for one (`WATCHDOG_USEC`). It runs
/// as a task on the main runtime, so a wedged runtime stops pinging and systemd restarts us.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()?;
    let period = (interval / 2).max(Duration::from_millis(1));
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}

/// Asks systemd for more start-up time (e.g. while waiting for the migration lock).
pub fn extend_timeout(by: Duration) {
    send(&[NotifyState::ExtendTimeoutUsec(
        u32::try_from(by.as_micros()).unwrap_or(u32::MAX),
    )]);
}
