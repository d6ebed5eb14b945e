//! Agent profiles: how a task's agent is run (`[agents.NAME]` in the config), and every check
//! that keeps a known failure from starting — a headless Claude Code without
//! `bypassPermissions` ("Stream closed"), a provider past its end of life, an
//! OpenAI-compatible endpoint without its URL or key variable, a command missing from PATH,
//! Claude Code asked to bypass permissions as root, a key with no source or kept where others
//! can read it (the key sources themselves are [`crate::credentials`]).
//!
//! A bad profile never stops the daemon: it is kept with its problems, listed by
//! `aifactoryctl agents check`, and a task that uses it is refused at start with them.
//!
//! Past 600 lines only with its unit tests (the code is under 560): one table's reading and
//! checking, kept together so that every rule of a profile is found in one place.

use aifactory_common::echo::echo;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aifactory_common::diagnose::end_of_life;
use aifactory_common::protocol::{AgentInfo, AgentKind, OnStall, ProfileProblem, RestartPolicy};
use serde::{Deserialize, Serialize};

use crate::adapters::{self, HeadlessSettings};
use crate::cage::{CageSettings, SandboxMode};
use crate::cgroups::{self, Limits};
use crate::credentials::{self, Host, KeySettings, KeySource, SecretEnv};

pub const DEFAULT_AGENT: &str = "claude";
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Most attempts a task may get: past this, restarting is a loop, not a policy.
pub const MAX_ATTEMPTS: u32 = 100;
/// Longest `stall_after` (30 days), here and in the daemon's config: longer is never, and a
/// deadline that far stays a time the clock can hold.
pub const MAX_STALL_AFTER_S: u64 = 30 * 86_400;

/// One `[agents.NAME]` table as written. Every key is optional so that a profile with a
/// mistake still loads and can say what is wrong with it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// `claude-code`, `codex`, `openai-compatible`, `gemini-cli` or `custom`.
    pub kind: Option<String>,
    /// Program and arguments; `{task_id}`, `{spec_id}`, `{title}`, `{worktree}`, `{spec_dir}`,
    /// `{progress_file}` and `{prompt}` are replaced. Optional for the kinds with a built-in
    /// headless command (claude-code, codex, openai-compatible); it overrides that command.
    pub command: Option<Vec<String>>,
    /// The CLI of the built-in command, when not the kind's usual name on PATH.
    pub program: Option<String>,
    /// The model the built-in command asks for (default: the CLI's own).
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Runs without a person at the terminal (default true).
    pub headless: Option<bool>,
    /// `never` or `on-failure` (default `never`).
    pub restart: Option<String>,
    pub max_attempts: Option<u32>,
    /// `none`, `stop` or `restart` (default `none`). `restart` starts a new attempt that
    /// resumes the conversation, whatever `restart` says, up to `max_attempts`.
    pub on_stall: Option<String>,
    /// Seconds without output or progress before the task is `stalled`.
    pub stall_after: Option<u64>,
    /// Accept a provider past its end of life.
    pub allow_eol: Option<bool>,
    /// `openai-compatible`: the endpoint, and the variable that holds the key.
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    /// The key's source: a systemd credential, the file `$CREDENTIALS_DIRECTORY/NAME` holding
    /// the bare key (passed in the kind's key variable, or `api_key_env`).
    pub credential: Option<String>,
    /// The key's source: a file of `KEY=value` lines, mode 0600, owned by aifactoryd's user.
    pub env_file: Option<PathBuf>,
    /// `required`, `best-effort` or `off`: whether the agent must run confined (Landlock, see
    /// [`crate::cage`]); default `required` in system mode, `best-effort` in user mode.
    pub sandbox: Option<SandboxMode>,
    /// Absolute paths the agent may also read and write (e.g. a shared package cache).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_write: Vec<PathBuf>,
    /// Absolute paths the agent may also read (and execute).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only: Vec<PathBuf>,
    /// When set, the agent's outgoing TCP may reach only these ports (Landlock ABI 4).
    pub connect_ports: Option<Vec<u16>>,
    /// The agent may use the daemon's control socket (default false: refused).
    pub allow_control_socket: Option<bool>,
    /// Its cgroup's limits (see [`LimitsFile`]); each one missing is `[limits]`'s.
    pub memory_max: Option<SizeText>,
    pub cpu_weight: Option<u32>,
    pub cpu_max: Option<String>,
    pub tasks_max: Option<u64>,
}

