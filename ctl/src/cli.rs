//! The command line, as clap derives it.

use std::path::PathBuf;

use aifactory_common::protocol::{Provider, TaskPhase};
use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  failed
  2  usage error
  3  daemon unreachable
  4  not found
  5  permission denied
  6  doctor: nothing failed, but some checks could not run (SKIP)";

/// aifactoryctl: talk to aifactoryd, the daemon that runs aifactory's agents and sessions.
#[derive(Debug, Parser)]
#[command(name = "aifactoryctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The daemon's socket (default: $AIFACTORY_SOCKET, $RUNTIME_DIRECTORY/aifactoryd.sock,
    /// /run/aifactory/aifactoryd.sock as root, else $XDG_RUNTIME_DIR/aifactory/aifactoryd.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The daemon of another machine: ssh://[user@]host[:port] (over the system ssh, which runs
    /// `aifactoryctl dial-stdio` there), unix:///path/to.sock, or the NAME of a host added with
    /// `hosts add` (default: $AIFACTORY_HOST, else this machine's daemon). Extra ssh options
    /// come from the ssh_config file in $AIFACTORY_SSH_CONFIG or the host's context.
    #[arg(long, global = true, value_name = "URL|NAME")]
    pub host: Option<String>,
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
    /// Terminal sessions: programs on a PTY that outlive daemon restarts.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Tasks on the board: create, run their agents, watch their progress, stop them.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Agent profiles from the daemon's config, and what is wrong with each.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Diagnose every failure of the troubleshooting guide: each check prints OK, WARN, FAIL or
    /// SKIP (could not run), what it found, and the fix. Works with or without a running
    /// daemon; exits 1 on a FAIL, else 6 when a check was skipped.
    Doctor {
        /// Where aifactory-http listens.
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7878")]
        http: String,
        /// The daemon's state directory, for the checks made without it (default: what the
        /// running daemon says, else the daemon's own default).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// The daemon's config file, likewise.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Named hosts for --host, like `docker context`: kept in
    /// $XDG_CONFIG_HOME/aifactory/hosts.toml.
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Relay stdin and stdout to this machine's daemon socket, byte for byte: the remote end
    /// of `--host ssh://…`. Prints nothing else on stdout.
    DialStdio,
    /// Print a shell completion script, e.g. `aifactoryctl completions bash > /etc/bash_completion.d/aifactoryctl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the aifactoryctl(1) man page (roff); the package build uses it.
    #[command(hide = true)]
    Manpage,
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Name a host: `hosts add build1 ssh://ann@build1.example`.
    Add {
        name: String,
        /// ssh://[user@]host[:port] or unix:///path/to.sock.
        url: String,
        /// An ssh_config file for this host's ssh (`ssh -F FILE`).
        #[arg(long, value_name = "FILE")]
        ssh_config: Option<PathBuf>,
    },
    /// Every named host with its reachability, version and counts of sessions and tasks.
    List,
    /// Forget a named host.
    Remove { name: String },
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
    /// Clone a project's origin on the host of `--host` and register it there. The origin is
    /// the project's as registered on `--from` (default: this machine's daemon).
    Clone {
        /// The project on the source host, by id or name.
        project: String,
        /// Where the clone goes: an absolute path on the target host that does not exist yet.
        #[arg(long)]
        path: PathBuf,
        /// The host that knows the project: a URL or a host NAME (default: this machine).
        #[arg(long, value_name = "URL|NAME")]
        from: Option<String>,
        /// Default: the source project's name.
        #[arg(long)]
        name: Option<String>,
    },
}

