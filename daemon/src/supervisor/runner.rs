//! One task's runner: a tokio task that watches its agent attempt after attempt — output,
//! progress, prompts and stalls through [`Activity`] — and applies the profile's restart and
//! stall policies, until the task ends or is stopped.
//!
//! What to do on output, progress or a deadline is [`Activity`]'s; the runner waits for the
//! next of them and carries it out. What the output means to the agent's CLI is its
//! [`Adapter`]'s: the runner feeds it the output, records the events it reads, and acts on the
//! failure it classifies (never retrying a key or a profile that is wrong, backing off as long
//! as a rate-limited provider asks, resuming the conversation on the next attempt).

use std::sync::Arc;
use std::time::Duration;

use aifactory_common::pane::MonitorFrame;
use aifactory_common::protocol::{
    EventKind, Failure, FailureKind, OnStall, ResourceUsage, RestartPolicy, SessionInfo,
    SessionState, TaskPhase,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::activity::Activity;
use super::record::Outcome;
use super::resources;
use super::{Resume, RunSettings, Started, Supervisor};
use crate::adapters::{self, Adapter};
use crate::attempts;
use crate::sessions::KillReport;
use crate::tasks;
use aifactory_pane::client::{MonitorClient, MonitorStream};

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Grace a stalled agent gets between SIGTERM and SIGKILL when a stall policy stops it.
const STALL_GRACE: Duration = Duration::from_secs(5);
/// Longest wait a provider's retry-after is honoured for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The pause before attempt `failed_attempt + 1`: 1 s, doubling, at most [`MAX_BACKOFF`].
pub fn backoff(failed_attempt: u32) -> Duration {
    let secs = 1u64 << failed_attempt.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// The pause after a failure: the backoff, or longer when a rate-limited or overloaded
/// provider said how long to wait (up to [`MAX_RETRY_AFTER`]).
pub fn pause_after(failed_attempt: u32, failure: &Failure) -> Duration {
    let asked = match failure.kind {
        FailureKind::RateLimit | FailureKind::Overloaded => failure
            .retry_after_ms
            .map(Duration::from_millis)
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER),
        _ => Duration::ZERO,
    };
    backoff(failed_attempt).max(asked)
}

/// How a session's watch ended.
enum Ended {
    /// Stop was asked for.
    Stopped,
    /// The session ended by itself (or was lost: then it has no exit).
    Exited(Box<SessionInfo>),
    /// The stall policy asks for a stop or a new attempt.
    StallAction(OnStall),
}

pub(super) struct Runner {
    supervisor: Arc<Supervisor>,
    id: String,
    /// The attempt being watched.
    attempt: u32,
    /// Reads the attempt's output when its kind of agent has structured output.
    adapter: Option<Adapter>,
    /// Cancelled by a stop: the runner ends without touching the task.
    stop: CancellationToken,
    /// Wakes when the task's progress file changed (`None`: it cannot be watched).
    progress: Option<mpsc::Receiver<()>>,
}

impl Runner {
    pub fn new(supervisor: Arc<Supervisor>, id: String, stop: CancellationToken) -> Runner {
        Runner {
            supervisor,
            id,
            attempt: 1,
            adapter: None,
            stop,
            progress: None,
        }
    }

    /// Watches attempt after attempt, from `session`'s output at `from` (`None`: from its
    /// current end), until the task ends or is stopped.
    pub async fn run(mut self, mut session: SessionInfo, mut from: Option<u64>) {
        let sup = self.supervisor.clone();
        let id = self.id.clone();
        let Ok(task) = tasks::show(&sup.store, id.clone()).await else {
            return;
        };
        self.attempt = task.attempts.max(1);
        self.progress = match sup.watcher.watch(&task.spec_dir) {
            Ok(rx) => Some(rx),
            Err(reason) => {
                tracing::error!(task_id = %id, "progress of this task cannot be followed: {reason}");
                None
            }
        };
        let mut stopped = false;
        loop {
            let settings = sup.usable_profile(&task.agent);
            self.adapter = settings
                .as_ref()
                .ok()
                .and_then(|s| Adapter::for_kind(s.profile.kind));
            let watched = self
                .watch_session(&session, from, settings.as_ref().ok())
                .await;
            let next_attempt = match watched {
                Ended::Stopped => {
                    stopped = true;
                    break;
                }
                Ended::StallAction(OnStall::Stop) => {
                    let report = sup.sessions.kill_tree(&session, STALL_GRACE).await;
                    let resources = sup.close_group(&id).await;
                    sup.finish(
                        &id,
                        &session.id,
                        TaskPhase::Failed,
                        "stalled; stopped by on_stall = \"stop\"",
                        Outcome {
                            exit: None,
                            failure: None,
                            resources,
                        },
                        &report,
                    )
                    .await;
                    break;
                }
                Ended::StallAction(_) => {
                    let report = sup.sessions.kill_tree(&session, STALL_GRACE).await;
                    let resources = sup.close_group(&id).await;
                    tracing::info!(task_id = %id, survivors = report.survivors.len(), "stalled agent stopped for a new attempt");
                    self.next_attempt(&session, "stalled", None, resources)
                        .await
                }
                Ended::Exited(ended) => {
                    session = *ended;
                    self.flush_adapter().await;
                    let resources = sup.close_group(&id).await;
                    let failure = match &self.adapter {
                        Some(adapter) => adapter.failure(session.exit.as_ref()),
                        None => adapters::exit_failure(session.exit.as_ref()),
                    }
                    .or_else(|| session.lost_reason.as_deref().map(adapters::lost_failure));
                    let failure = resources::with_oom(failure, resources.as_ref(), &task.agent);
                    let Some(failure) = failure else {
                        sup.finish(
                            &id,
                            &session.id,
                            TaskPhase::Done,
                            "agent exited 0",
                            Outcome {
                                exit: session.exit.clone(),
                                failure: None,
                                resources,
                            },
                            &KillReport::default(),
                        )
                        .await;
                        break;
                    };
                    let how = match (&session.exit, &session.lost_reason) {
                        (Some(exit), _) => exit.describe(),
                        (None, Some(reason)) => format!("lost: {reason}"),
                        (None, None) => "ended".into(),
                    };
                    self.next_attempt(&session, &how, Some(failure), resources)
                        .await
                }
            };
            match next_attempt {
                Some(next) => {
                    session = next;
                    from = Some(0);
                }
                None => break,
            }
        }
        sup.watcher.unwatch(&task.spec_dir);
        // No attempt runs any more; a stop releases the guard once it killed the agent.
        if !stopped {
            sup.unguard(&id);
        }
    }

    /// The events of the output's last line, when it had no newline.
    async fn flush_adapter(&mut self) {
        if let Some(adapter) = self.adapter.as_mut() {
            let events = adapter.finish();
            self.supervisor
                .agent_events(&self.id, self.attempt, events)
                .await;
        }
    }

    /// After a failed run (`failure`: why, when known; `None`: it stalled): the next run's
    /// session when the policy allows one (after its backoff), else the task is marked failed
    /// and `None`.
    async fn next_attempt(
        &mut self,
        session: &SessionInfo,
        how: &str,
        failure: Option<Failure>,
        resources: Option<ResourceUsage>,
    ) -> Option<SessionInfo> {
        let sup = self.supervisor.clone();
        let id = self.id.clone();
        let id = id.as_str();
        if let Some(failure) = &failure {
            tracing::warn!(task_id = %id, session_id = %session.id, kind = failure.kind.as_str(), "agent attempt failed: {}", failure.message);
            let (tid, stored) = (id.to_string(), failure.clone());
            if let Err(e) = sup
                .store
                .write(move |tx| tasks::set_failure(tx, &tid, Some(&stored)))
                .await
            {
                tracing::error!(task_id = %id, "cannot record the attempt's failure: {e}");
            }
        }
        let how = match &failure {
            Some(f) => format!("{how} ({}: {})", f.kind, f.message),
            None => how.to_string(),
        };
        let how = how.as_str();
        let task = tasks::show(&sup.store, id.to_string()).await.ok()?;
        let settings = sup.usable_profile(&task.agent);
        let futile = failure.as_ref().filter(|f| !f.kind.retryable());
        // A stall has no failure: `on_stall = "restart"` asks for the new attempt by itself.
        let stalled = failure.is_none();
        let retry = match &settings {
            Ok(s) => {
                (s.profile.restart == RestartPolicy::OnFailure
                    || (stalled && s.profile.on_stall == OnStall::Restart))
                    && task.attempts < s.profile.max_attempts
                    && futile.is_none()
            }
            Err(_) => false,
        };
        let max = settings
            .as_ref()
            .map(|s| s.profile.max_attempts)
            .unwrap_or(task.attempts);
        if !retry {
            let reason = match (&settings, futile) {
                (_, Some(f)) => format!(
                    "agent {how}; not restarted ({} failures are not retried): {}",
                    f.kind, f.fix
                ),
                (Err(reason), None) => format!("agent {how}; not restarted: {reason}"),
                (Ok(s), None) if s.profile.restart == RestartPolicy::Never => {
                    format!("agent {how} (restart = \"never\")")
                }
                (Ok(_), None) => format!(
                    "agent {how} on attempt {} of {max}: no attempts left",
                    task.attempts
                ),
            };
            sup.finish(
                id,
                &session.id,
                TaskPhase::Failed,
                &reason,
                Outcome {
                    exit: session.exit.clone(),
                    failure,
                    resources,
                },
                &KillReport::default(),
            )
            .await;
            return None;
        }
        let delay = match &failure {
            Some(f) => pause_after(task.attempts, f),
            None => backoff(task.attempts),
        };
        tracing::warn!(task_id = %id, attempt = task.attempts, max_attempts = max, delay_ms = delay.as_millis() as u64, "agent {how}: restarting after backoff");
        let why = format!("attempt {} {how}", task.attempts);
        sup.record_error(id, &why).await;
        let (tid, exit, stored, used) = (
            id.to_string(),
            session.exit.clone(),
            failure.clone(),
            resources.clone(),
        );
        let recorded = sup
            .store
            .write(move |tx| {
                let reason = format!("{why}; restarting after {} ms", delay.as_millis());
                attempts::end(
                    tx,
                    &tid,
                    &reason,
                    exit.as_ref(),
                    stored.as_ref(),
                    used.as_ref(),
                )
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!(task_id = %id, "cannot record the attempt's end: {e}");
        }
        sup.events
            .publish(EventKind::TaskExited {
                task_id: id.to_string(),
                session_id: session.id.clone(),
                exit: session.exit.clone(),
                restart_in_ms: Some(delay.as_millis() as u64),
                failure: failure.clone(),
                resources: resources.map(Box::new),
            })
            .await;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.stop.cancelled() => return None,
        }
        let settings = match sup.usable_profile(&task.agent) {
            Ok(s) => s,
            Err(reason) => {
                sup.finish(
                    id,
                    &session.id,
                    TaskPhase::Failed,
                    &reason.to_string(),
                    Outcome {
                        exit: None,
                        failure,
                        resources: None,
                    },
                    &KillReport::default(),
                )
                .await;
                return None;
            }
        };
        let attempt = task.attempts + 1;
        let why = match &failure {
            Some(f) => format!(
                "attempt {} failed ({}: {})",
                task.attempts, f.kind, f.message
            ),
            None => format!(
                "attempt {} stalled (no output or progress for {} s) and was stopped",
                task.attempts,
                settings.stall_after.as_secs()
            ),
        };
        let resume = Resume {
            agent_session_id: task.agent_session_id.as_deref(),
            why: Some(&why),
        };
        match sup.spawn_attempt(&task, &settings, attempt, resume).await {
            Ok(Started {
                session: next,
                confinement,
                ..
            }) => {
                let (tid, sid) = (id.to_string(), next.id.clone());
                let stored = sup
                    .store
                    .write(move |tx| {
                        tasks::set_attempt(tx, &tid, &sid, attempt)?;
                        attempts::begin(tx, &tid, &sid, attempt)?;
                        tasks::set_confinement(tx, &tid, &confinement)
                    })
                    .await;
                if let Err(e) = stored {
                    tracing::error!(task_id = %id, "cannot record the new attempt: {e}");
                }
                // A new attempt of a stalled task starts where the old one was.
                sup.unstall(id, "new attempt").await;
                self.attempt = attempt;
                Some(next)
            }
            Err(e) => {
                sup.finish(
                    id,
                    &session.id,
                    TaskPhase::Failed,
                    &e.to_string(),
                    Outcome {
                        exit: None,
                        failure,
                        resources: None,
                    },
                    &KillReport::default(),
                )
                .await;
                None
            }
        }
    }

    /// Watches one session until it ends, a stop, or a stall policy acts.
    async fn watch_session(
        &mut self,
        session: &SessionInfo,
        from: Option<u64>,
        settings: Option<&RunSettings>,
    ) -> Ended {
        let sup = self.supervisor.clone();
        let id = self.id.as_str();
        let stall_after = settings
            .map(|s| s.stall_after)
            .unwrap_or(sup.config().stall_after);
        let on_stall = settings
            .map(|s| s.profile.on_stall)
            .unwrap_or(OnStall::None);
        let prompts = settings.map(|s| &*s.prompts);
        let Some(mut output) = follow_output(session, from).await else {
            // The monitor is gone: the session ended (or is ending); its record says how.
            return self.session_end(session).await;
        };
        // Any progress written before we watched counts.
        sup.read_progress(id).await;
        let mut activity = Activity::new(Instant::now(), stall_after);
        let far = || super::activity::later(Instant::now(), Duration::from_secs(86_400 * 365));
        loop {
            let progress_wake = async {
                match self.progress.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let quiet = activity.quiet_deadline();
            let stall = activity.stall_deadline();
            tokio::select! {
                _ = self.stop.cancelled() => return Ended::Stopped,
                frame = output.next_frame() => match frame {
                    Some(Ok(MonitorFrame::Output { data, .. })) => {
                        if let Some(adapter) = self.adapter.as_mut() {
                            let events = adapter.feed(&data);
                            sup.agent_events(id, self.attempt, events).await;
                            if adapter.retrying_in_vain() {
                                let report = sup.sessions.kill_tree(session, STALL_GRACE).await;
                                tracing::warn!(task_id = %id, survivors = report.survivors.len(), "the agent retries a refused key: stopped at once");
                                return self.session_end(session).await;
                            }
                        }
                        let todo = activity.output(Instant::now(), &data);
                        if todo.unstall {
                            sup.unstall(id, "output").await;
                        }
                        if todo.stop_waiting {
                            sup.set_waiting(id, None).await;
                        }
                        for phase in todo.phases {
                            sup.agent_phase(id, phase, "output marker").await;
                        }
                        if todo.write_output_time {
                            sup.touch_output(id).await;
                        }
                    }
                    Some(Ok(MonitorFrame::Exited(_))) | None | Some(Err(_)) => {
                        if activity.had_output() {
                            sup.touch_output(id).await;
                        }
                        return self.session_end(session).await;
                    }
                    Some(Ok(_)) => {}
                },
                Some(()) = progress_wake => {
                    if sup.read_progress(id).await && activity.progress(Instant::now()) {
                        sup.unstall(id, "progress").await;
                    }
                }
                _ = tokio::time::sleep_until(quiet.unwrap_or_else(far)), if quiet.is_some() => {
                    if let Some(prompt) = activity.quiet(prompts) {
                        sup.set_waiting(id, Some(prompt)).await;
                    }
                }
                _ = tokio::time::sleep_until(stall.unwrap_or_else(far)), if stall.is_some() => {
                    activity.stalled();
                    sup.touch_output(id).await;
                    sup.stall(id, session, stall_after).await;
                    if on_stall != OnStall::None {
                        return Ended::StallAction(on_stall);
                    }
                }
            }
        }
    }

    /// The session as it ended (waiting for the registry to record it), unless a stop comes.
    async fn session_end(&self, session: &SessionInfo) -> Ended {
        tokio::select! {
            _ = self.stop.cancelled() => Ended::Stopped,
            ended = self.supervisor.sessions.wait(session.id.clone()) => match ended {
                Ok(ended) => Ended::Exited(Box::new(ended)),
                Err(e) => Ended::Exited(Box::new(SessionInfo {
                    state: SessionState::Lost,
                    lost_reason: Some(e.to_string()),
                    ..session.clone()
                })),
            },
        }
    }
}

/// Output from `from` (`None`: from its current end) of a running session.
async fn follow_output(session: &SessionInfo, from: Option<u64>) -> Option<MonitorStream> {
    if session.state != SessionState::Running {
        return None;
    }
    let from = match from {
        Some(from) => from,
        None => {
            MonitorClient::connect(&session.pane_dir)
                .await
                .ok()?
                .info()
                .await
                .ok()?
                .output_end
        }
    };
    MonitorClient::connect(&session.pane_dir)
        .await
        .ok()?
        .subscribe(from)
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
