//! Every message that crosses the control socket, defined once.
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

/// Version of everything in this module plus the frame layer. Bump on any wire change.
pub const PROTOCOL_VERSION: u16 = 3;

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
    /// Stream the daemon's events; the reply is [`Reply::Subscribed`].
    SubscribeEvents,
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
    /// `SessionKill`: the session as it ended, or `None` when it was already gone.
    Killed(Option<SessionInfo>),
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
pub struct Event {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    /// SIGHUP re-read the config and it is in force.
    ConfigReloaded,
    /// SIGHUP found an invalid config; the previous one stays in force.
    ConfigRejected { reason: String },
    /// The daemon is shutting down.
    Stopping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct StatusInfo {
    /// The daemon's package version.
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub protocol: u16,
    pub mode: RunMode,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// The config file in force, if any.
    pub config_file: Option<PathBuf>,
    /// Open client connections, this one included.
    pub connections: u32,
    pub max_connections: u32,
    /// The database's schema version (the newest applied migration).
    pub schema_version: u32,
    pub store: StoreHealth,
    /// The pane directories' root in use.
    pub panes_dir: PathBuf,
    /// Candidates passed over before it, with why.
    pub panes_skipped: Vec<(PathBuf, String)>,
    /// Sessions whose program runs.
    pub sessions_running: u32,
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
pub struct SessionInfo {
    pub id: String,
    pub name: Option<String>,
    pub command: Vec<String>,
    pub cwd: PathBuf,
    pub state: SessionState,
    pub pid: Option<u32>,
    pub monitor_pid: Option<u32>,
    pub cols: u16,
    pub rows: u16,
    pub pane_dir: PathBuf,
    pub exit: Option<crate::pane::ExitInfo>,
    /// Why the session is `lost`.
    pub lost_reason: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// Whether the state database takes writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct ProjectInfo {
    pub id: String,
    pub name: String,
    /// Canonical path of the work tree.
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
}

/// Where a project's pull requests live, from its origin remote.
// The rename only shapes JSON (e.g. "azure-devops"); bincode encodes variants by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
