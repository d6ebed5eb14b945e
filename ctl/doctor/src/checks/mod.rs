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
use aifactory_common::protocol::{AgentInfo, DoctorFacts};

use crate::online::{Online, OnlineError};
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
        projects::project_paths(f),
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

/// What the daemon sees of its own paths and processes, or why the check `name` cannot look:
/// it never looks with the caller's eyes instead (another uid, another mount namespace).
fn daemon_view<'a>(name: &str, online: &'a Online) -> Result<&'a DoctorFacts, Check> {
    online
        .view
        .as_ref()
        .map_err(|e| skip(name, &unseen(e), Some(VIEW_FIX.into())))
}

/// Why what the daemon sees is not known.
fn unseen(e: &OnlineError) -> String {
    format!("the daemon did not say what it sees of its own paths and processes: {e}")
}

const VIEW_FIX: &str = "run the doctor again; if it keeps failing, see the daemon's log (`journalctl -u aifactoryd -e`, or its stderr)";

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

/// The checks about the daemon's own paths and processes, fed by hand: they judge the
/// daemon's view, and without it they never say OK.
#[cfg(test)]
mod tests {
    use aifactory_common::diagnose::CheckStatus;
    use aifactory_common::protocol::{
        FileState, PathState, ProjectTree, RunMode, SessionProcess, StatusInfo, StoreHealth,
        TaskPaths, WorkTreeState,
    };

    use super::*;
    use crate::http::HttpError;
    use crate::local::LocalFactsError;
    use crate::shim::Shim;

    fn status() -> StatusInfo {
        StatusInfo {
            version: "0.1.0".into(),
            pid: 1,
            uptime_ms: 1,
            protocol: aifactory_common::PROTOCOL_VERSION,
            mode: RunMode::System,
            socket: "/run/aifactory/aifactoryd.sock".into(),
            state_dir: "/var/lib/aifactory".into(),
            config_file: None,
            connections: 1,
            max_connections: 1024,
            schema_version: 1,
            store: StoreHealth::Writable,
            panes_dir: "/run/aifactory/panes".into(),
            panes_skipped: Vec::new(),
            sessions_running: 0,
            sessions_output_blocked: 0,
            landlock_abi: 0,
            sandbox: String::new(),
            limits_available: false,
            limits: String::new(),
            load: aifactory_common::protocol::HostLoad {
                tasks_running: 0,
                cpus: 1,
                load_average: None,
                memory: None,
            },
        }
    }

    fn unanswered() -> Result<crate::Response, HttpError> {
        Err(HttpError::Answer(std::io::Error::other("not asked")))
    }

    fn facts(view: Result<DoctorFacts, OnlineError>) -> Facts {
        Facts {
            online: Ok(Online {
                status: status(),
                agents: Vec::new(),
                tasks: Vec::new(),
                sessions: Vec::new(),
                projects: Vec::new(),
                strays: Vec::new(),
                sandboxes: Some(Vec::new()),
                view,
            }),
            local: Err(LocalFactsError::NotFound { program: "test" }),
            shim: Shim {
                addr: "127.0.0.1:9".into(),
                token_file: None,
                health: unanswered(),
                tokenless_console: unanswered(),
                console_with_token: None,
            },
        }
    }

    fn view() -> DoctorFacts {
        DoctorFacts {
            uid: 999,
            projects: Vec::new(),
            tasks: Vec::new(),
            sessions: Vec::new(),
            answering_monitors: Vec::new(),
        }
    }

    fn project(name: &str, state: WorkTreeState) -> ProjectTree {
        ProjectTree {
            id: format!("p-{name}"),
            name: name.into(),
            path: format!("/srv/{name}").into(),
            state,
        }
    }

    fn task(spec_dir_state: PathState, progress_file_state: FileState) -> TaskPaths {
        TaskPaths {
            task_id: "t-1".into(),
            spec_id: "001".into(),
            spec_dir: "/srv/a/.aifactory/specs/001".into(),
            spec_dir_state,
            progress_file: "/srv/a/.aifactory/specs/001/progress.md".into(),
            progress_file_state,
        }
    }

