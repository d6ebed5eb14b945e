//! What an agent reports of its progress, and noticing when it does.
//!
//! **The progress file** (`<spec dir>/build-progress.txt`) is plain text, one statement per
//! line; the last value of each key wins, keys are case-insensitive:
//!
//! ```text
//! phase: coding        # planning | coding | qa | done | failed
//! progress: 40         # percent, `40%` also reads
//! subtask: 3/7         # subtasks done / total (`subtasks:` also reads)
//! any other line       # kept as a note (the newest 20)
//! ```
//!
//! A line `__EXEC_PHASE__:<phase>` (in the file or anywhere in the agent's output) sets the
//! phase too. Only complete lines count: a write torn mid-line, or a file truncated while the
//! agent rewrites it, never loses what was read before — values only change when a line says
//! so.
//!
//! **Watching**: one inotify instance (the notify crate) watches every running task's spec
//! directory and reacts to writes, close-after-write and renames onto the file (so both
//! appending and write-then-rename agents are seen at once). Where inotify is not available
//! (no instances or watches left, a file system without it), a polling watcher takes that
//! directory instead, and the log says so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use aifactory_common::protocol::{Progress, TaskPhase};
use aifactory_common::sync::lock;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

pub const PROGRESS_FILE: &str = "build-progress.txt";
pub const PHASE_MARKER: &str = "__EXEC_PHASE__:";
/// Notes kept per task.
pub const MAX_NOTES: usize = 20;
const MAX_NOTE_CHARS: usize = 500;
/// The tail of a larger progress file is all that is read.
const MAX_READ: u64 = 1 << 20;
/// How often the fallback watcher looks.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What one read of the progress file said.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub phase: Option<TaskPhase>,
    pub progress: Progress,
    pub notes: Vec<String>,
}

/// A phase an agent may report (the others are the daemon's to set).
pub fn reported_phase(text: &str) -> Option<TaskPhase> {
    match TaskPhase::parse(&text.trim().to_ascii_lowercase())? {
        phase @ (TaskPhase::Planning
        | TaskPhase::Coding
        | TaskPhase::Qa
        | TaskPhase::Done
        | TaskPhase::Failed) => Some(phase),
        _ => None,
    }
}

/// The phase named by an `__EXEC_PHASE__:<phase>` marker in `line`, if any.
pub fn marker_phase(line: &str) -> Option<TaskPhase> {
    let rest = &line[line.find(PHASE_MARKER)? + PHASE_MARKER.len()..];
    let word: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    reported_phase(&word)
}

/// Parses the complete lines of `text` (anything after the last newline is a torn write).
pub fn parse(text: &str) -> Report {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let mut report = Report::default();
    for line in complete.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(phase) = marker_phase(line) {
            report.phase = Some(phase);
            continue;
        }
        if let Some((key, value)) = line.split_once(':')
            && apply(&mut report, &key.trim().to_ascii_lowercase(), value.trim())
        {
            continue;
        }
        report
            .notes
            .push(line.chars().take(MAX_NOTE_CHARS).collect());
    }
    let excess = report.notes.len().saturating_sub(MAX_NOTES);
    report.notes.drain(..excess);
    report
}

