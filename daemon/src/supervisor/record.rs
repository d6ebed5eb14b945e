//! What a runner writes to its task's record as the agent works, and the events that tell of
//! it: phases the agent reports, progress, output times, prompts, stalls and the run's end.
//! Failures to write are logged, not returned: the agent goes on either way.

use std::time::Duration;

use aifactory_common::pane::ExitInfo;
use aifactory_common::procfs;
use aifactory_common::protocol::{
    AgentEvent, EventKind, Failure, ResourceUsage, SessionInfo, StallEvidence, TaskInfo, TaskPhase,
};

use super::Supervisor;
use crate::attempts;
use crate::progress::{self, Report};
use crate::sessions::KillReport;
use crate::tasks;
use crate::transcript;

/// How an agent's run ended: its exit (none when lost or stopped) and why it failed.
pub(super) struct Outcome {
    pub exit: Option<ExitInfo>,
    pub failure: Option<Failure>,
    /// What it used, from its cgroup.
    pub resources: Option<ResourceUsage>,
}

impl Supervisor {
    /// Records the end of a task's run: its phase, why, and the `TaskExited` event.
    pub(super) async fn finish(
        &self,
        id: &str,
        session_id: &str,
        to: TaskPhase,
        reason: &str,
        Outcome {
            exit,
            failure,
            resources,
        }: Outcome,
        report: &KillReport,
    ) {
        let (tid, why) = (id.to_string(), reason.to_string());
        let error = (to != TaskPhase::Done).then(|| why.clone());
        let stored = failure.clone();
        let attempt = (exit.clone(), resources.clone());
        let moved = self
            .store
            .write(move |tx| {
                let (exit, resources) = &attempt;
                attempts::end(
                    tx,
                    &tid,
                    &why,
                    exit.as_ref(),
                    stored.as_ref(),
                    resources.as_ref(),
                )?;
                let record = |tx: &rusqlite::Transaction| {
                    tasks::record_end(tx, &tid, error.as_deref())?;
                    tasks::set_failure(tx, &tid, stored.as_ref())
                };
                let moved = tasks::set_phase(tx, &tid, to, record)?;
                // The agent reported its final phase itself: the end of its attempt is
                // recorded all the same.
                if let Err(tasks::TaskError::Transition { from, .. }) = &moved
                    && reported_final(*from)
                {
                    record(tx)?;
                }
                Ok(moved)
            })
            .await;
        self.events
            .publish(EventKind::TaskExited {
                task_id: id.to_string(),
                session_id: session_id.to_string(),
                exit,
                restart_in_ms: None,
                failure,
                resources: resources.map(Box::new),
            })
            .await;
        match moved {
            Ok(Ok(from)) => tasks::announce_phase(&self.events, id, from, to, reason).await,
            // The agent reported `done`/`failed` itself before it ended: a normal end.
            Ok(Err(tasks::TaskError::Transition { from, .. })) if reported_final(from) => {
                tracing::info!(task_id = %id, session_id = %session_id, phase = from.as_str(), "the agent reported {} and then its attempt ended ({reason})", from.as_str())
            }
            Ok(Err(e)) => tracing::info!(task_id = %id, "task ended ({reason}): {e}"),
            Err(e) => {
                tracing::error!(task_id = %id, "cannot record the task's end ({reason}): {e}")
            }
        }
        if !report.survivors.is_empty() {
            tracing::error!(task_id = %id, survivors = ?report.survivors, "processes survived SIGKILL");
        }
    }

