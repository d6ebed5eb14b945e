//! aifactoryd: the daemon that owns every session, agent, project and task, and serves
//! `aifactoryctl` and `aifactory-http` over one Unix socket.
//!
//! [`run`] is the whole daemon; `main` only parses the command line, loads the config and sets
//! up logging.

pub mod cli;
pub mod config;
mod connection;
mod events;
mod handlers;
pub mod listener;
pub mod logging;
mod notify;
mod peer;
mod server;
mod state;

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;

pub use config::{Config, ConfigError, Overrides};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Listen(#[from] listener::ListenError),
    #[error(
        "cannot use state directory {}: {source}: create it with write access for uid {uid}, or pass --state-dir",
        path.display()
    )]
    StateDir {
        path: PathBuf,
        uid: u32,
        source: std::io::Error,
    },
    #[error("cannot set up signal handling: {0}")]
    Signals(std::io::Error),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(
    config: Config,
    overrides: Overrides,
    logging: logging::Logging,
) -> Result<(), DaemonError> {
    prepare_state_dir(&config)?;
    let policy = peer::PeerPolicy::new(&config.socket_group);
    let listener = listener::open(&config, &policy).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        mode = config.mode.as_str(),
        socket = %listener.path.display(),
        state_dir = %config.state_dir.display(),
        journald = logging.journald,
        "aifactoryd started"
    );
    let daemon = Arc::new(state::DaemonState::new(
        config,
        policy,
        listener.path.clone(),
    ));
    let _watchdog = notify::spawn_watchdog();
    notify::ready(&server::ready_status(&daemon));
    server::serve(daemon, listener, &logging, &overrides)
        .await
        .map_err(DaemonError::Signals)
}

/// Creates the state directory (0700) and proves it writable by writing a file.
fn prepare_state_dir(config: &Config) -> Result<(), DaemonError> {
    let path = &config.state_dir;
    let err = |source| DaemonError::StateDir {
        path: path.clone(),
        uid: nix::unistd::geteuid().as_raw(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(err)?;
    let probe = path.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}