/// Applies `key: value`; false when the line is not a statement (then it is a note).
fn apply(report: &mut Report, key: &str, value: &str) -> bool {
    match key {
        "phase" => match reported_phase(value) {
            Some(phase) => {
                report.phase = Some(phase);
                true
            }
            None => false,
        },
        "progress" => match value.trim_end_matches('%').trim().parse::<u8>() {
            Ok(percent) if percent <= 100 => {
                report.progress.percent = Some(percent);
                true
            }
            _ => false,
        },
        "subtask" | "subtasks" => {
            let parsed = value
                .split_once('/')
                .and_then(|(d, t)| Some((d.trim().parse().ok()?, t.trim().parse().ok()?)));
            match parsed {
                Some((done, total)) if done <= total => {
                    report.progress.subtasks_done = Some(done);
                    report.progress.subtasks_total = Some(total);
                    true
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Reads and parses the progress file; a missing file says nothing.
pub fn read(file: &Path) -> std::io::Result<Report> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Report::default()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let mut skip_partial_first = false;
    if len > MAX_READ {
        f.seek(SeekFrom::Start(len - MAX_READ))?;
        skip_partial_first = true;
    }
    let mut bytes = Vec::new();
    f.take(MAX_READ).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if skip_partial_first && let Some(first) = text.find('\n') {
        text.drain(..=first);
    }
    Ok(parse(&text))
}

/// Why a spec directory cannot be watched at all (neither inotify nor polling takes it).
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {reason}", dir.display())]
pub struct WatchError {
    dir: PathBuf,
    reason: WatchFailure,
}

#[derive(Debug, thiserror::Error)]
enum WatchFailure {
    #[error("inotify is not available")]
    NoInotify,
    #[error(transparent)]
    Notify(#[from] notify::Error),
}

/// Watches spec directories and tells each task's channel when its progress file changed.
pub struct ProgressWatcher {
    inner: Mutex<Inner>,
}

struct Inner {
    inotify: Option<notify::RecommendedWatcher>,
    polling: Option<notify::PollWatcher>,
    /// Progress file → the channel of the task that owns it.
    routes: std::sync::Arc<Mutex<HashMap<PathBuf, mpsc::Sender<()>>>>,
    /// Spec directory → whether the polling watcher has it.
    dirs: HashMap<PathBuf, bool>,
}

/// Whether a file event can have changed the file's content.
fn is_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Any
    )
}

impl ProgressWatcher {
    /// Watches with inotify where it works, else by polling; `force_polling` (a test build's
    /// hook, for the fallback's code path) polls even where inotify works.
    pub fn new(force_polling: bool) -> ProgressWatcher {
        let routes: std::sync::Arc<Mutex<HashMap<PathBuf, mpsc::Sender<()>>>> =
            std::sync::Arc::default();
        let route = routes.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if !is_change(&event.kind) {
                return;
            }
            let routes = lock(&route);
            for path in &event.paths {
                if let Some(tx) = routes.get(path) {
                    // A full channel already holds a wake-up: the reader re-reads the file.
                    let _ = tx.try_send(());
                }
            }
        };
        let inotify = match notify::recommended_watcher(handler.clone()) {
            Ok(_) if force_polling => {
                tracing::warn!(
                    "the hooks ask for polling: progress files are polled every {} ms",
                    POLL_INTERVAL.as_millis()
                );
                None
            }
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "inotify is not available ({e}): progress files are polled every {} ms instead; raise fs.inotify.max_user_instances to get instant updates",
                    POLL_INTERVAL.as_millis()
                );
                None
            }
        };
        let polling = if inotify.is_some() {
            None
        } else {
            notify::PollWatcher::new(
                handler,
                notify::Config::default().with_poll_interval(POLL_INTERVAL),
            )
            .ok()
        };
        ProgressWatcher {
            inner: Mutex::new(Inner {
                inotify,
                polling,
                routes,
                dirs: HashMap::new(),
            }),
        }
    }

    /// Starts watching `spec_dir` for changes of its progress file; returns the receiver that
    /// wakes on each. Watching stops when [`ProgressWatcher::unwatch`] is called.
    pub fn watch(&self, spec_dir: &Path) -> Result<mpsc::Receiver<()>, WatchError> {
        let (tx, rx) = mpsc::channel(1);
        let mut inner = lock(&self.inner);
        lock(&inner.routes).insert(spec_dir.join(PROGRESS_FILE), tx);
        let inotify_result = match inner.inotify.as_mut() {
            Some(w) => w
                .watch(spec_dir, RecursiveMode::NonRecursive)
                .map_err(WatchFailure::from),
            None => Err(WatchFailure::NoInotify),
        };
        let polled = match inotify_result {
            Ok(()) => false,
            Err(reason) => {
                if inner.polling.is_none() {
                    let routes = inner.routes.clone();
                    let handler = move |event: notify::Result<notify::Event>| {
                        let Ok(event) = event else { return };
                        let routes = lock(&routes);
                        for path in &event.paths {
                            if let Some(tx) = routes.get(path) {
                                let _ = tx.try_send(());
                            }
                        }
                    };
                    inner.polling = notify::PollWatcher::new(
                        handler,
                        notify::Config::default().with_poll_interval(POLL_INTERVAL),
                    )
                    .ok();
                }
                let Some(polling) = inner.polling.as_mut() else {
                    return Err(WatchError {
                        dir: spec_dir.to_path_buf(),
                        reason,
                    });
                };
                polling
                    .watch(spec_dir, RecursiveMode::NonRecursive)
                    .map_err(|e| WatchError {
                        dir: spec_dir.to_path_buf(),
                        reason: e.into(),
                    })?;
                tracing::warn!(
                    dir = %spec_dir.display(),
                    "cannot watch with inotify ({reason}): polling every {} ms; raise fs.inotify.max_user_watches for instant updates",
                    POLL_INTERVAL.as_millis()
                );
                true
            }
        };
        inner.dirs.insert(spec_dir.to_path_buf(), polled);
        Ok(rx)
    }

    pub fn unwatch(&self, spec_dir: &Path) {
        let mut inner = lock(&self.inner);
        lock(&inner.routes).remove(&spec_dir.join(PROGRESS_FILE));
        match inner.dirs.remove(spec_dir) {
            Some(false) => {
                if let Some(w) = inner.inotify.as_mut() {
                    let _ = w.unwatch(spec_dir);
                }
            }
            Some(true) => {
                if let Some(w) = inner.polling.as_mut() {
                    let _ = w.unwatch(spec_dir);
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_notes_and_torn_lines() {
        let r = parse(
            "phase: coding\nprogress: 40%\nsubtask: 3/7\nwrote the parser\n\nPhase: QA\nprogress: 5",
        );
        assert_eq!(r.phase, Some(TaskPhase::Qa));
        // `progress: 5` has no newline yet: a torn write.
        assert_eq!(r.progress.percent, Some(40));
        assert_eq!(r.progress.subtasks_done, Some(3));
        assert_eq!(r.progress.subtasks_total, Some(7));
        assert_eq!(r.notes, ["wrote the parser"]);
    }

    #[test]
    fn bad_values_are_notes_and_daemon_phases_cannot_be_reported() {
        let r = parse("progress: 140\nsubtask: 8/7\nphase: stalled\nphase: backlog\n");
        assert_eq!(r.progress, Progress::default());
        assert_eq!(r.phase, None);
        assert_eq!(r.notes.len(), 4);
    }

    #[test]
    fn markers_anywhere_in_a_line() {
        assert_eq!(
            marker_phase(r#"{"type":"text","text":"__EXEC_PHASE__:qa"}"#),
            Some(TaskPhase::Qa)
        );
        assert_eq!(
            marker_phase("__EXEC_PHASE__: done\r"),
            Some(TaskPhase::Done)
        );
        assert_eq!(marker_phase("__EXEC_PHASE__:stopped"), None);
        assert_eq!(
            parse("__EXEC_PHASE__:planning\n").phase,
            Some(TaskPhase::Planning)
        );
    }

    #[test]
    fn only_the_newest_notes_are_kept() {
        let text: String = (0..30).map(|i| format!("note {i}\n")).collect();
        let r = parse(&text);
        assert_eq!(r.notes.len(), MAX_NOTES);
        assert_eq!(r.notes[0], "note 10");
    }
}
