//! `output.log`: every byte the PTY produced, at absolute offsets that survive rotation.
//!
//! One task ([`pump`]) reads the PTY master and appends; it publishes the new end offset
//! through a watch channel only after the bytes are in the file, so anyone who learns an
//! offset can read it from disk. Readers never get bytes from the writer: each subscriber reads
//! the files from its own position ([`SegmentReader`]) and is merely woken by the watch. A slow
//! subscriber therefore slows only itself, and memory does not grow with it.
//!
//! Rotation: when `output.log` reaches the size limit (exactly: an append is split at the
//! limit), it becomes `output.log.1` (replacing the older one) and a new `output.log` starts at
//! base = the absolute offset of its first byte, recorded in `rotation.json`. The order is
//! crash-safe: the new empty file is created as `output.log.new` first (the one step likely to
//! fail, e.g. on a full disk, and harmless if it does), then `rotation.json.tmp` is written,
//! `output.log` renamed to `output.log.1`, `rotation.json.tmp` renamed to `rotation.json`, and
//! `output.log.new` renamed to `output.log`. Without `rotation.json` the base is 0.
//!
//! All file operations are synchronous on the monitor's single thread, so a reader never sees
//! a rotation half done.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aifactory_common::pane::{OUTPUT_LOG, OUTPUT_LOG_OLD, OutputBlocked, ROTATION_FILE};
use serde::Serialize;
use tokio::sync::watch;

use super::{Session, diag, files};

/// Largest `Output` frame payload.
pub const CHUNK: usize = 64 << 10;
/// The PTY read buffer: [`Master::read`](super::pty::Master::read) fills it with everything
/// the terminal holds, so one append carries up to this much of a burst.
const READ_BUFFER: usize = 64 << 10;
/// How long a failed append waits before trying again. No event says "the disk has room now";
/// meanwhile the PTY is not read, so the program blocks instead of losing output.
const RETRY_APPEND: Duration = Duration::from_secs(1);
const OUTPUT_LOG_NEW: &str = "output.log.new";

/// What readers need to know about the log, published after every change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogState {
    /// The absolute offset of `output.log.1`'s first byte, once there is one.
    pub old_base: Option<u64>,
    /// The absolute offset of `output.log`'s first byte.
    pub base: u64,
    /// One past the last byte in the files.
    pub end: u64,
    /// The PTY master reported EIO or EOF: nothing holds the terminal, no more output comes.
    pub drained: bool,
    /// The program was reaped; `exit.json` is written.
    pub exited: bool,
}

impl LogState {
    /// The oldest offset still on disk.
    pub fn oldest(&self) -> u64 {
        self.old_base.unwrap_or(self.base)
    }

    /// The program ended and all its output is in the files.
    pub fn finished(&self) -> bool {
        self.drained && self.exited
    }
}

#[derive(Serialize)]
struct Rotation {
    base: u64,
}

/// The writing end of `output.log`, owned by [`pump`].
pub struct OutputLog {
    dir: PathBuf,
    file: File,
    /// Bytes in the current `output.log`.
    len: u64,
    /// Size limit of a segment.
    max: u64,
    /// The size at which the next rotation is tried; beyond `max` only after a rotation failed.
    rotate_at: u64,
}

