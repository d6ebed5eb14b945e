//! Each task's cage: what its agent may touch, built from the task and its profile, decided
//! here and applied by the pane monitor's stub (Landlock, [`aifactory_pane::Cage`]) right
//! before the agent's program executes.
//!
//! - **Read-write:** the task's worktree; of the project's git directory what a commit from
//!   the worktree writes (`objects/`, the worktree's own `worktrees/<name>/`, and the task
//!   branches' `refs/heads/aifactory/` and `logs/refs/heads/aifactory/`); a per-task home,
//!   cache and tmp (`<project>/.aifactory/cages/<task id>/`, set as `HOME`, `XDG_CACHE_HOME`
//!   and `TMPDIR`); the terminal and `/dev/null`-like devices; the profile's `read_write`.
//! - **Read-only:** the system (`/usr`, `/etc`, ...), every directory on the agent's `PATH`
//!   and its program's own directory (toolchains), the rest of the project (every entry of
//!   its directory but `.aifactory/`, and its git directory), the profile's `read_only`.
//! - **Nothing else:** so not the daemon's state directory (database, backups, token), its
//!   panes, other tasks' worktrees, other projects, `/tmp`, the users' homes. A rule that
//!   would cover the state directory, the socket or the panes root is left out and said so.
//!
//! The control socket cannot be refused by Landlock before ABI 9 (a pathname socket's
//! `connect`); the daemon refuses a caged task's processes on it itself ([`SocketGuard`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aifactory_common::protocol::{RunMode, SandboxInfo};
use aifactory_common::sync::lock;
use aifactory_pane::{Cage, CageMode};
use serde::{Deserialize, Serialize};

/// The profile's `sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// The task does not start unless its agent is confined.
    Required,
    /// Confined as far as the kernel can; runs (and says so) where it cannot.
    BestEffort,
    /// Not confined.
    Off,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Required => "required",
            SandboxMode::BestEffort => "best-effort",
            SandboxMode::Off => "off",
        }
    }

    /// The default: `required` for the system daemon, `best-effort` for a user's.
    pub fn default_for(mode: RunMode) -> SandboxMode {
        match mode {
            RunMode::System => SandboxMode::Required,
            RunMode::User => SandboxMode::BestEffort,
        }
    }
}

/// What a profile says about its cage (the `[agents.NAME]` keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CageSettings {
    /// `None`: the run mode's default.
    pub sandbox: Option<SandboxMode>,
    pub read_write: Vec<PathBuf>,
    pub read_only: Vec<PathBuf>,
    /// `Some`: outgoing TCP only to these ports.
    pub connect_ports: Option<Vec<u16>>,
    /// The agent may use the daemon's control socket.
    pub allow_control_socket: bool,
}

/// What this kernel's Landlock can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// 0 when there is no Landlock.
    pub abi: u32,
    /// Why there is none, or what is missing.
    pub note: Option<String>,
    /// The ABI came from a test hook ([`crate::Hooks::landlock_abi`]), not the kernel.
    pub simulated: bool,
}

impl Support {
    /// What a test hook says instead of the kernel (0: no Landlock).
    pub fn simulated(abi: u32) -> Support {
        Support {
            abi,
            note: (abi == 0).then(|| "simulated by a test hook".to_string()),
            simulated: true,
        }
    }

