//! Agent supervision: creating a task's worktree, starting its agent in an rmux session,
//! watching it (progress file, pane output, hangs, prompts that wait for a person), applying
//! its restart policy when it ends, and stopping every process it made.
//!
//! One runner (a tokio task) per working task owns everything about that run, so the task's
//! record changes in one place and in order. It survives nothing on its own: after a daemon
//! restart, [`Supervisor::adopt_all`] starts a runner again for every task whose agent is
//! still working, from the re-adopted session.
//!
//! This file is the supervisor's API (create, start, stop, restart, remove, adopt). The parts:
//! [`runner`] watches one task's attempts, [`activity`] is its state, [`output`] reads the
//! agent's terminal output, [`record`] writes what the runner saw to the task's record,
//! [`worktree`] makes and removes a task's worktree; a session's processes are ended by
//! `Sessions::kill_tree`.

mod activity;
mod error;
mod output;
mod record;
mod resources;
mod runner;
mod worktree;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aifactory_common::protocol::{
    AgentDetail, AgentInfo, AttemptInfo, ErrorCode, ErrorReply, EventKind, SessionInfo,
    SessionSpec, SessionState, StopReport, TaskCreate, TaskInfo, TaskPhase, Transcript,
};
use aifactory_common::sync::lock;
use regex::Regex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use self::error::SupervisorError;
use self::runner::Runner;
use crate::adapters;
use crate::agents::{self, CheckContext, Placeholders, Profile, ProfileError};
use crate::attempts;
use crate::cage::{self, CageInputs, SocketGuard, Support};
use crate::cgroups::{Cgroups, TaskGroup};
use crate::config::Config;
use crate::credentials::KeySource;
use crate::events::EventBus;
use crate::progress::ProgressWatcher;
use crate::sessions::{Confinement, KillReport, Sessions};
use crate::store::Store;
use crate::tasks::{self, NewTask, TaskError};
use crate::transcript;

pub struct Supervisor {
    store: Store,
    events: Arc<EventBus>,
    sessions: Arc<Sessions>,
    config: RwLock<Current>,
    watcher: ProgressWatcher,
    /// The runner of every task whose agent this daemon watches.
    runners: Mutex<HashMap<String, RunnerHandle>>,
    /// What this kernel's Landlock can do, asked once at startup.
    landlock: Support,
    /// The task sessions whose processes the daemon refuses on its socket.
    guard: SocketGuard,
    /// Where tasks' cgroups are made, found once at startup.
    cgroups: Cgroups,
    /// The cgroup of every task whose attempt runs in one.
    groups: Mutex<HashMap<String, TaskGroup>>,
}

/// One started attempt: its session and what confines it (for the start log and event).
struct Started {
    session: SessionInfo,
    /// The whole cage, every rule.
    cage: String,
    /// The cage in a clause and the limits: what the task's record keeps.
    confinement: String,
    limits: String,
}

/// How the supervisor reaches a task's runner.
struct RunnerHandle {
    /// Cancelled by a stop: the runner ends without touching the task.
    stop: CancellationToken,
    /// Becomes true when the runner ended.
    ended: watch::Receiver<bool>,
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

/// The spec a task's prompt includes, from its spec directory.
const SPEC_FILE: &str = "spec.md";
/// Whether an attempt continues the agent's conversation, and why it was restarted.
#[derive(Clone, Copy, Default)]
struct Resume<'a> {
    /// The conversation to resume, when the profile's built-in command can.
    agent_session_id: Option<&'a str>,
    /// Why (for the prompt): a stall, a failure, a restart by hand.
    why: Option<&'a str>,
}

/// What a runner needs from the config; read again at each attempt.
struct RunSettings {
    profile: Profile,
    stall_after: Duration,
    prompts: Arc<[Regex]>,
}

fn check_context(config: &Config) -> CheckContext<'_> {
    CheckContext {
        test_agent_cmd: config.test_agent_cmd.as_deref(),
        default_agent: &config.default_agent,
        stall_after_s: config.stall_after.as_secs(),
    }
}