fn create_segment(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

impl OutputLog {
    /// Creates `output.log`; fails with `AlreadyExists` if there is one.
    pub fn create(dir: &Path, max: u64) -> std::io::Result<OutputLog> {
        let file = create_segment(&dir.join(OUTPUT_LOG))?;
        Ok(OutputLog {
            dir: dir.to_path_buf(),
            file,
            len: 0,
            max,
            rotate_at: max,
        })
    }

    /// Appends `data`, rotating at the size limit, and publishes each write's new end. On a
    /// write error returns how many bytes of `data` were written (and published) before it.
    fn append(
        &mut self,
        mut data: &[u8],
        state: &watch::Sender<LogState>,
    ) -> Result<(), (usize, std::io::Error)> {
        let total = data.len();
        while !data.is_empty() {
            if self.len >= self.rotate_at {
                self.rotate(state);
            }
            let room = usize::try_from(self.rotate_at - self.len).unwrap_or(usize::MAX);
            let piece = &data[..data.len().min(room)];
            match self.file.write(piece) {
                Ok(0) => {
                    return Err((
                        total - data.len(),
                        std::io::Error::new(
                            std::io::ErrorKind::WriteZero,
                            "the file took no bytes",
                        ),
                    ));
                }
                Ok(n) => {
                    self.len += n as u64;
                    data = &data[n..];
                    state.send_modify(|s| s.end += n as u64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err((total - data.len(), e)),
            }
        }
        Ok(())
    }

    /// Starts a new segment. A failure before `output.log` was renamed leaves everything as it
    /// was (the segment grows past the limit until the next try); after that, the rotation is
    /// carried through in memory and the failed step is reported.
    fn rotate(&mut self, state: &watch::Sender<LogState>) {
        let dir = &self.dir;
        let now = *state.borrow();
        let new_base = now.end;
        let path = |name: &str| dir.join(name);
        let prepared = create_or_replace(&path(OUTPUT_LOG_NEW)).and_then(|new| {
            let tmp = files::write_temp(dir, ROTATION_FILE, &Rotation { base: new_base })?;
            Ok((new, tmp))
        });
        let (new_file, tmp) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return self.rotation_failed(&e),
        };
        if let Err(e) = std::fs::rename(path(OUTPUT_LOG), path(OUTPUT_LOG_OLD)) {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(path(OUTPUT_LOG_NEW));
            return self.rotation_failed(&e);
        }
        // The old segment is now output.log.1 for good; the rest only catches up with that.
        if let Err(e) = files::commit(&tmp, dir, ROTATION_FILE) {
            diag(&format!(
                "cannot rename {} into place: {e}; {} is stale until the next rotation",
                tmp.display(),
                path(ROTATION_FILE).display()
            ));
        }
        if let Err(e) = std::fs::rename(path(OUTPUT_LOG_NEW), path(OUTPUT_LOG)) {
            diag(&format!(
                "cannot rename {} to {OUTPUT_LOG}: {e}; new output goes to the former",
                path(OUTPUT_LOG_NEW).display()
            ));
        }
        self.file = new_file;
        self.len = 0;
        self.rotate_at = self.max;
        state.send_modify(|s| {
            s.old_base = Some(s.base);
            s.base = new_base;
        });
    }

    fn rotation_failed(&mut self, e: &std::io::Error) {
        diag(&format!(
            "cannot rotate {} at {} bytes: {e}; it keeps growing and rotation is retried after another {} bytes",
            self.dir.join(OUTPUT_LOG).display(),
            self.len,
            self.max
        ));
        self.rotate_at = self.len.saturating_add(self.max);
    }
}

/// A leftover `output.log.new` from a failed rotation is simply reused (emptied).
fn create_or_replace(path: &Path) -> std::io::Result<File> {
    // std refuses append together with truncate, hence set_len.
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    file.set_len(0)?;
    Ok(file)
}

/// Reads the PTY master into `output.log` until the terminal is closed on the program's side
/// (EIO) or the master reports EOF; then marks the output drained. While an append fails, the
/// session's `output_blocked` says so (for the daemon to report), and clears once one works.
pub async fn pump(session: Arc<Session>, mut log: OutputLog) {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match session.master.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                diag(&format!(
                    "reading the PTY failed: {e}; treating the output as complete"
                ));
                break;
            }
        };
        let mut pending = &buf[..n];
        let mut failing = false;
        while let Err((written, e)) = log.append(pending, &session.log) {
            pending = &pending[written..];
            if !failing {
                let reason = format!(
                    "cannot append to {}: {e}",
                    session.dir.join(OUTPUT_LOG).display()
                );
                diag(&format!(
                    "{reason}; the program is held (its output is not read) until writing works again"
                ));
                session.output_blocked.send_replace(Some(OutputBlocked {
                    reason,
                    since: aifactory_common::time::now_rfc3339(),
                }));
                failing = true;
            }
            tokio::time::sleep(RETRY_APPEND).await;
        }
        if failing {
            diag("appending to output.log works again");
            session.output_blocked.send_replace(None);
        }
    }
    session.log.send_modify(|s| s.drained = true);
}

/// A subscriber's view of the files: the segment it reads from, kept open across rotations
/// (a renamed file keeps its content, so the cached descriptor stays right).
#[derive(Default)]
pub struct SegmentReader {
    open: Option<(u64, File)>,
}

impl SegmentReader {
    /// Reads up to [`CHUNK`] bytes at absolute offset `pos`, which must lie in
    /// `state.oldest()..state.end`.
    pub fn read(&mut self, dir: &Path, state: &LogState, pos: u64) -> std::io::Result<Vec<u8>> {
        let (base, end, name) = match state.old_base {
            Some(old_base) if pos < state.base => (old_base, state.base, OUTPUT_LOG_OLD),
            _ => (state.base, state.end, OUTPUT_LOG),
        };
        let file = match &mut self.open {
            Some((open_base, file)) if *open_base == base => file,
            slot => {
                let file = File::open(dir.join(name))?;
                &mut slot.insert((base, file)).1
            }
        };
        let len = usize::try_from(end - pos).unwrap_or(usize::MAX).min(CHUNK);
        let mut data = vec![0u8; len];
        file.read_exact_at(&mut data, pos - base)?;
        Ok(data)
    }
}
