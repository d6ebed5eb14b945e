//! Every message that crosses the control socket, defined once.
//!
//! One file on purpose: the compatibility rules below bind all of it together, and a version
//! bump is reviewed by reading this one file against its golden bytes.
//!
//! Rules that keep old and new peers compatible:
//! - enums are append-only: a new variant goes at the end, an old one is never removed or
//!   reordered (its position is its tag on the wire);
//! - a change to the bytes of any existing message needs a [`PROTOCOL_VERSION`] bump; the golden
//!   test in `tests/` fails when the bytes change without one.
//!
//! A connection carries [`ClientFrame`]s one way and [`ServerFrame`]s the other. Every request
//! has a client-chosen id that its reply echoes, so many requests may be in flight on one
//! connection. A request that opens a stream (e.g. [`Request::SubscribeEvents`]) is answered once
//! with a [`Reply`], then the daemon pushes [`ServerFrame::Stream`] frames tagged with that same
//! id as the subscription id until [`Request::Unsubscribe`] or the connection ends.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::agent::{AgentEvent, AgentResult, Failure, FailureKind, TranscriptEntry, Usage};

/// Version of everything in this module plus the frame layer. Bump on any wire change.
pub const PROTOCOL_VERSION: u16 = 10;

pub type RequestId = u64;
/// A subscription is named by the id of the request that opened it.
pub type SubscriptionId = u64;

/// Client to daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    pub id: RequestId,
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Daemon identity, paths and counters.
    Status,
    /// Stream the daemon's events; the reply is [`Reply::EventsSubscribed`]. With `after`, first
    /// replay every kept event numbered above it (a reconnecting client passes the last `seq`
    /// it saw), then go on live with no gap and no duplicate.
    SubscribeEvents {
        after: Option<u64>,
    },
    /// End a stream opened on this connection.
    Unsubscribe {
        subscription: SubscriptionId,
    },
    /// Register a git work tree as a project; the reply is [`Reply::Project`].
    ProjectAdd(ProjectAdd),
    ProjectList,
    /// `key` is a project id or name.
    ProjectShow {
        key: String,
    },
    /// Forget a project (its files are never touched).
    ProjectRemove {
        key: String,
    },
    /// Import the old product's `projects.json` entries, read by the client.
    ProjectImportLegacy {
        /// Where the entries came from, recorded with the import.
        source: PathBuf,
        entries: Vec<LegacyProject>,
    },
    /// Start a program in a new terminal session; the reply is [`Reply::Session`].
    SessionNew(SessionSpec),
    SessionList,
    /// `key` is a session id or name.
    SessionShow {
        key: String,
    },
    /// Bytes typed into the session.
    SessionInput {
        key: String,
        data: Vec<u8>,
    },
    SessionResize {
        key: String,
        cols: u16,
        rows: u16,
    },
    /// SIGHUP and SIGTERM to the session's process group, SIGKILL after `grace_ms`.
    /// With `ignore_missing`, a session that is gone (or never was) is not an error.
    SessionKill {
        key: String,
        grace_ms: u64,
        ignore_missing: bool,
    },
    /// Wait until the session's program ends; the reply is its [`Reply::Session`].
    SessionWait {
        key: String,
    },
    /// Forget an ended session and delete its pane directory.
    SessionRemove {
        key: String,
    },
    /// Stream output from `from` (default: the start of what is kept) as
    /// [`StreamItem::Output`]; with `follow`, keep streaming live until the session ends,
    /// otherwise stop at the output's current end. Ends with [`StreamItem::OutputEnd`].
    SessionTail {
        key: String,
        from: Option<u64>,
        follow: bool,
    },
    /// Create a task and its git worktree; the reply is [`Reply::Task`].
    TaskCreate(TaskCreate),
    /// Every task, or a project's (id or name).
    TaskList {
        project: Option<String>,
    },
    /// `key` is a task id, or a spec id when only one task has it.
    TaskShow {
        key: String,
    },
    /// Run the task's agent in a new session; the reply is [`Reply::Task`].
    TaskStart {
        key: String,
    },
    /// SIGTERM to every process of the agent, SIGKILL after `grace_ms`; the reply is
    /// [`Reply::TaskStopped`].
    TaskStop {
        key: String,
        grace_ms: u64,
    },
    /// Stop (if running) and start again, resuming the agent's conversation unless `fresh`.
    TaskRestart {
        key: String,
        grace_ms: u64,
        fresh: bool,
    },
    /// Forget a task that does not run. With `prune`, also remove its worktree (refused when
    /// the worktree has changes, unless `force`) and its branch.
    TaskRemove {
        key: String,
        prune: bool,
        force: bool,
    },
    /// The agent profiles and what is wrong with each; the reply is [`Reply::Agents`].
    AgentList,
    /// The task's transcript entries after `after` (a [`TranscriptEntry::seq`]; `None`: from
    /// the first kept); the reply is [`Reply::Transcript`]. Live entries arrive as
    /// [`EventKind::TaskAgent`] events.
    TaskTranscript {
        key: String,
        after: Option<u64>,
    },
    /// Processes that carry the mark of one of this daemon's sessions but belong to no live
    /// session; the reply is [`Reply::Strays`].
    SessionStrays,
    /// One agent profile and the cage its tasks run in; the reply is [`Reply::Agent`].
    AgentShow {
        name: String,
    },
    /// Every attempt of the task's agent, oldest first; the reply is [`Reply::Attempts`].
    TaskAttempts {
        key: String,
    },
    /// What the daemon sees of its own paths and processes, for the doctor's checks: each
    /// project's work tree, each working task's spec directory and progress file, each running
    /// session's process, the monitors answering under its panes root. A client may see less
    /// (another uid, a narrower mount namespace), so it asks rather than looks. The reply is
    /// [`Reply::DoctorFacts`], within [`crate::diagnose::DOCTOR_FACTS_WITHIN`].
    DoctorFacts,
    /// `git clone URL PATH` on this host (with a time limit), then register the clone as
    /// [`Request::ProjectAdd`] does; the reply is [`Reply::Project`]. `path` is absolute here
    /// and must not exist yet.
    ProjectClone {
        url: String,
        path: PathBuf,
        /// Default: the directory's name.
        name: Option<String>,
    },
}

