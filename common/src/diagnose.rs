//! Shapes of `aifactoryctl doctor`: a check's result, and what `aifactoryd check --json` reports
//! of the local machine (config, agent profiles, migrations, panes root) when the doctor cannot
//! or need not ask the running daemon. Also the end-of-life table of agent providers, which the
//! daemon enforces and the doctor explains.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::{AgentInfo, AgentKind, SkipReason};

/// How long the daemon takes at most to answer `DoctorFacts`: what it has not found out by
/// then (a git that hangs on a project) it reports as not found out in time. A client waits
/// a little longer than this for the answer.
pub const DOCTOR_FACTS_WITHIN: Duration = Duration::from_secs(8);

/// Providers past (or reaching) their end of life: kind, last day (ISO date), that day in days
/// since the Unix epoch, and where to go instead.
pub const END_OF_LIFE: &[(AgentKind, &str, u64, &str)] = &[(
    AgentKind::GeminiCli,
    "2026-06-18",
    20_622,
    "move the profile to an OpenAI-compatible endpoint (kind = \"openai-compatible\", e.g. base_url = \"https://generativelanguage.googleapis.com/v1beta/openai\" with api_key_env) or to Claude Code (kind = \"claude-code\")",
)];

/// The end of life of `kind`, if it has one: (last day, day number, advice).
pub fn end_of_life(kind: AgentKind) -> Option<(&'static str, u64, &'static str)> {
    END_OF_LIFE
        .iter()
        .find(|(k, ..)| *k == kind)
        .map(|(_, day, n, advice)| (*day, *n, *advice))
}

/// How a check came out. `Skip` is a check that could not run (its message says why, its fix
/// what would let it run): it is never counted as OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "OK",
            CheckStatus::Warn => "WARN",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "SKIP",
        }
    }
}

/// One line of the doctor's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Check {
    /// The check's stable name (`daemon`, `agent-profiles`, `console-auth`, ...).
    pub check: String,
    pub status: CheckStatus,
    /// What was found; for a `skip`, `not checked: <why>`.
    pub message: String,
    /// The exact command to run or config line to change; set for `warn` and `fail`, and for a
    /// `skip` when something would let the check run.
    pub fix: Option<String>,
}

/// Who holds (or last held) the migration lock: the JSON its holder writes into
/// `<state dir>/migrate.lock`, for diagnostics only (the `flock` is what locks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: Option<u32>,
    pub host: Option<String>,
    /// RFC 3339, UTC.
    pub started: Option<String>,
    /// The schema versions the holder migrates between, once it knows them.
    pub from: Option<u32>,
    pub to: Option<u32>,
}

/// The one spelling of a holder, shared by the daemon's lock-timeout error, `aifactoryd migrate
/// --status` and the doctor: `pid 1234 on host since 2026-11-26T00:00:00Z`.
impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid {pid}")?,
            None => f.write_str("an unknown pid")?,
        }
        if let Some(host) = &self.host {
            write!(f, " on {host}")?;
        }
        write!(
            f,
            " since {}",
            self.started.as_deref().unwrap_or("an unknown time")
        )
    }
}

/// The migration lock's holder as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    pub held: bool,
    pub holder_pid: Option<u32>,
    pub holder_host: Option<String>,
    pub since: Option<String>,
    /// Whether the holder's pid is alive as seen from here.
    pub holder_alive: bool,
}

impl LockState {
    /// The holder's part of the lock file (its versions are not reported here).
    pub fn holder(&self) -> LockHolder {
        LockHolder {
            pid: self.holder_pid,
            host: self.holder_host.clone(),
            started: self.since.clone(),
            from: None,
            to: None,
        }
    }
}

/// `free`, or `held by pid 1234 on host since ... (alive)`.
impl std::fmt::Display for LockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.held {
            return f.write_str("free");
        }
        let alive = if self.holder_alive {
            "alive"
        } else {
            "not visible from here"
        };
        write!(f, "held by {} ({alive})", self.holder())
    }
}

/// `aifactoryd migrate --status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationStatus {
    pub database: PathBuf,
    pub exists: bool,
    pub schema_version: u32,
    /// The newest migration this aifactoryd binary knows.
    pub known_version: u32,
    /// `0004_tasks`-style names.
    pub pending: Vec<String>,
    pub checksum_mismatch: Vec<String>,
    /// Applied by a newer aifactoryd.
    pub unknown_applied: Vec<String>,
    pub lock: LockState,
    pub newest_backup: Option<PathBuf>,
}

/// `aifactoryd check --json`: what the daemon's own code finds on this machine, with the same
/// config a daemon started the same way would use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalFacts {
    pub config_file: Option<PathBuf>,
    /// Why the config cannot be used; everything below is then from the defaults.
    pub config_error: Option<String>,
    pub state_dir: PathBuf,
    /// Why the state directory does not take a file, if it does not.
    pub state_dir_error: Option<String>,
    pub agents: Vec<AgentInfo>,
    pub migrations: Result<MigrationStatus, String>,
    /// The panes root a daemon would use now, or why none works.
    pub panes_root: Result<PathBuf, String>,
    /// Candidates passed over before it, with why.
    pub panes_skipped: Vec<(PathBuf, SkipReason)>,
    pub test_agent_cmd: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_holder_is_spelled_once() {
        let state = LockState {
            held: true,
            holder_pid: Some(42),
            holder_host: Some("test-host".into()),
            since: Some("2026-11-26T00:00:00Z".into()),
            holder_alive: false,
        };
        assert_eq!(
            state.to_string(),
            "held by pid 42 on test-host since 2026-11-26T00:00:00Z (not visible from here)"
        );
        assert_eq!(
            LockHolder::default().to_string(),
            "an unknown pid since an unknown time"
        );
        let free = LockState {
            held: false,
            ..state
        };
        assert_eq!(free.to_string(), "free");
    }
}
