//! The command line, as clap derives it.

use std::path::PathBuf;

use aifactory_common::protocol::Provider;
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
    /// Register, list, show and remove projects (git work trees agents work on).
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Print a shell completion script, e.g. `aifactoryctl completions bash > /etc/bash_completion.d/aifactoryctl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Register a git work tree. Its provider comes from the origin remote unless given.
    Add {
        path: PathBuf,
        /// Default: the directory's name.
        #[arg(long)]
        name: Option<String>,
        /// github, gitlab, azure-devops, bitbucket or unknown.
        #[arg(long, value_parser = parse_provider)]
        provider: Option<Provider>,
    },
    /// List registered projects.
    List,
    /// Show one project, by id or name.
    Show { project: String },
    /// Forget a project, by id or name. Its files are never touched.
    Remove { project: String },
    /// Import the old product's project list (default: ~/.aifactory/projects.json). Running it
    /// again imports nothing twice.
    ImportLegacy { file: Option<PathBuf> },
}

fn parse_provider(text: &str) -> Result<Provider, String> {
    Provider::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown provider `{text}`: use one of {}", names.join(", "))
    })
}
