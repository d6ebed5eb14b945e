//! The daemon's configuration: the optional TOML file, command-line overrides, defaults, and
//! validation. Every key is optional; an unknown key or a bad value is an error that names the
//! key, its range and the file.
//!
//! Past 600 lines only with its unit tests (the code is under 460): every key's rule is found
//! in this one place.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aifactory_common::codec::DECODE_LIMIT_BYTES;
use aifactory_common::frame::DEFAULT_MAX_FRAME_BYTES;
use aifactory_common::paths;
use aifactory_common::protocol::RunMode;
use serde::{Deserialize, Serialize};

use crate::agents::{self, LimitsFile, Profile, SizeText};
use crate::cgroups::Limits;

/// Processes (and threads) a task's agent may have unless `[limits]` or its profile says
/// otherwise: far beyond a build's needs, short of a fork bomb's.
pub const DEFAULT_TASKS_MAX: u64 = 4096;

pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Far beyond the file descriptors any one process gets.
const MAX_CONNECTIONS: u32 = 65_536;
pub const DEFAULT_SOCKET_GROUP: &str = "aifactory";
pub const DEFAULT_MIGRATE_LOCK_TIMEOUT_S: u64 = 60;
/// A day: a migration lock held longer is a stuck holder, not a slow one.
const MAX_MIGRATE_LOCK_TIMEOUT_S: u64 = 86_400;
const MIN_FRAME_BYTES: usize = 1024;
const MIN_PANE_LOG_MAX: u64 = 4096;
/// 1 TiB: a bigger log is a disk filled, not a log kept.
const MAX_PANE_LOG_MAX: u64 = 1 << 40;
pub const DEFAULT_STALL_AFTER_S: u64 = 600;
/// Prompts that wait for a person, matched against the last line of an agent's output.
/// ASCII-only (`-u`): the prompts are English, and a Unicode class such as `\W` would cost the
/// daemon most of a megabyte per compiled pattern.
pub const DEFAULT_WAITING_INPUT_PATTERNS: &[&str] = &[
    r"(?i-u)\((y/n|yes/no)\)\s*[:?]?\s*$",
    r"(?i-u)\[(y/n)\]\s*[:?]?\s*$",
    r"(?i-u)press (enter|return|any key) to continue[.!:\s]*$",
    r"(?i-u)do you want to (proceed|continue)\?\s*$",
    r"(?i-u)password( for [ -9;-~]+)?:\s*$",
];

/// The file as written: every key optional, unknown keys refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `user` or `system`; decides socket permissions and default paths.
    pub mode: Option<ModeName>,
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// A tracing filter such as `info` or `aifactoryd=debug`; `RUST_LOG` wins when set.
    pub log_level: Option<String>,
    pub max_connections: Option<u32>,
    pub max_frame_bytes: Option<usize>,
    /// Members of this group may use the daemon; in system mode it also owns the socket.
    pub socket_group: Option<String>,
    /// Octal permission bits of the socket file, e.g. "0660".
    pub socket_mode: Option<String>,
    /// Seconds to wait for another process's migration lock before giving up.
    pub migrate_lock_timeout: Option<u64>,
    /// First choice for the pane directories' root (before `$RUNTIME_DIRECTORY/panes`,
    /// `/run/aifactory/panes` and `$XDG_RUNTIME_DIR/aifactory-rmux/panes`).
    pub panes_dir: Option<PathBuf>,
    /// Bytes after which a session's `output.log` rotates (one older segment is kept).
    pub pane_log_max: Option<u64>,
    /// The agent profile a task gets when it names none.
    pub default_agent: Option<String>,
    /// Seconds without pane output or progress-file change before a task is `stalled`.
    pub stall_after: Option<u64>,
    /// Regular expressions matched against the last line of an agent's output; a match marks
    /// the task as waiting for input.
    pub waiting_input_patterns: Option<Vec<String>>,
    /// For end-to-end fixtures only: a shell command that replaces every profile's command
    /// (`AIFACTORY_TEST_AGENT_CMD` wins).
    pub test_agent_cmd: Option<String>,
    /// Every task's cgroup limits, unless its profile sets its own (`[limits]`).
    pub limits: Option<LimitsFile>,
    /// `[agents.NAME]` profiles; read one by one so a bad one cannot stop the daemon.
    pub agents: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    User,
    System,
}

