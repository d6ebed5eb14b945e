//! Sessions and their panes: the panes root in use (and what was passed over before it),
//! sessions recorded as running without a process, pane monitors without a session,
//! processes of ended sessions that still run, and sessions whose output cannot be written.

use std::path::{Path, PathBuf};

use aifactory_common::diagnose::Check;
use aifactory_common::protocol::{SessionState, SkipReason};

use crate::{Facts, fail, ok, skip, warn};

pub(super) fn panes_root(f: &Facts) -> Check {
    let name = "panes-root";
    let (root, skipped) = match (f.online(), &f.local) {
        (Some(o), _) => (
            Ok(o.status.panes_dir.clone()),
            o.status.panes_skipped.clone(),
        ),
        (None, Ok(l)) => (l.panes_root.clone(), l.panes_skipped.clone()),
        (None, Err(e)) => {
            return skip(
                name,
                &format!("the daemon does not answer and `aifactoryd check` gives no report: {e}"),
                Some("start the daemon, or install aifactoryd next to aifactoryctl".into()),
            );
        }
    };
    let root = match root {
        Ok(root) => root,
        Err(e) => {
            return fail(
                name,
                format!("no pane directory root works: {e}"),
                "create one the daemon's user owns, mode 0700 (`install -d -m 0700 DIR`), and set panes_dir = \"DIR\" in the config".into(),
            );
        }
    };
    // In user mode the system's /run/aifactory/panes is not ours to use: passing it over is the
    // design, not a fault, unless it is unsafe. Anything else passed over is a fault. Whose
    // design: the daemon's uid when it says (the caller may be another user), else the
    // caller's (without the daemon, `aifactoryd check` ran as the caller).
    let daemon_is_root = f
        .online()
        .and_then(|o| o.view.as_ref().ok())
        .map_or_else(|| nix::unistd::geteuid().is_root(), |v| v.uid == 0);
    let unexpected: Vec<&(PathBuf, SkipReason)> = skipped
        .iter()
        .filter(|(path, why)| {
            !(path == Path::new("/run/aifactory/panes") && !daemon_is_root && !why.is_unsafe())
        })
        .collect();
    let passed = skipped
        .iter()
        .map(|(p, why)| format!("{} ({why})", p.display()))
        .collect::<Vec<_>>()
        .join("; ");
    if unexpected.is_empty() {
        let note = if passed.is_empty() {
            String::new()
        } else {
            format!("; passed over as expected: {passed}")
        };
        return ok(
            name,
            format!("sessions live under {}{note}", root.display()),
        );
    }
    let (first, why) = unexpected[0];
    if let SkipReason::NoSpace { .. } = why {
        return warn(
            name,
            format!(
                "fell back to {} because {} has no free space: {passed}",
                root.display(),
                first.display()
            ),
            format!(
                "free space in {} (`df -h {}`): the sessions that live there keep running there, and new ones go to {} until aifactoryd restarts with room there",
                first.display(),
                first.display(),
                root.display()
            ),
        );
    }
    warn(
        name,
        format!(
            "fell back to {} because {} was passed over: {passed}",
            root.display(),
            first.display()
        ),
        match why {
            SkipReason::OwnedByOther { .. } | SkipReason::OpenToOthers { .. } => format!(
                "make {} owned by the daemon's user and mode 0700 (`chown USER {} && chmod 0700 {}`), or remove it",
                first.display(),
                first.display(),
                first.display()
            ),
            SkipReason::Missing
            | SkipReason::CannotCreate { .. }
            | SkipReason::CannotInspect { .. }
            | SkipReason::Symlink
            | SkipReason::NotADirectory
            | SkipReason::NotWritable { .. }
            | SkipReason::CannotRemove { .. }
            | SkipReason::NoSpace { .. } => format!(
                "make {} writable by the daemon's user (`install -d -m 0700 -o USER {}`), or point panes_dir elsewhere",
                first.display(),
                first.display()
            ),
        },
    )
}

