//! `aifactoryctl status`: the daemon's identity, paths and counters, and which other daemon
//! listens, for someone with both a user daemon and the system one.

use std::path::PathBuf;

use aifactory_common::protocol::{HostLoad, RunMode, StatusInfo, StoreHealth};
use aifactory_common::{PROTOCOL_VERSION, paths};

use crate::cli::Cli;
use crate::connect::{self, Target};
use crate::exit::Failure;

pub async fn run(cli: &Cli) -> Result<(), Failure> {
    let target = connect::target(cli)?;
    let client = connect::connect_to(&target).await?;
    let status = client.status().await?;
    // Other daemons listening beside it are only known for this machine's.
    let others = match &target {
        Target::Local(socket) => {
            paths::other_daemons(socket, &paths::process_env, &paths::is_socket)
        }
        Target::Ssh(_) => Vec::new(),
    };
    if cli.json {
        println!("{}", to_json(&status, &others));
    } else {
        print!("{}", to_text(&status, &others));
    }
    Ok(())
}

fn to_json(s: &StatusInfo, others: &[(PathBuf, RunMode)]) -> serde_json::Value {
    serde_json::json!({
        "version": s.version,
        "pid": s.pid,
        "uptime_s": s.uptime_ms / 1000,
        "protocol": s.protocol,
        "mode": s.mode.as_str(),
        "socket": s.socket,
        "state_dir": s.state_dir,
        "config_file": s.config_file,
        "connections": s.connections,
        "max_connections": s.max_connections,
        "schema_version": s.schema_version,
        "store": store_text(&s.store),
        "store_writable": s.store == StoreHealth::Writable,
        "panes_dir": s.panes_dir,
        // `[path, sentence]` pairs as before; `panes_skip_reasons` has the same, typed.
        "panes_skipped": s
            .panes_skipped
            .iter()
            .map(|(path, why)| serde_json::json!([path, why.to_string()]))
            .collect::<Vec<_>>(),
        "panes_skip_reasons": s
            .panes_skipped
            .iter()
            .map(|(path, why)| serde_json::json!({ "path": path, "reason": why }))
            .collect::<Vec<_>>(),
        "sessions_running": s.sessions_running,
        "sessions_output_blocked": s.sessions_output_blocked,
        "landlock_abi": s.landlock_abi,
        "sandbox": s.sandbox,
        "limits_available": s.limits_available,
        "limits": s.limits,
        "load": s.load,
        "also_listening": others
            .iter()
            .map(|(socket, mode)| serde_json::json!({ "socket": socket, "mode": mode.as_str() }))
            .collect::<Vec<_>>(),
    })
}

fn store_text(health: &StoreHealth) -> String {
    match health {
        StoreHealth::Writable => "writable".into(),
        StoreHealth::ReadOnly { reason } => format!("read-only: {reason}"),
        StoreHealth::WriteFailed { reason } => format!("last write failed: {reason}"),
    }
}

fn to_text(s: &StatusInfo, others: &[(PathBuf, RunMode)]) -> String {
    let secs = s.uptime_ms / 1000;
    let uptime = format!("{}h {:02}m {:02}s", secs / 3600, secs / 60 % 60, secs % 60);
    let config = s
        .config_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(none: defaults)".into());
    format!(
        "aifactoryd {} (pid {}), up {uptime}, {} mode\n\
         protocol     {} (aifactoryctl speaks {PROTOCOL_VERSION})\n\
         socket       {}\n\
         state dir    {}\n\
         config       {config}\n\
         connections  {} of {}\n\
         schema       version {}\n\
         store        {}\n\
         panes dir    {}{}\n\
         sessions     {} running{}\n\
         sandbox      {}\n\
         limits       {}\n\
         load         {}\n{}",
        s.version,
        s.pid,
        s.mode.as_str(),
        s.protocol,
        s.socket.display(),
        s.state_dir.display(),
        s.connections,
        s.max_connections,
        s.schema_version,
        store_text(&s.store),
        s.panes_dir.display(),
        panes_fallback_text(s),
        s.sessions_running,
        blocked_text(s),
        s.sandbox,
        s.limits,
        load_text(&s.load),
        others_text(others),
    )
}

/// The host's load in one line: running tasks, load average over CPUs, memory available of
/// total (each "unknown" where the daemon could not read it). `hosts list` shows the same.
pub fn load_text(load: &HostLoad) -> String {
    let average = match &load.load_average {
        Some(l) => format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen),
        None => "unknown".into(),
    };
    let memory = match &load.memory {
        Some(m) => format!(
            "{} available of {}",
            gib(m.available_bytes),
            gib(m.total_bytes)
        ),
        None => "unknown".into(),
    };
    format!(
        "{} tasks running, load {average} on {} CPUs, memory {memory}",
        load.tasks_running, load.cpus
    )
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Running sessions whose output cannot be written, when there are any.
fn blocked_text(s: &StatusInfo) -> String {
    match s.sessions_output_blocked {
        0 => String::new(),
        n => format!(
            ", {n} with output blocked (their programs are held: see `aifactoryctl doctor`)"
        ),
    }
}

/// One line per other daemon: where it listens and how to reach it instead.
fn others_text(others: &[(PathBuf, RunMode)]) -> String {
    others
        .iter()
        .map(|(socket, mode)| {
            format!(
                "also         a {} daemon listens at {} (--socket {} reaches it)\n",
                mode.as_str(),
                socket.display(),
                socket.display()
            )
        })
        .collect()
}

/// Why earlier pane-directory candidates were passed over, one indented line each.
fn panes_fallback_text(s: &StatusInfo) -> String {
    s.panes_skipped
        .iter()
        .map(|(path, why)| {
            format!(
                "\n             (fallback: {} not used: {why})",
                path.display()
            )
        })
        .collect()
}
