//! Every switch only the test suite turns on (cargo feature `test-hooks`, never in a release
//! package; a daemon built with it says so in its log). Without the feature each hook is a
//! no-op, so callers need no `cfg` of their own.

#[cfg(feature = "test-hooks")]
fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.parse().ok()
}

/// `AIFACTORY_TEST_MIGRATION_LIMIT=N`: behave as a binary that knows migrations up to N.
pub fn migration_limit() -> Option<u32> {
    #[cfg(feature = "test-hooks")]
    return env_u32("AIFACTORY_TEST_MIGRATION_LIMIT");
    #[cfg(not(feature = "test-hooks"))]
    None
}

/// `AIFACTORY_TEST_PAUSE_IN_MIGRATION=N`: stop inside migration N's open transaction, so a
/// test can SIGKILL the daemon there.
pub fn pause_inside_migration(_version: u32) {
    #[cfg(feature = "test-hooks")]
    if env_u32("AIFACTORY_TEST_PAUSE_IN_MIGRATION") == Some(_version) {
        eprintln!("test hook: paused inside migration {_version}");
        block_forever();
    }
}

/// More blocking tasks than the runtime has workers, so every worker takes one.
#[cfg(feature = "test-hooks")]
const WEDGE_TASKS: usize = 64;

/// SIGUSR2 wedges the runtime: every worker thread blocks for good, so nothing async runs any
/// more, the watchdog keep-alive included. It stands for a daemon stuck in a deadlock or a
/// blocking call, which systemd's watchdog must catch (tests/tests/systemd_e2e.rs).
#[cfg(feature = "test-hooks")]
pub fn wedge_on_sigusr2() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};

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

#[cfg(feature = "test-hooks")]
fn block_forever() -> ! {
    loop {
        std::thread::park();
    }
}