/// Daemon to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The answer to the request with this id.
    Reply {
        id: RequestId,
        result: Result<Reply, ErrorReply>,
    },
    /// One item of an open subscription.
    Stream {
        subscription: SubscriptionId,
        item: StreamItem,
    },
    /// The daemon is closing this connection, and why (refused peer, bad frame, limits).
    Goodbye(ErrorReply),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Status(StatusInfo),
    Subscribed,
    Unsubscribed,
    Project(ProjectInfo),
    Projects(Vec<ProjectInfo>),
    ProjectRemoved(ProjectInfo),
    Imported(ImportReport),
    Session(SessionInfo),
    Sessions(Vec<SessionInfo>),
    /// The request was carried out (input, resize).
    Done,
    /// `SessionKill` up to protocol 6: the session as it ended, or `None` when it was already
    /// gone. Protocol 7 answers [`Reply::SessionKilled`].
    Killed(Option<SessionInfo>),
    // Boxed: a task is large, and every frame would pay for it.
    Task(Box<TaskInfo>),
    Tasks(Vec<TaskInfo>),
    TaskStopped(Box<StopReport>),
    TaskRemoved(Box<TaskInfo>),
    Agents(Vec<AgentInfo>),
    Transcript(Transcript),
    /// `SessionKill`: the session as it ended and every process the kill stopped.
    SessionKilled(Box<SessionKillReport>),
    /// `SessionStrays`.
    Strays(Vec<StrayProcess>),
    /// `AgentShow`.
    Agent(Box<AgentDetail>),
    /// `TaskAttempts`.
    Attempts(Vec<AttemptInfo>),
    /// `DoctorFacts`.
    DoctorFacts(Box<DoctorFacts>),
    /// `SubscribeEvents` accepted: events numbered above `head`, the newest when the stream
    /// opened, are live (those up to it come first when `after` was given). A client that keeps
    /// positions (the HTTP shim's event ids) knows where it stands before the first event.
    EventsSubscribed {
        head: u64,
    },
}

/// One attempt of a task's agent: when it ran, how it ended and what it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptInfo {
    /// 1, 2, ... over the task's whole life.
    pub n: u32,
    /// Its number within its run: a start begins a run at 1, each automatic restart after a
    /// failure or stall counts up (as [`TaskInfo::attempts`]).
    pub attempt: u32,
    pub session_id: String,
    pub agent: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// `None` while it runs.
    pub ended_at: Option<String>,
    /// Why it ended, in the daemon's words.
    pub reason: Option<String>,
    /// How its program ended (`None`: it runs, or it was lost or stopped without an exit).
    pub exit: Option<crate::pane::ExitInfo>,
    /// Why it failed, when it did.
    pub failure: Option<Failure>,
    /// What it used, from its cgroup (`None`: it had none, or it runs).
    pub resources: Option<ResourceUsage>,
}

/// What the daemon sees of its own paths and processes (`DoctorFacts`): facts, not verdicts.
/// The doctor's checks (`aifactory-doctor`) judge them, so a verdict is written once, there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoctorFacts {
    /// The daemon's effective uid.
    pub uid: u32,
    /// Every registered project's work tree.
    pub projects: Vec<ProjectTree>,
    /// Every working task's spec directory and progress file.
    pub tasks: Vec<TaskPaths>,
    /// Every session recorded as running with a pid, and whether that process runs.
    pub sessions: Vec<SessionProcess>,
    /// The sessions whose pane monitor answers on its socket under the panes root in use
    /// (monitors are forked by a zygote, so their command lines do not name their session:
    /// their sockets do).
    pub answering_monitors: Vec<String>,
}

/// A project's work tree as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectTree {
    pub id: String,
    pub name: String,
    pub path: PathBuf,
    pub state: WorkTreeState,
}

/// What a project's directory is, as far as the daemon could tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkTreeState {
    /// A directory inside a git work tree (git says so).
    WorkTree,
    /// Something about the directory itself: missing, not a directory, cannot be inspected.
    Path(PathState),
    /// A directory git does not take as a work tree: git's own words.
    NotAWorkTree { error: String },
    /// git could not be run.
    GitUnavailable { error: String },
    /// Not found out within the daemon's bound for these facts (git hung, or too many
    /// projects to go through in time).
    TimedOut { after_ms: u64 },
}

