//! Tasks: stalled ones, working ones whose progress cannot be watched, and how each working
//! task's agent is confined (its cage and its cgroup's limits).

use aifactory_common::diagnose::Check;
use aifactory_common::protocol::{FileState, PathState, TaskPaths, TaskPhase};

use crate::{Facts, check, fail, ok, skip};
use aifactory_common::diagnose::CheckStatus;

pub(super) fn tasks_stuck(f: &Facts) -> Check {
    let name = "tasks-stuck";
    let Some(online) = f.online() else {
        return skip(
            name,
            "the daemon does not answer (see the daemon check)",
            None,
        );
    };
    let mut problems = Vec::new();
    for t in &online.tasks {
        if t.phase == TaskPhase::Stalled {
            let e = t.stall.as_ref();
            problems.push(format!(
                "task {} ({}) is stalled since {}: no output since {}, no progress since {}, process {} with {} ms CPU",
                t.id,
                t.spec_id,
                e.map(|e| e.detected_at.as_str()).unwrap_or("?"),
                e.and_then(|e| e.last_output_at.as_deref()).unwrap_or("its start"),
                e.and_then(|e| e.last_progress_at.as_deref()).unwrap_or("its start"),
                e.and_then(|e| e.process_state.as_deref()).unwrap_or("gone"),
                e.and_then(|e| e.cpu_time_ms).map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
            ));
        }
    }
    // Whether each working task's progress can be watched: as the daemon, which watches it,
    // sees its spec directory and progress file.
    let unseen = match &online.view {
        Ok(view) => {
            for t in &view.tasks {
                problems.extend(spec_paths_problem(t));
            }
            None
        }
        Err(e) => Some(super::unseen(e)),
    };
    if let Some(why) = &unseen {
        if problems.is_empty() {
            return skip(
                name,
                &format!(
                    "no task is stalled, but whether each working task's progress can be watched is not known: {why}"
                ),
                Some(super::VIEW_FIX.into()),
            );
        }
        problems.push(format!(
            "the working tasks' spec directories are not checked: {why}"
        ));
    }
    if problems.is_empty() {
        let working = online.tasks.iter().filter(|t| t.phase.is_active()).count();
        return ok(name, format!("{working} working task(s), none stalled"));
    }
    fail(
        name,
        problems.join("; "),
        "look at the agent's output (`aifactoryctl tasks logs ID`), then `aifactoryctl tasks restart ID` or `aifactoryctl tasks stop ID`; a progress file the daemon cannot read needs `chmod u+r` for the daemon's user".into(),
    )
}

/// What keeps a working task's progress from being watched, as the daemon sees it.
fn spec_paths_problem(t: &TaskPaths) -> Option<String> {
    let dir = t.spec_dir.display();
    match &t.spec_dir_state {
        PathState::Dir => match &t.progress_file_state {
            FileState::Absent | FileState::Readable => None,
            FileState::Unreadable { error } => Some(format!(
                "task {}: {} cannot be read: {error}",
                t.task_id,
                t.progress_file.display()
            )),
        },
        PathState::Missing => Some(format!(
            "task {}: its spec directory {dir} is missing, so its progress cannot be watched",
            t.task_id
        )),
        PathState::NotADirectory => Some(format!(
            "task {}: its spec directory {dir} is not a directory, so its progress cannot be watched",
            t.task_id
        )),
        PathState::CannotInspect { error } => Some(format!(
            "task {}: its spec directory {dir} cannot be inspected by the daemon ({error}), so its progress cannot be watched",
            t.task_id
        )),
    }
}

/// Each working task's confinement as its latest attempt started: confined by Landlock and in a
/// cgroup with its limits, or what was missing and why.
pub(super) fn task_sandbox(f: &Facts) -> Check {
    let name = "task-sandbox";
    let Some(online) = f.online() else {
        return skip(
            name,
            "the daemon does not answer (see the daemon check)",
            None,
        );
    };
    let working: Vec<_> = online
        .tasks
        .iter()
        .filter(|t| t.phase.is_active())
        .collect();
    if working.is_empty() {
        return ok(
            name,
            format!(
                "no working task; for new ones, limits: {}",
                online.status.limits
            ),
        );
    }
    let mut exposed = false;
    let found: Vec<String> = working
        .iter()
        .map(|t| {
            let how = t
                .confinement
                .as_deref()
                .unwrap_or("not recorded (started by an older daemon)");
            // The daemon's own words: "confined by ..." and "limits: <list>" when all held.
            let caged = how.starts_with("confined");
            let limited = t.resources.is_some() && !how.contains("limits: unavailable");
            exposed |= !(caged && limited);
            format!("task {} ({}): {how}", t.id, t.spec_id)
        })
        .collect();
    if !exposed {
        return ok(name, found.join(" | "));
    }
    check(
        name,
        CheckStatus::Warn,
        found.join(" | "),
        Some(format!(
            "a task without its cage or its limits runs with the daemon's user's rights or without bounds: see `aifactoryctl agents show NAME` (the cage) and `aifactoryctl status` (limits: {}), then `aifactoryctl tasks restart ID` once it is fixed",
            online.status.limits
        )),
    )
}
