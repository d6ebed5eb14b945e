//! `aifactoryctl doctor`: every failure of the troubleshooting guide looked for in one command,
//! each reported OK, WARN or FAIL with what was found and, when it is not OK, the exact fix, or
//! SKIP when it could not run (never counted as OK: the summary and the exit status say so).
//!
//! It asks the running daemon what only the daemon knows (tasks, sessions, the panes root it
//! uses, its agents' effective commands) and looks at the machine for the rest: the installed
//! `aifactoryd check --json` (config, profiles, migrations, lock, state directory), the HTTP
//! shim and its token, the old product's files, systemd. A daemon that does not answer is one
//! failed check, not the end of the report.
//!
//! The checks and the facts they look at live in `aifactory-doctor` (shared with aifactory-http,
//! which serves the same report); this module gathers the facts as aifactoryctl sees them (its
//! socket, the paths given on its command line, the shim over TCP at `--http`) and prints the
//! report with its summary and exit status.

use std::path::Path;

use aifactory_common::diagnose::{Check, CheckStatus};
use aifactory_common::{ClientError, ClientOptions};
use aifactory_doctor::{Facts, local, online, shim};

use crate::cli::Cli;
use crate::connect::Target;
use crate::exit::{FAILED, Failure, INCOMPLETE};
use aifactory_common::ssh::SshHost;

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

pub async fn run(
    cli: &Cli,
    http: &str,
    state_dir: Option<&Path>,
    config: Option<&Path>,
) -> Result<(), Failure> {
    let socket = match crate::connect::host_arg(cli) {
        None => crate::connect::local_socket(cli).ok(),
        Some(_) => match crate::connect::target(cli)? {
            Target::Local(socket) => Some(socket),
            // The doctor looks at the machine the daemon runs on: run that machine's own.
            Target::Ssh(host) => return remote(cli, &host, http, state_dir, config).await,
        },
    };
    let online = match &socket {
        Some(socket) => online::ask(&ClientOptions::new(socket, "aifactoryctl doctor")).await,
        None => Err(ClientError::Unreachable {
            socket: Default::default(),
            source: std::io::Error::other("no socket path: set XDG_RUNTIME_DIR or pass --socket"),
        }
        .into()),
    };
    // The paths given, else those the running daemon uses (if it answers).
    let answered = online.as_ref().ok();
    let local = local::facts(&local::Args {
        program: "aifactoryctl",
        state_dir: state_dir
            .map(Path::to_path_buf)
            .or_else(|| answered.map(|o| o.status.state_dir.clone())),
        config: config
            .map(Path::to_path_buf)
            .or_else(|| answered.and_then(|o| o.status.config_file.clone())),
        socket: cli.socket.clone(),
    })
    .await;
    let token_file = aifactory_doctor::state_dir(&online, &local).map(|d| d.join(shim::TOKEN_FILE));
    let shim = shim::probe(
        &shim::Tcp {
            addr: http.to_string(),
        },
        http.to_string(),
        token_file,
    )
    .await;
    let facts = Facts {
        online,
        local,
        shim,
    };
    let report = aifactory_doctor::run(&facts).await;
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

/// `aifactoryctl doctor` on the remote host over ssh, its report printed here as it comes and
/// its exit status ours.
async fn remote(
    cli: &Cli,
    host: &SshHost,
    http: &str,
    state_dir: Option<&Path>,
    config: Option<&Path>,
) -> Result<(), Failure> {
    // The remote command line goes through the remote user's shell: quote every word.
    let quote = |word: &str| format!("'{}'", word.replace('\'', r"'\''"));
    let mut words = vec!["aifactoryctl".to_string(), "doctor".into()];
    words.push(format!("--http={}", quote(http)));
    if let Some(dir) = state_dir {
        words.push(format!("--state-dir={}", quote(&dir.to_string_lossy())));
    }
    if let Some(file) = config {
        words.push(format!("--config={}", quote(&file.to_string_lossy())));
    }
    if cli.json {
        words.push("--json".into());
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut cmd = host.command(&words)?;
    cmd.stdin(std::process::Stdio::null());
    let status = cmd.status().await.map_err(|e| Failure {
        code: crate::exit::UNREACHABLE,
        message: format!("cannot run ssh to reach {}: {e}", host.name()),
    })?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code @ (1 | 6)) => std::process::exit(code),
        _ => Err(aifactory_common::ssh::diagnose(host.name(), status, "")
            .map(Failure::from)
            .unwrap_or(Failure {
                code: FAILED,
                message: format!("the doctor on {} ended with {status}", host.name()),
            })),
    }
}