/// What a path is that should be a directory, as far as the daemon could tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathState {
    Dir,
    Missing,
    NotADirectory,
    /// Its metadata cannot be read (a directory above it is closed to the daemon, say).
    CannotInspect {
        error: String,
    },
}

/// A working task's spec directory and progress file as the daemon sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPaths {
    pub task_id: String,
    pub spec_id: String,
    pub spec_dir: PathBuf,
    pub spec_dir_state: PathState,
    pub progress_file: PathBuf,
    pub progress_file_state: FileState,
}

/// Whether a file the daemon reads can be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileState {
    /// It does not exist (yet).
    Absent,
    Readable,
    Unreadable {
        error: String,
    },
}

/// A session recorded as running, and whether its process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionProcess {
    pub session_id: String,
    pub pid: u32,
    pub alive: bool,
}

/// A task's stored transcript, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transcript {
    pub task_id: String,
    pub entries: Vec<TranscriptEntry>,
    /// Entries older than the first one here that were dropped to keep the transcript bounded.
    pub dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamItem {
    Event(Event),
    /// The subscriber fell behind and `missed` events were dropped for it.
    Lagged {
        missed: u64,
    },
    /// Session output starting at absolute byte offset `offset`.
    Output {
        offset: u64,
        data: Vec<u8>,
    },
    /// The bytes from `requested` were rotated away; output resumes at `resume_from`.
    OutputLagged {
        requested: u64,
        resume_from: u64,
    },
    /// The output stream is complete: `next` is the offset to resume from later; `exit` is set
    /// when the session has ended.
    OutputEnd {
        next: u64,
        exit: Option<crate::pane::ExitInfo>,
    },
}

/// Something that happened in the daemon, numbered in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventKind {
    /// SIGHUP re-read the config and it is in force.
    ConfigReloaded,
    /// SIGHUP found an invalid config; the previous one stays in force.
    ConfigRejected {
        reason: String,
    },
    /// The daemon is shutting down.
    Stopping,
    SessionCreated {
        session_id: String,
        name: Option<String>,
    },
    /// The session's program ended (`exit`), or it was lost (`lost_reason`).
    SessionEnded {
        session_id: String,
        exit: Option<crate::pane::ExitInfo>,
        lost_reason: Option<String>,
    },
    SessionRemoved {
        session_id: String,
    },
    TaskCreated {
        task_id: String,
        project_id: String,
        spec_id: String,
    },
    TaskPhase {
        task_id: String,
        from: TaskPhase,
        to: TaskPhase,
        /// What moved it (a progress line, the agent's exit, a stop, ...).
        reason: String,
    },
    /// The progress file or the agent's output said something new.
    TaskProgress {
        task_id: String,
        progress: Progress,
        /// A free-text line from the progress file.
        note: Option<String>,
    },
    TaskStalled {
        task_id: String,
        evidence: StallEvidence,
    },
    /// The agent's output ends in a prompt that waits for a person.
    TaskWaitingInput {
        task_id: String,
        prompt: String,
    },
    /// The agent's session ended.
    TaskExited {
        task_id: String,
        session_id: String,
        exit: Option<crate::pane::ExitInfo>,
        /// When the restart policy starts it again, in how many milliseconds.
        restart_in_ms: Option<u64>,
        /// Why the attempt failed, when it did.
        failure: Option<Failure>,
        /// What the attempt used, from its cgroup (`None`: it had none). Boxed: it would
        /// make every event as large as itself.
        resources: Option<Box<ResourceUsage>>,
    },
    TaskRemoved {
        task_id: String,
    },
    /// The agent's adapter read something it did; also kept in the task's transcript.
    TaskAgent {
        task_id: String,
        entry: TranscriptEntry,
    },
    /// The session's output cannot be written (e.g. its panes root is full): its program is
    /// held until it can, and nothing is lost.
    SessionOutputBlocked {
        session_id: String,
        blocked: crate::pane::OutputBlocked,
    },
    /// The session's output is written again.
    SessionOutputResumed {
        session_id: String,
    },
}

