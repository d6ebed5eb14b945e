//! The binaries that ship (`aifactoryd`, `aifactory-pane`, `aifactoryctl`, `aifactory-http`)
//! hold no test hook, as a workspace build makes them: the test suite's switches live only in
//! the test-only `aifactoryd-hooked`.
//!
//! The binaries inspected are those `cargo build --workspace --all-targets` made for this
//! test run: that build unifies the most features (every member, dev-dependencies, tests and
//! benches), and a release build resolves features the same way, so what holds here holds for
//! `cargo build --release --workspace` too.

use std::process::Command;

use aifactory_tests::{Sandbox, bin};

/// The shipped binaries, as `packaging/build-deb` installs them.
const SHIPPED: [&str; 4] = [
    "aifactoryd",
    "aifactory-pane",
    "aifactoryctl",
    "aifactory-http",
];

/// What only a binary with the test hooks holds: the switches' variable names and the wedge's
/// log line.
const HOOK_MARKERS: [&str; 4] = [
    "AIFACTORY_TEST_MIGRATION_LIMIT",
    "AIFACTORY_TEST_PAUSE_IN_MIGRATION",
    "AIFACTORY_TEST_PROGRESS_POLLING",
    "wedging every runtime worker",
];

fn holds(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    // Scans from each occurrence of the first byte only: the binaries are 50–120 MB.
    memchr_all(haystack, needle[0])
        .any(|i| haystack.get(i..i + needle.len()) == Some(needle))
}

fn memchr_all(haystack: &[u8], byte: u8) -> impl Iterator<Item = usize> + '_ {
    haystack
        .iter()
        .enumerate()
        .filter(move |(_, b)| **b == byte)
        .map(|(i, _)| i)
}

#[test]
fn no_shipped_binary_holds_a_test_hook_and_the_hooked_one_holds_them_all() {
    for name in SHIPPED {
        let path = bin(name);
        let bytes = std::fs::read(&path).unwrap();
        let found: Vec<&str> = HOOK_MARKERS
            .into_iter()
            .filter(|m| holds(&bytes, m))
            .collect();
        assert!(
            found.is_empty(),
            "{} holds test hooks ({found:?}): test-only behaviour belongs in aifactoryd-hooked",
            path.display()
        );
    }
    // The markers are the hooks' real names: the binary that has the hooks holds every one.
    let hooked = bin("aifactoryd-hooked");
    let bytes = std::fs::read(&hooked).unwrap();
    for marker in HOOK_MARKERS {
        assert!(
            holds(&bytes, marker),
            "{} lacks {marker}: update HOOK_MARKERS to the hooks' names",
            hooked.display()
        );
    }
}

/// The shipped daemon given every hook's switch behaves as if none were set: it migrates to
/// the newest schema, does not stop inside a migration, watches progress files with inotify,
/// and says nothing about test hooks.
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