    /// What the agent's adapter read: kept in the task's transcript (and its record), told as
    /// events, and logged with the task's id.
    pub(super) async fn agent_events(&self, id: &str, attempt: u32, events: Vec<AgentEvent>) {
        if events.is_empty() {
            return;
        }
        for event in &events {
            log_agent_event(id, event);
        }
        let tid = id.to_string();
        // Kept with their events in one commit, which is not waited for on the disk: a lost
        // entry costs less than waiting on every line the agent prints.
        let stored = self
            .events
            .publish_from(move |tx| {
                events
                    .into_iter()
                    .filter_map(|e| transcript::append(tx, &tid, attempt, e).transpose())
                    .map(|entry| {
                        entry.map(|entry| EventKind::TaskAgent {
                            task_id: tid.clone(),
                            entry,
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await;
        if let Err(e) = stored {
            tracing::error!(task_id = %id, "cannot keep the agent's transcript: {e}");
        }
    }

    pub(super) async fn record_error(&self, id: &str, reason: &str) {
        let (id, reason) = (id.to_string(), reason.to_string());
        let _ = self
            .store
            .write(move |tx| tasks::set_last_error(tx, &id, &reason))
            .await;
    }

    /// A phase the agent reported; refused transitions are logged, not applied.
    pub(super) async fn agent_phase(&self, id: &str, to: TaskPhase, via: &str) {
        let tid = id.to_string();
        let moved = self
            .store
            .write_process_state(move |tx| tasks::set_phase(tx, &tid, to, |_| Ok(())))
            .await;
        match moved {
            Ok(Ok(from)) => {
                tasks::announce_phase(
                    &self.events,
                    id,
                    from,
                    to,
                    &format!("reported by the agent ({via})"),
                )
                .await
            }
            Ok(Err(e)) => tracing::warn!(task_id = %id, "agent's phase ignored ({via}): {e}"),
            Err(e) => tracing::error!(task_id = %id, "cannot record the agent's phase: {e}"),
        }
    }

    pub(super) async fn touch_output(&self, id: &str) {
        let id = id.to_string();
        let _ = self
            .store
            .write_process_state(move |tx| tasks::touch_output(tx, &id))
            .await;
    }

    pub(super) async fn set_waiting(&self, id: &str, prompt: Option<String>) {
        let (tid, p) = (id.to_string(), prompt.clone());
        let _ = self
            .store
            .write_process_state(move |tx| tasks::set_waiting(tx, &tid, p.as_deref()))
            .await;
        if let Some(prompt) = prompt {
            tracing::warn!(task_id = %id, prompt = %prompt, "the agent waits for input");
            self.events
                .publish(EventKind::TaskWaitingInput {
                    task_id: id.to_string(),
                    prompt,
                })
                .await;
        }
    }

    /// Records that the agent showed no life for `stall_after`, with what its process was
    /// doing then.
    pub(super) async fn stall(&self, id: &str, session: &SessionInfo, stall_after: Duration) {
        let Ok(task) = tasks::show(&self.store, id.to_string()).await else {
            return;
        };
        let stat = session.pid.and_then(|pid| procfs::stat(pid).ok());
        let evidence = StallEvidence {
            detected_at: aifactory_common::time::now_rfc3339_ms(),
            stall_after_s: stall_after.as_secs(),
            last_output_at: task.last_output_at.clone(),
            last_progress_at: task.last_progress_at.clone(),
            pid: session.pid,
            process_state: stat.as_ref().map(|s| procfs::describe_state(s.state)),
            cpu_time_ms: stat.as_ref().map(|s| procfs::ticks_to_ms(s.cpu_ticks)),
        };
        let (tid, ev) = (id.to_string(), evidence.clone());
        let moved = self
            .store
            .write_process_state(move |tx| {
                tasks::set_phase(tx, &tid, TaskPhase::Stalled, |tx| {
                    tasks::set_stall(tx, &tid, &ev)
                })
            })
            .await;
        match moved {
            Ok(Ok(from)) => {
                tracing::warn!(task_id = %id, session_id = %session.id, evidence = ?evidence, "task stalled: no output and no progress for {} s", stall_after.as_secs());
                tasks::announce_phase(
                    &self.events,
                    id,
                    from,
                    TaskPhase::Stalled,
                    "no output and no progress",
                )
                .await;
                self.events
                    .publish(EventKind::TaskStalled {
                        task_id: id.to_string(),
                        evidence,
                    })
                    .await;
            }
            Ok(Err(e)) => tracing::info!(task_id = %id, "not marked stalled: {e}"),
            Err(e) => tracing::error!(task_id = %id, "cannot record the stall: {e}"),
        }
    }

    /// A stalled task whose agent shows life goes back to where it was.
    pub(super) async fn unstall(&self, id: &str, what: &str) {
        let tid = id.to_string();
        let moved = self
            .store
            .write_process_state(move |tx| {
                let back = tasks::phase_before_stall(tx, &tid)?.unwrap_or(TaskPhase::Coding);
                Ok(tasks::set_phase(tx, &tid, back, |_| Ok(()))?.map(|from| (from, back)))
            })
            .await;
        if let Ok(Ok((from, to))) = moved
            && from == TaskPhase::Stalled
        {
            tasks::announce_phase(
                &self.events,
                id,
                from,
                to,
                &format!("active again ({what})"),
            )
            .await;
        }
    }

    /// Applies the progress file; true when it said anything new.
    pub(super) async fn read_progress(&self, id: &str) -> bool {
        let Ok(task) = tasks::show(&self.store, id.to_string()).await else {
            return false;
        };
        let report = match progress::read(&task.progress_file) {
            Ok(report) => report,
            Err(e) => {
                tracing::warn!(task_id = %id, file = %task.progress_file.display(), "cannot read the progress file: {e}");
                return false;
            }
        };
        self.apply_report(&task, report).await
    }

    async fn apply_report(&self, task: &TaskInfo, report: Report) -> bool {
        let mut progress = task.progress;
        if report.progress.percent.is_some() {
            progress.percent = report.progress.percent;
        }
        if report.progress.subtasks_total.is_some() {
            progress.subtasks_done = report.progress.subtasks_done;
            progress.subtasks_total = report.progress.subtasks_total;
        }
        let notes_changed = !report.notes.is_empty() && report.notes != task.notes;
        let new_note = if notes_changed {
            report
                .notes
                .last()
                .filter(|n| task.notes.last() != Some(*n))
                .cloned()
        } else {
            None
        };
        let phase_changed = report.phase.is_some_and(|p| p != task.phase);
        if progress == task.progress && !notes_changed && !phase_changed {
            return false;
        }
        if phase_changed && let Some(phase) = report.phase {
            self.agent_phase(&task.id, phase, "progress file").await;
        }
        if progress != task.progress || notes_changed {
            let id = task.id.clone();
            let notes =
                notes_changed.then(|| serde_json::to_string(&report.notes).unwrap_or_default());
            let stored = self
                .store
                .write_process_state(move |tx| {
                    tasks::set_progress(tx, &id, &progress, notes.as_deref())
                })
                .await;
            if let Err(e) = stored {
                tracing::error!(task_id = %task.id, "cannot record progress: {e}");
                return true;
            }
            tracing::debug!(task_id = %task.id, percent = ?progress.percent, "progress");
            self.events
                .publish(EventKind::TaskProgress {
                    task_id: task.id.clone(),
                    progress,
                    note: new_note,
                })
                .await;
        } else {
            let id = task.id.clone();
            let _ = self
                .store
                .write_process_state(move |tx| tasks::touch_progress(tx, &id))
                .await;
        }
        true
    }
}

/// One journal line per agent event, with the task's id and what it is about (never its text:
/// tool inputs and outputs may hold anything).
fn log_agent_event(id: &str, event: &AgentEvent) {
    match event {
        AgentEvent::Started {
            agent_session_id,
            model,
            ..
        } => {
            tracing::info!(task_id = %id, agent_session_id = %agent_session_id, model = model.as_deref().unwrap_or(""), "agent conversation started")
        }
        AgentEvent::Message { text } => {
            tracing::info!(task_id = %id, chars = text.chars().count(), "agent message")
        }
        AgentEvent::ToolCall { tool, .. } => {
            tracing::info!(task_id = %id, tool = %tool, "agent called a tool")
        }
        AgentEvent::ToolResult { tool, ok, .. } => {
            tracing::info!(task_id = %id, tool = tool.as_deref().unwrap_or(""), ok, "tool result")
        }
        AgentEvent::Denied { tool, .. } => {
            tracing::warn!(task_id = %id, tool = %tool, "agent tool call denied")
        }
        AgentEvent::Result(r) => {
            tracing::info!(task_id = %id, ok = r.ok, status = %r.status, turns = r.turns, input_tokens = r.usage.input_tokens, output_tokens = r.usage.output_tokens, cost_usd = r.usage.cost_usd, "agent run ended")
        }
    }
}

/// A phase the agent reports when its work is over: its attempt may then end at any time.
fn reported_final(phase: TaskPhase) -> bool {
    matches!(phase, TaskPhase::Done | TaskPhase::Failed)
}