impl EventKind {
    /// The task an event is about, if any.
    pub fn task_id(&self) -> Option<&str> {
        match self {
            EventKind::TaskCreated { task_id, .. }
            | EventKind::TaskPhase { task_id, .. }
            | EventKind::TaskProgress { task_id, .. }
            | EventKind::TaskStalled { task_id, .. }
            | EventKind::TaskWaitingInput { task_id, .. }
            | EventKind::TaskExited { task_id, .. }
            | EventKind::TaskRemoved { task_id }
            | EventKind::TaskAgent { task_id, .. } => Some(task_id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RunMode {
    /// Per-user daemon: socket 0600, state under the user's XDG directories.
    User,
    /// System daemon: socket 0660 with the `aifactory` group, state under /var/lib.
    System,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::User => "user",
            RunMode::System => "system",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusInfo {
    /// The daemon's package version.
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub protocol: u16,
    pub mode: RunMode,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub socket: PathBuf,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub state_dir: PathBuf,
    /// The config file in force, if any.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub config_file: Option<PathBuf>,
    /// Open client connections, this one included.
    pub connections: u32,
    pub max_connections: u32,
    /// The database's schema version (the newest applied migration).
    pub schema_version: u32,
    pub store: StoreHealth,
    /// The pane directories' root in use.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub panes_dir: PathBuf,
    /// Candidates passed over before it, with why.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<(String, SkipReason)>))]
    pub panes_skipped: Vec<(PathBuf, SkipReason)>,
    /// Sessions whose program runs.
    pub sessions_running: u32,
    /// Running sessions whose output cannot be written now (their programs are held).
    pub sessions_output_blocked: u32,
    /// This kernel's Landlock ABI, which confines the agents (0: none).
    pub landlock_abi: u32,
    /// What that means for the agents' cages, in a sentence: everything enforced, what is
    /// missing, or why there is no Landlock and how to get it.
    pub sandbox: String,
    /// Each task runs in a cgroup of its own, with its profile's limits and accounting.
    pub limits_available: bool,
    /// In a sentence: the cgroup interface and where, or why there is none and how to get it.
    pub limits: String,
    /// How busy the machine is, read when this status was asked for.
    pub load: HostLoad,
}

/// How busy a host is: what a person weighs when choosing where to put a project. Read from
/// the kernel at each status request (no sampling), so each figure is of that moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostLoad {
    /// Tasks whose agent this daemon runs now.
    pub tasks_running: u32,
    /// CPUs this daemon may run on (its affinity; at least 1).
    pub cpus: u32,
    /// The kernel's load average (`/proc/loadavg`); `None` where it cannot be read.
    pub load_average: Option<LoadAverage>,
    /// The machine's memory (`/proc/meminfo`); `None` where it cannot be read.
    pub memory: Option<MemoryInfo>,
}

/// The run-queue averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoadAverage {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

/// `MemTotal` and `MemAvailable` (the kernel's estimate of what can be had without swapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryInfo {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// Why a pane directory (a candidate root, or the root in use) is refused. Typed so that clients
/// act on the cause (the doctor tells an unsafe directory from a merely unwritable one); its
/// `Display` is the sentence for people, with what to do.
// The rename only shapes JSON; bincode encodes variants by position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// It does not exist (it was removed after it was created).
    Missing,
    /// Creating it (and its parents) failed; `error` is the OS's reason.
    CannotCreate {
        error: String,
    },
    /// Its metadata cannot be read.
    CannotInspect {
        error: String,
    },
    /// It is a symlink: it could redirect session output.
    Symlink,
    NotADirectory,
    /// It belongs to another uid than the daemon's.
    OwnedByOther {
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        dir: PathBuf,
        owner: u32,
        daemon_uid: u32,
    },
    /// Group or others may write it; `mode` is its permission bits.
    OpenToOthers {
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        dir: PathBuf,
        mode: u32,
    },
    /// A probe file cannot be created or written in it.
    NotWritable {
        error: String,
    },
    /// The probe file was written but cannot be removed again.
    CannotRemove {
        error: String,
    },
    /// The file system it is on has no free space (or the quota is used up).
    NoSpace {
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        dir: PathBuf,
        error: String,
    },
}

impl SkipReason {
    /// Whether the directory is refused because someone else could swap or fill it (as opposed
    /// to merely being unusable).
    pub fn is_unsafe(&self) -> bool {
        matches!(
            self,
            SkipReason::OwnedByOther { .. } | SkipReason::OpenToOthers { .. }
        )
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Missing => f.write_str(
                "it does not exist (removed after aifactoryd created it?): restart aifactoryd, which creates it again",
            ),
            SkipReason::CannotCreate { error } => write!(f, "cannot create it: {error}"),
            SkipReason::CannotInspect { error } => write!(f, "cannot inspect it: {error}"),
            SkipReason::Symlink => f.write_str(
                "it is a symlink; refusing it (a symlink could redirect session output): make it a real directory",
            ),
            SkipReason::NotADirectory => {
                f.write_str("it is not a directory: remove the file or point panes_dir elsewhere")
            }
            SkipReason::OwnedByOther {
                dir,
                owner,
                daemon_uid,
            } => write!(
                f,
                "it is owned by uid {owner}, not by aifactoryd's uid {daemon_uid}; refusing it: remove it or `chown {daemon_uid} {}`",
                dir.display()
            ),
            SkipReason::OpenToOthers { dir, mode } => write!(
                f,
                "it is writable by group or others (mode {mode:04o}); refusing it: `chmod 0700 {}`",
                dir.display()
            ),
            SkipReason::NotWritable { error } => write!(f, "not writable: {error}"),
            SkipReason::CannotRemove { error } => {
                write!(f, "cannot remove a file in it: {error}")
            }
            SkipReason::NoSpace { dir, error } => write!(
                f,
                "no free space ({error}): free space there (`df -h {}`) or set panes_dir to a directory with room; sessions started in it keep running there",
                dir.display()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// Unique among running sessions.
    pub name: Option<String>,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Absolute working directory (clients resolve relative ones).
    pub cwd: PathBuf,
    /// Variables added to the session's environment.
    pub env: Vec<(String, String)>,
    /// Default 120x40.
    pub cols: Option<u16>,
    pub rows: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Starting,
    Running,
    Exited,
    /// Its monitor could not be re-adopted; the reason says why.
    Lost,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Starting => "starting",
            SessionState::Running => "running",
            SessionState::Exited => "exited",
            SessionState::Lost => "lost",
        }
    }

    pub fn parse(text: &str) -> Option<SessionState> {
        [
            SessionState::Starting,
            SessionState::Running,
            SessionState::Exited,
            SessionState::Lost,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub id: String,
    pub name: Option<String>,
    pub command: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cwd: PathBuf,
    pub state: SessionState,
    pub pid: Option<u32>,
    pub monitor_pid: Option<u32>,
    pub cols: u16,
    pub rows: u16,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub pane_dir: PathBuf,
    pub exit: Option<crate::pane::ExitInfo>,
    /// Why the session is `lost`.
    pub lost_reason: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Set while the session's output cannot be written: its program is held until it can.
    pub output_blocked: Option<crate::pane::OutputBlocked>,
}

/// Whether the state database takes writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum StoreHealth {
    Writable,
    /// Opened read-only: reads are served, every write is refused with this reason and fix.
    ReadOnly {
        reason: String,
    },
    /// The last write failed (e.g. a full disk) and nothing of it was saved; the next write
    /// tries again.
    WriteFailed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectAdd {
    /// Absolute path of the work tree (clients resolve relative paths first).
    pub path: PathBuf,
    /// Default: the directory's name.
    pub name: Option<String>,
    /// Set by hand; default: detected from the origin remote's URL.
    pub provider: Option<Provider>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectInfo {
    pub id: String,
    pub name: String,
    /// Canonical path of the work tree.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub path: PathBuf,
    pub origin_url: Option<String>,
    /// The provider in force: set by hand, or else detected.
    pub provider: Provider,
    /// What the origin URL says, whatever was set by hand.
    pub detected_provider: Provider,
    pub provider_manual: bool,
    pub default_branch: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Tokens and cost of all the project's tasks.
    pub usage: Usage,
}

/// Where a project's pull requests live, from its origin remote.
// The rename only shapes JSON (e.g. "azure-devops"); bincode encodes variants by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Github,
    Gitlab,
    AzureDevops,
    Bitbucket,
    Unknown,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Github,
        Provider::Gitlab,
        Provider::AzureDevops,
        Provider::Bitbucket,
        Provider::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
            Provider::AzureDevops => "azure-devops",
            Provider::Bitbucket => "bitbucket",
            Provider::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// One entry of the old product's `~/.aifactory/projects.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyProject {
    pub path: PathBuf,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub imported: Vec<ProjectInfo>,
    pub skipped: Vec<SkippedImport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedImport {
    pub path: PathBuf,
    pub name: Option<String>,
    pub reason: String,
}

/// A refusal or failure, with a message that says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorReply {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request is not valid (bad argument, unknown subscription).
    Invalid,
    NotFound,
    /// The peer is not allowed to use the daemon.
    PermissionDenied,
    Conflict,
    /// The daemon is at `max_connections`.
    TooManyConnections,
    /// A frame's payload could not be decoded.
    MalformedFrame,
    /// A frame was larger than `max_frame_bytes`.
    FrameTooLarge,
    /// The request needs a part of the daemon that is not available right now.
    Unavailable,
    /// The daemon is shutting down and takes no new requests.
    ShuttingDown,
    /// The client read too slowly and its bounded queue overflowed.
    SlowClient,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCreate {
    /// Project id or name.
    pub project: String,
    /// `[a-z0-9][a-z0-9-]{0,63}`; names the worktree, the branch and the spec directory.
    pub spec_id: String,
    /// Default: the spec id.
    pub title: Option<String>,
    /// Agent profile name; default: the config's `default_agent`.
    pub agent: Option<String>,
}

/// Where a task is on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TaskPhase {
    Backlog,
    Planning,
    Coding,
    Qa,
    Done,
    Failed,
    Stopped,
    Stalled,
}

impl TaskPhase {
    pub const ALL: [TaskPhase; 8] = [
        TaskPhase::Backlog,
        TaskPhase::Planning,
        TaskPhase::Coding,
        TaskPhase::Qa,
        TaskPhase::Done,
        TaskPhase::Failed,
        TaskPhase::Stopped,
        TaskPhase::Stalled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskPhase::Backlog => "backlog",
            TaskPhase::Planning => "planning",
            TaskPhase::Coding => "coding",
            TaskPhase::Qa => "qa",
            TaskPhase::Done => "done",
            TaskPhase::Failed => "failed",
            TaskPhase::Stopped => "stopped",
            TaskPhase::Stalled => "stalled",
        }
    }

    pub fn parse(text: &str) -> Option<TaskPhase> {
        TaskPhase::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The phases in which an agent works on the task.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TaskPhase::Planning | TaskPhase::Coding | TaskPhase::Qa | TaskPhase::Stalled
        )
    }
}

/// What the agent reported of its progress; `None` where it said nothing yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    pub percent: Option<u8>,
    pub subtasks_done: Option<u32>,
    pub subtasks_total: Option<u32>,
}

/// Why a task was found stalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StallEvidence {
    /// RFC 3339, UTC.
    pub detected_at: String,
    pub stall_after_s: u64,
    /// The last time the pane had new output, and the progress file changed.
    pub last_output_at: Option<String>,
    pub last_progress_at: Option<String>,
    /// The agent's process and its state and CPU time from /proc, when it still exists.
    pub pid: Option<u32>,
    pub process_state: Option<String>,
    pub cpu_time_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskInfo {
    pub id: String,
    pub project_id: String,
    pub project_name: String,
    pub spec_id: String,
    pub title: String,
    pub agent: String,
    pub phase: TaskPhase,
    pub progress: Progress,
    /// The session of the latest attempt.
    pub session_id: Option<String>,
    /// Agent runs started so far.
    pub attempts: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub worktree: PathBuf,
    pub branch: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub spec_dir: PathBuf,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub progress_file: PathBuf,
    /// The latest free-text lines from the progress file (newest last).
    pub notes: Vec<String>,
    /// Set while the task is `stalled`.
    pub stall: Option<StallEvidence>,
    /// The prompt the agent's output ends in, while it waits for input.
    pub waiting_input: Option<String>,
    pub last_output_at: Option<String>,
    pub last_progress_at: Option<String>,
    /// Why the last start or run failed.
    pub last_error: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
    /// The agent CLI's conversation id, which a restart resumes.
    pub agent_session_id: Option<String>,
    /// Tokens and cost over every attempt.
    pub usage: Usage,
    /// Turns the agent took, over every attempt, as its CLI counted them.
    pub turns: Option<u32>,
    /// The last tool the agent called.
    pub last_tool: Option<String>,
    /// Why the latest attempt failed, by kind, with the fix.
    pub failure: Option<Failure>,
    /// What the latest attempt used, from its cgroup: live while it runs, as it ended after.
    /// `None`: it ran without a cgroup of its own (see status's `limits`).
    pub resources: Option<ResourceUsage>,
    /// How its latest attempt was confined, as its start said: its cage (Landlock) and its
    /// limits (cgroup), or what was missing and why.
    pub confinement: Option<String>,
}

/// What one attempt of a task's agent used, read from its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceUsage {
    /// CPU time of all its processes, in microseconds.
    pub cpu_usec: u64,
    /// Memory in use (at the end: what was left).
    pub memory_bytes: u64,
    /// The most memory it used at once (`None`: the kernel does not count it).
    pub memory_peak_bytes: Option<u64>,
    /// Processes (and threads) in it.
    pub processes: u64,
    /// Bytes it wrote to block devices (`None`: not counted here).
    pub io_write_bytes: Option<u64>,
    /// Processes the kernel's OOM killer ended in it.
    pub oom_kills: u64,
    /// The limits it ran under.
    pub memory_max: Option<u64>,
    pub tasks_max: Option<u64>,
}

/// A process, for stop reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessEntry {
    pub pid: u32,
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StopReport {
    pub task: TaskInfo,
    /// Processes of the agent that were signalled, including escaped ones.
    pub signalled: Vec<ProcessEntry>,
    /// Processes still alive after SIGKILL (nothing should be here).
    pub survivors: Vec<ProcessEntry>,
}

/// What a `SessionKill` did: the session's whole tree (its process group, what escaped it
/// below the monitor, and whatever carries the session's mark) got SIGTERM, then SIGKILL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionKillReport {
    /// The session as it ended, or `None` when it was already gone (`ignore_missing`).
    pub session: Option<SessionInfo>,
    /// Processes of the session that were signalled, including escaped ones.
    pub signalled: Vec<ProcessEntry>,
    /// Processes still alive after SIGKILL (nothing should be here).
    pub survivors: Vec<ProcessEntry>,
}

