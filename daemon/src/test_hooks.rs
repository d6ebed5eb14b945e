//! Daemon-wide switches only the test suite turns on (cargo feature `test-hooks`, never in a
//! release package; a daemon built with it says so in its log). The migration switches live in
//! `migrate`.

use tokio::signal::unix::{SignalKind, signal};

/// More blocking tasks than the runtime has workers, so every worker takes one.
const WEDGE_TASKS: usize = 64;

/// SIGUSR2 wedges the runtime: every worker thread blocks for good, so nothing async runs any
/// more, the watchdog keep-alive included. It stands for a daemon stuck in a deadlock or a
/// blocking call, which systemd's watchdog must catch (tests/tests/systemd_e2e.rs).
pub fn wedge_on_sigusr2() -> std::io::Result<()> {
    let mut usr2 = signal(SignalKind::user_defined2())?;
    tokio::spawn(async move {
        if usr2.recv().await.is_none() {
            return;
        }
        tracing::warn!("test hook: SIGUSR2 received, wedging every runtime worker");
        for _ in 0..WEDGE_TASKS {
            tokio::spawn(async { block_forever() });
        }
        block_forever();
    });
    Ok(())
}

fn block_forever() {
    loop {
        std::thread::park();
    }
}
