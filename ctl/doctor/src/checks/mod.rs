//! The checks, in the order of the troubleshooting guide, one function each in the module of
//! what it looks at. Each returns one [`Check`] under a stable name. Here: the order, the time
//! bound of the checks that run programs, and what several checks read of the facts.

mod agents;
mod daemon;
mod projects;
mod sessions;
mod shim;
mod store;
mod systemd;
mod tasks;

use std::future::Future;

use aifactory_common::diagnose::Check;
use aifactory_common::protocol::AgentInfo;

use crate::{Facts, bounds, skip};

/// The checks whose result depends on who runs them, not only on the daemon and the machine:
/// the caller's uid (`socket-access`), its HOME and uid (`legacy-projects`), and the shim as
/// the caller reaches it (`http-token`, `http-shim`, `console-auth`: aifactoryctl reads the
/// token file in the daemon's state directory and asks the address given by `--http` over TCP;
/// the shim reads its own token file and asks its own router).
pub const CALLER_DEPENDENT: &[&str] = &[
    "socket-access",
    "legacy-projects",
    "http-token",
    "http-shim",
    "console-auth",
];

pub async fn all(f: &Facts) -> Vec<Check> {
    vec![
        daemon::daemon(f),
        daemon::socket_access(f),
        agents::agent_profiles(f),
        agents::agent_sandbox(f),
        tasks::tasks_stuck(f),
        tasks::task_sandbox(f),
        sessions::panes_root(f),
        sessions::stale_sessions(f),
        sessions::stray_processes(f),
        sessions::sessions_output(f),
        shim::http_token(f),
        shim::http_shim(f),
        shim::console_auth(f),
        projects::legacy_projects(f),
        store::state_dir(f),
        bounded("project-paths", projects::project_paths(f)).await,
        projects::pr_providers(f),
        agents::deprecated_providers(f),
        agents::test_fixtures(f),
        store::migrations(f),
        bounded("systemd", systemd::systemd()).await,
    ]
}

/// A check that runs programs, within [`bounds::CHECK`]: past it, the check is skipped (its
/// programs are killed: they are spawned with `kill_on_drop`).
async fn bounded(name: &str, check: impl Future<Output = Check>) -> Check {
    match tokio::time::timeout(bounds::CHECK, check).await {
        Ok(check) => check,
        Err(_) => skip(
            name,
            &format!("it did not finish within {} s", bounds::CHECK.as_secs()),
            Some("run it again; if it keeps timing out, see what hangs (`ps -ef --forest`)".into()),
        ),
    }
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

const RELOAD: &str =
    "then reload the daemon (`systemctl reload aifactoryd`, or `kill -HUP $(pidof aifactoryd)`)";