/// A memory size as written: bytes, or text with a unit (`"512M"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SizeText {
    Bytes(u64),
    Text(String),
}

/// What a task's agent may use, as written in `[limits]` (every profile's default) or in a
/// profile: `memory_max = "4G"`, `cpu_weight = 100` (1 to 10000), `cpu_max = "150%"` (of one
/// CPU), `tasks_max = 512` (processes and threads).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub memory_max: Option<SizeText>,
    pub cpu_weight: Option<u32>,
    pub cpu_max: Option<String>,
    pub tasks_max: Option<u64>,
}

impl LimitsFile {
    /// The limits, or what is wrong with one of them, naming its key.
    pub fn parse(&self) -> Result<Limits, String> {
        let memory_max = match &self.memory_max {
            None => None,
            Some(SizeText::Bytes(b)) => Some(cgroups::parse_size(&b.to_string())),
            Some(SizeText::Text(t)) => Some(cgroups::parse_size(t)),
        }
        .transpose()
        .map_err(|e| format!("`memory_max`: {e}"))?;
        let cpu_max_percent = self
            .cpu_max
            .as_deref()
            .map(cgroups::parse_cpu_max)
            .transpose()
            .map_err(|e| format!("`cpu_max`: {e}"))?;
        if let Some(w) = self.cpu_weight.filter(|w| !(1..=10_000).contains(w)) {
            return Err(format!(
                "`cpu_weight` is {w}: write 1 to 10000 (100 is the default share)"
            ));
        }
        if self.tasks_max == Some(0) {
            return Err(
                "`tasks_max` is 0, which would let the agent start nothing: write at least 1"
                    .into(),
            );
        }
        Ok(Limits {
            memory_max,
            cpu_weight: self.cpu_weight,
            cpu_max_percent,
            tasks_max: self.tasks_max,
        })
    }
}

impl AgentFile {
    /// The table as `--print-config` shows it: a key written in `env` (already a problem) is
    /// not repeated where output gets pasted into reports.
    pub fn redacted(&self) -> AgentFile {
        let mut file = self.clone();
        for (name, value) in file.env.iter_mut() {
            if credentials::is_secret_name(name) && !value.is_empty() {
                *value = "<redacted: keep keys out of the config>".into();
            }
        }
        file
    }
}

/// A profile as the daemon uses it, with the problems found when the config was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub kind: AgentKind,
    /// The configured command, or the kind's built-in one with `{prompt}` for the prompt.
    pub command: Vec<String>,
    /// `command` is the kind's built-in one: it can resume a conversation.
    pub builtin: bool,
    pub env: BTreeMap<String, String>,
    pub headless: bool,
    pub restart: RestartPolicy,
    pub max_attempts: u32,
    pub on_stall: OnStall,
    /// `None`: the config's `stall_after`.
    pub stall_after_s: Option<u64>,
    pub file: AgentFile,
    /// What its cage may reach, beyond the task's own.
    pub cage: CageSettings,
    /// Its cgroup's limits as the profile sets them (each one it leaves out is `[limits]`'s).
    pub limits: Limits,
    /// Problems that do not depend on the machine (PATH is looked at by [`check`]).
    pub problems: Vec<ProfileProblem>,
}

/// What a task's agent gets substituted into its command and environment.
pub struct Placeholders<'a> {
    pub task_id: &'a str,
    pub spec_id: &'a str,
    pub title: &'a str,
    pub worktree: &'a Path,
    pub spec_dir: &'a Path,
    pub progress_file: &'a Path,
    pub prompt: &'a str,
}

impl Placeholders<'_> {
    pub fn apply(&self, text: &str) -> String {
        text.replace("{task_id}", self.task_id)
            .replace("{spec_id}", self.spec_id)
            .replace("{title}", self.title)
            .replace("{worktree}", &self.worktree.to_string_lossy())
            .replace("{spec_dir}", &self.spec_dir.to_string_lossy())
            .replace("{progress_file}", &self.progress_file.to_string_lossy())
            .replace("{prompt}", self.prompt)
    }
}