/// What the command line says; it wins over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file that was read, when one was.
    pub config_file: Option<PathBuf>,
    pub mode: RunMode,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub log_level: String,
    pub max_connections: u32,
    pub max_frame_bytes: usize,
    pub socket_group: String,
    pub socket_mode: u32,
    pub migrate_lock_timeout: Duration,
    pub panes_dir: Option<PathBuf>,
    pub pane_log_max: u64,
    /// Agent profiles by name (the built-in `claude` when the file defines none).
    pub agents: Vec<Profile>,
    pub default_agent: String,
    pub stall_after: Duration,
    pub waiting_input_patterns: Vec<String>,
    pub test_agent_cmd: Option<String>,
    /// Every task's limits unless its profile sets its own.
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}` in {origin}: {message}")]
    Value {
        key: &'static str,
        origin: String,
        message: String,
    },
    #[error(transparent)]
    Path(#[from] paths::PathError),
}

impl Config {
    /// Reads the config file (the given one, or the default one when it exists) and applies
    /// the overrides and defaults.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        let root = paths::is_root();
        let env = paths::process_env;
        let (file, path) = match &overrides.config {
            Some(path) => (read_file(path)?, Some(path.clone())),
            None => match paths::default_config_file(&env, root) {
                Some(path) if path.exists() => (read_file(&path)?, Some(path)),
                _ => (ConfigFile::default(), None),
            },
        };
        Self::resolve(file, path, overrides, &env, root)
    }

    /// Applies defaults and overrides to a parsed file; pure, for tests.
    pub fn resolve(
        file: ConfigFile,
        path: Option<PathBuf>,
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
        root: bool,
    ) -> Result<Config, ConfigError> {
        let origin = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the defaults".into());
        let value_err = |key, message: String| ConfigError::Value {
            key,
            origin: origin.clone(),
            message,
        };
        let mode = match file.mode {
            Some(ModeName::User) => RunMode::User,
            Some(ModeName::System) => RunMode::System,
            None => default_mode(env, root),
        };
        let socket = paths::socket_path(
            overrides.socket.as_deref().or(file.socket.as_deref()),
            env,
            root,
        )?;
        let state_dir = paths::state_dir(
            overrides.state_dir.as_deref().or(file.state_dir.as_deref()),
            env,
            root,
        )?;
        let log_level = file.log_level.unwrap_or_else(|| "info".into());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(value_err(
                "log_level",
                format!(
                    "`{log_level}` is not a log filter ({e}); use e.g. \"info\" or \"aifactoryd=debug\""
                ),
            ));
        }
        let max_connections = bounded(
            file.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            1..=MAX_CONNECTIONS,
            "",
        )
        .map_err(|m| value_err("max_connections", m))?;
        let max_frame_bytes = file.max_frame_bytes.unwrap_or(DEFAULT_MAX_FRAME_BYTES);
        if !(MIN_FRAME_BYTES..=DECODE_LIMIT_BYTES).contains(&max_frame_bytes) {
            return Err(value_err(
                "max_frame_bytes",
                format!("{max_frame_bytes} is outside {MIN_FRAME_BYTES}..={DECODE_LIMIT_BYTES}"),
            ));
        }
        let socket_group = file
            .socket_group
            .unwrap_or_else(|| DEFAULT_SOCKET_GROUP.into());
        if socket_group.is_empty() {
            return Err(value_err("socket_group", "must not be empty".into()));
        }
        let default_socket_mode = match mode {
            RunMode::User => 0o600,
            RunMode::System => 0o660,
        };
        let socket_mode = match file.socket_mode {
            None => default_socket_mode,
            Some(text) => {
                let mode = parse_mode(&text).ok_or_else(|| {
                    value_err(
                        "socket_mode",
                        format!("`{text}` is not an octal mode between \"0000\" and \"0777\" (e.g. \"0660\")"),
                    )
                })?;
                // Connecting to a socket takes write permission on it: without read and write
                // for its owner, only root could use the daemon.
                if mode & 0o600 != 0o600 {
                    return Err(value_err(
                        "socket_mode",
                        format!(
                            "`{text}` keeps the daemon's own user (and so everyone but root) from connecting: use \"0600\" (that user only), \"0660\" (and the socket group) or \"0666\" (every local user)"
                        ),
                    ));
                }
                mode
            }
        };
        let migrate_lock_timeout = bounded(
            file.migrate_lock_timeout
                .unwrap_or(DEFAULT_MIGRATE_LOCK_TIMEOUT_S),
            0..=MAX_MIGRATE_LOCK_TIMEOUT_S,
            " seconds",
        )
        .map_err(|m| value_err("migrate_lock_timeout", m))?;
        let pane_log_max = bounded(
            file.pane_log_max
                .unwrap_or(aifactory_common::pane::DEFAULT_PANE_LOG_MAX),
            MIN_PANE_LOG_MAX..=MAX_PANE_LOG_MAX,
            " bytes",
        )
        .map_err(|m| value_err("pane_log_max", m))?;
        let default_agent_set = file.default_agent.is_some();
        let default_agent = file
            .default_agent
            .unwrap_or_else(|| agents::DEFAULT_AGENT.into());
        let stall_after = file.stall_after.unwrap_or(DEFAULT_STALL_AFTER_S);
        if stall_after == 0 {
            return Err(value_err(
                "stall_after",
                "0 would stall every task at once: give seconds, e.g. 600".into(),
            ));
        }
        let stall_after = bounded(
            stall_after,
            1..=agents::MAX_STALL_AFTER_S,
            " seconds (30 days)",
        )
        .map_err(|m| value_err("stall_after", m))?;
        let waiting_input_patterns = file.waiting_input_patterns.unwrap_or_else(|| {
            DEFAULT_WAITING_INPUT_PATTERNS
                .iter()
                .map(|p| p.to_string())
                .collect()
        });
        for pattern in &waiting_input_patterns {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(value_err(
                    "waiting_input_patterns",
                    format!("`{pattern}` is not a regular expression: {e}"),
                ));
            }
        }
        let test_agent_cmd = env("AIFACTORY_TEST_AGENT_CMD")
            .map(|v| v.to_string_lossy().into_owned())
            .or(file.test_agent_cmd)
            .filter(|cmd| !cmd.trim().is_empty());
        let agents: Vec<Profile> = match file.agents {
            Some(tables) => tables
                .iter()
                .map(|(name, value)| agents::parse(name, value))
                .collect(),
            None => agents::builtin()
                .into_iter()
                .map(|(name, file)| agents::from_file(&name, file, Vec::new()))
                .collect(),
        };
        let limits = file
            .limits
            .unwrap_or_default()
            .parse()
            .map_err(|e| value_err("limits", e))?;
        let limits = Limits {
            tasks_max: limits.tasks_max.or(Some(DEFAULT_TASKS_MAX)),
            ..limits
        };
        if let Some(message) = default_agent_missing(&agents, &default_agent, default_agent_set) {
            return Err(value_err("default_agent", message));
        }
        Ok(Config {
            config_file: path,
            mode,
            socket,
            state_dir,
            log_level,
            max_connections,
            max_frame_bytes,
            socket_group,
            socket_mode,
            migrate_lock_timeout: Duration::from_secs(migrate_lock_timeout),
            panes_dir: file.panes_dir,
            pane_log_max,
            agents,
            default_agent,
            stall_after: Duration::from_secs(stall_after),
            waiting_input_patterns,
            test_agent_cmd,
            limits,
        })
    }

    /// The effective config as TOML, for `aifactoryd --print-config`.
    pub fn to_toml(&self) -> String {
        let file = ConfigFile {
            mode: Some(match self.mode {
                RunMode::User => ModeName::User,
                RunMode::System => ModeName::System,
            }),
            socket: Some(self.socket.clone()),
            state_dir: Some(self.state_dir.clone()),
            log_level: Some(self.log_level.clone()),
            max_connections: Some(self.max_connections),
            max_frame_bytes: Some(self.max_frame_bytes),
            socket_group: Some(self.socket_group.clone()),
            socket_mode: Some(format!("{:04o}", self.socket_mode)),
            migrate_lock_timeout: Some(self.migrate_lock_timeout.as_secs()),
            panes_dir: self.panes_dir.clone(),
            pane_log_max: Some(self.pane_log_max),
            default_agent: Some(self.default_agent.clone()),
            stall_after: Some(self.stall_after.as_secs()),
            waiting_input_patterns: Some(self.waiting_input_patterns.clone()),
            test_agent_cmd: self.test_agent_cmd.clone(),
            limits: Some(LimitsFile {
                memory_max: self.limits.memory_max.map(SizeText::Bytes),
                cpu_weight: self.limits.cpu_weight,
                cpu_max: self.limits.cpu_max_percent.map(|p| format!("{p}%")),
                tasks_max: self.limits.tasks_max,
            }),
            agents: Some(
                self.agents
                    .iter()
                    .filter_map(|p| {
                        Some((
                            p.name.clone(),
                            toml::Value::try_from(p.file.redacted()).ok()?,
                        ))
                    })
                    .collect(),
            ),
        };
        let source = match &self.config_file {
            Some(p) => format!("# effective config: {} plus defaults\n", p.display()),
            None => "# effective config: defaults (no config file)\n".into(),
        };
        // Serialising a struct of plain optional scalars cannot fail.
        source + &toml::to_string(&file).unwrap_or_default()
    }

    /// Keys whose change only a restart applies.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.mode != new.mode {
            keys.push("mode");
        }
        if self.socket != new.socket {
            keys.push("socket");
        }
        if self.state_dir != new.state_dir {
            keys.push("state_dir");
        }
        if self.socket_mode != new.socket_mode {
            keys.push("socket_mode");
        }
        keys
    }
}

/// System mode as root, or when systemd gave us a runtime directory outside `/run/user/`
/// (a system service running as its own user); user mode otherwise.
fn default_mode(env: &dyn Fn(&str) -> Option<std::ffi::OsString>, root: bool) -> RunMode {
    let system_unit = env("RUNTIME_DIRECTORY")
        .is_some_and(|dir| !dir.to_string_lossy().starts_with("/run/user/"));
    if root || system_unit {
        RunMode::System
    } else {
        RunMode::User
    }
}

/// `value` when `range` holds it; else why not, with the range.
fn bounded<T: PartialOrd + Display>(
    value: T,
    range: RangeInclusive<T>,
    unit: &str,
) -> Result<T, String> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{value} is outside {}..={}{unit}: give a value in that range",
            range.start(),
            range.end()
        ))
    }
}

/// Why `default_agent` names no profile, when it does not (`set`: the file names it, rather
/// than leaving the built-in default).
fn default_agent_missing(profiles: &[Profile], name: &str, set: bool) -> Option<String> {
    if profiles.iter().any(|p| p.name == name) {
        return None;
    }
    let known = profiles
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Some(match (set, known.is_empty()) {
        (_, true) => {
            "the config defines no agent profile: add an [agents.NAME] table, or remove the empty [agents]".into()
        }
        (true, false) => format!(
            "`{name}` names no agent profile: use one of {known}, or define [agents.{name}]"
        ),
        (false, false) => format!(
            "it is not set, so it is `{name}`, and the config defines no [agents.{name}]: set default_agent to one of {known}"
        ),
    })
}

fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<std::ffi::OsString> {
        None
    }

    fn resolve(text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "t.toml".into(),
            message: e.to_string(),
        })?;
        let overrides = Overrides {
            state_dir: Some("/s".into()),
            socket: Some("/s.sock".into()),
            ..Default::default()
        };
        Config::resolve(file, Some("t.toml".into()), &overrides, &no_env, false)
    }

    #[test]
    fn defaults_in_user_mode() {
        let c = resolve("").unwrap();
        assert_eq!(c.mode, RunMode::User);
        assert_eq!(c.socket_mode, 0o600);
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.max_frame_bytes, 4 << 20);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = resolve("max_conections = 3").unwrap_err().to_string();
        assert!(err.contains("max_conections"), "{err}");
        assert!(err.contains("t.toml"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = resolve("socket_mode = \"0999\"").unwrap_err().to_string();
        assert!(
            err.contains("socket_mode") && err.contains("t.toml"),
            "{err}"
        );
        let err = resolve("max_connections = 0").unwrap_err().to_string();
        assert!(err.contains("max_connections"), "{err}");
        let err = resolve("log_level = \"info,[\"").unwrap_err().to_string();
        assert!(err.contains("log_level"), "{err}");
    }

    #[test]
    fn numbers_and_durations_are_bounded_and_the_error_gives_the_range() {
        // Accepted before: a start then panicked adding it to an Instant.
        let err = resolve("stall_after = 9223372036854775807")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`stall_after`") && err.contains("t.toml") && err.contains("1..=2592000"),
            "{err}"
        );
        for (text, key) in [
            (
                "migrate_lock_timeout = 9223372036854775807",
                "migrate_lock_timeout",
            ),
            ("max_connections = 4294967295", "max_connections"),
            ("pane_log_max = 18446744073709551615", "pane_log_max"),
        ] {
            let err = resolve(text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("..="),
                "{text}: {err}"
            );
        }
        let c = resolve("stall_after = 2592000\nmigrate_lock_timeout = 0\nmax_connections = 65536")
            .unwrap();
        assert_eq!(c.stall_after, Duration::from_secs(2_592_000));
    }

    #[test]
    fn default_agent_must_name_a_profile() {
        let err = resolve("default_agent = \"nope\"").unwrap_err().to_string();
        assert!(
            err.contains("`default_agent`") && err.contains("nope") && err.contains("claude"),
            "{err}"
        );
        // Left unset, it means `claude`: a config without that profile must name its default.
        let err = resolve("[agents.x]\nkind = \"custom\"\ncommand = [\"sh\"]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`default_agent`") && err.contains("[agents.claude]") && err.contains("x"),
            "{err}"
        );
        let c = resolve("default_agent = \"x\"\n[agents.x]\nkind = \"custom\"\ncommand = [\"sh\"]")
            .unwrap();
        assert_eq!(c.default_agent, "x");
    }

    #[test]
    fn socket_mode_must_let_the_owner_connect() {
        for mode in ["0000", "0066", "0400", "0200"] {
            let err = resolve(&format!("socket_mode = \"{mode}\""))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`socket_mode`") && err.contains("0600") && err.contains("0660"),
                "{mode}: {err}"
            );
        }
        for mode in ["0600", "0660", "0666", "0700"] {
            assert!(
                resolve(&format!("socket_mode = \"{mode}\"")).is_ok(),
                "{mode}"
            );
        }
    }

    #[test]
    fn print_config_round_trips() {
        let c = resolve("socket_mode = \"0640\"\nmode = \"system\"").unwrap();
        let text = c.to_toml();
        let again: ConfigFile = toml::from_str(&text).unwrap();
        assert_eq!(again.socket_mode.as_deref(), Some("0640"));
        assert_eq!(again.mode, Some(ModeName::System));
    }

    #[test]
    fn a_bad_agent_profile_does_not_fail_the_config() {
        let c = resolve(
            "default_agent = \"good\"\n[agents.bad]\nkind = \"gemini-cli\"\ncommand = 5\n[agents.good]\nkind = \"custom\"\ncommand = [\"sh\"]",
        )
        .unwrap();
        assert_eq!(c.agents.len(), 2);
        assert!(!c.agents[0].problems.is_empty());
        assert!(c.agents[1].problems.is_empty());
        let again: ConfigFile = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again.agents.unwrap().len(), 2);
    }

    #[test]
    fn no_agents_means_the_builtin_claude_profile() {
        let c = resolve("").unwrap();
        assert_eq!(c.agents.len(), 1);
        assert_eq!(c.agents[0].name, "claude");
        assert_eq!(c.default_agent, "claude");
        let err = resolve("waiting_input_patterns = [\"(\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("waiting_input_patterns"), "{err}");
    }

    #[test]
    fn system_unit_runtime_dir_means_system_mode() {
        let env = |n: &str| (n == "RUNTIME_DIRECTORY").then(|| "/run/aifactory".into());
        assert_eq!(default_mode(&env, false), RunMode::System);
        let user = |n: &str| (n == "RUNTIME_DIRECTORY").then(|| "/run/user/1000/aifactory".into());
        assert_eq!(default_mode(&user, false), RunMode::User);
    }
}
