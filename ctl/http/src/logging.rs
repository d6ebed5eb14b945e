//! Where logs go: journald (structured fields such as `SESSION_ID`) when stderr is the journal
//! or with `--log journald`, stderr otherwise. `RUST_LOG` wins over the config's `log_level`.

use std::os::fd::AsFd;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    /// journald when stderr is connected to the journal (`JOURNAL_STREAM`), else stderr.
    Auto,
    Stderr,
    Journald,
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

pub fn init(target: LogTarget, level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()) {
        Some(value) => EnvFilter::try_new(&value)
            .map_err(|e| anyhow::anyhow!("invalid RUST_LOG `{value}`: {e}"))?,
        None => EnvFilter::try_new(level).map_err(|e| {
            anyhow::anyhow!("invalid log_level `{level}` in the config: {e}; e.g. \"info\"")
        })?,
    };
    let journald = match target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => stderr_is_journal(),
    };
    let journald_layer = if journald {
        Some(tracing_journald::layer().map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to journald ({e}): run with --log stderr, or check that systemd-journald runs"
            )
        })?)
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
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
