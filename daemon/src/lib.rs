//! aifactoryd: the daemon that owns every session, agent, project and task, and serves
//! `aifactoryctl` and `aifactory-http` over one Unix socket.
//!
//! [`run`] is the whole daemon; [`entry::main`] parses the command line, loads the config, sets
//! up logging and prints what the library returns, for the shipped `aifactoryd` (no hooks) and
//! the test suite's `aifactoryd-hooked` alike.
//!
//! Its modules, by responsibility (none imports one that imports it back):
//! - the socket: `server` (accept and signals in one loop) joins `listener`, `admission` (the
//!   connection budget), `connection` (one client's handshake, admission, requests and drain)
//!   and `handlers` (one module per request family, each turning its domain's errors into the
//!   wire's `ErrorReply`), which share only `context` (what a handler may use of its
//!   connection);
//! - sessions: `sessions` (the registry: records, create, control, ending and re-adoption of
//!   the pane monitors of the `aifactory-pane` crate) and `panes` (the panes root);
//! - agents: `supervisor` (its API, the per-task runner, output parsing, stall and prompt
//!   activity, whole-tree kills, worktrees), `tasks` (the task record: every statement a named
//!   function), `progress`, `proctree`, `agents` (profiles and their checks), `git`;
//! - state: `store` (SQLite), `migrate` (list, ledger, lock, backups, verification, reports),
//!   `events` (numbered, replayable), `projects`, `config`, `state` (what the daemon holds);
//! - the edges of the process: `notify` (sd_notify), `peer` (who is calling), `check` (the
//!   doctor's offline facts), `doctor` (the doctor's facts as the running daemon sees them),
//!   `cli`, `entry` (what a binary's `main` runs), `hooks` (the
//!   extension points only a test build fills in).

mod adapters;
mod admission;
mod agents;
mod ansi;
mod attempts;
mod cage;
mod cgroups;
pub mod check;
pub mod cli;
pub mod config;
mod connection;
mod context;
mod credentials;
mod doctor;
pub mod entry;
mod events;
mod git;
mod handlers;
mod hooks;
mod host_load;
pub mod listener;
pub mod migrate;
mod notify;
mod panes;
mod peer;
mod proctree;
mod progress;
mod projects;
mod server;
mod sessions;
mod sharing;
mod state;
mod storage;
pub mod store;
mod supervisor;
mod tasks;
mod transcript;

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;

pub use config::{Config, ConfigError, Overrides};
pub use hooks::{Hooks, OnStart};

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
    #[error("the start hook failed: {0}: fix the build that passed it")]
    StartHook(std::io::Error),
    #[error(transparent)]
    Migrate(#[from] Box<migrate::MigrateError>),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(
        "the database {} is read-only and migrations {pending} are pending, so this aifactoryd cannot use it: {reason}",
        file.display()
    )]
    ReadOnlyPending {
        file: PathBuf,
        pending: String,
        reason: String,
    },
    #[error(transparent)]
    Panes(#[from] panes::PanesError),
    #[error("cannot re-adopt the running sessions: {0}")]
    AdoptSessions(#[source] sessions::SessionError),
    #[error("cannot re-adopt the running tasks: {0}")]
    AdoptTasks(#[source] tasks::TaskError),
    #[error("cannot start the store thread: {0}")]
    StoreThread(std::io::Error),
    #[error(transparent)]
    Monitor(#[from] aifactory_pane::launch::LaunchError),
}

impl From<migrate::MigrateError> for DaemonError {
    fn from(e: migrate::MigrateError) -> Self {
        DaemonError::Migrate(Box::new(e))
    }
}

/// Runs the daemon until SIGTERM or SIGINT, with `hooks` (none: [`Hooks::default`]).
pub async fn run(
    config: Config,
    overrides: Overrides,
    logging: aifactory_common::logging::Logging,
    hooks: Hooks,
) -> Result<(), DaemonError> {
    let known = migrate::Known::new(&hooks);
    if let Some(on_start) = hooks.on_start {
        on_start().map_err(DaemonError::StartHook)?;
    }
    // Before anything else: without it no session can start (and see launch.rs for why it is
    // held open rather than found again at each start).
    let launcher = aifactory_pane::launch::Launcher::beside_current_exe()?;
    tracing::debug!(path = %launcher.path().display(), "pane monitor binary");
    let state_writable = prepare_state_dir(&config)?;
    // Migrations block; they run on a thread of their own that ends with them, rather than on
    // the runtime's blocking pool, whose idle thread would wake the daemon 10 s later.
    let (store, schema_version) = {
        let config = config.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("aifactoryd-migrate".into())
            .spawn(move || {
                let _ = tx.send(open_store(&config, state_writable, known));
            })
            .map_err(DaemonError::StoreThread)?;
        notify::extending_start("opening the state database (applying migrations)", rx)
            .await
            .map_err(|_| {
                DaemonError::StoreThread(std::io::Error::other("the migration thread panicked"))
            })??
    };
    let panes = panes::choose(&panes::candidates(
        config.panes_dir.as_deref(),
        &aifactory_common::paths::process_env,
    ))?;
    let events = Arc::new(events::EventBus::open(store.clone()).await?);
    let sessions = Arc::new(sessions::Sessions::new(
        store.clone(),
        events.clone(),
        panes,
        launcher,
        config.pane_log_max,
    ));
    let tasks = Arc::new(supervisor::Supervisor::new(
        store.clone(),
        events.clone(),
        sessions.clone(),
        Arc::new(config.clone()),
        hooks.poll_progress,
        hooks
            .landlock_abi
            .map_or_else(cage::Support::probe, cage::Support::simulated),
        cgroups::Cgroups::probe(),
    ));
    let policy = peer::PeerPolicy::new(&config.socket_group);
    let listener = listener::open(&config, &policy).await?;
    // Re-adopt the sessions that outlived the previous daemon before anyone can ask about them.
    sessions
        .adopt_all()
        .await
        .map_err(DaemonError::AdoptSessions)?;
    tasks.log_problems();
    tasks.adopt_all().await.map_err(DaemonError::AdoptTasks)?;
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
        state::Parts {
            store,
            schema_version,
            events,
            sessions,
            tasks,
        },
    ));
    let _watchdog = notify::spawn_watchdog();
    // `serve` says READY=1 once its signal handlers are in place.
    server::serve(daemon, listener, &logging, &overrides)
        .await
        .map_err(DaemonError::Signals)
}

/// Creates the state directory (0700) and tells whether it takes writes, by writing a file.
/// A directory that exists but refuses writes is not fatal here: the store then serves reads.
fn prepare_state_dir(config: &Config) -> Result<Result<(), std::io::Error>, DaemonError> {
    let path = &config.state_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| DaemonError::StateDir {
            path: path.clone(),
            uid: nix::unistd::geteuid().as_raw(),
            source,
        })?;
    let probe = path.join(format!(".probe-{}", std::process::id()));
    Ok(std::fs::write(&probe, b"probe").and_then(|()| std::fs::remove_file(&probe)))
}

