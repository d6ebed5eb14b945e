//! Waiting for a condition instead of sleeping a fixed time: poll it until it holds, bounded
//! by a generous timeout, and fail naming what was awaited.

use std::path::Path;
use std::time::{Duration, Instant};

/// How often a condition is checked again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds; fails naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// [`wait_until`] for async tests: the condition may await (e.g. a request), and the wait
/// sleeps on the runtime, so the tasks the condition waits on keep running.
pub async fn wait_until_async(
    what: &str,
    timeout: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `probe` until it returns `Ok`; fails naming `what` and the last thing it saw
/// instead (the `Err`) after `timeout`.
pub fn wait_for<T, Seen: std::fmt::Display>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, Seen>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last seen:\n{seen}"
            ),
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Waits until `pred` holds for the file's bytes (output arrives asynchronously) and returns
/// them; fails with what the file holds after `timeout`.
pub fn wait_file(path: &Path, timeout: Duration, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    loop {
        let bytes = std::fs::read(path).unwrap_or_default();
        if pred(&bytes) {
            return bytes;
        }
        assert!(
            Instant::now() < deadline,
            "{} never matched; it holds {:?}",
            path.display(),
            String::from_utf8_lossy(&bytes)
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}