impl Supervisor {
    pub fn new(
        store: Store,
        events: Arc<EventBus>,
        sessions: Arc<Sessions>,
        config: Arc<Config>,
        force_polling: bool,
        landlock: Support,
        cgroups: Cgroups,
    ) -> Supervisor {
        Supervisor {
            store,
            events,
            sessions,
            config: RwLock::new(Current::new(config)),
            watcher: ProgressWatcher::new(force_polling),
            runners: Mutex::new(HashMap::new()),
            landlock,
            guard: SocketGuard::default(),
            cgroups,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Where tasks' cgroups are made, or why they are not.
    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// What this kernel's Landlock can do for the cages.
    pub fn landlock(&self) -> &Support {
        &self.landlock
    }

    /// Refuses `peer` on the control socket when it is one of a caged task's processes whose
    /// profile does not allow the socket.
    pub fn check_peer(&self, peer: &crate::peer::PeerCred) -> Result<(), ErrorReply> {
        let Some(pid) = peer.pid.and_then(|p| u32::try_from(p).ok()) else {
            return Ok(());
        };
        if self.guard.is_empty() {
            return Ok(());
        }
        match self.guard.task_of(pid, self.store.file()) {
            None => Ok(()),
            Some(task) => Err(ErrorReply::new(
                ErrorCode::PermissionDenied,
                format!(
                    "permission denied: pid {pid} is a process of task {task}'s agent, which may not use aifactoryd's control socket (its task session is caged): set allow_control_socket = true in its agent profile to allow it"
                ),
            )),
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
        agents::check_all(&config.agents, check_context(&config))
    }

    /// One profile and its cage, or `None` when no profile has that name.
    pub fn agent_detail(&self, name: &str) -> Option<AgentDetail> {
        let config = self.config();
        let agent = self.agents().into_iter().find(|a| a.name == name)?;
        let profile = config.agents.iter().find(|p| p.name == name)?;
        let path_var = std::env::var_os("PATH");
        let program = agents::effective_command(profile, config.test_agent_cmd.as_deref())
            .first()
            .cloned();
        let sandbox = cage::describe(&cage::Described {
            profile: &profile.name,
            settings: &profile.cage,
            run_mode: config.mode,
            support: &self.landlock,
            program: program.as_deref(),
            path_var: path_var.as_deref(),
        });
        Some(AgentDetail { agent, sandbox })
    }

    /// Logs every profile that cannot run, with why (at startup and after a reload).
    pub fn log_problems(&self) {
        for agent in self.agents() {
            if !agent.problems.is_empty() {
                tracing::warn!(
                    agent = %agent.name,
                    "agent profile `{}` is invalid; tasks that use it are refused: {}",
                    agent.name,
                    agents::sentences(&agent.problems)
                );
            }
        }
        if self.landlock.simulated {
            tracing::warn!(
                "a test hook makes the daemon believe this kernel's Landlock is {}",
                self.landlock.describe()
            );
        } else {
            tracing::info!("task sandbox: {}", self.landlock.describe());
        }
        if self.config().test_agent_cmd.is_some() {
            tracing::warn!(
                "AIFACTORY_TEST_AGENT_CMD / test_agent_cmd is set: every agent runs that test command instead of its own"
            );
        }
    }

    /// The profile `name` when it is usable, or why not.
    fn usable_profile(&self, name: &str) -> Result<RunSettings, ProfileError> {
        let Current { config, prompts } = self.current();
        let (profile, info) = agents::usable(&config.agents, name, check_context(&config))?;
        Ok(RunSettings {
            profile: profile.clone(),
            stall_after: Duration::from_secs(info.stall_after_s),
            prompts,
        })
    }

    pub async fn list(&self, project: Option<String>) -> Result<Vec<TaskInfo>, SupervisorError> {
        let project_id = match project {
            Some(key) => Some(crate::projects::show(&self.store, key).await?.id),
            None => None,
        };
        let listed = self
            .store
            .read(move |conn| tasks::list(conn, project_id.as_deref()))
            .await
            .map_err(TaskError::from)?;
        Ok(listed
            .into_iter()
            .map(|t| self.with_live_usage(t))
            .collect())
    }

    pub async fn show(&self, key: String) -> Result<TaskInfo, SupervisorError> {
        Ok(self.with_live_usage(tasks::show(&self.store, key).await?))
    }

    /// Creates the task, its worktree (from the project's default branch) and spec directory.
    pub async fn create(&self, request: TaskCreate) -> Result<TaskInfo, SupervisorError> {
        tasks::check_spec_id(&request.spec_id)?;
        let title = request.title.unwrap_or_else(|| request.spec_id.clone());
        tasks::check_title(&title)?;
        let agent = request
            .agent
            .unwrap_or_else(|| self.config().default_agent.clone());
        if !self.config().agents.iter().any(|p| p.name == agent) {
            return Err(SupervisorError::UnknownAgent(agent));
        }
        let project = crate::projects::show(&self.store, request.project).await?;
        let (pid, spec) = (project.id.clone(), request.spec_id.clone());
        let taken = self
            .store
            .read(move |conn| tasks::id_for_spec(conn, &pid, &spec))
            .await
            .map_err(TaskError::from)?;
        if let Some(existing) = taken {
            return Err(TaskError::SpecTaken {
                spec_id: request.spec_id,
                existing,
            }
            .into());
        }
        let worktree = worktree::create(&project, &request.spec_id).await?;
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
            .await
            .map_err(TaskError::from)??;
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

    /// How many tasks' agents this daemon runs now.
    pub fn running_count(&self) -> usize {
        lock(&self.runners).len()
    }

    fn is_running(&self, id: &str) -> bool {
        lock(&self.runners).contains_key(id)
    }

    /// Starts the task's agent (a user's start: the attempt count begins again).
    pub async fn start(self: &Arc<Self>, key: String) -> Result<TaskInfo, SupervisorError> {
        self.start_run(key, None).await
    }

    /// Starts a run; `resume_why` (why it was restarted) resumes the agent's conversation when
    /// its profile can.
    async fn start_run(
        self: &Arc<Self>,
        key: String,
        resume_why: Option<&str>,
    ) -> Result<TaskInfo, SupervisorError> {
        let task = self.show(key).await?;
        if self.is_running(&task.id) {
            return Err(SupervisorError::AlreadyRunning {
                id: task.id,
                phase: task.phase,
            });
        }
        if task.phase.is_active() {
            // Recorded as working, but no runner: its agent ended while nobody watched.
            self.settle_orphan(&task).await?;
        }
        let settings = match self.usable_profile(&task.agent) {
            Ok(settings) => settings,
            Err(reason) => {
                tracing::warn!(task_id = %task.id, agent = %task.agent, "task start refused: {reason}");
                self.record_error(&task.id, &reason.to_string()).await;
                return Err(reason.into());
            }
        };
        let resume = Resume {
            agent_session_id: resume_why.and(task.agent_session_id.as_deref()),
            why: resume_why,
        };
        let Started {
            session,
            cage,
            confinement,
            limits,
        } = match self.spawn_attempt(&task, &settings, 1, resume).await {
            Ok(started) => started,
            Err(e) => {
                if matches!(e, SupervisorError::Cage { .. }) {
                    self.record_error(&task.id, &e.to_string()).await;
                }
                return Err(e);
            }
        };
        let id = task.id.clone();
        let sid = session.id.clone();
        let from = self
            .store
            .write(move |tx| {
                tasks::set_phase(tx, &id, TaskPhase::Planning, |tx| {
                    tasks::begin_run(tx, &id, &sid)?;
                    attempts::begin(tx, &id, &sid, 1)?;
                    tasks::set_confinement(tx, &id, &confinement)
                })
            })
            .await
            .map_err(TaskError::from)??;
        let reason = format!("started; {cage}; {limits}");
        tasks::announce_phase(&self.events, &task.id, from, TaskPhase::Planning, &reason).await;
        self.spawn_runner(task.id.clone(), session, Some(0));
        self.show(task.id).await
    }

    /// A task recorded as working whose agent nobody watches (a start interrupted by a crash):
    /// record it as failed so it can start again.
    async fn settle_orphan(&self, task: &TaskInfo) -> Result<(), TaskError> {
        let id = task.id.clone();
        let from = self
            .store
            .write(move |tx| {
                tasks::set_phase(tx, &id, TaskPhase::Failed, |tx| {
                    tasks::set_last_error(
                        tx,
                        &id,
                        "its agent ended while the daemon was not watching",
                    )
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

    /// Starts one run of the agent in a new session, in its cage.
    async fn spawn_attempt(
        &self,
        task: &TaskInfo,
        settings: &RunSettings,
        attempt: u32,
        resume: Resume<'_>,
    ) -> Result<Started, SupervisorError> {
        worktree::recreate_spec_dir(task).await?;
        let test_cmd = self.config().test_agent_cmd.clone();
        if test_cmd.is_some() {
            tracing::warn!(task_id = %task.id, "AIFACTORY_TEST_AGENT_CMD / test_agent_cmd replaces the agent's command: this daemon runs test fixtures, not agents");
        }
        // The prompt carries at most its first 64 KiB (one argument: Linux refuses over 128 KiB).
        let spec = std::fs::read_to_string(task.spec_dir.join(SPEC_FILE)).ok();
        let prompt = adapters::prompt(
            &task.title,
            spec.as_deref(),
            &task.progress_file,
            resume.why,
        );
        let places = Placeholders {
            task_id: &task.id,
            spec_id: &task.spec_id,
            title: &task.title,
            worktree: &task.worktree,
            spec_dir: &task.spec_dir,
            progress_file: &task.progress_file,
            prompt: &prompt,
        };
        let profile = &settings.profile;
        let resumable = test_cmd.is_none() && profile.builtin;
        let command = match resume.agent_session_id.filter(|_| resumable) {
            Some(id) => adapters::headless_command(
                profile.kind,
                &agents::headless_settings(profile),
                &prompt,
                Some(id),
            )
            .unwrap_or_else(|| profile.command.clone()),
            None => agents::effective_command(profile, test_cmd.as_deref()),
        };
        let command: Vec<String> = command.iter().map(|a| places.apply(a)).collect();
        let profile_env: Vec<(String, String)> = settings
            .profile
            .env
            .iter()
            .map(|(k, v)| (k.clone(), places.apply(v)))
            .collect();
        let mut env = profile_env.clone();
        env.push(("AIFACTORY_TASK_ID".into(), task.id.clone()));
        env.push((
            "AIFACTORY_SPEC_DIR".into(),
            task.spec_dir.to_string_lossy().into_owned(),
        ));
        env.push((
            "AIFACTORY_PROGRESS_FILE".into(),
            task.progress_file.to_string_lossy().into_owned(),
        ));
        // The key reaches the agent through its environment only: never argv, a log or a record.
        let start = agents::start_env(&settings.profile, test_cmd.is_some())?;
        env.extend(start.env.into_pairs());
        let login_file = match &start.key_source {
            Some(KeySource::Login { path }) => Some(path.clone()),
            _ => None,
        };
        let key_source = start.key_source.map(|s| s.to_string());
        let project = crate::projects::show(&self.store, task.project_id.clone()).await?;
        let config = self.config();
        let path_var = std::env::var_os("PATH");
        let protected: Vec<PathBuf> = [
            config.state_dir.clone(),
            config.socket.clone(),
            self.sessions.panes().path.clone(),
        ]
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect();
        let programs: Vec<&str> = command
            .first()
            .map(String::as_str)
            .into_iter()
            .chain(
                test_cmd
                    .as_deref()
                    .and_then(|c| c.split_whitespace().next()),
            )
            .collect();
        let plan = cage::plan(&CageInputs {
            profile: &profile.name,
            settings: &profile.cage,
            run_mode: config.mode,
            support: &self.landlock,
            task_id: &task.id,
            worktree: &task.worktree,
            project: &project.path,
            programs: &programs,
            path_var: path_var.as_deref(),
            login_file: login_file.as_deref(),
            profile_env: &profile_env,
            protected: &protected,
        })
        .map_err(|cage| {
            tracing::warn!(task_id = %task.id, agent = %task.agent, "task start refused: {cage}");
            SupervisorError::Cage {
                id: task.id.clone(),
                cage,
            }
        })?;
        let mut command = command;
        if plan.cage.is_some() && profile.builtin {
            adapters::inside_cage(profile.kind, &mut command);
        }
        // Last: the task's own home, cache and tmp win over the profile's env.
        env.extend(plan.env.iter().cloned());
        let limits = profile.limits.or(config.limits);
        let group = self.open_group(&task.id, limits).await.map_err(|source| {
            tracing::warn!(task_id = %task.id, "task start refused: {source}");
            SupervisorError::Limits {
                id: task.id.clone(),
                source,
            }
        })?;
        let limits_summary = match (&group, self.cgroups.available()) {
            (Some(_), _) => format!("limits: {}", limits.describe()),
            (None, Err(why)) => format!("limits: unavailable ({why})"),
            (None, Ok(())) => "limits: none".into(),
        };
        if plan.guard_socket {
            // Before the agent runs: its first connection is refused too.
            self.guard.guard(&task.id);
        }
        let spec = SessionSpec {
            name: Some(format!("task-{}", task.id)),
            command,
            cwd: task.worktree.clone(),
            env,
            cols: None,
            rows: None,
        };
        let confinement = Confinement {
            cage: plan.cage.clone(),
            cgroups: group.as_ref().map(TaskGroup::dirs).unwrap_or_default(),
        };
        let session = self
            .sessions
            .create_confined(spec, confinement)
            .await
            .map_err(|session| {
                self.guard.release(&task.id);
                if let Some(group) = lock(&self.groups).remove(&task.id) {
                    let group = group.clone();
                    tokio::spawn(async move { group.remove().await });
                }
                SupervisorError::StartAgent {
                    id: task.id.clone(),
                    session,
                }
            })?;
        if plan.guard_socket
            && let Some(monitor) = session.monitor_pid
        {
            self.guard.set_monitor(&task.id, monitor);
        }
        tracing::info!(task_id = %task.id, session_id = %session.id, attempt, agent = %task.agent, resumes = resume.agent_session_id.filter(|_| resumable), key_source = key_source.as_deref().unwrap_or("none"), sandbox = %plan.summary, limits = %limits_summary, "agent started");
        Ok(Started {
            session,
            cage: plan.summary,
            confinement: format!("{}; {limits_summary}", plan.headline),
            limits: limits_summary,
        })
    }

    /// A re-adopted task's session gets its socket guard again, as its profile says now.
    fn guard_adopted(&self, task: &TaskInfo, session: &SessionInfo) {
        let config = self.config();
        let Some(profile) = config.agents.iter().find(|p| p.name == task.agent) else {
            return;
        };
        let mode = profile
            .cage
            .sandbox
            .unwrap_or_else(|| cage::SandboxMode::default_for(config.mode));
        if mode != cage::SandboxMode::Off && !profile.cage.allow_control_socket {
            self.guard.guard(&task.id);
            if let Some(monitor) = session.monitor_pid {
                self.guard.set_monitor(&task.id, monitor);
            }
        }
    }

    /// The task's agent no longer runs: no socket guard for it.
    fn unguard(&self, task_id: &str) {
        self.guard.release(task_id);
    }

    fn spawn_runner(self: &Arc<Self>, id: String, session: SessionInfo, from: Option<u64>) {
        let stop = CancellationToken::new();
        let (ended_tx, ended) = watch::channel(false);
        lock(&self.runners).insert(
            id.clone(),
            RunnerHandle {
                stop: stop.clone(),
                ended,
            },
        );
        let me = self.clone();
        tokio::spawn(async move {
            Runner::new(me.clone(), id.clone(), stop)
                .run(session, from)
                .await;
            lock(&me.runners).remove(&id);
            let _ = ended_tx.send(true);
        });
    }

    /// Stops a working task: every process of its agent gets SIGTERM (and SIGHUP), then
    /// SIGKILL after `grace`.
    pub async fn stop(&self, key: String, grace: Duration) -> Result<StopReport, SupervisorError> {
        let task = self.show(key).await?;
        let runner = lock(&self.runners)
            .get(&task.id)
            .map(|r| (r.stop.clone(), r.ended.clone()));
        if runner.is_none() && !task.phase.is_active() {
            return Err(SupervisorError::NotRunning {
                id: task.id,
                phase: task.phase,
            });
        }
        if let Some((stop, mut ended)) = runner {
            stop.cancel();
            let _ = ended.wait_for(|e| *e).await;
        }
        // The runner may have started another attempt before it saw the stop.
        let task = self.show(task.id).await?;
        let mut report = KillReport::default();
        if let Some(sid) = &task.session_id
            && let Ok(session) = self.sessions.show(sid.clone()).await
            && session.state == SessionState::Running
        {
            report = self.sessions.kill_tree(&session, grace).await;
        }
        // Whatever of the agent the walk of its process tree missed ends with its cgroup.
        let resources = self.close_group(&task.id).await;
        self.unguard(&task.id);
        let id = task.id.clone();
        let moved = self
            .store
            .write(move |tx| tasks::set_phase(tx, &id, TaskPhase::Stopped, |_| Ok(())))
            .await
            .map_err(TaskError::from)?;
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
                    failure: None,
                    resources: resources.map(Box::new),
                })
                .await;
        }
        tracing::info!(task_id = %task.id, signalled = report.stopped.len(), survivors = report.survivors.len(), "task stopped");
        Ok(StopReport {
            task: self.show(task.id).await?,
            signalled: report.stopped,
            survivors: report.survivors,
        })
    }

    /// The task's transcript after `after`.
    pub async fn transcript(
        &self,
        key: String,
        after: Option<u64>,
    ) -> Result<Transcript, SupervisorError> {
        let task = self.show(key).await?;
        Ok(self
            .store
            .read(move |conn| transcript::after(conn, &task.id, after))
            .await
            .map_err(TaskError::from)?)
    }

    /// Every attempt of the task's agent, oldest first.
    pub async fn attempts(&self, key: String) -> Result<Vec<AttemptInfo>, SupervisorError> {
        let task = self.show(key).await?;
        Ok(self
            .store
            .read(move |conn| attempts::list(conn, &task.id))
            .await
            .map_err(TaskError::from)?)
    }

    pub async fn restart(
        self: &Arc<Self>,
        key: String,
        grace: Duration,
        fresh: bool,
    ) -> Result<TaskInfo, SupervisorError> {
        let task = self.show(key).await?;
        if self.is_running(&task.id) || task.phase.is_active() {
            self.stop(task.id.clone(), grace).await?;
        }
        if fresh {
            let id = task.id.clone();
            self.store
                .write(move |tx| tasks::forget_conversation(tx, &id))
                .await
                .map_err(TaskError::from)?;
            return self.start_run(task.id, None).await;
        }
        self.start_run(task.id, Some("it was restarted by hand"))
            .await
    }

    /// Forgets a task that does not run; with `prune`, removes its worktree too (the branch
    /// stays: it holds the agent's commits).
    pub async fn remove(
        &self,
        key: String,
        prune: bool,
        force: bool,
    ) -> Result<TaskInfo, SupervisorError> {
        let task = self.show(key).await?;
        if self.is_running(&task.id) || task.phase.is_active() {
            return Err(SupervisorError::Running {
                id: task.id,
                phase: task.phase,
            });
        }
        if prune && task.worktree.exists() {
            let project = crate::projects::show(&self.store, task.project_id.clone()).await?;
            worktree::remove(&project.path, &task.worktree, force).await?;
        }
        if prune
            && let Ok(project) = crate::projects::show(&self.store, task.project_id.clone()).await
        {
            // The agent's own home, cache and tmp go with its worktree.
            let own = cage::task_dir(&project.path, &task.id);
            if let Err(e) = std::fs::remove_dir_all(&own)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(task_id = %task.id, "cannot remove the task's cage directory {}: {e}", own.display());
            }
        }
        let id = task.id.clone();
        self.store
            .write(move |tx| tasks::delete(tx, &id))
            .await
            .map_err(TaskError::from)?;
        tracing::info!(task_id = %task.id, pruned = prune, "task removed");
        self.events
            .publish(EventKind::TaskRemoved {
                task_id: task.id.clone(),
            })
            .await;
        Ok(task)
    }

    /// At startup, after the sessions were re-adopted: a runner for every working task.
    pub async fn adopt_all(self: &Arc<Self>) -> Result<(), TaskError> {
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
                    self.guard_adopted(&task, &session);
                    self.adopt_group(&task.id);
                    // Output from now on: what it printed before was seen by the last daemon.
                    self.spawn_runner(task.id.clone(), session, None);
                }
                None => {
                    if let Err(e) = self.settle_orphan(&task).await {
                        tracing::error!(task_id = %task.id, "cannot settle a task without its session: {e}");
                    }
                }
            }
        }
        Ok(())
    }
}