/// Opens the database and brings its schema up to date under the migration lock. A database
/// that cannot take writes is still served read-only when its schema is current.
fn open_store(
    config: &Config,
    state_writable: Result<(), std::io::Error>,
    known: migrate::Known,
) -> Result<(store::Store, u32), DaemonError> {
    let state_dir = &config.state_dir;
    let file = state_dir.join(store::DB_FILE);
    let mut lock = match (
        migrate::lock(state_dir, config.migrate_lock_timeout),
        &state_writable,
    ) {
        (Ok(lock), _) => Some(lock),
        // Nobody can migrate in a directory nobody can write; reading needs no lock.
        (Err(migrate::MigrateError::Io { .. }), Err(_)) => None,
        (Err(e), _) => return Err(e.into()),
    };
    let (mut conn, readonly) = store::open(&file)?;
    let version = match (&readonly, lock.as_mut()) {
        (None, Some(lock)) => {
            let outcome = migrate::migrate(&mut conn, &file, state_dir, lock, known)?;
            for (m, took) in &outcome.applied {
                tracing::info!(
                    version = m.version,
                    name = m.name,
                    duration_ms = took.as_millis() as u64,
                    "migration applied"
                );
            }
            if outcome.from != outcome.to {
                tracing::info!(from = outcome.from, to = outcome.to, backup = ?outcome.backup, "database migrated");
            }
            outcome.to
        }
        (reason, _) => {
            let reason = reason.clone().unwrap_or_else(|| match &state_writable {
                Err(e) => storage::refusal(state_dir, e),
                Ok(()) => format!(
                    "the migration lock in {} cannot be taken: make it writable by uid {}",
                    state_dir.display(),
                    nix::unistd::geteuid()
                ),
            });
            let (current, pending) = migrate::plan(&conn, &file, state_dir, known)?;
            if !pending.is_empty() {
                return Err(DaemonError::ReadOnlyPending {
                    file,
                    pending: pending
                        .iter()
                        .map(|m| format!("{:04}_{}", m.version, m.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                    reason,
                });
            }
            migrate::verify(&conn, &file, state_dir, known)?;
            tracing::warn!(file = %file.display(), "serving the database read-only: {reason}");
            current
        }
    };
    drop(lock);
    let readonly = readonly.or_else(|| {
        state_writable.err().map(|e| {
            format!(
                "{}, then restart aifactoryd",
                storage::refusal(state_dir, &e)
            )
        })
    });
    let store = store::Store::start(conn, file, readonly).map_err(DaemonError::StoreThread)?;
    Ok((store, version))
}
