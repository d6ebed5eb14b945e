//! Agent supervision: creating a task's worktree, starting its agent in an rmux session,
//! watching it (progress file, pane output, hangs, prompts that wait for a person), applying
//! its restart policy when it ends, and stopping every process it made.
//!
//! One runner (a tokio task) per working task owns everything about that run, so the task's
//! record changes in one place and in order. It survives nothing on its own: after a daemon
//! restart, [`Supervisor::adopt_all`] starts a runner again for every task whose agent is
//! still working, from the re-adopted session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aifactory_common::pane::MonitorFrame;
use aifactory_common::protocol::{
    AgentInfo, ErrorCode, ErrorReply, EventKind, OnStall, ProcessEntry, RestartPolicy, SessionInfo,
    SessionSpec, SessionState, StallEvidence, StopReport, TaskCreate, TaskInfo, TaskPhase,
};
use regex::Regex;
use rusqlite::params;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agents::{self, Placeholders, Profile};
use crate::config::Config;
use crate::events::EventBus;
use crate::git;
use crate::proctree;
use crate::progress::{self, ProgressWatcher, Report};
use crate::sessions::Sessions;
use crate::store::Store;
use crate::tasks::{self, NOW, NewTask, invalid};
use aifactory_pane::client::MonitorClient;

/// Output silence after which the last line is checked for a prompt.
const QUIET: Duration = Duration::from_millis(750);
/// How often at most the last-output time is written to the store (it is kept in memory).
const OUTPUT_TIME_EVERY: Duration = Duration::from_secs(5);
/// After SIGKILL, how long processes get to disappear before they are reported as survivors.
const AFTER_SIGKILL: Duration = Duration::from_secs(5);
/// How long a stop waits for the session's monitor to record the end.
const SESSION_END_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A partial output line longer than this is not a prompt.
const MAX_LINE: usize = 4096;

pub struct Supervisor {
    store: Store,
    events: Arc<EventBus>,
    sessions: Arc<Sessions>,
    config: RwLock<Current>,
    watcher: ProgressWatcher,
    /// The runner of every task whose agent this daemon watches.
    runners: Mutex<HashMap<String, Runner>>,
}