    /// Asks the kernel.
    pub fn probe() -> Support {
        // SAFETY: with a null attribute and size 0, LANDLOCK_CREATE_RULESET_VERSION only
        // returns the ABI version; nothing is created.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                1u32,
            )
        };
        if abi > 0 {
            return Support {
                abi: abi as u32,
                note: None,
                simulated: false,
            };
        }
        let note = match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOSYS) => {
                "this kernel has no Landlock (CONFIG_SECURITY_LANDLOCK): use Linux 5.13 or newer"
                    .to_string()
            }
            Some(libc::EOPNOTSUPP) => "Landlock is built in but not enabled: add `landlock` to the kernel's `lsm=` boot parameter".to_string(),
            Some(libc::EPERM) => "its system calls are refused (EPERM), most likely by a seccomp filter: under systemd add `SystemCallFilter=landlock_create_ruleset landlock_add_rule landlock_restrict_self` to the unit (the packaged one has it)".to_string(),
            _ => format!("Landlock does not answer: {}", std::io::Error::last_os_error()),
        };
        Support {
            abi: 0,
            note: Some(note),
            simulated: false,
        }
    }

    /// One sentence: the ABI and what it lacks of the cage.
    pub fn describe(&self) -> String {
        let simulated = if self.simulated {
            " (simulated by a test hook)".to_string()
        } else {
            String::new()
        };
        match (self.abi, &self.note) {
            (0, Some(note)) => format!("unavailable: {note}"),
            (0, None) => format!("unavailable{simulated}"),
            (abi, _) => {
                let missing = self.missing(true);
                if missing.is_empty() {
                    format!("Landlock ABI {abi}{simulated}: everything the cage uses")
                } else {
                    format!(
                        "Landlock ABI {abi}{simulated}: partial, lacks {}",
                        missing.join(", ")
                    )
                }
            }
        }
    }

    /// What of the cage this ABI cannot enforce (`ports`: whether TCP is to be limited).
    fn missing(&self, ports: bool) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (needs, what) in [
            (2, "renames across directories (ABI 2)"),
            (3, "truncation (ABI 3)"),
            (4, "TCP port limits (ABI 4)"),
            (5, "device ioctls (ABI 5)"),
            (6, "signal and abstract-socket scopes (ABI 6)"),
        ] {
            if self.abi < needs && (needs != 4 || ports) {
                out.push(what);
            }
        }
        out
    }
}

/// Why a task's agent cannot start confined as its profile requires.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CageError {
    #[error(
        "agent `{profile}` needs sandbox = \"required\" but Landlock is {reason}; fix the kernel, or set sandbox = \"best-effort\" (runs unconfined and says so) or \"off\" in [agents.{profile}]"
    )]
    Unavailable { profile: String, reason: String },
    #[error(
        "agent `{profile}` limits outgoing TCP (connect_ports) with sandbox = \"required\", but this kernel's Landlock (ABI {abi}) cannot limit TCP (ABI 4 can): use a newer kernel, remove connect_ports, or set sandbox = \"best-effort\""
    )]
    NoNetRules { profile: String, abi: u32 },
    #[error("cannot prepare the task's cage: {what} {}: {reason}; check that the daemon's user can write there", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// What one task's start needs to know to build its cage.
pub struct CageInputs<'a> {
    pub profile: &'a str,
    pub settings: &'a CageSettings,
    pub run_mode: RunMode,
    pub support: &'a Support,
    pub task_id: &'a str,
    pub worktree: &'a Path,
    pub project: &'a Path,
    /// The agent's programs (`command[0]`, and under the test override the program its shell
    /// command starts with) and the PATH they are looked up in.
    pub programs: &'a [&'a str],
    pub path_var: Option<&'a OsStr>,
    /// The CLI's login file, when that is where its key comes from.
    pub login_file: Option<&'a Path>,
    /// The agent's environment as the profile sets it: a CLI's state directory named there
    /// ([`CLI_STATE_VARS`]) is read-write.
    pub profile_env: &'a [(String, String)],
    /// What no rule may cover: the state directory, the socket, the panes root.
    pub protected: &'a [PathBuf],
}

/// A task's cage as decided: the rules (`None`: unconfined), the variables that point the
/// agent at its own home, cache and tmp, and the sentence for its start log and event.
#[derive(Debug, Clone)]
pub struct Plan {
    pub cage: Option<Cage>,
    pub env: Vec<(String, String)>,
    pub summary: String,
    /// Its first clause: confined by what (and what is not enforced), or why not confined.
    pub headline: String,
    /// The daemon refuses this task's processes on its socket.
    pub guard_socket: bool,
}