    #[test]
    fn without_the_daemons_view_its_checks_are_skipped_with_why() {
        let f = facts(Err(OnlineError::TimedOut(bounds::DAEMON_VIEW)));
        for c in [
            projects::project_paths(&f),
            tasks::tasks_stuck(&f),
            sessions::stale_sessions(&f),
        ] {
            assert_eq!(c.status, CheckStatus::Skip, "{c:#?}");
            assert!(
                c.message.contains("did not say what it sees")
                    && c.message.contains("no answer within 10 s"),
                "{c:#?}"
            );
            assert!(c.fix.is_some(), "{c:#?}");
        }
    }

    #[test]
    fn project_paths_judges_each_work_tree_as_the_daemon_saw_it() {
        let mut seen = view();
        seen.projects = vec![project("a", WorkTreeState::WorkTree)];
        let c = projects::project_paths(&facts(Ok(seen.clone())));
        assert_eq!(c.status, CheckStatus::Ok, "{c:#?}");

        // Not found out in time: not a verdict, so not OK either.
        seen.projects
            .push(project("slow", WorkTreeState::TimedOut { after_ms: 8000 }));
        let c = projects::project_paths(&facts(Ok(seen.clone())));
        assert_eq!(c.status, CheckStatus::Skip, "{c:#?}");
        assert!(c.message.contains("slow (no answer within 8 s)"), "{c:#?}");

        seen.projects.push(project(
            "closed",
            WorkTreeState::Path(PathState::CannotInspect {
                error: "Permission denied (os error 13)".into(),
            }),
        ));
        seen.projects
            .push(project("gone", WorkTreeState::Path(PathState::Missing)));
        let c = projects::project_paths(&facts(Ok(seen)));
        assert_eq!(c.status, CheckStatus::Fail, "{c:#?}");
        assert!(
            c.message.contains("gone (p-gone): /srv/gone does not exist")
                && c.message.contains("closed (p-closed): /srv/closed cannot be inspected by the daemon: Permission denied")
                && c.message.contains("not checked: slow"),
            "{c:#?}"
        );
        let fix = c.fix.unwrap_or_default();
        assert!(
            fix.contains("aifactoryctl projects remove NAME")
                && fix.contains("let the daemon's user (uid 999) reach /srv/closed"),
            "{fix}"
        );
    }

    #[test]
    fn tasks_stuck_reports_spec_directories_and_progress_files_the_daemon_cannot_use() {
        let mut seen = view();
        seen.tasks = vec![task(PathState::Dir, FileState::Absent)];
        assert_eq!(
            tasks::tasks_stuck(&facts(Ok(seen.clone()))).status,
            CheckStatus::Ok
        );
        for (dir, file, found) in [
            (PathState::Missing, FileState::Absent, "is missing"),
            (
                PathState::Dir,
                FileState::Unreadable {
                    error: "Permission denied (os error 13)".into(),
                },
                "progress.md cannot be read: Permission denied",
            ),
        ] {
            seen.tasks = vec![task(dir, file)];
            let c = tasks::tasks_stuck(&facts(Ok(seen.clone())));
            assert_eq!(c.status, CheckStatus::Fail, "{c:#?}");
            assert!(c.message.contains(found), "{c:#?}");
        }
    }

    #[test]
    fn stale_sessions_reports_gone_processes_and_unknown_monitors_the_daemon_sees() {
        let mut seen = view();
        seen.sessions = vec![SessionProcess {
            session_id: "s-1".into(),
            pid: 42,
            alive: true,
        }];
        assert_eq!(
            sessions::stale_sessions(&facts(Ok(seen.clone()))).status,
            CheckStatus::Ok
        );
        seen.sessions[0].alive = false;
        seen.answering_monitors = vec!["s-9".into()];
        let c = sessions::stale_sessions(&facts(Ok(seen)));
        assert_eq!(c.status, CheckStatus::Fail, "{c:#?}");
        assert!(
            c.message
                .contains("session s-1 is recorded as running but its process 42 is gone")
                && c.message.contains("a pane monitor answers for session s-9"),
            "{c:#?}"
        );
    }
}