/// The profile used when the config defines none: Claude Code's built-in headless command,
/// with the permission mode a headless run needs.
pub fn builtin() -> BTreeMap<String, AgentFile> {
    BTreeMap::from([(
        DEFAULT_AGENT.to_string(),
        AgentFile {
            kind: Some("claude-code".into()),
            headless: Some(true),
            restart: Some("on-failure".into()),
            max_attempts: Some(DEFAULT_MAX_ATTEMPTS),
            ..AgentFile::default()
        },
    )])
}

/// Reads one `[agents.NAME]` table; never fails: what is wrong becomes a problem.
pub fn parse(name: &str, value: &toml::Value) -> Profile {
    let mut problems = Vec::new();
    let file = match AgentFile::deserialize(value.clone()) {
        Ok(file) => file,
        Err(e) => {
            problems.push(ProfileProblem::Unreadable {
                profile: name.to_string(),
                error: e.to_string().trim().to_string(),
            });
            AgentFile::default()
        }
    };
    from_file(name, file, problems)
}

pub fn from_file(name: &str, file: AgentFile, mut problems: Vec<ProfileProblem>) -> Profile {
    let kind = match file.kind.as_deref() {
        Some(text) => AgentKind::parse(text).unwrap_or_else(|| {
            problems.push(ProfileProblem::UnknownKind {
                kind: text.to_string(),
            });
            AgentKind::Custom
        }),
        None => {
            if problems.is_empty() {
                problems.push(ProfileProblem::NoKind {
                    profile: name.to_string(),
                });
            }
            AgentKind::Custom
        }
    };
    let builtin_command = adapters::headless_command(
        kind,
        &HeadlessSettings {
            program: file.program.as_deref(),
            model: file.model.as_deref(),
            base_url: file.base_url.as_deref(),
            api_key_env: file.api_key_env.as_deref(),
        },
        "{prompt}",
        None,
    );
    let builtin = file.command.is_none() && builtin_command.is_some();
    let command = match (&file.command, builtin_command) {
        (Some(command), _) => command.clone(),
        (None, Some(builtin)) => builtin,
        (None, None) => Vec::new(),
    };
    if command.first().is_none_or(|p| p.is_empty()) && problems.is_empty() {
        problems.push(ProfileProblem::NoCommand {
            profile: name.to_string(),
        });
    }
    let restart = match file.restart.as_deref() {
        None | Some("never") => RestartPolicy::Never,
        Some("on-failure") => RestartPolicy::OnFailure,
        Some(other) => {
            problems.push(ProfileProblem::UnknownRestart {
                value: other.to_string(),
            });
            RestartPolicy::Never
        }
    };
    let on_stall = match file.on_stall.as_deref() {
        None | Some("none") => OnStall::None,
        Some("stop") => OnStall::Stop,
        Some("restart") => OnStall::Restart,
        Some(other) => {
            problems.push(ProfileProblem::UnknownOnStall {
                value: other.to_string(),
            });
            OnStall::None
        }
    };
    let max_attempts = file.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if max_attempts == 0 {
        problems.push(ProfileProblem::NoAttempts);
    } else if max_attempts > MAX_ATTEMPTS {
        problems.push(out_of_range(
            name,
            "max_attempts",
            max_attempts,
            MAX_ATTEMPTS,
            "",
        ));
    }
    match file.stall_after {
        Some(0) => problems.push(ProfileProblem::StallsAtOnce),
        Some(s) if s > MAX_STALL_AFTER_S => problems.push(out_of_range(
            name,
            "stall_after",
            s,
            MAX_STALL_AFTER_S,
            " seconds (30 days)",
        )),
        _ => {}
    }
    let headless = file.headless.unwrap_or(true);
    if kind == AgentKind::ClaudeCode && headless && !bypasses_permissions(&command) {
        problems.push(ProfileProblem::HeadlessWithoutBypass);
    }
    if let Some((last_day, eol_day, advice)) = end_of_life(kind)
        && today_since_epoch() > eol_day
        && !file.allow_eol.unwrap_or(false)
    {
        problems.push(ProfileProblem::EndOfLife {
            kind,
            last_day: last_day.to_string(),
            advice: advice.to_string(),
        });
    }
    problems.extend(credentials::keys_in_config(&file.env));
    if kind == AgentKind::OpenaiCompatible {
        if file.base_url.as_deref().is_none_or(str::is_empty) {
            problems.push(ProfileProblem::NoBaseUrl);
        }
        if file.api_key_env.as_deref().is_none_or(str::is_empty) {
            problems.push(ProfileProblem::NoApiKeyEnv);
        }
    }
    for (key, paths) in [
        ("read_write", &file.read_write),
        ("read_only", &file.read_only),
    ] {
        if let Some(relative) = paths.iter().find(|p| !p.is_absolute()) {
            problems.push(ProfileProblem::Unreadable {
                profile: name.to_string(),
                error: format!(
                    "`{key}` holds `{}`, which is not an absolute path: write it from /",
                    echo(relative.as_os_str())
                ),
            });
        }
    }
    if file.connect_ports.as_ref().is_some_and(|p| p.contains(&0)) {
        problems.push(ProfileProblem::Unreadable {
            profile: name.to_string(),
            error: "`connect_ports` holds 0, which is no port: list ports of 1 to 65535".into(),
        });
    }
    let limits = LimitsFile {
        memory_max: file.memory_max.clone(),
        cpu_weight: file.cpu_weight,
        cpu_max: file.cpu_max.clone(),
        tasks_max: file.tasks_max,
    }
    .parse()
    .unwrap_or_else(|error| {
        problems.push(ProfileProblem::Unreadable {
            profile: name.to_string(),
            error,
        });
        Limits::default()
    });
    let cage = CageSettings {
        sandbox: file.sandbox,
        read_write: file.read_write.clone(),
        read_only: file.read_only.clone(),
        connect_ports: file.connect_ports.clone(),
        allow_control_socket: file.allow_control_socket.unwrap_or(false),
    };
    Profile {
        name: name.to_string(),
        kind,
        command,
        builtin,
        env: file.env.clone(),
        headless,
        restart,
        max_attempts,
        on_stall,
        stall_after_s: file.stall_after,
        file,
        cage,
        limits,
        problems,
    }
}

