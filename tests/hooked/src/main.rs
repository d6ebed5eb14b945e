//! `aifactoryd-hooked`: the real daemon (`aifactoryd::entry::main`) with the test suite's
//! hooks, each switched on by an environment variable. Only tests that need a hook run it
//! (`tests/src/daemon.rs`, `DaemonBuilder::hooked`); every other test, and every package, runs
//! the shipped `aifactoryd`, which takes no hooks at all. It needs `aifactory-pane` beside it.
//!
//! - `AIFACTORY_TEST_MIGRATION_LIMIT=N`: know the migrations up to N only;
//! - `AIFACTORY_TEST_PAUSE_IN_MIGRATION=N`: stop inside migration N's open transaction, so a
//!   test can SIGKILL the daemon there;
//! - `AIFACTORY_TEST_PROGRESS_POLLING` (any value): poll progress files although inotify works;
//! - `AIFACTORY_TEST_LANDLOCK_ABI=N`: believe the kernel's Landlock ABI is N (0: none);
//! - always: SIGUSR2 wedges the runtime (the systemd watchdog test).

use std::process::ExitCode;

use aifactoryd::Hooks;
use tokio::signal::unix::{SignalKind, signal};

const MIGRATION_LIMIT: &str = "AIFACTORY_TEST_MIGRATION_LIMIT";
const PAUSE_IN_MIGRATION: &str = "AIFACTORY_TEST_PAUSE_IN_MIGRATION";
const PROGRESS_POLLING: &str = "AIFACTORY_TEST_PROGRESS_POLLING";
const LANDLOCK_ABI: &str = "AIFACTORY_TEST_LANDLOCK_ABI";

/// More blocking tasks than the runtime has workers, so every worker takes one.
const WEDGE_TASKS: usize = 64;

fn main() -> ExitCode {
    aifactoryd::entry::main(Hooks {
        migration_limit: env_u32(MIGRATION_LIMIT),
        inside_migration: Some(pause_inside_migration),
        poll_progress: std::env::var_os(PROGRESS_POLLING).is_some(),
        on_start: Some(Box::new(on_start)),
        landlock_abi: env_u32(LANDLOCK_ABI),
    })
}

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.parse().ok()
}

fn pause_inside_migration(version: u32) {
    if env_u32(PAUSE_IN_MIGRATION) == Some(version) {
        eprintln!("test hook: paused inside migration {version}");
        block_forever();
    }
}

/// Says what this binary is, then makes SIGUSR2 wedge the runtime: every worker thread blocks
/// for good, so nothing async runs any more, the watchdog keep-alive included. It stands for a
/// daemon stuck in a deadlock or a blocking call, which systemd's watchdog must catch
/// (tests/tests/systemd_e2e.rs).
fn on_start() -> std::io::Result<()> {
    tracing::warn!(
        "this is aifactoryd-hooked, the test suite's daemon with test hooks ({MIGRATION_LIMIT}, {PAUSE_IN_MIGRATION}, {PROGRESS_POLLING}, {LANDLOCK_ABI}, SIGUSR2 wedges it): never install it; the shipped daemon is aifactoryd"
    );
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

fn block_forever() -> ! {
    loop {
        std::thread::park();
    }
}
