//! The accept loop and the signals, in one `select!`: SIGTERM/SIGINT stop, SIGHUP reloads.
//!
//! Stopping: tell systemd `STOPPING=1`, stop accepting, let in-flight requests finish (at most
//! [`DRAIN_TIMEOUT`]), remove the socket file, return.

use std::sync::Arc;

use aifactory_common::protocol::EventKind;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Overrides};
use crate::connection::{self, DRAIN_TIMEOUT};
use crate::listener::Listener;
use crate::notify;
use crate::peer::PeerPolicy;
use crate::state::DaemonState;
use aifactory_common::logging::Logging;

/// Back-off after an accept error such as EMFILE, so a full fd table is not a busy loop.
const ACCEPT_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

pub async fn serve(
    daemon: Arc<DaemonState>,
    listener: Listener,
    logging: &Logging,
    overrides: &Overrides,
) -> std::io::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    // READY=1 lets systemd send SIGHUP and SIGTERM at once, so it must follow the handlers:
    // before them, either signal would kill the daemon outright.
    notify::ready(&ready_status(&daemon));
    let shutdown = CancellationToken::new();
    let connections = TaskTracker::new();

    let reason = loop {
        tokio::select! {
            accepted = listener.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection::serve(stream, daemon.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::error!(error = %e, "accept failed; raise the fd limit (LimitNOFILE=) if this is EMFILE");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = sighup.recv() => reload(&daemon, logging, overrides).await,
        }
    };

    tracing::info!(signal = reason, "stopping");
    notify::stopping();
    daemon.events.publish(EventKind::Stopping).await;
    // Stop accepting first, so no new client races the shutdown.
    listener.remove_socket_file();
    drop(listener);
    shutdown.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within 5 s; stopping anyway");
    }
    daemon.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: re-read the config. An invalid one leaves the old one in force and says why.
async fn reload(daemon: &DaemonState, logging: &Logging, overrides: &Overrides) {
    notify::reloading();
    let old = daemon.config();
    match Config::load(overrides) {
        Ok(new) => {
            for key in old.restart_only_changes(&new) {
                tracing::warn!(
                    key,
                    "config key changed; it takes effect at the next restart"
                );
            }
            if let Err(e) = logging.set_level(&new.log_level) {
                tracing::warn!(error = %e, "cannot apply the new log level");
            }
            let policy = PeerPolicy::new(&new.socket_group);
            tracing::info!(
                max_connections = new.max_connections,
                max_frame_bytes = new.max_frame_bytes,
                socket_group = %new.socket_group,
                "config reloaded"
            );
            // Socket path, state dir and mode stay as they were until a restart.
            let new = Config {
                mode: old.mode,
                socket: old.socket.clone(),
                state_dir: old.state_dir.clone(),
                socket_mode: old.socket_mode,
                ..new
            };
            daemon.replace_config(new, policy);
            daemon.events.publish(EventKind::ConfigReloaded).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload rejected; the previous config stays in force: fix the file and send SIGHUP again (`systemctl reload aifactoryd`)");
            daemon
                .events
                .publish(EventKind::ConfigRejected {
                    reason: e.to_string(),
                })
                .await;
        }
    }
    notify::ready(&ready_status(daemon));
}

pub fn ready_status(daemon: &DaemonState) -> String {
    format!(
        "serving {} (protocol {})",
        daemon.socket.display(),
        aifactory_common::PROTOCOL_VERSION
    )
}
