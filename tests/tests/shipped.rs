//! The binaries that ship (`aifactoryd`, `aifactory-pane`, `aifactoryctl`, `aifactory-http`)
//! hold no test hook, as a workspace build makes them: the test suite's switches live only in
//! the test-only `aifactoryd-hooked`.
//!
//! The binaries inspected are those `cargo build --workspace --all-targets` made for this
//! test run: that build unifies the most features (every member, dev-dependencies, tests and
//! benches), and a release build resolves features the same way, so what holds here holds for
//! `cargo build --release --workspace` too.

use std::path::Path;
use std::process::Command;

use aifactory_tests::{HOOKED_DAEMON, Sandbox, bin};

/// The shipped binaries, as `packaging/build-deb` installs them.
const SHIPPED: [&str; 4] = [
    "aifactoryd",
    "aifactory-pane",
    "aifactoryctl",
    "aifactory-http",
];

/// What only a binary with the test hooks holds: the switches' variable names and the wedge's
/// log line.
const HOOK_MARKERS: [&str; 5] = [
    "AIFACTORY_TEST_MIGRATION_LIMIT",
    "AIFACTORY_TEST_PAUSE_IN_MIGRATION",
    "AIFACTORY_TEST_PROGRESS_POLLING",
    "AIFACTORY_TEST_LANDLOCK_ABI",
    "wedging every runtime worker",
];

/// The [`HOOK_MARKERS`] the file at `path` holds, found by `grep` (the binaries are 50–120 MB).
fn markers_in(path: &Path) -> Vec<String> {
    let out = Command::new("grep")
        .arg("-aoF")
        .args(HOOK_MARKERS.iter().flat_map(|m| ["-e", m]))
        .arg(path)
        .output()
        .expect("run grep");
    // 0: found some, 1: found none, anything else: grep failed.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "grep {}: {out:?}",
        path.display()
    );
    let mut found: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_shipped_binary_holds_a_test_hook_and_the_hooked_one_holds_them_all() {
    for name in SHIPPED {
        let path = bin(name);
        let found = markers_in(&path);
        assert!(
            found.is_empty(),
            "{} holds test hooks ({found:?}): test-only behaviour belongs in aifactoryd-hooked",
            path.display()
        );
    }
    // The markers are the hooks' real names: the binary that has the hooks holds every one.
    let hooked = bin(HOOKED_DAEMON);
    let mut expected: Vec<String> = HOOK_MARKERS.iter().map(|m| m.to_string()).collect();
    expected.sort();
    assert_eq!(
        markers_in(&hooked),
        expected,
        "{} lacks some: update HOOK_MARKERS to the hooks' names",
        hooked.display()
    );
}

/// The shipped daemon given every hook's switch behaves as if none were set: it migrates to
/// the newest schema, does not stop inside a migration, watches progress files with inotify,
/// asks the kernel about Landlock, and says nothing about test hooks.
#[test]
fn the_shipped_daemon_ignores_every_hook_switch() {
    let sandbox = Sandbox::new();
    let mut migrate = Command::new(bin("aifactoryd"));
    sandbox.apply_env(&mut migrate);
    let out = migrate
        .env("AIFACTORY_TEST_MIGRATION_LIMIT", "1")
        .arg("--state-dir")
        .arg(sandbox.state_dir())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = {
        let mut cmd = Command::new(bin("aifactoryd"));
        sandbox.apply_env(&mut cmd);
        cmd.arg("--state-dir")
            .arg(sandbox.state_dir())
            .args(["migrate", "--status", "--json"])
            .output()
            .unwrap()
    };
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let latest = aifactoryd::migrate::MIGRATIONS.len() as u64;
    assert_eq!(
        status["schema_version"], latest,
        "the shipped aifactoryd capped its migrations under AIFACTORY_TEST_MIGRATION_LIMIT: {status:#}"
    );

    let fresh = Sandbox::new();
    let mut daemon = fresh
        .daemon()
        .env("AIFACTORY_TEST_PAUSE_IN_MIGRATION", "1")
        .env("AIFACTORY_TEST_PROGRESS_POLLING", "1")
        .env("AIFACTORY_TEST_LANDLOCK_ABI", "0")
        .spawn();
    // Stopping inside migration 1 would keep READY=1 from coming: wait_ready fails with the log.
    daemon.wait_ready();
    let logs = daemon.logs();
    for hooked in ["test hook", "test-hooks", "progress files are polled"] {
        assert!(
            !logs.contains(hooked),
            "the shipped aifactoryd acted on a test hook ({hooked:?}):\n{logs}"
        );
    }
}