/// A process that carries the mark of one of the daemon's sessions (set in the environment
/// of every session's program) while no live session accounts for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StrayProcess {
    pub pid: u32,
    pub command: String,
    /// The session whose mark it carries (ended, lost, or removed).
    pub session_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    ClaudeCode,
    Codex,
    OpenaiCompatible,
    GeminiCli,
    Custom,
}

impl AgentKind {
    pub const ALL: [AgentKind; 5] = [
        AgentKind::ClaudeCode,
        AgentKind::Codex,
        AgentKind::OpenaiCompatible,
        AgentKind::GeminiCli,
        AgentKind::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::ClaudeCode => "claude-code",
            AgentKind::Codex => "codex",
            AgentKind::OpenaiCompatible => "openai-compatible",
            AgentKind::GeminiCli => "gemini-cli",
            AgentKind::Custom => "custom",
        }
    }

    pub fn parse(text: &str) -> Option<AgentKind> {
        AgentKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Never,
    OnFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnStall {
    None,
    Stop,
    Restart,
}

impl RestartPolicy {
    /// As the config and the wire spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OnStall {
    /// As the config and the wire spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnStall::None => "none",
            OnStall::Stop => "stop",
            OnStall::Restart => "restart",
        }
    }
}

impl std::fmt::Display for OnStall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An agent profile from the config, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub name: String,
    pub kind: AgentKind,
    /// As configured.
    pub command: Vec<String>,
    /// What a task runs: the configured command, or the test override when one is set.
    pub effective_command: Vec<String>,
    pub headless: bool,
    pub restart: RestartPolicy,
    pub max_attempts: u32,
    pub on_stall: OnStall,
    pub stall_after_s: u64,
    pub default: bool,
    /// Empty when the profile is usable; otherwise each problem, whose `Display` says the fix.
    pub problems: Vec<ProfileProblem>,
}