/// A number past its bound: a value the table's reader refuses, as it refuses a wrong type.
fn out_of_range(
    profile: &str,
    key: &str,
    value: impl std::fmt::Display,
    max: impl std::fmt::Display,
    unit: &str,
) -> ProfileProblem {
    ProfileProblem::Unreadable {
        profile: profile.to_string(),
        error: format!("`{key}` = {value} is outside 1..={max}{unit}"),
    }
}

/// `--permission-mode bypassPermissions` (either spelling) or the older
/// `--dangerously-skip-permissions`.
fn bypasses_permissions(command: &[String]) -> bool {
    command.iter().enumerate().any(|(i, arg)| {
        arg == "--dangerously-skip-permissions"
            || arg == "--permission-mode=bypassPermissions"
            || (arg == "--permission-mode"
                && command.get(i + 1).is_some_and(|v| v == "bypassPermissions"))
    })
}

pub fn today_since_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// The settings of a profile's built-in headless command.
pub fn headless_settings(profile: &Profile) -> HeadlessSettings<'_> {
    HeadlessSettings {
        program: profile.file.program.as_deref(),
        model: profile.file.model.as_deref(),
        base_url: profile.file.base_url.as_deref(),
        api_key_env: profile.file.api_key_env.as_deref(),
    }
}

/// The variable Claude Code reads to accept `bypassPermissions` as root.
const SANDBOX_VAR: &str = "IS_SANDBOX";

impl Profile {
    /// What the profile says about its key.
    fn key_settings(&self) -> KeySettings<'_> {
        KeySettings {
            profile: &self.name,
            kind: self.kind,
            api_key_env: self.file.api_key_env.as_deref(),
            credential: self.file.credential.as_deref(),
            env_file: self.file.env_file.as_deref(),
            env: &self.env,
        }
    }
}