fn parse_provider(text: &str) -> Result<Provider, String> {
    Provider::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown provider `{text}`: use one of {}", names.join(", "))
    })
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Start a program in a new session; prints its id.
    New {
        /// Unique among running sessions.
        #[arg(long)]
        name: Option<String>,
        /// Working directory (default: the current one).
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// An environment variable for the program, KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// Terminal size, COLSxROWS (default 120x40).
        #[arg(long, value_parser = parse_size)]
        size: Option<(u16, u16)>,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// List sessions with their state.
    List,
    /// Show one session, by id or name.
    Show { session: String },
    /// Type TEXT into a session.
    Send {
        session: String,
        text: String,
        /// Append a newline (Enter).
        #[arg(long)]
        enter: bool,
    },
    /// Set a session's terminal size, COLSxROWS.
    Resize {
        session: String,
        #[arg(value_parser = parse_size)]
        size: (u16, u16),
    },
    /// SIGHUP and SIGTERM to the session's process group, then SIGKILL after the grace period.
    Kill {
        session: String,
        /// Succeed when the session is already gone (or never existed).
        #[arg(long)]
        ignore_missing: bool,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 5.0)]
        grace: f64,
    },
    /// Wait for a session's program to end; exits with its status.
    Wait { session: String },
    /// Forget an ended session and delete its output.
    Remove { session: String },
    /// Print a session's output from byte OFFSET (default: the oldest kept).
    Tail {
        session: String,
        #[arg(long, value_name = "OFFSET")]
        from: Option<u64>,
        /// Keep printing new output until the session ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Attach this terminal to a session: its output on screen, your keys to it. Ctrl-\
    /// detaches; the window size follows this terminal. Exits with the session's status when
    /// it ends.
    Attach { session: String },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Create a task and its git worktree (branch aifactory/SPEC from the default branch).
    Create {
        /// Project id or name.
        #[arg(long)]
        project: String,
        /// Spec id: a-z, 0-9 and `-`, e.g. 001-login-page.
        #[arg(long = "spec", value_name = "SPEC-ID")]
        spec: String,
        /// Default: the spec id.
        #[arg(long)]
        title: Option<String>,
        /// Agent profile (default: the config's default_agent).
        #[arg(long)]
        agent: Option<String>,
    },
    /// List tasks.
    List {
        /// Only this project's (id or name).
        #[arg(long)]
        project: Option<String>,
    },
    /// Show one task, by id or spec id.
    Show { task: String },
    /// Run the task's agent in a new session.
    Start { task: String },
    /// SIGTERM to every process of the task's agent, SIGKILL after the grace period.
    Stop {
        task: String,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 5.0)]
        grace: f64,
    },
    /// Stop the task's agent if it runs, and start it again, resuming the agent's
    /// conversation (its CLI's session) where it stopped.
    Restart {
        task: String,
        #[arg(long, default_value_t = 5.0)]
        grace: f64,
        /// Start the conversation over instead of resuming it.
        #[arg(long)]
        fresh: bool,
    },
    /// What the agent did, as a conversation: its messages, tool calls with their results,
    /// denials and the result line (turns, tokens, cost). With --json, one entry per line.
    Transcript {
        task: String,
        /// Keep printing new entries until the agent's run ends; exits with its status.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Every attempt of the task's agent, oldest first: when it ran, how it ended, why it
    /// failed and what it used.
    Attempts { task: String },
    /// Print the agent's terminal output (the latest attempt's session).
    Logs {
        task: String,
        /// Keep printing new output until the agent ends.
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long, value_name = "OFFSET")]
        from: Option<u64>,
    },
    /// Print task and session events as they happen.
    Watch {
        /// Only this task's events (id or spec id).
        task: Option<String>,
        /// Replay kept events numbered above SEQ first (resume after a disconnect).
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Exit 0 once the task reaches this phase (needs TASK).
        #[arg(long, value_name = "PHASE", requires = "task", value_parser = parse_phase)]
        until: Option<TaskPhase>,
    },
    /// Forget a task that does not run.
    Remove {
        task: String,
        /// Also remove its worktree (refused when it has changes, unless --force). The branch
        /// stays.
        #[arg(long)]
        prune: bool,
        /// With --prune: remove the worktree even with uncommitted changes.
        #[arg(long, requires = "prune")]
        force: bool,
    },
    /// The kanban board: one column per phase.
    Board {
        #[arg(long)]
        project: Option<String>,
    },
}

fn parse_phase(text: &str) -> Result<TaskPhase, String> {
    TaskPhase::parse(text).ok_or_else(|| {
        let names: Vec<&str> = TaskPhase::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown phase `{text}`: use one of {}", names.join(", "))
    })
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Every profile: kind, command, policies, problems.
    List,
    /// Exit 1 when any profile cannot run, listing each with its problems and fix.
    Check,
    /// One profile and the cage its tasks run in: sandbox mode, Landlock, every rule.
    Show {
        /// The profile's name.
        name: String,
    },
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

pub fn parse_size(text: &str) -> Result<(u16, u16), String> {
    let parsed = text
        .split_once(['x', 'X'])
        .and_then(|(c, r)| Some((c.parse::<u16>().ok()?, r.parse::<u16>().ok()?)))
        .filter(|(c, r)| *c > 0 && *r > 0);
    parsed.ok_or_else(|| format!("`{text}` is not a size like 120x40"))
}
