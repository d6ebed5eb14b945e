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
pub const PROTOCOL_VERSION: u16 = 1;

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
    Unsubscribe { subscription: SubscriptionId },
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamItem {
    Event(Event),
    /// The subscriber fell behind and `missed` events were dropped for it.
    Lagged {
        missed: u64,
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
