//! The protocol between aifactoryd and a session's pane monitor.
//!
//! Every session runs under its own monitor process (the `aifactory-pane` binary), which holds
//! the PTY master, appends every byte of output to `output.log` in the pane directory, writes
//! `meta.json` and `exit.json`, and serves a Unix socket (`monitor.sock` in the pane directory)
//! that speaks this protocol: the same handshake and frames as the control socket, with
//! [`MonitorRequest`]s one way and [`MonitorFrame`]s the other. Monitors outlive the daemon,
//! so a restarted daemon re-adopts them through this socket.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Version of the pane monitor protocol, separate from the control protocol's: monitors
/// outlive the daemon, so a daemon upgraded while sessions run must still speak to them. Bump
/// only with a daemon that keeps speaking the old version to old monitors.
pub const MONITOR_PROTOCOL_VERSION: u16 = 1;

/// File names inside a pane directory.
pub const OUTPUT_LOG: &str = "output.log";
/// The previous output segment, kept after a rotation.
pub const OUTPUT_LOG_OLD: &str = "output.log.1";
/// `{"base": N}`: the absolute offset of the first byte of `output.log`.
pub const ROTATION_FILE: &str = "rotation.json";
pub const META_FILE: &str = "meta.json";
pub const EXIT_FILE: &str = "exit.json";
pub const MONITOR_SOCKET: &str = "monitor.sock";

/// Default rotation size of `output.log` (`pane_log_max`).
pub const DEFAULT_PANE_LOG_MAX: u64 = 64 << 20;

/// Daemon to monitor: one request per frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MonitorRequest {
    /// Answered with [`MonitorFrame::Info`].
    Info,
    /// Bytes to write to the PTY (what a person types).
    Input(Vec<u8>),
    /// Set the terminal size (TIOCSWINSZ); the program gets SIGWINCH.
    Resize { cols: u16, rows: u16 },
    /// Send a signal to the session's process group.
    Signal { signal: i32 },
    /// Stream output from this absolute offset: replay from disk, then live, with no gap and
    /// no duplicate. The stream ends with [`MonitorFrame::Exited`] once the program exited and
    /// all its output was sent.
    Subscribe { from: u64 },
    /// Answered with [`MonitorFrame::Exited`] as soon as the program ended (at once if it
    /// already has), without streaming any output: how the daemon learns of the end.
    WaitExit,
    /// Turns the connection into a stream of [`MonitorFrame::OutputHealth`]: the state now,
    /// then every change, until all of the program's output is in the files. Appended to
    /// version 1 (an enum's new last variant leaves every older message's bytes alone): a
    /// monitor from before it refuses it as a malformed frame, and the daemon then cannot tell
    /// that session's blocked output, which is all it loses.
    WatchOutput,
}

/// Monitor to daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MonitorFrame {
    Info(MonitorInfo),
    /// Output bytes starting at absolute offset `offset`.
    Output {
        offset: u64,
        data: Vec<u8>,
    },
    /// The requested offset is no longer on disk (rotated away); output resumes at `resume_from`.
    Lagged {
        requested: u64,
        resume_from: u64,
    },
    /// The program ended and every byte of its output was sent.
    Exited(ExitInfo),
    /// A request that could not be carried out, with why.
    Error(String),
    /// A request without a payload answer (input, resize, signal) was carried out.
    Done,
    /// Answer to [`MonitorRequest::WatchOutput`]: `Some` while output cannot be appended to
    /// `output.log`, `None` while it can.
    OutputHealth(Option<OutputBlocked>),
}

/// Output that cannot be appended to `output.log` (a full disk, say). The monitor then stops
/// reading the terminal, so the program blocks on its next write and no byte is lost; it
/// retries until an append works again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputBlocked {
    /// The append that failed, with the OS's reason.
    pub reason: String,
    /// RFC 3339 UTC: when the first append failed.
    pub since: String,
}

/// What `meta.json` holds, and what [`MonitorRequest::Info`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorInfo {
    pub session_id: String,
    pub name: Option<String>,
    pub command: Vec<String>,
    pub cwd: PathBuf,
    /// The program's pid; also its process group and session id.
    pub pid: u32,
    pub pgid: u32,
    /// Start time of the program in clock ticks since boot (/proc/<pid>/stat field 22), so a
    /// reused pid is never mistaken for it.
    pub start_time: u64,
    pub monitor_pid: u32,
    pub monitor_start_time: u64,
    pub cols: u16,
    pub rows: u16,
    /// Absolute offset one past the last byte written to `output.log`.
    pub output_end: u64,
    pub exit: Option<ExitInfo>,
}

/// How the program ended (`exit.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExitInfo {
    /// Exit status when it exited.
    pub code: Option<i32>,
    /// Signal number when a signal ended it.
    pub signal: Option<i32>,
    /// RFC 3339 UTC.
    pub ended_at: String,
}

impl ExitInfo {
    /// `exited 3`, `killed by signal 9`.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exited {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "ended".into(),
        }
    }
}
