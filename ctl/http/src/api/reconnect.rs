//! Waiting between attempts to reach a daemon that went away (restarting, upgrading): no
//! event tells the shim it is back, so streams retry at growing intervals.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(50);
const MAX: Duration = Duration::from_secs(2);

pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff { next: FIRST }
    }

    pub fn reset(&mut self) {
        self.next = FIRST;
    }

    /// Sleeps the current interval (callers race it against their own stop signals).
    pub async fn wait(&mut self) {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        tokio::time::sleep(delay).await;
    }
}
