//! Where the daemon's and the HTTP shim's logs go, set up once for both (cargo feature
//! `logging`, so `aifactoryctl` does not link tracing-subscriber): journald, with structured
//! fields such as `SESSION_ID`, when stderr is the journal stream or with `--log journald`;
//! stderr otherwise. `RUST_LOG` wins over the configured level; a config reload may change the
//! level ([`Logging::set_level`]) unless `RUST_LOG` pins it.

use std::os::fd::AsFd;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// `--log`: where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    /// journald when stderr is connected to the journal (`JOURNAL_STREAM`), else stderr.
    Auto,
    Stderr,
    Journald,
}

/// The installed logger, kept to change its level later.
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    rust_log: Option<String>,
    /// Whether logs go to journald (else stderr).
    pub journald: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(
        "cannot connect to journald ({0}): run with --log stderr, or check that systemd-journald runs"
    )]
    Journald(std::io::Error),
    #[error("invalid RUST_LOG `{value}`: {source}")]
    RustLog {
        value: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("invalid log_level `{value}` in the config: {source}; e.g. \"info\"")]
    Level {
        value: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot install the logger: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
    #[error("cannot change the log level: {0}")]
    Reload(#[from] reload::Error),
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

/// The filter for a configured level (`info`, `aifactoryd=debug,warn`, ...).
fn level_filter(level: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::try_new(level).map_err(|source| LoggingError::Level {
        value: level.to_string(),
        source,
    })
}

/// Installs the process-wide logger; call once, before anything logs.
pub fn init(target: LogTarget, config_level: &str) -> Result<Logging, LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = match &rust_log {
        Some(value) => EnvFilter::try_new(value).map_err(|source| LoggingError::RustLog {
            value: value.clone(),
            source,
        })?,
        None => level_filter(config_level)?,
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
        .try_init()?;
    Ok(Logging {
        filter: handle,
        rust_log,
        journald,
    })
}

impl Logging {
    /// Applies a reloaded config's level, unless `RUST_LOG` pins it.
    pub fn set_level(&self, level: &str) -> Result<(), LoggingError> {
        if self.rust_log.is_some() {
            return Ok(());
        }
        Ok(self.filter.reload(level_filter(level)?)?)
    }
}