/// System directories the agent may read and execute (those that exist).
const SYSTEM_READ_ONLY: [&str; 14] = [
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/nix/store",
    "/snap",
    "/proc",
    "/sys",
    "/run/systemd/resolve",
];

/// Devices the agent may write (and use with ioctls): the terminal, the null and random
/// devices. Not `/dev/shm`, which other tasks could share.
const DEVICES: [&str; 8] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

/// Variables that name a CLI's own state directory (its config, sessions, logs): one the
/// profile's `env` sets is where that CLI must read and write, so it is read-write.
pub const CLI_STATE_VARS: [&str; 2] = ["CLAUDE_CONFIG_DIR", "CODEX_HOME"];

/// Where a task's own home, cache and tmp live, under its project.
pub fn task_dir(project: &Path, task_id: &str) -> PathBuf {
    project.join(".aifactory/cages").join(task_id)
}

/// What a start of a profile's task does on this kernel, before any path is looked at.
enum Decision {
    /// `sandbox = "off"`.
    Off,
    /// `best-effort` without Landlock: why there is none.
    Unconfined { reason: String },
    /// Confined, but for what this ABI cannot enforce.
    Confined { missing: Vec<&'static str> },
}

/// The profile's mode and what it decides here; `Err` where `required` cannot be met.
fn decide(
    profile: &str,
    s: &CageSettings,
    run_mode: RunMode,
    support: &Support,
) -> Result<(SandboxMode, Decision), CageError> {
    let mode = s
        .sandbox
        .unwrap_or_else(|| SandboxMode::default_for(run_mode));
    let limited = s.connect_ports.is_some();
    let decision = match mode {
        SandboxMode::Off => Decision::Off,
        _ if support.abi == 0 && mode == SandboxMode::Required => {
            return Err(CageError::Unavailable {
                profile: profile.to_string(),
                reason: support.describe(),
            });
        }
        _ if support.abi == 0 => Decision::Unconfined {
            reason: support.describe(),
        },
        _ if mode == SandboxMode::Required && limited && support.abi < 4 => {
            return Err(CageError::NoNetRules {
                profile: profile.to_string(),
                abi: support.abi,
            });
        }
        _ => Decision::Confined {
            missing: support.missing(limited),
        },
    };
    Ok((mode, decision))
}

/// Decides the cage of one start of a task's agent, and prepares its directories.
pub fn plan(inputs: &CageInputs<'_>) -> Result<Plan, CageError> {
    let s = inputs.settings;
    let (mode, decision) = decide(inputs.profile, s, inputs.run_mode, inputs.support)?;
    let socket_note = if s.allow_control_socket {
        "control socket: allowed (allow_control_socket = true)"
    } else {
        "control socket: refused by the daemon"
    };
    let unconfined = |summary: String| Plan {
        cage: None,
        env: Vec::new(),
        headline: summary.clone(),
        summary,
        guard_socket: !s.allow_control_socket && mode != SandboxMode::Off,
    };
    let missing = match decision {
        Decision::Off => {
            return Ok(Plan {
                guard_socket: false,
                ..unconfined("NOT confined: sandbox = \"off\" in the profile".into())
            });
        }
        Decision::Unconfined { reason } => {
            return Ok(unconfined(format!(
                "NOT confined: Landlock is {reason}; sandbox = \"best-effort\" runs the agent anyway; {socket_note}"
            )));
        }
        Decision::Confined { missing } => missing,
    };
    let support = inputs.support;

    let own = task_dir(inputs.project, inputs.task_id);
    let (home, cache, tmp) = (own.join("home"), own.join("cache"), own.join("tmp"));
    for dir in [&home, &cache, &tmp] {
        make_private_dir(dir)?;
    }
    let mut rw = Rules::new(inputs.protected);
    let mut ro = Rules::new(inputs.protected);
    rw.add(inputs.worktree);
    rw.add(&own);
    ro.add(Path::new("/dev"));
    for device in DEVICES {
        rw.add(Path::new(device));
    }
    if let Some(git) = git_dirs(inputs.worktree) {
        for dir in [
            git.common.join("refs/heads/aifactory"),
            git.common.join("logs/refs/heads/aifactory"),
        ] {
            // A commit on the task's branch writes here; made now, so no rule needs the
            // right to create it in refs/heads, where the other branches are.
            make_dir(&dir)?;
        }
        rw.add(&git.worktree);
        rw.add(&git.common.join("objects"));
        rw.add(&git.common.join("refs/heads/aifactory"));
        rw.add(&git.common.join("logs/refs/heads/aifactory"));
        ro.add(&git.common);
    }
    let mut env = vec![
        ("HOME".to_string(), home.to_string_lossy().into_owned()),
        (
            "XDG_CACHE_HOME".to_string(),
            cache.to_string_lossy().into_owned(),
        ),
        ("TMPDIR".to_string(), tmp.to_string_lossy().into_owned()),
    ];
    if let Some(login) = inputs.login_file {
        link_login(login, &home)?;
        rw.add(login);
    }
    for (var, value) in inputs.profile_env {
        if CLI_STATE_VARS.contains(&var.as_str()) && Path::new(value).is_absolute() {
            // Made now when missing, as the CLI would: a rule needs the directory to exist.
            make_dir(Path::new(value))?;
            rw.add(Path::new(value));
        }
    }
    for path in &s.read_write {
        rw.add(path);
    }

    for path in SYSTEM_READ_ONLY {
        ro.add(Path::new(path));
    }
    if let Some(path_var) = inputs.path_var {
        for dir in std::env::split_paths(path_var).filter(|d| d.is_absolute()) {
            for dir in path_dirs(&dir) {
                ro.add(dir);
            }
        }
    }
    for program in inputs
        .programs
        .iter()
        .filter_map(|p| crate::agents::find_program(p, inputs.path_var))
        .filter_map(|p| p.canonicalize().ok())
    {
        for dir in program_dirs(&program) {
            ro.add(dir);
        }
    }
    if let Ok(entries) = std::fs::read_dir(inputs.project) {
        for entry in entries.flatten() {
            if entry.file_name() != ".aifactory" {
                ro.add(&entry.path());
            }
        }
    }
    for path in &s.read_only {
        ro.add(path);
    }

    let cage = Cage {
        mode: match mode {
            SandboxMode::Required => CageMode::Required,
            _ => CageMode::BestEffort,
        },
        read_write: rw.paths.clone(),
        read_only: ro.paths.clone(),
        connect_ports: s.connect_ports.clone(),
    };
    let mut summary = format!(
        "confined by {} (sandbox = \"{}\"",
        support.describe(),
        mode.as_str()
    );
    if !missing.is_empty() {
        let _ = write!(summary, "; NOT enforced here: {}", missing.join(", "));
    }
    summary.push(')');
    let headline = summary.clone();
    let _ = write!(
        summary,
        "; read-write: {}; read-only: {}; tcp: {}; {socket_note}",
        list(&cage.read_write),
        list(&cage.read_only),
        match &cage.connect_ports {
            None => "any port".to_string(),
            Some(p) if p.is_empty() => "none".to_string(),
            Some(p) => format!(
                "only to port {}",
                p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    );
    let skipped: Vec<String> = rw.skipped.iter().chain(&ro.skipped).cloned().collect();
    if !skipped.is_empty() {
        let _ = write!(summary, "; left out: {}", skipped.join("; "));
    }
    env.sort();
    Ok(Plan {
        cage: Some(cage),
        env,
        summary,
        headline,
        guard_socket: !s.allow_control_socket,
    })
}

/// What `agents show` needs to describe a profile's cage.
pub struct Described<'a> {
    pub profile: &'a str,
    pub settings: &'a CageSettings,
    pub run_mode: RunMode,
    pub support: &'a Support,
    pub program: Option<&'a str>,
    pub path_var: Option<&'a OsStr>,
}

/// A profile's cage as rules with each task's paths as placeholders, and what a start of one
/// of its tasks does on this machine.
pub fn describe(d: &Described<'_>) -> SandboxInfo {
    let s = d.settings;
    let support = d.support;
    let mode = s
        .sandbox
        .unwrap_or_else(|| SandboxMode::default_for(d.run_mode));
    let outcome = match decide(d.profile, s, d.run_mode, support) {
        Err(refused) => format!("refused: {refused}"),
        Ok((_, Decision::Off)) => "runs NOT confined: sandbox = \"off\"".to_string(),
        Ok((_, Decision::Unconfined { reason })) => {
            format!("runs NOT confined: Landlock is {reason}")
        }
        Ok((_, Decision::Confined { missing })) if missing.is_empty() => {
            "runs confined".to_string()
        }
        Ok((_, Decision::Confined { missing })) => format!(
            "runs confined, but NOT enforced here: {}",
            missing.join(", ")
        ),
    };
    let mut read_write: Vec<String> = [
        "{worktree}",
        "{project}/.aifactory/cages/{task_id} (HOME, XDG_CACHE_HOME, TMPDIR)",
        "{git}/objects",
        "{git}/worktrees/<the task's worktree>",
        "{git}/refs/heads/aifactory",
        "{git}/logs/refs/heads/aifactory",
        "/dev/null, zero, full, random, urandom, tty, ptmx, pts (the rest of /dev: read-only)",
        "the CLI's login file, when the key comes from it",
        "the CLI's state directory, when the profile's env sets CLAUDE_CONFIG_DIR or CODEX_HOME",
    ]
    .map(String::from)
    .to_vec();
    read_write.extend(s.read_write.iter().map(|p| p.display().to_string()));
    let mut read_only: Vec<String> = SYSTEM_READ_ONLY
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| p.to_string())
        .collect();
    if let Some(path_var) = d.path_var {
        for dir in std::env::split_paths(path_var).filter(|d| d.is_absolute() && d.exists()) {
            for dir in path_dirs(&dir) {
                read_only.push(format!("{} (PATH)", dir.display()));
            }
        }
    }
    if let Some(program) = d
        .program
        .and_then(|p| crate::agents::find_program(p, d.path_var))
        .and_then(|p| p.canonicalize().ok())
    {
        for dir in program_dirs(&program) {
            read_only.push(format!("{} (the agent's program)", dir.display()));
        }
    }
    read_only.push("{project}/* but .aifactory/, and {git}".into());
    read_only.extend(s.read_only.iter().map(|p| p.display().to_string()));
    SandboxInfo {
        mode: mode.as_str().to_string(),
        from_profile: s.sandbox.is_some(),
        landlock: support.describe(),
        outcome,
        read_write,
        read_only,
        connect_ports: s.connect_ports.clone(),
        allow_control_socket: s.allow_control_socket,
    }
}

/// What a `PATH` entry opens: itself, and for a version manager's `shims` directory (pyenv,
/// rbenv, asdf, mise) the manager's root above it, which its shims execute into.
fn path_dirs(entry: &Path) -> Vec<&Path> {
    let mut dirs = vec![entry];
    if entry.file_name() == Some(OsStr::new("shims"))
        && let Some(root) = entry.parent()
    {
        dirs.push(root);
    }
    dirs
}

/// What an agent's program needs to read besides the system: its own directory, and for a
/// program inside an npm tree the whole outermost `node_modules`, where an npm-installed CLI
/// keeps its native binary in a package beside its launcher (codex's `@openai/codex-linux-x64`).
fn program_dirs(program: &Path) -> Vec<&Path> {
    let mut dirs: Vec<&Path> = program.parent().into_iter().collect();
    if let Some(modules) = program
        .ancestors()
        .filter(|a| a.file_name() == Some(OsStr::new("node_modules")))
        .last()
    {
        dirs.push(modules);
    }
    dirs
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Paths of one kind of rule: existing ones, each once, none that would cover what is
/// protected (those are listed in `skipped` with why).
struct Rules<'a> {
    paths: Vec<PathBuf>,
    skipped: Vec<String>,
    protected: &'a [PathBuf],
}

impl<'a> Rules<'a> {
    fn new(protected: &'a [PathBuf]) -> Rules<'a> {
        Rules {
            paths: Vec::new(),
            skipped: Vec::new(),
            protected,
        }
    }

    fn add(&mut self, path: &Path) {
        let Ok(real) = path.canonicalize() else {
            return;
        };
        if let Some(hit) = self
            .protected
            .iter()
            .find(|p| p.starts_with(&real) || real.starts_with(p))
        {
            self.skipped.push(format!(
                "{} (it would expose {}, which no agent may touch)",
                real.display(),
                hit.display()
            ));
            return;
        }
        if !self.paths.contains(&real) {
            self.paths.push(real);
        }
    }
}

/// The git directories of a worktree made by `git worktree add`: its own
/// (`<common>/worktrees/<name>`) and the repository's common one.
struct GitDirs {
    worktree: PathBuf,
    common: PathBuf,
}

fn git_dirs(worktree: &Path) -> Option<GitDirs> {
    let text = std::fs::read_to_string(worktree.join(".git")).ok()?;
    let own = PathBuf::from(text.trim().strip_prefix("gitdir:")?.trim());
    let own = if own.is_absolute() {
        own
    } else {
        worktree.join(own)
    };
    let common = std::fs::read_to_string(own.join("commondir")).ok()?;
    let common = own.join(common.trim()).canonicalize().ok()?;
    Some(GitDirs {
        worktree: own.canonicalize().ok()?,
        common,
    })
}

fn make_dir(dir: &Path) -> Result<(), CageError> {
    std::fs::create_dir_all(dir).map_err(|e| CageError::Io {
        what: "create",
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })
}

fn make_private_dir(dir: &Path) -> Result<(), CageError> {
    use std::os::unix::fs::PermissionsExt;
    make_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        CageError::Io {
            what: "set the mode of",
            path: dir.to_path_buf(),
            reason: e.to_string(),
        }
    })
}

