//! Tasks: stalled ones, and working ones whose progress cannot be watched.

use aifactory_common::diagnose::Check;
use aifactory_common::protocol::TaskPhase;

use crate::doctor::{Facts, fail, ok, skip};

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
        if t.phase.is_active() {
            if !t.spec_dir.is_dir() {
                problems.push(format!(
                    "task {}: its spec directory {} is missing, so its progress cannot be watched",
                    t.id,
                    t.spec_dir.display()
                ));
            } else if t.progress_file.exists()
                && let Err(e) = std::fs::File::open(&t.progress_file)
            {
                problems.push(format!(
                    "task {}: {} cannot be read: {e}",
                    t.id,
                    t.progress_file.display()
                ));
            }
        }
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