struct Runner {
    /// Cancelled by a stop: the runner ends without touching the task.
    stop: CancellationToken,
    /// Becomes true when the runner ended.
    ended: watch::Receiver<bool>,
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

/// The config in force, with its `waiting_input_patterns` compiled once and shared by every
/// runner: one compiled pattern can take most of a megabyte (the default `\W` is a Unicode
/// class), too much to repeat for each running task.
#[derive(Clone)]
struct Current {
    config: Arc<Config>,
    prompts: Arc<[Regex]>,
}

impl Current {
    fn new(config: Arc<Config>) -> Current {
        // The config was refused at load if a pattern does not compile.
        let prompts = config
            .waiting_input_patterns
            .iter()
            .filter_map(|p| Regex::new(p).ok())
            .collect();
        Current { config, prompts }
    }
}

/// What a runner needs from the config; read again at each attempt.
struct RunSettings {
    profile: Profile,
    stall_after: Duration,
    prompts: Arc<[Regex]>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_rfc3339() -> String {
    // The store's clock format, from the system clock.
    let ms = crate::events::now_ms();
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Removes terminal escape sequences and carriage returns from a line of output.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ params final; OSC: ESC ] ... BEL; others: one more char.
                match chars.next() {
                    Some('[') => {
                        for c in chars.by_ref() {
                            if ('@'..='~').contains(&c) {
                                break;
                            }
                        }
                    }
                    Some(']') => {
                        for c in chars.by_ref() {
                            if c == '\x07' {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

pub fn backoff(failed_attempt: u32) -> Duration {
    let secs = 1u64 << failed_attempt.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

impl Supervisor {
    pub fn new(
        store: Store,
        events: Arc<EventBus>,
        sessions: Arc<Sessions>,
        config: Arc<Config>,
    ) -> Supervisor {
        Supervisor {
            store,
            events,
            sessions,
            config: RwLock::new(Current::new(config)),
            watcher: ProgressWatcher::new(),
            runners: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_config(&self, config: Arc<Config>) {
        let current = Current::new(config);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = current;
    }

    fn current(&self) -> Current {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn config(&self) -> Arc<Config> {
        self.current().config
    }

    /// Every profile and what is wrong with it now.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let config = self.config();
        config
            .agents
            .iter()
            .map(|p| {
                agents::check(
                    p,
                    config.test_agent_cmd.as_deref(),
                    &config.default_agent,
                    config.stall_after.as_secs(),
                )
            })
            .collect()
    }

    /// Logs every profile that cannot run, with why (at startup and after a reload).
    pub fn log_problems(&self) {
        for agent in self.agents() {
            if !agent.problems.is_empty() {
                tracing::warn!(
                    agent = %agent.name,
                    "agent profile `{}` is invalid; tasks that use it are refused: {}",
                    agent.name,
                    agent.problems.join("; ")
                );
            }
        }
        if self.config().test_agent_cmd.is_some() {
            tracing::warn!(
                "AIFACTORY_TEST_AGENT_CMD / test_agent_cmd is set: every agent runs that test command instead of its own"
            );
        }
    }

    /// The profile `name` when it is usable, or why not.
    fn usable_profile(&self, name: &str) -> Result<RunSettings, String> {
        let Current { config, prompts } = self.current();
        let Some(profile) = config.agents.iter().find(|p| p.name == name) else {
            return Err(format!(
                "no agent profile is named `{name}`: define [agents.{name}] in the config or pick one of {} (`aifactoryctl agents list`)",
                config
                    .agents
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let info = agents::check(
            profile,
            config.test_agent_cmd.as_deref(),
            &config.default_agent,
            config.stall_after.as_secs(),
        );
        if !info.problems.is_empty() {
            return Err(format!(
                "agent profile `{name}` cannot run: {}",
                info.problems.join("; ")
            ));
        }
        Ok(RunSettings {
            profile: profile.clone(),
            stall_after: Duration::from_secs(info.stall_after_s),
            prompts,
        })
    }

    pub async fn list(&self, project: Option<String>) -> Result<Vec<TaskInfo>, ErrorReply> {
        let project_id = match project {
            Some(key) => Some(crate::projects::show(&self.store, key).await?.id),
            None => None,
        };
        Ok(self
            .store
            .read(move |conn| tasks::list(conn, project_id.as_deref()))
            .await?)
    }

    pub async fn show(&self, key: String) -> Result<TaskInfo, ErrorReply> {
        tasks::show(&self.store, key).await
    }

    /// Creates the task, its worktree (from the project's default branch) and spec directory.
    pub async fn create(&self, request: TaskCreate) -> Result<TaskInfo, ErrorReply> {
        tasks::check_spec_id(&request.spec_id)?;
        let title = request.title.unwrap_or_else(|| request.spec_id.clone());
        tasks::check_title(&title)?;
        let agent = request
            .agent
            .unwrap_or_else(|| self.config().default_agent.clone());
        if !self.config().agents.iter().any(|p| p.name == agent) {
            return Err(invalid(format!(
                "no agent profile is named `{agent}`: see `aifactoryctl agents list`"
            )));
        }
        let project = crate::projects::show(&self.store, request.project).await?;
        let (pid, spec) = (project.id.clone(), request.spec_id.clone());
        let taken: Option<String> = self
            .store
            .read(move |conn| {
                use rusqlite::OptionalExtension;
                conn.query_row(
                    "SELECT id FROM tasks WHERE project_id = ?1 AND spec_id = ?2",
                    params![pid, spec],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        if let Some(existing) = taken {
            return Err(tasks::conflict_spec(&request.spec_id, &existing));
        }
        let worktree = tasks::worktree_path(&project.path, &request.spec_id);
        git::add_worktree(
            &project.path,
            &worktree,
            &tasks::branch(&request.spec_id),
            &project.default_branch,
        )
        .await
        .map_err(|e| {
            ErrorReply::new(
                ErrorCode::Invalid,
                format!(
                    "cannot create the worktree {}: git says: {e}",
                    worktree.display()
                ),
            )
        })?;
        let spec_dir = tasks::spec_dir(&worktree, &request.spec_id);
        std::fs::create_dir_all(&spec_dir).map_err(|e| {
            ErrorReply::new(
                ErrorCode::Unavailable,
                format!(
                    "cannot create the spec directory {}: {e}: check that aifactoryd may write to the project",
                    spec_dir.display()
                ),
            )
        })?;
        let new = NewTask {
            project_id: project.id.clone(),
            spec_id: request.spec_id,
            title,
            agent,
            worktree,
        };
        let task = self
            .store
            .write(move |tx| tasks::insert(tx, &new))
            .await??;
        tracing::info!(task_id = %task.id, project_id = %task.project_id, spec_id = %task.spec_id, worktree = %task.worktree.display(), "task created");
        self.events
            .publish(EventKind::TaskCreated {
                task_id: task.id.clone(),
                project_id: task.project_id.clone(),
                spec_id: task.spec_id.clone(),
            })
            .await;
        Ok(task)
    }

    fn is_running(&self, id: &str) -> bool {
        lock(&self.runners).contains_key(id)
    }

    /// Starts the task's agent (a user's start: the attempt count begins again).
    pub async fn start(self: &Arc<Self>, key: String) -> Result<TaskInfo, ErrorReply> {
        let task = self.show(key).await?;
        if self.is_running(&task.id) {
            return Err(ErrorReply::new(
                ErrorCode::Conflict,
                format!(
                    "task {} is already running (phase {}): stop it first, or use `aifactoryctl tasks restart {}`",
                    task.id,
                    task.phase.as_str(),
                    task.id
                ),
            ));
        }
        if task.phase.is_active() {
            // Recorded as working, but no runner: its agent ended while nobody watched.
            self.settle_orphan(&task).await?;
        }
        let settings = match self.usable_profile(&task.agent) {
            Ok(settings) => settings,
            Err(reason) => {
                tracing::warn!(task_id = %task.id, agent = %task.agent, "task start refused: {reason}");
                self.record_error(&task.id, &reason).await;
                return Err(invalid(reason));
            }
        };
        let session = self.spawn_attempt(&task, &settings, 1).await?;
        let id = task.id.clone();
        let sid = session.id.clone();
        let from = self
            .store
            .write(move |tx| {
                tasks::set_phase(tx, &id, TaskPhase::Planning, |tx| {
                    tx.execute(
                        &format!(
                            "UPDATE tasks SET session_id = ?2, attempts = 1, last_error = NULL,
                                 waiting_input = NULL, progress_percent = NULL,
                                 subtasks_done = NULL, subtasks_total = NULL,
                                 last_output_at = NULL, last_progress_at = NULL,
                                 updated_at = {NOW}
                             WHERE id = ?1"
                        ),
                        params![id, sid],
                    )
                    .map(|_| ())
                })
            })
            .await??;
        tasks::announce_phase(&self.events, &task.id, from, TaskPhase::Planning, "started").await;
        self.spawn_runner(task.id.clone(), session, Some(0));
        self.show(task.id).await
    }

    /// A task recorded as working whose agent nobody watches (a start interrupted by a crash):
    /// record it as failed so it can start again.
    async fn settle_orphan(&self, task: &TaskInfo) -> Result<(), ErrorReply> {
        let id = task.id.clone();
        let from = self
            .store
            .write(move |tx| {
                tasks::set_phase(tx, &id, TaskPhase::Failed, |tx| {
                    tx.execute(
                        "UPDATE tasks SET last_error = 'its agent ended while the daemon was not watching' WHERE id = ?1",
                        params![id],
                    )
                    .map(|_| ())
                })
            })
            .await??;
        tasks::announce_phase(
            &self.events,
            &task.id,
            from,
            TaskPhase::Failed,
            "found without its agent",
        )
        .await;
        Ok(())
    }

    async fn record_error(&self, id: &str, reason: &str) {
        let (id, reason) = (id.to_string(), reason.to_string());
        let _ = self
            .store
            .write(move |tx| {
                tx.execute(
                    &format!("UPDATE tasks SET last_error = ?2, updated_at = {NOW} WHERE id = ?1"),
                    params![id, reason],
                )
            })
            .await;
    }

    /// Starts one run of the agent in a new session.
    async fn spawn_attempt(
        &self,
        task: &TaskInfo,
        settings: &RunSettings,
        attempt: u32,
    ) -> Result<SessionInfo, ErrorReply> {
        std::fs::create_dir_all(&task.spec_dir).map_err(|e| {
            invalid(format!(
                "cannot create the spec directory {}: {e}",
                task.spec_dir.display()
            ))
        })?;
        let test_cmd = self.config().test_agent_cmd.clone();
        if test_cmd.is_some() {
            tracing::warn!(task_id = %task.id, "AIFACTORY_TEST_AGENT_CMD / test_agent_cmd replaces the agent's command: this daemon runs test fixtures, not agents");
        }
        let places = Placeholders {
            task_id: &task.id,
            spec_id: &task.spec_id,
            title: &task.title,
            worktree: &task.worktree,
            spec_dir: &task.spec_dir,
            progress_file: &task.progress_file,
        };
        let command = agents::effective_command(&settings.profile, test_cmd.as_deref())
            .iter()
            .map(|a| places.apply(a))
            .collect();
        let mut env: Vec<(String, String)> = settings
            .profile
            .env
            .iter()
            .map(|(k, v)| (k.clone(), places.apply(v)))
            .collect();
        env.push(("AIFACTORY_TASK_ID".into(), task.id.clone()));
        env.push((
            "AIFACTORY_SPEC_DIR".into(),
            task.spec_dir.to_string_lossy().into_owned(),
        ));
        env.push((
            "AIFACTORY_PROGRESS_FILE".into(),
            task.progress_file.to_string_lossy().into_owned(),
        ));
        let spec = SessionSpec {
            name: Some(format!("task-{}", task.id)),
            command,
            cwd: task.worktree.clone(),
            env,
            cols: None,
            rows: None,
        };
        let session = self.sessions.create(spec).await.map_err(|e| {
            let e = ErrorReply::from(e);
            ErrorReply::new(
                e.code,
                format!("cannot start the agent of task {}: {}", task.id, e.message),
            )
        })?;
        tracing::info!(task_id = %task.id, session_id = %session.id, attempt, agent = %task.agent, "agent started");
        Ok(session)
    }

    fn spawn_runner(self: &Arc<Self>, id: String, session: SessionInfo, from: Option<u64>) {
        let stop = CancellationToken::new();
        let (ended_tx, ended) = watch::channel(false);
        lock(&self.runners).insert(
            id.clone(),
            Runner {
                stop: stop.clone(),
                ended,
            },
        );
        let me = self.clone();
        tokio::spawn(async move {
            me.run(&id, session, from, stop).await;
            lock(&me.runners).remove(&id);
            let _ = ended_tx.send(true);
        });
    }

    /// A runner: watches attempt after attempt until the task ends or is stopped.
    async fn run(
        self: &Arc<Self>,
        id: &str,
        mut session: SessionInfo,
        mut from: Option<u64>,
        stop: CancellationToken,
    ) {
        let Ok(task) = self.show(id.to_string()).await else {
            return;
        };
        let mut progress_rx = match self.watcher.watch(&task.spec_dir) {
            Ok(rx) => Some(rx),
            Err(reason) => {
                tracing::error!(task_id = %id, "progress of this task cannot be followed: {reason}");
                None
            }
        };
        loop {
            let settings = self.usable_profile(&task.agent);
            let watched = self
                .watch_session(
                    id,
                    &session,
                    from,
                    &stop,
                    &mut progress_rx,
                    settings.as_ref().ok(),
                )
                .await;
            let next_attempt = match watched {
                Ended::Stopped => break,
                Ended::StallAction(OnStall::Stop) => {
                    let report = self.kill_tree(&session, Duration::from_secs(5)).await;
                    self.finish(
                        id,
                        &session.id,
                        TaskPhase::Failed,
                        "stalled; stopped by on_stall = \"stop\"",
                        None,
                        &report,
                    )
                    .await;
                    break;
                }
                Ended::StallAction(_) => {
                    let report = self.kill_tree(&session, Duration::from_secs(5)).await;
                    tracing::info!(task_id = %id, survivors = report.1.len(), "stalled agent stopped for a new attempt");
                    self.next_attempt(id, &session, "stalled", &stop).await
                }
                Ended::Exited(ended) => {
                    session = *ended;
                    let clean = session.exit.as_ref().is_some_and(|e| e.code == Some(0));
                    if clean {
                        self.finish(
                            id,
                            &session.id,
                            TaskPhase::Done,
                            "agent exited 0",
                            session.exit.clone(),
                            &(vec![], vec![]),
                        )
                        .await;
                        break;
                    }
                    let how = match (&session.exit, &session.lost_reason) {
                        (Some(exit), _) => exit.describe(),
                        (None, Some(reason)) => format!("lost: {reason}"),
                        (None, None) => "ended".into(),
                    };
                    self.next_attempt(id, &session, &how, &stop).await
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
        self.watcher.unwatch(&task.spec_dir);
    }

    /// After a failed run: the next run's session when the policy allows one (after its
    /// backoff), else the task is marked failed and `None`.
    async fn next_attempt(
        self: &Arc<Self>,
        id: &str,
        session: &SessionInfo,
        how: &str,
        stop: &CancellationToken,
    ) -> Option<SessionInfo> {
        let task = self.show(id.to_string()).await.ok()?;
        let settings = self.usable_profile(&task.agent);
        let retry = match &settings {
            Ok(s) => {
                s.profile.restart == RestartPolicy::OnFailure
                    && task.attempts < s.profile.max_attempts
            }
            Err(_) => false,
        };
        let max = settings
            .as_ref()
            .map(|s| s.profile.max_attempts)
            .unwrap_or(task.attempts);
        if !retry {
            let reason = match &settings {
                Err(reason) => format!("agent {how}; not restarted: {reason}"),
                Ok(s) if s.profile.restart == RestartPolicy::Never => {
                    format!("agent {how} (restart = \"never\")")
                }
                Ok(_) => format!(
                    "agent {how} on attempt {} of {max}: no attempts left",
                    task.attempts
                ),
            };
            self.finish(
                id,
                &session.id,
                TaskPhase::Failed,
                &reason,
                session.exit.clone(),
                &(vec![], vec![]),
            )
            .await;
            return None;
        }
        let delay = backoff(task.attempts);
        tracing::warn!(task_id = %id, attempt = task.attempts, max_attempts = max, delay_ms = delay.as_millis() as u64, "agent {how}: restarting after backoff");
        self.record_error(id, &format!("attempt {} {how}", task.attempts))
            .await;
        self.events
            .publish(EventKind::TaskExited {
                task_id: id.to_string(),
                session_id: session.id.clone(),
                exit: session.exit.clone(),
                restart_in_ms: Some(delay.as_millis() as u64),
            })
            .await;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return None,
        }
        let settings = match self.usable_profile(&task.agent) {
            Ok(s) => s,
            Err(reason) => {
                self.finish(
                    id,
                    &session.id,
                    TaskPhase::Failed,
                    &reason,
                    None,
                    &(vec![], vec![]),
                )
                .await;
                return None;
            }
        };
        let attempt = task.attempts + 1;
        match self.spawn_attempt(&task, &settings, attempt).await {
            Ok(next) => {
                let (tid, sid) = (id.to_string(), next.id.clone());
                let stored = self
                    .store
                    .write(move |tx| {
                        tx.execute(
                            &format!("UPDATE tasks SET session_id = ?2, attempts = ?3, updated_at = {NOW} WHERE id = ?1"),
                            params![tid, sid, attempt],
                        )
                    })
                    .await;
                if let Err(e) = stored {
                    tracing::error!(task_id = %id, "cannot record the new attempt: {e}");
                }
                // A new attempt of a stalled task starts where the old one was.
                self.unstall(id, "new attempt").await;
                Some(next)
            }
            Err(e) => {
                self.finish(
                    id,
                    &session.id,
                    TaskPhase::Failed,
                    &e.message,
                    None,
                    &(vec![], vec![]),
                )
                .await;
                None
            }
        }
    }

    /// Records the end of a task's run: its phase, why, and the `TaskExited` event.
    async fn finish(
        &self,
        id: &str,
        session_id: &str,
        to: TaskPhase,
        reason: &str,
        exit: Option<aifactory_common::pane::ExitInfo>,
        report: &(Vec<ProcessEntry>, Vec<ProcessEntry>),
    ) {
        let (tid, why) = (id.to_string(), reason.to_string());
        let error = (to != TaskPhase::Done).then(|| why.clone());
        let moved = self
            .store
            .write(move |tx| {
                tasks::set_phase(tx, &tid, to, |tx| {
                    tx.execute(
                        "UPDATE tasks SET last_error = coalesce(?2, last_error), waiting_input = NULL WHERE id = ?1",
                        params![tid, error],
                    )
                    .map(|_| ())
                })
            })
            .await;
        self.events
            .publish(EventKind::TaskExited {
                task_id: id.to_string(),
                session_id: session_id.to_string(),
                exit,
                restart_in_ms: None,
            })
            .await;
        match moved {
            Ok(Ok(from)) => tasks::announce_phase(&self.events, id, from, to, reason).await,
            // The agent reported `done`/`failed` itself before it ended: already there.
            Ok(Err(e)) => tracing::info!(task_id = %id, "task ended ({reason}): {}", e.message),
            Err(e) => {
                tracing::error!(task_id = %id, "cannot record the task's end ({reason}): {e}")
            }
        }
        if !report.1.is_empty() {
            tracing::error!(task_id = %id, survivors = ?report.1, "processes survived SIGKILL");
        }
    }

    /// Watches one session until it ends, a stop, or a stall policy acts.
    async fn watch_session(
        &self,
        id: &str,
        session: &SessionInfo,
        from: Option<u64>,
        stop: &CancellationToken,
        progress_rx: &mut Option<tokio::sync::mpsc::Receiver<()>>,
        settings: Option<&RunSettings>,
    ) -> Ended {
        let stall_after = settings
            .map(|s| s.stall_after)
            .unwrap_or(self.config().stall_after);
        let on_stall = settings
            .map(|s| s.profile.on_stall)
            .unwrap_or(OnStall::None);
        let mut output = match self.follow_output(session, from).await {
            Some(stream) => stream,
            None => {
                // The monitor is gone: the session ended (or is ending); its record says how.
                return self.session_end(session, stop).await;
            }
        };
        // Any progress written before we watched counts.
        self.read_progress(id).await;
        let mut last_activity = Instant::now();
        let mut stall_deadline = Some(last_activity + stall_after);
        let mut quiet_deadline: Option<Instant> = None;
        let mut line: Vec<u8> = Vec::new();
        let mut output_time_written: Option<Instant> = None;
        let mut waiting = false;
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let progress_wake = async {
                match progress_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return Ended::Stopped,
                frame = output.next_frame() => match frame {
                    Some(Ok(MonitorFrame::Output { data, .. })) => {
                        last_activity = Instant::now();
                        if stall_deadline.is_none() {
                            self.unstall(id, "output").await;
                        }
                        stall_deadline = Some(last_activity + stall_after);
                        quiet_deadline = Some(last_activity + QUIET);
                        if waiting {
                            waiting = false;
                            self.set_waiting(id, None).await;
                        }
                        self.scan_output(id, &data, &mut line).await;
                        if output_time_written.is_none_or(|t| t.elapsed() >= OUTPUT_TIME_EVERY) {
                            output_time_written = Some(Instant::now());
                            self.touch(id, "last_output_at").await;
                        }
                    }
                    Some(Ok(MonitorFrame::Exited(_))) | None | Some(Err(_)) => {
                        if output_time_written.is_some() {
                            self.touch(id, "last_output_at").await;
                        }
                        return self.session_end(session, stop).await;
                    }
                    Some(Ok(_)) => {}
                },
                Some(()) = progress_wake => {
                    if self.read_progress(id).await {
                        last_activity = Instant::now();
                        if stall_deadline.is_none() {
                            self.unstall(id, "progress").await;
                        }
                        stall_deadline = Some(last_activity + stall_after);
                    }
                }
                _ = tokio::time::sleep_until(quiet_deadline.unwrap_or_else(far)), if quiet_deadline.is_some() => {
                    quiet_deadline = None;
                    let last = plain(&String::from_utf8_lossy(&line));
                    let last = last.trim_end_matches(['\n']);
                    if let Some(settings) = settings
                        && !last.trim().is_empty()
                        && settings.prompts.iter().any(|p| p.is_match(last))
                    {
                        waiting = true;
                        self.set_waiting(id, Some(last.trim().to_string())).await;
                    }
                }
                _ = tokio::time::sleep_until(stall_deadline.unwrap_or_else(far)), if stall_deadline.is_some() => {
                    stall_deadline = None;
                    self.touch(id, "last_output_at").await;
                    self.stall(id, session, stall_after).await;
                    if on_stall != OnStall::None {
                        return Ended::StallAction(on_stall);
                    }
                }
            }
        }
    }

    /// Output from `from` (`None`: from its current end) of a running session.
    async fn follow_output(
        &self,
        session: &SessionInfo,
        from: Option<u64>,
    ) -> Option<aifactory_pane::client::MonitorStream> {
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

    /// The session as it ended (waiting for the registry to record it), unless a stop comes.
    async fn session_end(&self, session: &SessionInfo, stop: &CancellationToken) -> Ended {
        tokio::select! {
            _ = stop.cancelled() => Ended::Stopped,
            ended = self.sessions.wait(session.id.clone()) => match ended {
                Ok(ended) => Ended::Exited(Box::new(ended)),
                Err(e) => Ended::Exited(Box::new(SessionInfo {
                    state: SessionState::Lost,
                    lost_reason: Some(e.to_string()),
                    ..session.clone()
                })),
            },
        }
    }

    /// Looks for phase markers in complete lines; keeps the partial last line in `line`.
    async fn scan_output(&self, id: &str, data: &[u8], line: &mut Vec<u8>) {
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            line.extend_from_slice(chunk);
            if line.len() > MAX_LINE {
                let cut = line.len() - MAX_LINE;
                line.drain(..cut);
            }
            if line.ends_with(b"\n") {
                let text = String::from_utf8_lossy(line);
                if let Some(phase) = progress::marker_phase(&plain(&text)) {
                    self.agent_phase(id, phase, "output marker").await;
                }
                line.clear();
            }
        }
    }

    /// Applies the progress file; true when it said anything new.
    async fn read_progress(&self, id: &str) -> bool {
        let Ok(task) = self.show(id.to_string()).await else {
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
                    tx.execute(
                        &format!(
                            "UPDATE tasks SET progress_percent = ?2, subtasks_done = ?3, subtasks_total = ?4,
                                 notes = coalesce(?5, notes), last_progress_at = {NOW}, updated_at = {NOW}
                             WHERE id = ?1"
                        ),
                        params![id, progress.percent, progress.subtasks_done, progress.subtasks_total, notes],
                    )
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
            self.touch(&task.id, "last_progress_at").await;
        }
        true
    }

    /// A phase the agent reported; refused transitions are logged, not applied.
    async fn agent_phase(&self, id: &str, to: TaskPhase, via: &str) {
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
            Ok(Err(e)) => {
                tracing::warn!(task_id = %id, "agent's phase ignored ({via}): {}", e.message)
            }
            Err(e) => tracing::error!(task_id = %id, "cannot record the agent's phase: {e}"),
        }
    }

    async fn touch(&self, id: &str, column: &'static str) {
        let id = id.to_string();
        let _ = self
            .store
            .write_process_state(move |tx| {
                tx.execute(
                    &format!("UPDATE tasks SET {column} = {NOW} WHERE id = ?1"),
                    params![id],
                )
            })
            .await;
    }

    async fn set_waiting(&self, id: &str, prompt: Option<String>) {
        let (tid, p) = (id.to_string(), prompt.clone());
        let _ = self
            .store
            .write_process_state(move |tx| {
                tx.execute(
                    "UPDATE tasks SET waiting_input = ?2 WHERE id = ?1",
                    params![tid, p],
                )
            })
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

    async fn stall(&self, id: &str, session: &SessionInfo, stall_after: Duration) {
        let Ok(task) = self.show(id.to_string()).await else {
            return;
        };
        let stat = session.pid.and_then(proctree::stat);
        let evidence = StallEvidence {
            detected_at: now_rfc3339(),
            stall_after_s: stall_after.as_secs(),
            last_output_at: task.last_output_at.clone(),
            last_progress_at: task.last_progress_at.clone(),
            pid: session.pid,
            process_state: stat.as_ref().map(|s| proctree::describe_state(s.state)),
            cpu_time_ms: stat.as_ref().map(|s| proctree::cpu_time_ms(s.cpu_ticks)),
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
            Ok(Err(e)) => tracing::info!(task_id = %id, "not marked stalled: {}", e.message),
            Err(e) => tracing::error!(task_id = %id, "cannot record the stall: {e}"),
        }
    }

    /// A stalled task whose agent shows life goes back to where it was.
    async fn unstall(&self, id: &str, what: &str) {
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

    /// Stops a working task: every process of its agent gets SIGTERM (and SIGHUP), then
    /// SIGKILL after `grace`.
    pub async fn stop(&self, key: String, grace: Duration) -> Result<StopReport, ErrorReply> {
        let task = self.show(key).await?;
        let runner = lock(&self.runners)
            .get(&task.id)
            .map(|r| (r.stop.clone(), r.ended.clone()));
        if runner.is_none() && !task.phase.is_active() {
            return Err(invalid(format!(
                "task {} is not running (phase {}): nothing to stop",
                task.id,
                task.phase.as_str()
            )));
        }
        if let Some((stop, mut ended)) = runner {
            stop.cancel();
            let _ = ended.wait_for(|e| *e).await;
        }
        // The runner may have started another attempt before it saw the stop.
        let task = self.show(task.id).await?;
        let mut report = (Vec::new(), Vec::new());
        if let Some(sid) = &task.session_id
            && let Ok(session) = self.sessions.show(sid.clone()).await
            && session.state == SessionState::Running
        {
            report = self.kill_tree(&session, grace).await;
        }
        let id = task.id.clone();
        let moved = self
            .store
            .write(move |tx| tasks::set_phase(tx, &id, TaskPhase::Stopped, |_| Ok(())))
            .await?;
        if let Ok(from) = moved {
            tasks::announce_phase(&self.events, &task.id, from, TaskPhase::Stopped, "stopped")
                .await;
        }
        if let Some(sid) = &task.session_id {
            self.events
                .publish(EventKind::TaskExited {
                    task_id: task.id.clone(),
                    session_id: sid.clone(),
                    exit: self
                        .sessions
                        .show(sid.clone())
                        .await
                        .ok()
                        .and_then(|s| s.exit),
                    restart_in_ms: None,
                })
                .await;
        }
        tracing::info!(task_id = %task.id, signalled = report.0.len(), survivors = report.1.len(), "task stopped");
        Ok(StopReport {
            task: self.show(task.id).await?,
            signalled: report.0,
            survivors: report.1,
        })
    }

    /// Ends every process of a session: its group and whatever escaped it below its monitor.
    /// Returns the processes signalled and those that survived SIGKILL.
    async fn kill_tree(
        &self,
        session: &SessionInfo,
        grace: Duration,
    ) -> (Vec<ProcessEntry>, Vec<ProcessEntry>) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let (Some(monitor), Some(pid)) = (session.monitor_pid, session.pid) else {
            return (Vec::new(), Vec::new());
        };
        // The monitor's pid might have been reused after it ended: only its own tree counts.
        if !self.monitor_is_alive(session).await {
            return (Vec::new(), Vec::new());
        }
        let group = Pid::from_raw(-(pid as i32));
        let mut signalled = proctree::descendants(monitor, &[pid]);
        let _ = kill(group, Signal::SIGHUP);
        let _ = kill(group, Signal::SIGTERM);
        for p in &signalled {
            let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
        }
        let pids: Vec<u32> = signalled.iter().map(|p| p.pid).collect();
        let mut left = proctree::wait_all(&pids, grace).await;
        // Whatever was forked meanwhile, and whatever ignored SIGTERM.
        for _ in 0..3 {
            let late = proctree::descendants(monitor, &[pid]);
            for p in &late {
                if !signalled.iter().any(|s| s.pid == p.pid) {
                    signalled.push(p.clone());
                }
                if !left.contains(&p.pid) {
                    left.push(p.pid);
                }
            }
            if left.is_empty() {
                break;
            }
            let _ = kill(group, Signal::SIGKILL);
            for &p in &left {
                let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
            }
            left = proctree::wait_all(&left, AFTER_SIGKILL).await;
        }
        let survivors = signalled
            .iter()
            .filter(|p| left.contains(&p.pid))
            .cloned()
            .collect();
        // Let the monitor record the end before anyone looks at the session.
        let _ =
            tokio::time::timeout(SESSION_END_TIMEOUT, self.sessions.wait(session.id.clone())).await;
        (signalled, survivors)
    }

    async fn monitor_is_alive(&self, session: &SessionInfo) -> bool {
        match MonitorClient::connect(&session.pane_dir).await {
            Ok(mut client) => client
                .info()
                .await
                .is_ok_and(|info| Some(info.monitor_pid) == session.monitor_pid),
            Err(_) => false,
        }
    }

    pub async fn restart(
        self: &Arc<Self>,
        key: String,
        grace: Duration,
    ) -> Result<TaskInfo, ErrorReply> {
        let task = self.show(key).await?;
        if self.is_running(&task.id) || task.phase.is_active() {
            self.stop(task.id.clone(), grace).await?;
        }
        self.start(task.id).await
    }

    /// Forgets a task that does not run; with `prune`, removes its worktree too (the branch
    /// stays: it holds the agent's commits).
    pub async fn remove(
        &self,
        key: String,
        prune: bool,
        force: bool,
    ) -> Result<TaskInfo, ErrorReply> {
        let task = self.show(key).await?;
        if self.is_running(&task.id) || task.phase.is_active() {
            return Err(ErrorReply::new(
                ErrorCode::Conflict,
                format!(
                    "task {} is running (phase {}): stop it first (`aifactoryctl tasks stop {}`)",
                    task.id,
                    task.phase.as_str(),
                    task.id
                ),
            ));
        }
        if prune && task.worktree.exists() {
            let project = crate::projects::show(&self.store, task.project_id.clone()).await?;
            git::remove_worktree(&project.path, &task.worktree, force)
                .await
                .map_err(|e| {
                    ErrorReply::new(
                        ErrorCode::Conflict,
                        format!(
                            "cannot remove the worktree {}: git says: {e}; commit or discard its changes, or pass --force to delete them",
                            task.worktree.display()
                        ),
                    )
                })?;
        }
        let id = task.id.clone();
        self.store
            .write(move |tx| tx.execute("DELETE FROM tasks WHERE id = ?1", params![id]))
            .await?;
        tracing::info!(task_id = %task.id, pruned = prune, "task removed");
        self.events
            .publish(EventKind::TaskRemoved {
                task_id: task.id.clone(),
            })
            .await;
        Ok(task)
    }

    /// At startup, after the sessions were re-adopted: a runner for every working task.
    pub async fn adopt_all(self: &Arc<Self>) -> Result<(), ErrorReply> {
        let working: Vec<TaskInfo> = self
            .store
            .read(|conn| tasks::list(conn, None))
            .await?
            .into_iter()
            .filter(|t| t.phase.is_active())
            .collect();
        for task in working {
            let session = match &task.session_id {
                Some(sid) => self.sessions.show(sid.clone()).await.ok(),
                None => None,
            };
            match session {
                Some(session) => {
                    tracing::info!(task_id = %task.id, session_id = %session.id, state = session.state.as_str(), "task re-adopted");
                    // Output from now on: what it printed before was seen by the last daemon.
                    self.spawn_runner(task.id.clone(), session, None);
                }
                None => {
                    if let Err(e) = self.settle_orphan(&task).await {
                        tracing::error!(task_id = %task.id, "cannot settle a task without its session: {}", e.message);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn plain_text_of_a_terminal_line() {
        assert_eq!(
            plain("\x1b[1;32mContinue? (y/n)\x1b[0m \r"),
            "Continue? (y/n) "
        );
        assert_eq!(plain("\x1b]0;title\x07$ "), "$ ");
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_622), (2026, 6, 18));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
