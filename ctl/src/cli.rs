//! The command line, as clap derives it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  failed
  2  usage error
  3  daemon unreachable
  4  not found
  5  permission denied";

/// aifactoryctl: talk to aifactoryd, the daemon that runs aifactory's agents and sessions.
#[derive(Debug, Parser)]
#[command(name = "aifactoryctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The daemon's socket (default: $AIFACTORY_SOCKET, $RUNTIME_DIRECTORY/aifactoryd.sock,
    /// /run/aifactory/aifactoryd.sock as root, else $XDG_RUNTIME_DIR/aifactory/aifactoryd.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the daemon's version, pid, uptime, protocol, paths and counters.
    Status,
    /// Print a shell completion script, e.g. `aifactoryctl completions bash > /etc/bash_completion.d/aifactoryctl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}
