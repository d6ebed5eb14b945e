//! The switches reach the daemon library through [`aifactoryd::Hooks`]: `aifactoryd-hooked`
//! under `AIFACTORY_TEST_MIGRATION_LIMIT=1` knows, and applies, migration 1 only. (It also
//! makes `cargo test --workspace` build this binary, which the end-to-end tests in `tests/`
//! start for the tests that need a hook.)

#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic with its message is the failure report"
)]

use std::path::Path;
use std::process::{Command, Output};

fn hooked(state_dir: &Path, limit: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aifactoryd-hooked"));
    if let Some(limit) = limit {
        cmd.env("AIFACTORY_TEST_MIGRATION_LIMIT", limit);
    }
    let out = cmd
        .arg("--state-dir")
        .arg(state_dir)
        .arg("migrate")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}

fn status(state_dir: &Path, limit: Option<&str>) -> serde_json::Value {
    serde_json::from_slice(&hooked(state_dir, limit, &["--status", "--json"]).stdout).unwrap()
}

#[test]
fn the_migration_limit_caps_what_the_hooked_daemon_knows_and_applies() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    hooked(&state, Some("1"), &[]);
    let capped = status(&state, Some("1"));
    assert_eq!(capped["schema_version"], 1, "{capped:#}");
    assert_eq!(capped["known_version"], 1, "{capped:#}");
    // Without the switch it is the whole daemon: every migration known, the rest pending.
    let all = aifactoryd::migrate::MIGRATIONS.len();
    let full = status(&state, None);
    assert_eq!(full["known_version"], all, "{full:#}");
    assert_eq!(
        full["pending"].as_array().map(Vec::len),
        Some(all - 1),
        "{full:#}"
    );
}