/// An agent profile and the cage its tasks run in (`AgentShow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDetail {
    pub agent: AgentInfo,
    pub sandbox: SandboxInfo,
}

/// What confines the agents of a profile (Landlock, applied before the agent's program runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// `required`, `best-effort` or `off`: the profile's, or the run mode's default.
    pub mode: String,
    /// The profile sets `sandbox` itself (otherwise the run mode's default applies).
    pub from_profile: bool,
    /// What this kernel's Landlock can do.
    pub landlock: String,
    /// What a start of one of its tasks does here: runs confined, runs unconfined (and why),
    /// or is refused (and why).
    pub outcome: String,
    /// Paths the agent may read and write; `{worktree}`, `{project}`, `{git}` (the project's
    /// git directory) and `{task_id}` stand for each task's own.
    pub read_write: Vec<String>,
    /// Paths the agent may read and execute (same placeholders).
    pub read_only: Vec<String>,
    /// `Some`: outgoing TCP may reach only these ports.
    pub connect_ports: Option<Vec<u16>>,
    /// The agent may use the daemon's control socket.
    pub allow_control_socket: bool,
}

/// What keeps an agent profile from running. Typed so that clients act on the cause (the doctor
/// reports a provider past its end of life under its own check); its `Display` is the sentence
/// for people, with what to do.
// The rename only shapes JSON; bincode encodes variants by position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ProfileProblem {
    /// The `[agents.NAME]` table does not deserialize; `error` is the TOML reader's reason.
    Unreadable { profile: String, error: String },
    /// `kind` names no [`AgentKind`].
    UnknownKind { kind: String },
    /// The table has no `kind`.
    NoKind { profile: String },
    /// The table has no `command`, or its program is empty.
    NoCommand { profile: String },
    /// `restart` is neither `never` nor `on-failure`.
    UnknownRestart { value: String },
    /// `on_stall` is neither `none`, `stop` nor `restart`.
    UnknownOnStall { value: String },
    /// `max_attempts = 0`.
    NoAttempts,
    /// `stall_after = 0`.
    StallsAtOnce,
    /// A headless `claude-code` agent without permission mode `bypassPermissions`.
    HeadlessWithoutBypass,
    /// The provider is past its end of life and `allow_eol` is not set; `advice` is where to
    /// go instead.
    EndOfLife {
        kind: AgentKind,
        /// The last day it worked, ISO 8601.
        last_day: String,
        advice: String,
    },
    /// An `openai-compatible` agent without `base_url`.
    NoBaseUrl,
    /// An `openai-compatible` agent without `api_key_env`.
    NoApiKeyEnv,
    /// The program to run is not an executable on the daemon's PATH; `test_override` when it
    /// comes from `AIFACTORY_TEST_AGENT_CMD` / `test_agent_cmd`.
    NotOnPath {
        program: String,
        test_override: bool,
    },
    /// Claude Code with `bypassPermissions` while aifactoryd runs as root, without
    /// `IS_SANDBOX=1`: the CLI refuses to start.
    RootWithoutSandbox,
    /// The CLI needs a key (in `variable`) and the profile names no source for it.
    NoKeySource { profile: String, variable: String },
    /// A key is written in the config itself, which other users may read.
    KeyInConfig { variable: String },
    /// The profile's `env_file` can be read or written by others, or is owned by another user.
    KeyFileOpen { path: String, mode: u32 },
    /// The profile's `env_file` cannot be read.
    KeyFileUnreadable { path: String, error: String },
    /// The profile's systemd credential is not in `$CREDENTIALS_DIRECTORY` (`dir`, when set).
    CredentialMissing { name: String, dir: Option<String> },
}

