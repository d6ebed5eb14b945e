//! What systemd hears from us through `NOTIFY_SOCKET`: READY, STATUS, RELOADING, STOPPING,
//! the watchdog keep-alive and requests for more start-up time. Without `NOTIFY_SOCKET` every
//! call is a no-op.
//!
//! Sends never block. They run on the async runtime, and a notify socket whose reader stopped
//! reading (a wedged service manager, or any process that set `NOTIFY_SOCKET` for us) holds
//! only a few datagrams: a blocking send would then stop the runtime and with it every client.
//! A notification that finds the queue full is dropped and said so once, until one gets through.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// Set while notifications are being dropped for a full queue, so that is logged once.
static DROPPING: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState]) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    match deliver(&socket, message.as_bytes()) {
        Ok(()) => {
            if DROPPING.swap(false, Ordering::Relaxed) {
                tracing::info!("systemd reads its notifications again");
            }
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if !DROPPING.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the service manager does not read its notifications (NOTIFY_SOCKET's queue is full): dropping them until it does; the daemon goes on serving"
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot notify systemd; check NOTIFY_SOCKET and NotifyAccess=")
        }
    }
}

/// One datagram to `socket` (a path, or `@name` in the abstract namespace), without blocking.
fn deliver(socket: &OsStr, message: &[u8]) -> io::Result<()> {
    let datagram = UnixDatagram::unbound()?;
    datagram.set_nonblocking(true)?;
    match socket.as_encoded_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            datagram.connect_addr(&address)?;
        }
        None => datagram.connect(socket)?,
    }
    let sent = datagram.send(message)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "incomplete notification",
        ))
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
        ping_every_ms = period.as_millis() as u64,
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

/// How often a long start-up step asks for more time; each request covers three periods, so
/// one late tick on a loaded machine does not let `TimeoutStartSec=` expire.
const EXTEND_EVERY: Duration = Duration::from_secs(10);

/// Runs a start-up step that may take long (opening the store, which applies migrations):
/// says what it is in `STATUS=` and asks systemd for more start-up time at once and then every
/// [`EXTEND_EVERY`] until it is done. A large migration must not be killed by
/// `TimeoutStartSec=`: it would only start over, and over again.
pub async fn extending_start<F: Future>(status: &str, work: F) -> F::Output {
    send(&[NotifyState::Status(status)]);
    let mut ticks = tokio::time::interval(EXTEND_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticks.tick() => extend_timeout(EXTEND_EVERY * 3),
        }
    }
}

/// Asks systemd for more start-up time (e.g. while waiting for the migration lock).
pub fn extend_timeout(by: Duration) {
    send(&[NotifyState::ExtendTimeoutUsec(
        u32::try_from(by.as_micros()).unwrap_or(u32::MAX),
    )]);
}
