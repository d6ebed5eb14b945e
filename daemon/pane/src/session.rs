//! The state every task of one monitor shares ([`Session`]) and the requests that act on the
//! program's terminal: input, resize, signal, and recording the program's exit.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use aifactory_common::pane::{EXIT_FILE, ExitInfo, META_FILE, MonitorInfo, OutputBlocked};
use tokio::sync::watch;
use tokio::time::Instant;

use super::log::LogState;
use super::pty::Master;
use super::{INPUT_TIMEOUT, diag, files};

/// Why the monitor refused a request on the program's terminal; the client gets the message
/// as the text of an `Error` frame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error(
        "the program took {taken} of {len} bytes of input, then read nothing for {} s: it is not reading the terminal (busy or stopped), so the rest was not sent",
        INPUT_TIMEOUT.as_secs()
    )]
    InputStalled { taken: usize, len: usize },
    #[error(
        "the program's terminal is closed (the program and everything it started ended): {undelivered} of {len} bytes of input were not delivered"
    )]
    TerminalClosed { undelivered: usize, len: usize },
    #[error(
        "cannot write to the program's terminal after {written} of {len} bytes of input: {source}"
    )]
    Write {
        written: usize,
        len: usize,
        source: std::io::Error,
    },
    #[error("cannot resize the terminal to {cols}x{rows}: it needs at least 1 column and 1 row")]
    NoSize { cols: u16, rows: u16 },
    #[error("cannot resize the terminal (TIOCSWINSZ): {0}")]
    Resize(std::io::Error),
    #[error("{0} is not a signal number (see `kill -l`)")]
    NotASignal(i32),
    #[error("cannot send signal {signal} to process group {pgid}: {source}")]
    Signal {
        signal: i32,
        pgid: i32,
        source: std::io::Error,
    },
}

/// What every task of the monitor shares.
pub(crate) struct Session {
    pub(crate) dir: PathBuf,
    /// The program's process group (= its pid).
    pub(crate) pgid: i32,
    /// `output_end` in here is stale; [`Session::info`] fills it from `log`.
    pub(crate) info: Mutex<MonitorInfo>,
    pub(crate) log: watch::Sender<LogState>,
    /// Whether appending output fails now, since when and why ([`log::pump`](super::log::pump)
    /// sets it; `WatchOutput` streams it).
    pub(crate) output_blocked: watch::Sender<Option<OutputBlocked>>,
    pub(crate) master: Master,
    /// One `Input` at a time, so two writers never interleave their bytes.
    pub(crate) input_turn: tokio::sync::Mutex<()>,
    /// Input bytes the terminal took so far: a request waiting for its turn sees the program
    /// read.
    pub(crate) input_taken: watch::Sender<u64>,
    /// Open subscriptions, so the monitor can wait for them before it exits.
    pub(crate) subscribers: watch::Sender<usize>,
}

impl Session {
    fn info_guard(&self) -> MutexGuard<'_, MonitorInfo> {
        // Every update is a plain field assignment, so a poisoned lock still holds a whole value.
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current [`MonitorInfo`], with the current output end.
    pub(crate) fn info(&self) -> MonitorInfo {
        let mut info = self.info_guard().clone();
        info.output_end = self.log.borrow().end;
        info
    }

    pub(crate) fn exit(&self) -> Option<ExitInfo> {
        self.info_guard().exit.clone()
    }

    pub(crate) fn write_meta(&self) -> std::io::Result<()> {
        files::write_json_atomic(&self.dir, META_FILE, &self.info())
    }