impl std::fmt::Display for ProfileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProfileProblem::Unreadable { profile, error } => write!(
                f,
                "[agents.{profile}] cannot be read: {error}; fix the table in the config"
            ),
            ProfileProblem::UnknownKind { kind } => write!(
                f,
                "kind `{kind}` is unknown: use one of {}",
                AgentKind::ALL.map(|k| k.as_str()).join(", ")
            ),
            ProfileProblem::NoKind { profile } => write!(
                f,
                "no `kind`: add kind = \"claude-code\" (or {}) to [agents.{profile}]",
                AgentKind::ALL[1..]
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ProfileProblem::NoCommand { profile } => write!(
                f,
                "no `command`: add command = [\"program\", \"arg\", ...] to [agents.{profile}]"
            ),
            ProfileProblem::UnknownRestart { value } => write!(
                f,
                "restart = \"{value}\" is unknown: use \"never\" or \"on-failure\""
            ),
            ProfileProblem::UnknownOnStall { value } => write!(
                f,
                "on_stall = \"{value}\" is unknown: use \"none\", \"stop\" or \"restart\""
            ),
            ProfileProblem::NoAttempts => {
                f.write_str("max_attempts = 0 would never run the agent: use 1 or more")
            }
            ProfileProblem::StallsAtOnce => {
                f.write_str("stall_after = 0 would stall every task at once: use seconds, e.g. 600")
            }
            ProfileProblem::HeadlessWithoutBypass => f.write_str(
                "a headless claude-code agent must run with permission mode bypassPermissions: without it every tool call waits for an approval nobody can give and the stream closes (\"Stream closed\"); add \"--permission-mode\", \"bypassPermissions\" to `command`, or set headless = false for a session a person attends",
            ),
            ProfileProblem::EndOfLife {
                kind,
                last_day,
                advice,
            } => write!(
                f,
                "{} reached its end of life on {last_day} and no longer works: {advice}; or set allow_eol = true to run it anyway",
                kind.as_str()
            ),
            ProfileProblem::NoBaseUrl => f.write_str(
                "an openai-compatible agent needs the endpoint: add base_url = \"https://host/v1\"",
            ),
            ProfileProblem::NoApiKeyEnv => f.write_str(
                "an openai-compatible agent needs the name of the variable holding its key: add api_key_env = \"OPENAI_API_KEY\"",
            ),
            ProfileProblem::NotOnPath {
                program,
                test_override,
            } => {
                let origin = if *test_override {
                    " (from AIFACTORY_TEST_AGENT_CMD / test_agent_cmd)"
                } else {
                    ""
                };
                write!(
                    f,
                    "`{program}`{origin} is not an executable on aifactoryd's PATH: install it, or give its absolute path in `command`"
                )
            }
            ProfileProblem::RootWithoutSandbox => f.write_str(
                "claude-code refuses bypassPermissions when run as root, and aifactoryd runs as root: run the daemon as another user (the packaged service runs as `aifactory`; a user daemon runs as your own user), or, only inside a disposable sandbox, add IS_SANDBOX = \"1\" to the profile's env",
            ),
            ProfileProblem::NoKeySource { profile, variable } => write!(
                f,
                "no source for the key in {variable}: add credential = \"NAME\" (a systemd credential: `systemd-creds encrypt`, LoadCredentialEncrypted=NAME in the unit) or env_file = \"/path\" (mode 0600, owned by aifactoryd's user) to [agents.{profile}], or log the CLI in as aifactoryd's user"
            ),
            ProfileProblem::KeyInConfig { variable } => write!(
                f,
                "the key {variable} is written in the config, which other users may read: move it to an env_file (mode 0600) or a systemd credential, and remove it from `env`"
            ),
            ProfileProblem::KeyFileOpen { path, mode } => write!(
                f,
                "key file {path} is open to others (mode {mode:o}) or not owned by aifactoryd's user: `chmod 0600 {path}` and chown it to aifactoryd's user"
            ),
            ProfileProblem::KeyFileUnreadable { path, error } => write!(
                f,
                "key file {path} cannot be read: {error}; create it (mode 0600, lines KEY=value) or fix env_file"
            ),
            ProfileProblem::CredentialMissing { name, dir } => match dir {
                Some(dir) => write!(
                    f,
                    "systemd credential `{name}` is not in {dir}: add LoadCredentialEncrypted={name}:/etc/credstore.encrypted/{name} (or LoadCredential=) to the unit and restart it"
                ),
                None => write!(
                    f,
                    "systemd credential `{name}` is unavailable: aifactoryd was not started with credentials ($CREDENTIALS_DIRECTORY is not set); add LoadCredentialEncrypted={name}:... to its unit, or use env_file"
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_keep_their_sentences_and_fixes() {
        let owned = SkipReason::OwnedByOther {
            dir: "/srv/panes".into(),
            owner: 0,
            daemon_uid: 1000,
        };
        assert_eq!(
            owned.to_string(),
            "it is owned by uid 0, not by aifactoryd's uid 1000; refusing it: remove it or `chown 1000 /srv/panes`"
        );
        let open = SkipReason::OpenToOthers {
            dir: "/srv/panes".into(),
            mode: 0o1777,
        };
        assert_eq!(
            open.to_string(),
            "it is writable by group or others (mode 1777); refusing it: `chmod 0700 /srv/panes`"
        );
        assert!(owned.is_unsafe() && open.is_unsafe());
        let create = SkipReason::CannotCreate {
            error: "Permission denied (os error 13)".into(),
        };
        assert_eq!(
            create.to_string(),
            "cannot create it: Permission denied (os error 13)"
        );
        assert!(!create.is_unsafe() && !SkipReason::Symlink.is_unsafe());
        assert!(SkipReason::Symlink.to_string().contains("symlink"));
    }

    #[test]
    fn profile_problems_keep_their_sentences_and_fixes() {
        assert_eq!(
            ProfileProblem::NoKind {
                profile: "p".into()
            }
            .to_string(),
            "no `kind`: add kind = \"claude-code\" (or codex, openai-compatible, gemini-cli, custom) to [agents.p]"
        );
        assert_eq!(
            ProfileProblem::Unreadable {
                profile: "p".into(),
                error: "unknown field `colour`".into()
            }
            .to_string(),
            "[agents.p] cannot be read: unknown field `colour`; fix the table in the config"
        );
        assert_eq!(
            ProfileProblem::EndOfLife {
                kind: AgentKind::GeminiCli,
                last_day: "2026-06-18".into(),
                advice: "move on".into()
            }
            .to_string(),
            "gemini-cli reached its end of life on 2026-06-18 and no longer works: move on; or set allow_eol = true to run it anyway"
        );
        assert_eq!(
            ProfileProblem::NotOnPath {
                program: "sh".into(),
                test_override: true
            }
            .to_string(),
            "`sh` (from AIFACTORY_TEST_AGENT_CMD / test_agent_cmd) is not an executable on aifactoryd's PATH: install it, or give its absolute path in `command`"
        );
    }
}