/// Makes the CLI's login (`~/.claude/.credentials.json`, `~/.codex/auth.json`) visible in the
/// task's home: a symbolic link to it, which the cage lets through to that one file.
fn link_login(login: &Path, home: &Path) -> Result<(), CageError> {
    let (Some(name), Some(parent)) = (login.file_name(), login.parent()) else {
        return Ok(());
    };
    let dir = match parent.file_name() {
        Some(d) if d == ".claude" => home.join(".claude"),
        _ => home.join(".codex"),
    };
    make_dir(&dir)?;
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(login, &link).map_err(|e| CageError::Io {
        what: "link the CLI's login into",
        path: link,
        reason: e.to_string(),
    })
}

/// Which connected peers are a caged task's processes, so the daemon refuses them on its
/// socket. A peer is one when its process descends from the pane monitor of a guarded task's
/// session (the monitor is a child subreaper and the cage keeps its processes from signalling
/// it, so they cannot leave its tree while it lives), or when its environment names a guarded
/// task of this daemon (`AIFACTORY_TASK_ID` with this daemon's `AIFACTORY_SESSION_DB`: what
/// covers the moment between the agent's exec and the daemon learning its monitor, and what
/// outlives the monitor; a process can rewrite its own environment, so this half is a net,
/// not a wall). A task is guarded before its agent starts.
#[derive(Debug, Default)]
pub struct SocketGuard {
    /// Guarded tasks: id to the monitor of its running attempt, once known.
    tasks: Mutex<HashMap<String, Option<u32>>>,
}

