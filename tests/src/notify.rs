//! A `NOTIFY_SOCKET` owned by the test: a datagram socket that records every message the
//! daemon sends systemd, with the time it arrived.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One datagram: its arrival time and its `KEY=VALUE` lines.
#[derive(Debug, Clone)]
pub struct Notification {
    pub at: Instant,
    pub text: String,
}

pub struct NotifyListener {
    path: PathBuf,
    rx: Mutex<mpsc::Receiver<Notification>>,
    seen: Arc<Mutex<Vec<Notification>>>,
}

impl NotifyListener {
    pub fn bind(path: &Path) -> NotifyListener {
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = socket.recv(&mut buf) {
                let note = Notification {
                    at: Instant::now(),
                    text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                };
                if tx.send(note).is_err() {
                    break;
                }
            }
        });
        NotifyListener {
            path: path.to_path_buf(),
            rx: Mutex::new(rx),
            seen: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn drain(&self, timeout: Duration) -> Option<Notification> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        let note = rx.recv_timeout(timeout).ok()?;
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(note.clone());
        Some(note)
    }

    /// Waits for a datagram with a line equal to `line` (or starting with it, for `STATUS=`),
    /// looking first at the ones already received.
    pub fn wait_for(&self, line: &str, timeout: Duration) -> Option<Notification> {
        let matches = |n: &Notification| {
            n.text
                .lines()
                .any(|l| l == line || (line.ends_with('=') && l.starts_with(line)))
        };
        if let Some(found) = self.all().into_iter().find(|n| matches(n)) {
            return Some(found);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let note = self.drain(left)?;
            if matches(&note) {
                return Some(note);
            }
        }
    }

    /// Waits until `count` datagrams hold a line equal to `line` (or starting with it, for
    /// `KEY=`); those received by then, or `None` at the timeout. A condition, not a window:
    /// a busy machine only makes it slower.
    pub fn wait_for_count(
        &self,
        line: &str,
        count: usize,
        timeout: Duration,
    ) -> Option<Vec<Notification>> {
        let matching = |notes: Vec<Notification>| -> Vec<Notification> {
            notes
                .into_iter()
                .filter(|n| {
                    n.text
                        .lines()
                        .any(|l| l == line || (line.ends_with('=') && l.starts_with(line)))
                })
                .collect()
        };
        let deadline = Instant::now() + timeout;
        loop {
            let found = matching(self.all());
            if found.len() >= count {
                return Some(found);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.drain(left);
        }
    }

    /// Collects everything that arrives during `window`.
    pub fn collect_for(&self, window: Duration) -> Vec<Notification> {
        let deadline = Instant::now() + window;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if self.drain(left).is_none() {
                break;
            }
        }
        self.all()
    }

    /// Every datagram received so far.
    pub fn all(&self) -> Vec<Notification> {
        // Pick up whatever is already queued.
        while self.drain(Duration::ZERO).is_some() {}
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
