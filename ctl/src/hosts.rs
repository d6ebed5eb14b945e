//! `aifactoryctl hosts add|list|remove`: the named hosts of `--host NAME` (stored by
//! [`crate::contexts`]), and each one's reachability, version and load as its own daemon's
//! `status` reports them.

use std::time::Duration;

use aifactory_common::host::HostUrl;
use aifactory_common::protocol::HostLoad;

use crate::cli::{Cli, HostsCommand};
use crate::connect;
use crate::contexts::{self, HostEntry};
use crate::exit::{FAILED, Failure, NOT_FOUND};

/// How long `hosts list` gives one host to answer before calling it unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(cli: &Cli, command: &HostsCommand) -> Result<(), Failure> {
    let path = contexts::file()?;
    match command {
        HostsCommand::Add {
            name,
            url,
            ssh_config,
        } => {
            contexts::check_name(name)?;
            url.parse::<HostUrl>().map_err(|e| Failure {
                code: FAILED,
                message: e.to_string(),
            })?;
            let ssh_config = match ssh_config {
                Some(file) => Some(std::path::absolute(file).map_err(|e| Failure {
                    code: FAILED,
                    message: format!("cannot make {} absolute: {e}", file.display()),
                })?),
                None => None,
            };
            let mut file = contexts::load(&path)?;
            if file.hosts.contains_key(name) {
                return Err(Failure {
                    code: FAILED,
                    message: format!(
                        "a host called `{name}` exists already in {}: remove it first (`aifactoryctl hosts remove {name}`)",
                        path.display()
                    ),
                });
            }
            file.hosts.insert(
                name.clone(),
                HostEntry {
                    url: url.clone(),
                    ssh_config,
                },
            );
            contexts::save(&path, &file)?;
            if !cli.json {
                println!("added host {name} ({url})");
            }
            Ok(())
        }
        HostsCommand::Remove { name } => {
            let mut file = contexts::load(&path)?;
            if file.hosts.remove(name).is_none() {
                return Err(Failure {
                    code: NOT_FOUND,
                    message: format!("no host called `{name}` in {}", path.display()),
                });
            }
            contexts::save(&path, &file)?;
            if !cli.json {
                println!("removed host {name}");
            }
            Ok(())
        }
        HostsCommand::List => {
            let file = contexts::load(&path)?;
            // Every host is asked at once: one that hangs does not delay the others.
            let probes = file.hosts.iter().map(|(name, entry)| async move {
                (name.clone(), entry.clone(), probe(entry).await)
            });
            let rows = futures::future::join_all(probes).await;
            if cli.json {
                let list: Vec<serde_json::Value> = rows.iter().map(to_json).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                print!("{}", to_text(&rows));
            }
            Ok(())
        }
    }
}

/// What one host's daemon said about itself.
#[derive(Debug)]
struct Probe {
    version: String,
    protocol: u16,
    sessions: usize,
    sessions_running: u32,
    tasks: usize,
    tasks_active: usize,
    load: HostLoad,
}

async fn probe(entry: &HostEntry) -> Result<Probe, Failure> {
    let ask = async {
        let target = connect::resolve(&entry.url, entry.ssh_config.clone())?;
        let client = connect::connect_to(&target).await?;
        let status = client.status().await?;
        let sessions = client.session_list().await?;
        let tasks = client.task_list(None).await?;
        Ok::<_, Failure>(Probe {
            version: status.version,
            protocol: status.protocol,
            sessions: sessions.len(),
            sessions_running: status.sessions_running,
            tasks: tasks.len(),
            tasks_active: tasks.iter().filter(|t| t.phase.is_active()).count(),
            load: status.load,
        })
    };
    match tokio::time::timeout(PROBE_TIMEOUT, ask).await {
        Ok(result) => result,
        Err(_) => Err(Failure {
            code: crate::exit::UNREACHABLE,
            message: format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
        }),
    }
}

type Row = (String, HostEntry, Result<Probe, Failure>);

fn to_json((name, entry, probe): &Row) -> serde_json::Value {
    match probe {
        Ok(p) => serde_json::json!({
            "name": name,
            "url": entry.url,
            "reachable": true,
            "version": p.version,
            "protocol": p.protocol,
            "sessions": p.sessions,
            "sessions_running": p.sessions_running,
            "tasks": p.tasks,
            "tasks_active": p.tasks_active,
            "tasks_running": p.load.tasks_running,
            "cpus": p.load.cpus,
            "load_average": p.load.load_average,
            "memory": p.load.memory,
        }),
        Err(failure) => serde_json::json!({
            "name": name,
            "url": entry.url,
            "reachable": false,
            "error": failure.message,
        }),
    }
}

fn to_text(rows: &[Row]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no hosts: add one with `aifactoryctl hosts add NAME ssh://[user@]host`\n");
        return out;
    }
    for (name, entry, probe) in rows {
        match probe {
            Ok(p) => out.push_str(&format!(
                "{name:<16} {:<32} up    {} (protocol {})  sessions {} ({} running)  tasks {} ({} active)\n{:<16} {}\n",
                entry.url,
                p.version,
                p.protocol,
                p.sessions,
                p.sessions_running,
                p.tasks,
                p.tasks_active,
                "",
                crate::status::load_text(&p.load)
            )),
            Err(failure) => out.push_str(&format!(
                "{name:<16} {:<32} DOWN  {}\n",
                entry.url, failure.message
            )),
        }
    }
    out
}