/// The variable that names a task's id in its agent's environment.
const TASK_VAR: &str = "AIFACTORY_TASK_ID";

impl SocketGuard {
    /// Guards `task_id` from now on (before its agent starts).
    pub fn guard(&self, task_id: &str) {
        lock(&self.tasks).entry(task_id.to_string()).or_insert(None);
    }

    /// The monitor of the task's running attempt.
    pub fn set_monitor(&self, task_id: &str, monitor_pid: u32) {
        lock(&self.tasks).insert(task_id.to_string(), Some(monitor_pid));
    }

    pub fn release(&self, task_id: &str) {
        lock(&self.tasks).remove(task_id);
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.tasks).is_empty()
    }

    /// The guarded task `pid` belongs to, if any (`db`: this daemon's database, as the mark
    /// names it).
    pub fn task_of(&self, pid: u32, db: &Path) -> Option<String> {
        let tasks = lock(&self.tasks).clone();
        if tasks.is_empty() {
            return None;
        }
        let monitors: HashMap<u32, &String> =
            tasks.iter().filter_map(|(t, m)| Some(((*m)?, t))).collect();
        let mut at = pid;
        // Up the tree to init; a bound, in case /proc says something odd.
        for _ in 0..4096 {
            if let Some(task) = monitors.get(&at) {
                return Some((*task).clone());
            }
            match aifactory_common::procfs::stat(at).map(|s| s.ppid) {
                Ok(parent) if parent > 1 && parent != at => at = parent,
                _ => break,
            }
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let task =
            crate::sessions::marked_value(&environ, db.as_os_str().as_encoded_bytes(), TASK_VAR)?;
        tasks.contains_key(&task).then_some(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn support(abi: u32) -> Support {
        Support {
            abi,
            note: None,
            simulated: true,
        }
    }

    #[test]
    fn the_default_follows_the_run_mode() {
        assert_eq!(
            SandboxMode::default_for(RunMode::System),
            SandboxMode::Required
        );
        assert_eq!(
            SandboxMode::default_for(RunMode::User),
            SandboxMode::BestEffort
        );
    }

    #[test]
    fn an_npm_installed_program_may_read_its_whole_node_modules() {
        let launcher = Path::new("/opt/npm/lib/node_modules/@openai/codex/bin/codex.js");
        assert_eq!(
            program_dirs(launcher),
            [
                Path::new("/opt/npm/lib/node_modules/@openai/codex/bin"),
                Path::new("/opt/npm/lib/node_modules"),
            ]
        );
        assert_eq!(
            program_dirs(Path::new("/usr/local/bin/agent")),
            [Path::new("/usr/local/bin")]
        );
    }

    #[test]
    fn a_version_managers_shims_on_path_open_its_root() {
        assert_eq!(
            path_dirs(Path::new("/home/u/.pyenv/shims")),
            [
                Path::new("/home/u/.pyenv/shims"),
                Path::new("/home/u/.pyenv")
            ]
        );
        assert_eq!(path_dirs(Path::new("/usr/bin")), [Path::new("/usr/bin")]);
    }

    #[test]
    fn what_an_older_abi_lacks_is_named() {
        assert!(support(7).missing(true).is_empty());
        assert_eq!(
            support(5).missing(false),
            ["signal and abstract-socket scopes (ABI 6)"]
        );
        assert!(
            support(3)
                .missing(true)
                .contains(&"TCP port limits (ABI 4)")
        );
        assert!(
            !support(3)
                .missing(false)
                .contains(&"TCP port limits (ABI 4)")
        );
    }

    #[test]
    fn a_rule_that_would_cover_a_protected_path_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let state = base.join("state");
        std::fs::create_dir_all(state.join("inner")).unwrap();
        std::fs::create_dir_all(base.join("other")).unwrap();
        let protected = [state.clone()];
        let mut rules = Rules::new(&protected);
        rules.add(&base);
        rules.add(&state.join("inner"));
        rules.add(&base.join("other"));
        rules.add(&base.join("other"));
        rules.add(&base.join("missing"));
        assert_eq!(rules.paths, [base.join("other")]);
        assert_eq!(rules.skipped.len(), 2, "{:?}", rules.skipped);
    }

    fn git(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(status.status.success(), "git {args:?}: {status:?}");
    }

    #[test]
    fn a_task_gets_its_worktree_the_git_dirs_a_commit_writes_and_its_own_home() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let project = base.join("p");
        let state = base.join("state");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        git(&project, &["init", "-q", "-b", "main"]);
        std::fs::write(project.join("README"), "x").unwrap();
        git(&project, &["add", "README"]);
        git(&project, &["commit", "-q", "-m", "init"]);
        let worktree = project.join(".aifactory/worktrees/tasks/001-a");
        git(
            &project,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "aifactory/001-a",
                worktree.to_str().unwrap(),
            ],
        );
        let settings = CageSettings {
            read_write: vec![base.join("cache-missing")],
            read_only: vec![state.clone()],
            connect_ports: Some(vec![443]),
            ..CageSettings::default()
        };
        let protected = [state.clone()];
        let codex_home = base.join("codex-home");
        let profile_env = [
            ("CODEX_HOME".to_string(), codex_home.display().to_string()),
            (
                "SOME_DIR".to_string(),
                base.join("some-dir").display().to_string(),
            ),
        ];
        let plan = plan(&CageInputs {
            profile: "p",
            settings: &settings,
            run_mode: RunMode::System,
            support: &support(7),
            task_id: "t-1",
            worktree: &worktree,
            project: &project,
            programs: &["sh"],
            path_var: Some(OsStr::new("/usr/bin:relative")),
            login_file: None,
            profile_env: &profile_env,
            protected: &protected,
        })
        .unwrap();
        let cage = plan.cage.unwrap();
        assert_eq!(cage.mode, CageMode::Required);
        let git_dir = project.join(".git");
        for rw in [
            worktree.clone(),
            git_dir.join("objects"),
            git_dir.join("worktrees/001-a"),
            git_dir.join("refs/heads/aifactory"),
            git_dir.join("logs/refs/heads/aifactory"),
            project.join(".aifactory/cages/t-1"),
            codex_home.clone(),
        ] {
            assert!(
                cage.read_write.contains(&rw),
                "{rw:?} in {:?}",
                cage.read_write
            );
        }
        assert!(codex_home.is_dir(), "the CLI's state dir is made");
        assert!(
            !base.join("some-dir").exists()
                && !cage.read_write.iter().any(|p| p.ends_with("some-dir")),
            "only a CLI's state variable opens a directory"
        );
        assert!(cage.read_only.contains(&project.join("README")));
        assert!(cage.read_only.contains(&git_dir));
        assert!(!cage.read_only.contains(&project.join(".aifactory")));
        assert!(
            !cage.read_only.contains(&state),
            "protected: {:?}",
            cage.read_only
        );
        assert!(plan.summary.contains("left out"), "{}", plan.summary);
        assert_eq!(cage.connect_ports, Some(vec![443]));
        let home = project.join(".aifactory/cages/t-1/home");
        assert!(
            plan.env
                .contains(&("HOME".into(), home.to_string_lossy().into_owned()))
        );
        assert!(home.is_dir());
        assert!(plan.guard_socket);
    }

    #[test]
    fn required_without_landlock_refuses_and_best_effort_says_it_is_not_confined() {
        let dir = tempfile::tempdir().unwrap();
        let settings = CageSettings::default();
        let none = Support {
            abi: 0,
            note: Some("simulated".into()),
            simulated: true,
        };
        let inputs = |run_mode| CageInputs {
            profile: "p",
            settings: &settings,
            run_mode,
            support: &none,
            task_id: "t-1",
            worktree: dir.path(),
            project: dir.path(),
            programs: &[],
            path_var: None,
            login_file: None,
            profile_env: &[],
            protected: &[],
        };
        let err = plan(&inputs(RunMode::System)).unwrap_err();
        assert!(err.to_string().contains("sandbox = \"required\""), "{err}");
        let plan = plan(&inputs(RunMode::User)).unwrap();
        assert!(plan.cage.is_none());
        assert!(plan.summary.starts_with("NOT confined"), "{}", plan.summary);
        assert!(plan.guard_socket);
    }
}
