//! The daemon's command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use aifactory_common::logging::LogTarget;

/// `--version` text: the package version and the protocol it speaks.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (protocol 10)");

/// aifactoryd: runs AI coding agents in supervised terminal sessions and serves aifactoryctl.
///
/// With no arguments and no config it runs in the foreground in user mode: socket in
/// $XDG_RUNTIME_DIR/aifactory/, state in ~/.local/state/aifactory (as root: /run/aifactory and
/// /var/lib/aifactory). SIGTERM stops it, SIGHUP reloads the config.
#[derive(Debug, Parser)]
#[command(name = "aifactoryd", version = VERSION)]
pub struct Cli {
    /// Config file (default: $CONFIGURATION_DIRECTORY/aifactoryd.toml under systemd,
    /// /etc/aifactory/aifactoryd.toml as root, else $XDG_CONFIG_HOME/aifactory/aifactoryd.toml;
    /// optional).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Control socket path (also $AIFACTORY_SOCKET).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// State directory (also $AIFACTORY_STATE_DIR).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where logs go.
    #[arg(long, value_enum, default_value = "auto")]
    pub log: LogTarget,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(subcommand)]
    pub command: Option<DaemonCommand>,
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Bring the state database's schema up to date and exit (the daemon also does this at
    /// every start). Takes the same lock as a starting daemon.
    Migrate {
        /// Show applied and pending migrations with checksums, the lock holder and the newest
        /// backup; change nothing.
        #[arg(long, conflicts_with = "dry_run")]
        status: bool,
        /// Say what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --status: one JSON object (for `aifactoryctl doctor`).
        #[arg(long, requires = "status")]
        json: bool,
    },
    /// Print, as JSON, what a daemon started this way would find: config, agent profiles,
    /// state directory, migrations, panes root (used by `aifactoryctl doctor`).
    Check,
    /// Print the aifactoryd(8) man page (roff) and exit; the package build uses it.
    #[command(hide = true)]
    Manpage,
}

/// Writes the aifactoryd(8) man page, generated from this command line.
pub fn manpage(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command())
        .section("8")
        .manual("aifactory")
        .render(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_the_protocol() {
        assert!(super::VERSION.ends_with(&format!(
            "(protocol {})",
            aifactory_common::PROTOCOL_VERSION
        )));
    }
}