/// Claude Code refuses `bypassPermissions` as root unless `IS_SANDBOX=1` ("cannot be used
/// with root/sudo privileges").
fn runs_as_root_without_sandbox(profile: &Profile, host: &Host<'_>) -> bool {
    profile.kind == AgentKind::ClaudeCode
        && bypasses_permissions(&profile.command)
        && host.euid == 0
        && sandbox_flag(profile, host).as_deref() != Some("1")
}

/// The `IS_SANDBOX` the agent gets: the profile's, else the daemon's.
fn sandbox_flag(profile: &Profile, host: &Host<'_>) -> Option<String> {
    match profile.env.get(SANDBOX_VAR) {
        Some(value) => Some(value.clone()),
        None => (host.var)(SANDBOX_VAR).map(|v| v.to_string_lossy().into_owned()),
    }
}

/// What a task's agent gets at start besides the profile's `env`.
pub struct StartEnv {
    /// Where its key came from; `None` under the test override when none could be read.
    pub key_source: Option<KeySource>,
    /// Its key, read now, and the daemon's `IS_SANDBOX`. Holds secrets: only ever passed to
    /// the session's environment, never logged nor stored.
    pub env: SecretEnv,
}

/// Reads the profile's key for one start. Under the test override a key that cannot be read
/// is left out rather than refused: the fixture is not the CLI.
pub fn start_env(profile: &Profile, test_override: bool) -> Result<StartEnv, ProfileError> {
    let host = Host::current();
    let (key_source, mut env) = match credentials::resolve(&profile.key_settings(), &host) {
        Ok(found) => (Some(found.source), found.env),
        Err(_) if test_override => (None, SecretEnv::default()),
        Err(problem) => {
            return Err(ProfileError::CannotRun {
                name: profile.name.clone(),
                problems: vec![problem],
            });
        }
    };
    if !profile.env.contains_key(SANDBOX_VAR)
        && let Some(flag) = (host.var)(SANDBOX_VAR)
    {
        // Sessions get only a few of the daemon's variables: this one is the run-as rule's.
        env.push(SANDBOX_VAR, &flag.to_string_lossy());
    }
    Ok(StartEnv { key_source, env })
}

/// The command a task runs: the test override (run by `sh -c`) when one is set.
pub fn effective_command(profile: &Profile, test_agent_cmd: Option<&str>) -> Vec<String> {
    match test_agent_cmd {
        Some(cmd) => vec!["sh".into(), "-c".into(), cmd.into()],
        None => profile.command.clone(),
    }
}

/// Where `program` would be run from, looked up like execvp does.
pub fn find_program(program: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// Why a task cannot run with the agent profile it names.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "no agent profile is named `{}`: define [agents.{}] in the config or pick one of {known} (`aifactoryctl agents list`)",
        echo(name),
        echo(name)
    )]
    Unknown { name: String, known: String },
    #[error("agent profile `{name}` cannot run: {}", sentences(problems))]
    CannotRun {
        name: String,
        problems: Vec<ProfileProblem>,
    },
}

