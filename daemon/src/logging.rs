//! Where logs go and at which level: journald (structured fields such as `SESSION_ID`,
//! `PEER_UID`) under systemd or with `--log journald`, stderr otherwise. The level comes from
//! `RUST_LOG` when set, else from the config, and follows config reloads.

use std::os::fd::AsFd;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    /// journald when stderr is connected to the journal (`JOURNAL_STREAM`), else stderr.
    Auto,
    Stderr,
    Journald,
}

pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    rust_log: Option<String>,
    pub journald: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(
        "cannot connect to journald ({0}): run with --log stderr, or check that systemd-journald runs"
    )]
    Journald(std::io::Error),
    #[error("invalid RUST_LOG `{value}`: {message}")]
    RustLog { value: String, message: String },
    #[error("cannot install the logger: {0}")]
    Install(String),
}

/// Whether stderr is the journal stream systemd set up for us.
fn stderr_is_journal() -> bool {
    let Ok(expected) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    expected == format!("{}:{}", stat.st_dev, stat.st_ino)
}

pub fn init(target: LogTarget, config_level: &str) -> Result<Logging, LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = match &rust_log {
        Some(value) => EnvFilter::try_new(value).map_err(|e| LoggingError::RustLog {
            value: value.clone(),
            message: e.to_string(),
        })?,
        // Validated when the config was loaded.
        None => EnvFilter::try_new(config_level).unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let journald = match target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => stderr_is_journal(),
    };
    let journald_layer = if journald {
        // No prefix: `session_id` is stored as `SESSION_ID` (not `F_SESSION_ID`), so operators
        // can ask `journalctl SESSION_ID=...`. Our field names never collide with journald's own.
        Some(
            tracing_journald::layer()
                .map_err(LoggingError::Journald)?
                .with_field_prefix(None),
        )
    } else {
        None
    };
    let stderr_layer = (!journald).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journald_layer)
        .with(stderr_layer)
        .try_init()
        .map_err(|e| LoggingError::Install(e.to_string()))?;
    Ok(Logging {
        filter: handle,
        rust_log,
        journald,
    })
}

impl Logging {
    /// Applies a reloaded config's level, unless `RUST_LOG` pins it.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        if self.rust_log.is_some() {
            return Ok(());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.filter.reload(filter).map_err(|e| e.to_string())
    }
}
