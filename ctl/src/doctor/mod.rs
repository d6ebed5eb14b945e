//! `aifactoryctl doctor`: every failure of the troubleshooting guide looked for in one command,
//! each reported OK, WARN or FAIL with what was found and, when it is not OK, the exact fix, or
//! SKIP when it could not run (never counted as OK: the summary and the exit status say so).
//!
//! It asks the running daemon what only the daemon knows (tasks, sessions, the panes root it
//! uses, its agents' effective commands) and looks at the machine for the rest: the installed
//! `aifactoryd check --json` (config, profiles, migrations, lock, state directory), the HTTP
//! shim and its token, the old product's files, systemd. A daemon that does not answer is one
//! failed check, not the end of the report.

mod checks;
mod http;
mod local;

use std::path::Path;

use aifactory_common::diagnose::{Check, CheckStatus, LocalFacts};
use aifactory_common::protocol::{
    AgentInfo, ProjectInfo, SandboxInfo, SessionInfo, StatusInfo, StrayProcess, TaskInfo,
};
use aifactory_common::{Client, ClientError, ClientOptions};

use crate::cli::Cli;
use crate::exit::{FAILED, Failure, INCOMPLETE};
use local::{LocalFactsError, local_facts};

/// What the running daemon told us, when it answered.
pub struct Online {
    pub status: StatusInfo,
    pub agents: Vec<AgentInfo>,
    pub tasks: Vec<TaskInfo>,
    pub sessions: Vec<SessionInfo>,
    pub projects: Vec<ProjectInfo>,
    /// Processes of the daemon's sessions that no live session accounts for.
    pub strays: Vec<StrayProcess>,
    /// Each profile's cage (`None`: a daemon too old to say).
    pub sandboxes: Option<Vec<(String, SandboxInfo)>>,
}

/// Everything the checks look at.
pub struct Facts {
    pub online: Result<Online, ClientError>,
    pub local: Result<LocalFacts, LocalFactsError>,
    pub http: String,
}

impl Facts {
    pub fn online(&self) -> Option<&Online> {
        self.online.as_ref().ok()
    }
}

pub fn check(name: &str, status: CheckStatus, message: String, fix: Option<String>) -> Check {
    Check {
        check: name.into(),
        status,
        message,
        fix,
    }
}

pub fn ok(name: &str, message: String) -> Check {
    check(name, CheckStatus::Ok, message, None)
}

pub fn warn(name: &str, message: String, fix: String) -> Check {
    check(name, CheckStatus::Warn, message, Some(fix))
}

pub fn fail(name: &str, message: String, fix: String) -> Check {
    check(name, CheckStatus::Fail, message, Some(fix))
}

/// A check that could not run, with why (`not checked: <why>`) and what would let it run.
pub fn skip(name: &str, why: &str, fix: Option<String>) -> Check {
    check(name, CheckStatus::Skip, format!("not checked: {why}"), fix)
}

/// The last line of the text report: `all 17 checks OK`, else how many of each status, the
/// skipped ones as `N not checked`.
fn summary(report: &[Check]) -> String {
    let count = |status| report.iter().filter(|c| c.status == status).count();
    if count(CheckStatus::Ok) == report.len() {
        return format!("summary: all {} checks OK", report.len());
    }
    let parts: Vec<String> = [
        (CheckStatus::Ok, "OK"),
        (CheckStatus::Warn, "WARN"),
        (CheckStatus::Fail, "FAIL"),
        (CheckStatus::Skip, "not checked"),
    ]
    .into_iter()
    .filter(|(status, _)| count(*status) > 0)
    .map(|(status, word)| format!("{} {word}", count(status)))
    .collect();
    format!("summary: {}", parts.join(", "))
}

fn names(report: &[Check], status: CheckStatus) -> Vec<&str> {
    report
        .iter()
        .filter(|c| c.status == status)
        .map(|c| c.check.as_str())
        .collect()
}

async fn ask(client: &Client) -> Result<Online, ClientError> {
    let status = client.status().await?;
    let agents = client.agent_list().await?;
    let tasks = client.task_list(None).await?;
    let sessions = client.session_list().await?;
    let projects = client.project_list().await?;
    let strays = client.session_strays().await?;
    let mut sandboxes = Some(Vec::new());
    for agent in &agents {
        match client.agent_show(agent.name.as_str()).await {
            Ok(detail) => {
                if let Some(list) = sandboxes.as_mut() {
                    list.push((agent.name.clone(), detail.sandbox));
                }
            }
            Err(_) => sandboxes = None,
        }
    }
    Ok(Online {
        status,
        agents,
        tasks,
        sessions,
        projects,
        strays,
        sandboxes,
    })
}

/// Paths given on the doctor's command line.
pub struct Paths<'a> {
    pub state_dir: Option<&'a Path>,
    pub config: Option<&'a Path>,
}

pub async fn run(
    cli: &Cli,
    http: &str,
    state_dir: Option<&Path>,
    config: Option<&Path>,
) -> Result<(), Failure> {
    let socket = crate::connect::socket(cli).ok();
    let online = match &socket {
        Some(socket) => {
            match Client::connect(&ClientOptions::new(socket, "aifactoryctl doctor")).await {
                Ok(client) => ask(&client).await,
                Err(e) => Err(e),
            }
        }
        None => Err(ClientError::Unreachable {
            socket: Default::default(),
            source: std::io::Error::other("no socket path: set XDG_RUNTIME_DIR or pass --socket"),
        }),
    };
    let given = Paths { state_dir, config };
    let local = local_facts(cli, online.as_ref().ok(), &given).await;
    let facts = Facts {
        online,
        local,
        http: http.to_string(),
    };
    let report = checks::all(&facts).await;
    if cli.json {
        println!("{}", serde_json::to_value(&report).unwrap_or_default());
    } else {
        for c in &report {
            println!("{:<5} {:<20} {}", c.status.as_str(), c.check, c.message);
            if let Some(fix) = &c.fix {
                println!("{:<26} fix: {fix}", "");
            }
        }
        println!("{}", summary(&report));
    }
    let failed = names(&report, CheckStatus::Fail);
    let skipped = names(&report, CheckStatus::Skip);
    let (code, message) = if !failed.is_empty() {
        (
            FAILED,
            format!("{} check(s) failed: {}", failed.len(), failed.join(", ")),
        )
    } else if !skipped.is_empty() {
        (
            INCOMPLETE,
            format!(
                "{} check(s) not checked: {}; do what each says, then run the doctor again",
                skipped.len(),
                skipped.join(", ")
            ),
        )
    } else {
        return Ok(());
    };
    if cli.json {
        // The JSON is the report; the exit status says how it came out.
        std::process::exit(code.into());
    }
    Err(Failure { code, message })
}