/// Problems as one line for people: each sentence, `; `-separated.
pub fn sentences(problems: &[ProfileProblem]) -> String {
    problems
        .iter()
        .map(ProfileProblem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The settings every profile check reads besides the profile (from the config).
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    pub test_agent_cmd: Option<&'a str>,
    pub default_agent: &'a str,
    /// The config's `stall_after`, for profiles without their own.
    pub stall_after_s: u64,
}

/// Every profile and what is wrong with it now: what `aifactoryctl agents check` shows, from
/// the running daemon and from `aifactoryd check` alike.
pub fn check_all(profiles: &[Profile], context: CheckContext<'_>) -> Vec<AgentInfo> {
    profiles
        .iter()
        .map(|p| {
            check(
                p,
                context.test_agent_cmd,
                context.default_agent,
                context.stall_after_s,
            )
        })
        .collect()
}

/// The profile `name` and its check, when a task can run with it now.
pub fn usable<'p>(
    profiles: &'p [Profile],
    name: &str,
    context: CheckContext<'_>,
) -> Result<(&'p Profile, AgentInfo), ProfileError> {
    let Some(profile) = profiles.iter().find(|p| p.name == name) else {
        return Err(ProfileError::Unknown {
            name: name.to_string(),
            known: profiles
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let info = check(
        profile,
        context.test_agent_cmd,
        context.default_agent,
        context.stall_after_s,
    );
    if !info.problems.is_empty() {
        return Err(ProfileError::CannotRun {
            name: name.to_string(),
            problems: info.problems,
        });
    }
    Ok((profile, info))
}

/// Everything wrong with a profile on this machine now, as [`AgentInfo`].
pub fn check(
    profile: &Profile,
    test_agent_cmd: Option<&str>,
    default_agent: &str,
    stall_after_s: u64,
) -> AgentInfo {
    check_on(
        profile,
        test_agent_cmd,
        default_agent,
        stall_after_s,
        &Host::current(),
    )
}

/// [`check`] as seen from `host` (this process, or a made-up one in tests).
fn check_on(
    profile: &Profile,
    test_agent_cmd: Option<&str>,
    default_agent: &str,
    stall_after_s: u64,
    host: &Host<'_>,
) -> AgentInfo {
    let mut problems = profile.problems.clone();
    // The test override runs a fixture, not the CLI: the CLI's run-as rules and key do not
    // apply to it.
    if test_agent_cmd.is_none() {
        if runs_as_root_without_sandbox(profile, host) {
            problems.push(ProfileProblem::RootWithoutSandbox);
        }
        if let Err(problem) = credentials::resolve(&profile.key_settings(), host)
            && !problems.contains(&problem)
        {
            problems.push(problem);
        }
    }
    let effective = effective_command(profile, test_agent_cmd);
    if let Some(program) = effective.first().filter(|p| !p.is_empty())
        && find_program(program, std::env::var_os("PATH").as_deref()).is_none()
    {
        problems.push(ProfileProblem::NotOnPath {
            program: program.clone(),
            test_override: test_agent_cmd.is_some(),
        });
    }
    AgentInfo {
        name: profile.name.clone(),
        kind: profile.kind,
        command: profile.command.clone(),
        effective_command: effective,
        headless: profile.headless,
        restart: profile.restart,
        max_attempts: profile.max_attempts,
        on_stall: profile.on_stall,
        stall_after_s: profile.stall_after_s.unwrap_or(stall_after_s),
        default: profile.name == default_agent,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(text: &str) -> Profile {
        let value: toml::Value = toml::from_str(text).unwrap();
        parse("p", &value)
    }

    #[test]
    fn headless_claude_needs_bypass_permissions() {
        let p = profile("kind = \"claude-code\"\ncommand = [\"claude\", \"-p\"]");
        assert_eq!(p.problems, [ProfileProblem::HeadlessWithoutBypass]);
        let sentence = p.problems[0].to_string();
        assert!(sentence.contains("bypassPermissions"), "{sentence}");
        assert!(sentence.contains("Stream closed"), "{sentence}");
        for ok in [
            "command = [\"claude\", \"--permission-mode\", \"bypassPermissions\"]",
            "command = [\"claude\", \"--permission-mode=bypassPermissions\"]",
            "command = [\"claude\", \"--dangerously-skip-permissions\"]",
            "command = [\"claude\"]\nheadless = false",
        ] {
            let p = profile(&format!("kind = \"claude-code\"\n{ok}"));
            assert!(p.problems.is_empty(), "{ok}: {:?}", p.problems);
        }
        // The flag's value must follow the flag.
        let p = profile(
            "kind = \"claude-code\"\ncommand = [\"claude\", \"bypassPermissions\", \"--permission-mode\", \"default\"]",
        );
        assert_eq!(p.problems.len(), 1);
    }

    #[test]
    fn gemini_is_refused_past_end_of_life_unless_allowed() {
        let p = profile("kind = \"gemini-cli\"\ncommand = [\"gemini\"]");
        assert!(
            today_since_epoch() > 20_622,
            "this test assumes it runs after 2026-06-18"
        );
        assert!(
            matches!(&p.problems[..], [ProfileProblem::EndOfLife { kind: AgentKind::GeminiCli, last_day, .. }] if last_day == "2026-06-18"),
            "{:?}",
            p.problems
        );
        let sentence = p.problems[0].to_string();
        assert!(sentence.contains("2026-06-18"), "{sentence}");
        assert!(sentence.contains("openai-compatible"), "{sentence}");
        let p = profile("kind = \"gemini-cli\"\ncommand = [\"gemini\"]\nallow_eol = true");
        assert!(p.problems.is_empty(), "{:?}", p.problems);
    }

    #[test]
    fn openai_compatible_needs_url_and_key_variable() {
        let p = profile("kind = \"openai-compatible\"\ncommand = [\"aider\"]");
        assert_eq!(
            p.problems,
            [ProfileProblem::NoBaseUrl, ProfileProblem::NoApiKeyEnv]
        );
        let p = profile(
            "kind = \"openai-compatible\"\ncommand = [\"aider\"]\nbase_url = \"http://x/v1\"\napi_key_env = \"K\"",
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
    }

    #[test]
    fn mistakes_are_problems_not_errors() {
        let p = profile("kind = \"claude\"\ncommand = [\"x\"]\nrestart = \"always\"");
        assert_eq!(
            p.problems,
            [
                ProfileProblem::UnknownKind {
                    kind: "claude".into()
                },
                ProfileProblem::UnknownRestart {
                    value: "always".into()
                }
            ]
        );
        assert_eq!(
            p.problems[0].to_string(),
            "kind `claude` is unknown: use one of claude-code, codex, openai-compatible, gemini-cli, custom"
        );
        assert!(p.problems[1].to_string().contains("restart"));
        let p = profile("kind = \"custom\"\ncommand = \"x\"");
        assert!(
            matches!(&p.problems[..], [ProfileProblem::Unreadable { profile, .. }] if profile == "p"),
            "{:?}",
            p.problems
        );
        assert!(p.problems[0].to_string().contains("cannot be read"));
        let p = profile("kind = \"custom\"\ncommand = [\"x\"]\ncolour = 1");
        assert!(
            p.problems[0].to_string().contains("colour"),
            "{:?}",
            p.problems
        );
    }

    #[test]
    fn numbers_are_bounded() {
        let p = profile(
            "kind = \"custom\"\ncommand = [\"sh\"]\nstall_after = 9223372036854775807\nmax_attempts = 4000000000",
        );
        let text = sentences(&p.problems);
        assert_eq!(p.problems.len(), 2, "{text}");
        assert!(
            text.contains("stall_after") && text.contains("1..=2592000"),
            "{text}"
        );
        assert!(
            text.contains("max_attempts") && text.contains("1..=100"),
            "{text}"
        );
        let p = profile(
            "kind = \"custom\"\ncommand = [\"sh\"]\nstall_after = 2592000\nmax_attempts = 100",
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
    }

    #[test]
    fn missing_program_is_found_by_check() {
        let p = profile("kind = \"custom\"\ncommand = [\"surely-not-a-program-aifactory\"]");
        let info = check(&p, None, "p", 600);
        assert_eq!(
            info.problems,
            [ProfileProblem::NotOnPath {
                program: "surely-not-a-program-aifactory".into(),
                test_override: false
            }]
        );
        assert!(info.problems[0].to_string().contains("PATH"));
        let info = check(&p, Some("sleep 300"), "p", 600);
        assert!(info.problems.is_empty(), "{:?}", info.problems);
        assert_eq!(info.effective_command, ["sh", "-c", "sleep 300"]);
        assert!(info.default);
    }

    #[test]
    fn usable_names_the_known_profiles_or_the_problems() {
        let ok = profile("kind = \"custom\"\ncommand = [\"sh\"]");
        let bad = from_file(
            "bad",
            AgentFile {
                kind: Some("custom".into()),
                command: Some(vec!["surely-not-a-program-aifactory".into()]),
                ..AgentFile::default()
            },
            Vec::new(),
        );
        let profiles = [ok, bad];
        let context = CheckContext {
            test_agent_cmd: None,
            default_agent: "p",
            stall_after_s: 600,
        };
        assert_eq!(usable(&profiles, "p", context).unwrap().0.name, "p");
        let unknown = usable(&profiles, "x", context).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "no agent profile is named `x`: define [agents.x] in the config or pick one of p, bad (`aifactoryctl agents list`)"
        );
        let cannot = usable(&profiles, "bad", context).unwrap_err().to_string();
        assert!(
            cannot.starts_with("agent profile `bad` cannot run: `surely-not-a-program-aifactory`"),
            "{cannot}"
        );
        assert_eq!(check_all(&profiles, context).len(), 2);
    }

    #[test]
    fn claude_bypassing_permissions_as_root_needs_the_sandbox_flag() {
        let with_key = |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "sk-x".into());
        let root = Host {
            var: &with_key,
            euid: 0,
        };
        let user = Host {
            var: &with_key,
            euid: 1000,
        };
        let claude = "kind = \"claude-code\"\ncommand = [\"sh\", \"--permission-mode\", \"bypassPermissions\"]";
        let p = profile(claude);
        let info = check_on(&p, None, "p", 600, &root);
        assert_eq!(info.problems, [ProfileProblem::RootWithoutSandbox]);
        let sentence = info.problems[0].to_string();
        assert!(
            sentence.contains("aifactory") && sentence.contains("IS_SANDBOX"),
            "{sentence}"
        );
        assert!(check_on(&p, None, "p", 600, &user).problems.is_empty());
        // The test override runs a fixture, not claude.
        assert!(
            check_on(&p, Some("true"), "p", 600, &root)
                .problems
                .is_empty()
        );
        let sandboxed = profile(&format!("{claude}\nenv = {{ IS_SANDBOX = \"1\" }}"));
        assert!(
            check_on(&sandboxed, None, "p", 600, &root)
                .problems
                .is_empty()
        );
        let daemon_flag =
            |k: &str| matches!(k, "ANTHROPIC_API_KEY" | "IS_SANDBOX").then(|| "1".into());
        let flagged = Host {
            var: &daemon_flag,
            euid: 0,
        };
        assert!(check_on(&p, None, "p", 600, &flagged).problems.is_empty());
        // Without bypass claude runs as root (and the headless check says what else is wrong).
        let attended = profile("kind = \"claude-code\"\ncommand = [\"sh\"]\nheadless = false");
        assert!(
            check_on(&attended, None, "p", 600, &root)
                .problems
                .is_empty()
        );
    }

    #[test]
    fn keys_are_checked_where_path_is_and_never_in_the_config() {
        let nothing = |_: &str| None;
        let host = Host {
            var: &nothing,
            euid: 1000,
        };
        let p = profile("kind = \"codex\"\ncommand = [\"sh\"]");
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(
            check_on(&p, None, "p", 600, &host).problems,
            [ProfileProblem::NoKeySource {
                profile: "p".into(),
                variable: "CODEX_API_KEY".into()
            }]
        );
        assert!(
            check_on(&p, Some("true"), "p", 600, &host)
                .problems
                .is_empty()
        );
        let p = profile(
            "kind = \"custom\"\ncommand = [\"sh\"]\nenv = { GITHUB_TOKEN = \"ghp_x\", MODE = \"x\" }",
        );
        assert_eq!(
            p.problems,
            [ProfileProblem::KeyInConfig {
                variable: "GITHUB_TOKEN".into()
            }]
        );
        let p = profile(
            "kind = \"openai-compatible\"\ncommand = [\"sh\"]\nbase_url = \"http://x/v1\"\napi_key_env = \"GEMINI_API_KEY\"\ncredential = \"gemini\"",
        );
        assert_eq!(
            check_on(&p, None, "p", 600, &host).problems,
            [ProfileProblem::CredentialMissing {
                name: "gemini".into(),
                dir: None
            }]
        );
    }

    #[test]
    fn the_builtin_profile_is_valid() {
        for (name, file) in builtin() {
            let p = from_file(&name, file, Vec::new());
            assert!(p.problems.is_empty(), "{:?}", p.problems);
        }
    }
}
