//! The checks, in the order of the troubleshooting guide, one function each in the module of
//! what it looks at. Each returns one [`Check`] under a stable name. Here: the order, and what
//! several checks read of the facts.

mod agents;
mod daemon;
mod projects;
mod sessions;
mod shim;
mod store;
mod systemd;
mod tasks;

use std::path::PathBuf;

use aifactory_common::diagnose::Check;
use aifactory_common::protocol::AgentInfo;

use super::Facts;

pub async fn all(f: &Facts) -> Vec<Check> {
    vec![
        daemon::daemon(f),
        daemon::socket_access(f),
        agents::agent_profiles(f),
        agents::agent_sandbox(f),
        tasks::tasks_stuck(f),
        sessions::panes_root(f),
        sessions::stale_sessions(f),
        sessions::stray_processes(f),
        sessions::sessions_output(f),
        shim::http_token(f),
        shim::http_shim(f).await,
        shim::console_auth(f).await,
        projects::legacy_projects(f),
        store::state_dir(f),
        projects::project_paths(f).await,
        projects::pr_providers(f),
        agents::deprecated_providers(f),
        agents::test_fixtures(f),
        store::migrations(f),
        systemd::systemd().await,
    ]
}

/// The agent profiles, from the daemon or else from `aifactoryd check`.
fn profiles(f: &Facts) -> Option<&[AgentInfo]> {
    match (f.online(), &f.local) {
        (Some(online), _) => Some(&online.agents),
        (None, Ok(local)) => Some(&local.agents),
        (None, Err(_)) => None,
    }
}

fn config_hint(f: &Facts) -> String {
    let file = f
        .online()
        .and_then(|o| o.status.config_file.clone())
        .or_else(|| f.local.as_ref().ok().and_then(|l| l.config_file.clone()));
    match file {
        Some(file) => format!("in {}", file.display()),
        None => "in the daemon's config file (see `aifactoryd --print-config`)".into(),
    }
}

fn state_dir_path(f: &Facts) -> Option<PathBuf> {
    f.online()
        .map(|o| o.status.state_dir.clone())
        .or_else(|| f.local.as_ref().ok().map(|l| l.state_dir.clone()))
}

const RELOAD: &str =
    "then reload the daemon (`systemctl reload aifactoryd`, or `kill -HUP $(pidof aifactoryd)`)";