    /// Input from a person: written whole, in arrival order, unless the program stops taking
    /// it. Refused once the terminal took no byte for [`INPUT_TIMEOUT`] (a queue full because
    /// nothing reads it), saying how much of `bytes` it did take; the rest is never written.
    /// Waiting for an earlier request's turn counts as stalled only while that one stalls too.
    ///
    /// Cancel-safe: dropping the future (the requester hung up) writes nothing more and frees
    /// the turn for the next request.
    pub(crate) async fn input(&self, bytes: &[u8]) -> Result<(), RequestError> {
        let stalled = |taken: usize| RequestError::InputStalled {
            taken,
            len: bytes.len(),
        };
        let mut progress = self.input_taken.subscribe();
        let mut deadline = Instant::now() + INPUT_TIMEOUT;
        let turn = self.input_turn.lock();
        // Pinned once, so the place in the (fair) queue is kept across wake-ups.
        tokio::pin!(turn);
        let _turn = loop {
            tokio::select! {
                turn = &mut turn => break turn,
                changed = progress.changed() => {
                    if changed.is_ok() {
                        deadline = Instant::now() + INPUT_TIMEOUT;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return Err(stalled(0)),
            }
        };
        let mut rest = bytes;
        let mut deadline = Instant::now() + INPUT_TIMEOUT;
        while !rest.is_empty() {
            tokio::select! {
                written = self.master.write(rest) => match written {
                    Ok(n) => {
                        rest = &rest[n..];
                        deadline = Instant::now() + INPUT_TIMEOUT;
                        self.input_taken.send_modify(|taken| *taken += n as u64);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        return Err(RequestError::TerminalClosed {
                            undelivered: rest.len(),
                            len: bytes.len(),
                        });
                    }
                    Err(e) => {
                        return Err(RequestError::Write {
                            written: bytes.len() - rest.len(),
                            len: bytes.len(),
                            source: e,
                        });
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    return Err(stalled(bytes.len() - rest.len()));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn resize(&self, cols: u16, rows: u16) -> Result<(), RequestError> {
        if cols == 0 || rows == 0 {
            return Err(RequestError::NoSize { cols, rows });
        }
        self.master
            .resize(cols, rows)
            .map_err(RequestError::Resize)?;
        {
            let mut info = self.info_guard();
            info.cols = cols;
            info.rows = rows;
        }
        // The terminal has its new size either way; a stale meta.json is only cosmetic.
        if let Err(e) = self.write_meta() {
            diag(&format!(
                "cannot update {} after a resize: {e}",
                self.dir.join(META_FILE).display()
            ));
        }
        Ok(())
    }

    /// Sends `signal` to the program's process group. A group that is gone is not an error:
    /// the caller wanted it to end, and it has.
    pub(crate) fn signal(&self, signal: i32) -> Result<(), RequestError> {
        // Checked here: once the group is gone the kernel says ESRCH before it checks the number.
        if !(0..=libc::SIGRTMAX()).contains(&signal) {
            return Err(RequestError::NotASignal(signal));
        }
        // SAFETY: kill has no memory effects.
        if unsafe { libc::kill(-self.pgid, signal) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            _ => Err(RequestError::Signal {
                signal,
                pgid: self.pgid,
                source: err,
            }),
        }
    }

    /// Counts a subscription until the guard is dropped.
    pub(crate) fn subscriber(&self) -> SubscriberGuard<'_> {
        self.subscribers.send_modify(|n| *n += 1);
        SubscriberGuard(&self.subscribers)
    }

    /// Records the program's end: `exit.json` first, then everyone is told.
    pub(crate) fn record_exit(&self, code: Option<i32>, signal: Option<i32>) {
        let exit = ExitInfo {
            code,
            signal,
            ended_at: aifactory_common::time::now_rfc3339(),
        };
        diag(&format!("the program {}", exit.describe()));
        if let Err(e) = files::write_json_atomic(&self.dir, EXIT_FILE, &exit) {
            diag(&format!(
                "cannot write {}: {e}; the exit is still reported over the socket",
                self.dir.join(EXIT_FILE).display()
            ));
        }
        self.info_guard().exit = Some(exit);
        self.log.send_modify(|s| s.exited = true);
    }
}

pub(crate) struct SubscriberGuard<'a>(&'a watch::Sender<usize>);

impl Drop for SubscriberGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}