/// Running sessions whose output cannot be written: their programs are held.
pub(super) fn sessions_output(f: &Facts) -> Check {
    let name = "sessions-output";
    let Some(online) = f.online() else {
        return skip(
            name,
            "the daemon does not answer (see the daemon check)",
            None,
        );
    };
    let blocked: Vec<_> = online
        .sessions
        .iter()
        .filter_map(|s| s.output_blocked.as_ref().map(|b| (s, b)))
        .collect();
    if blocked.is_empty() {
        return ok(name, "every running session's output is written".into());
    }
    let mut roots: Vec<String> = blocked
        .iter()
        .filter_map(|(s, _)| s.pane_dir.parent().map(|p| p.display().to_string()))
        .collect();
    roots.sort();
    roots.dedup();
    let roots = roots.join(" and ");
    fail(
        name,
        blocked
            .iter()
            .map(|(s, b)| {
                format!(
                    "session {} cannot write its output since {}: {}; its program is held",
                    s.id, b.since, b.reason
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        format!(
            "free space in the panes root {roots} (`df -h {roots}`): held sessions resume by themselves and lose nothing; or set panes_dir in the config to a directory with room and restart aifactoryd, for new sessions"
        ),
    )
}

pub(super) fn stale_sessions(f: &Facts) -> Check {
    let name = "stale-sessions";
    let Some(online) = f.online() else {
        return skip(
            name,
            "the daemon does not answer (see the daemon check)",
            None,
        );
    };
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    for s in &online.sessions {
        if s.state == SessionState::Lost {
            warns.push(format!(
                "session {} was lost ({})",
                s.id,
                s.lost_reason.as_deref().unwrap_or("no reason recorded")
            ));
        }
    }
    // Processes and monitor sockets as the daemon sees them: the caller may not see another
    // user's processes (`hidepid`, `ProtectProc=`) nor reach the panes root (mode 0700).
    let unseen = match &online.view {
        Ok(view) => {
            for p in view.sessions.iter().filter(|p| !p.alive) {
                fails.push(format!(
                    "session {} is recorded as running but its process {} is gone",
                    p.session_id, p.pid
                ));
            }
            // Only this daemon's panes root: another user's daemon has monitors of its own.
            let root = &online.status.panes_dir;
            for id in &view.answering_monitors {
                // A monitor lingers a moment after its session ended (exited): by design.
                let known = online.sessions.iter().any(|s| {
                    &s.id == id
                        && matches!(
                            s.state,
                            SessionState::Running | SessionState::Starting | SessionState::Exited
                        )
                });
                if !known {
                    fails.push(format!(
                        "a pane monitor answers for session {id} in {}, which the daemon does not have as running",
                        root.display()
                    ));
                }
            }
            None
        }
        Err(e) => Some(super::unseen(e)),
    };
    if let Some(why) = &unseen {
        if fails.is_empty() && warns.is_empty() {
            return skip(
                name,
                &format!(
                    "whether each running session's process runs, and which pane monitors answer, is not known: {why}"
                ),
                Some(super::VIEW_FIX.into()),
            );
        }
        warns.push(format!("processes and pane monitors not checked: {why}"));
    }
    if !fails.is_empty() {
        return fail(
            name,
            fails.iter().chain(&warns).cloned().collect::<Vec<_>>().join("; "),
            "end them: `aifactoryctl sessions kill ID --ignore-missing` (for a monitor without a record, `fuser -k PANES/ID/monitor.sock`), then `aifactoryctl sessions remove ID`".into(),
        );
    }
    if !warns.is_empty() {
        return warn(
            name,
            warns.join("; "),
            "forget them: `aifactoryctl sessions remove ID` for each".into(),
        );
    }
    ok(
        name,
        format!(
            "{} session(s) recorded, every running one has its process",
            online.sessions.len()
        ),
    )
}

/// Processes that carry the mark of one of the daemon's sessions (in their environment, which
/// only the daemon's uid may read: the daemon looks) while no live session accounts for them.
pub(super) fn stray_processes(f: &Facts) -> Check {
    let name = "stray-processes";
    let Some(online) = f.online() else {
        return skip(
            name,
            "the daemon does not answer (see the daemon check)",
            None,
        );
    };
    if online.strays.is_empty() {
        return ok(
            name,
            "every process of a session belongs to a live session".into(),
        );
    }
    let found = online
        .strays
        .iter()
        .map(|p| format!("{} ({}) of session {}", p.pid, p.command, p.session_id))
        .collect::<Vec<_>>()
        .join("; ");
    let pids = online
        .strays
        .iter()
        .map(|p| p.pid.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    fail(
        name,
        format!(
            "{} process(es) outlived their session: {found}",
            online.strays.len()
        ),
        format!(
            "stop them: `aifactoryctl sessions kill ID` for a session still listed, otherwise `kill {pids}` as the daemon's user or root"
        ),
    )
}
