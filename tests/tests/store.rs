//! The state store and its migrations, against the real daemon: kills inside a migration,
//! two daemons at once, tampered and newer schemas, the migration lock, and `aifactoryd
//! migrate`.

use std::process::Command;
use std::time::Duration;

use aifactory_tests::git::init_repo;
use aifactory_tests::{Daemon, HOOKED_DAEMON, Sandbox, bin, migrate_lock};
use nix::sys::signal::Signal;
use rusqlite::Connection;

/// The newest migration this build knows.
const LATEST: u32 = aifactoryd::migrate::MIGRATIONS.len() as u32;

fn db(sandbox: &Sandbox) -> Connection {
    Connection::open(sandbox.state_dir().join("aifactory.db")).expect("open the database")
}

fn schema_version(conn: &Connection) -> u32 {
    conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )
    .expect("read schema_migrations")
}

fn stop(mut daemon: Daemon) {
    daemon.signal(Signal::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("daemon stops on SIGTERM");
    assert!(status.success(), "{status}\n{}", daemon.logs());
}

fn exits_with_failure(daemon: &mut Daemon) -> String {
    let status = daemon
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("daemon should have refused to start:\n{}", daemon.logs()));
    assert_eq!(status.code(), Some(1), "{}", daemon.logs());
    daemon.logs()
}

/// A database at schema version 1 holding one project, as an older aifactoryd left it.
fn version_one_with_a_project(sandbox: &Sandbox, project: &str) {
    let out = migrate_cmd_by(
        HOOKED_DAEMON,
        sandbox,
        &[],
        &[("AIFACTORY_TEST_MIGRATION_LIMIT", "1")],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(schema_version(&db(sandbox)), 1);
    // The row an aifactoryd of schema version 1 wrote for a registered project.
    let repo = init_repo(&sandbox.path().join(project), "main", None)
        .canonicalize()
        .unwrap();
    db(sandbox)
        .execute(
            "INSERT INTO projects (id, name, path, origin_url, provider, detected_provider,
                                   provider_manual, default_branch, created_at)
             VALUES ('p-00000001', ?1, ?2, NULL, 'unknown', 'unknown', 0, 'main', '2026-01-01T00:00:00Z')",
            rusqlite::params![project, repo.to_str().unwrap()],
        )
        .unwrap();
}

#[test]
fn sigkill_inside_a_migration_twenty_times_then_every_start_recovers() {
    for round in 0..20 {
        let sandbox = Sandbox::new();
        let project = format!("before-{round}");
        version_one_with_a_project(&sandbox, &project);

        let mut paused = sandbox
            .daemon()
            .hooked()
            .env("AIFACTORY_TEST_PAUSE_IN_MIGRATION", "2")
            .log_name("paused")
            .spawn();
        assert!(
            paused.wait_log(
                "test hook: paused inside migration 2",
                Duration::from_secs(30)
            ),
            "round {round}: {}",
            paused.logs()
        );
        paused.signal(Signal::SIGKILL);
        paused.wait_exit(Duration::from_secs(10)).expect("killed");
        // The killed transaction left version 1 intact.
        assert_eq!(schema_version(&db(&sandbox)), 1, "round {round}");

        let after = sandbox.daemon().log_name("after").start();
        let logs = after.logs();
        assert!(
            !logs.contains("waiting for the migration lock"),
            "round {round}: a dead holder's lock must not be waited for:\n{logs}"
        );
        let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
        assert_eq!(status["schema_version"], LATEST, "round {round}");
        let shown = sandbox
            .ctl(&["projects", "show", &project, "--json"])
            .assert_ok()
            .json();
        assert_eq!(shown["name"], project.as_str());
        let backups: Vec<_> = std::fs::read_dir(sandbox.state_dir().join("backups"))
            .expect("a backup was made before migrating a non-empty database")
            .collect();
        assert!(!backups.is_empty());
        stop(after);
    }
}

#[test]
fn a_long_migration_keeps_asking_systemd_for_more_start_up_time() {
    let sandbox = Sandbox::new();
    let mut paused = sandbox
        .daemon()
        .hooked()
        .env("AIFACTORY_TEST_PAUSE_IN_MIGRATION", "1")
        .spawn();
    assert!(
        paused.wait_log(
            "test hook: paused inside migration 1",
            Duration::from_secs(30)
        ),
        "{}",
        paused.logs()
    );
    let status = paused
        .notify
        .wait_for("STATUS=", Duration::from_secs(5))
        .expect("a STATUS= while migrating");
    assert!(status.text.contains("applying migrations"), "{status:?}");
    // One request at once, then one every 10 s, each for 30 s: TimeoutStartSec= never expires
    // while the migration still runs.
    let extensions = |notes: &[aifactory_tests::notify::Notification]| -> Vec<u64> {
        notes
            .iter()
            .flat_map(|n| n.text.lines())
            .filter_map(|l| l.strip_prefix("EXTEND_TIMEOUT_USEC="))
            .map(|v| v.parse().expect("a number of microseconds"))
            .collect()
    };
    // The second comes about 10 s after the first; the bound is for a loaded machine.
    let notes = paused
        .notify
        .wait_for_count("EXTEND_TIMEOUT_USEC=", 2, Duration::from_secs(90))
        .unwrap_or_else(|| panic!("fewer than 2 extension requests: {:?}", paused.notify.all()));
    let asked = extensions(&notes);
    assert!(asked.len() >= 2, "{notes:?}");
    let notes = paused.notify.all();
    assert!(asked.iter().all(|&usec| usec >= 30_000_000), "{asked:?}");
    assert!(
        !notes.iter().any(|n| n.text.lines().any(|l| l == "READY=1")),
        "READY=1 before the migration finished: {notes:?}"
    );
    paused.signal(Signal::SIGKILL);
    paused.wait_exit(Duration::from_secs(10)).expect("killed");
}

#[test]
fn two_daemons_started_together_one_migrates_one_refuses() {
    let sandbox = Sandbox::new();
    let mut a = sandbox.daemon().log_name("a").spawn();
    let mut b = sandbox.daemon().log_name("b").spawn();
    // One of them serves; the other exits 1 naming the one that serves.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (winner, mut loser) = loop {
        if a.try_exit().is_some() {
            break (b, a);
        }
        if b.try_exit().is_some() {
            break (a, b);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither daemon gave up:\n{}\n{}",
            a.logs(),
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let refusal = exits_with_failure(&mut loser);
    assert!(
        refusal.contains(&format!("already serves {}", sandbox.socket().display())),
        "{refusal}"
    );
    assert!(
        refusal.contains(&format!("pid {}", winner.pid())),
        "{refusal}"
    );
    let mut winner = winner;
    winner.wait_ready();
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(status["pid"], winner.pid());
    assert_eq!(status["schema_version"], LATEST);

    let conn = db(&sandbox);
    let pids: Vec<u32> = conn
        .prepare("SELECT applied_by_pid FROM schema_migrations")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(pids.len(), LATEST as usize);
    assert!(
        pids.iter().all(|p| *p == pids[0]),
        "exactly one process migrated: {pids:?}"
    );
    assert!([winner.pid(), loser.pid()].contains(&pids[0]));
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn tampered_checksum_is_refused_naming_the_backup() {
    let sandbox = Sandbox::new();
    version_one_with_a_project(&sandbox, "kept");
    stop(sandbox.daemon().log_name("upgrade").start());
    let backup = std::fs::read_dir(sandbox.state_dir().join("backups"))
        .unwrap()
        .next()
        .expect("upgrading a non-empty database made a backup")
        .unwrap()
        .path();
    // The backup is a real database at the old version.
    assert_eq!(schema_version(&Connection::open(&backup).unwrap()), 1);

    db(&sandbox)
        .execute(
            "UPDATE schema_migrations SET checksum = 'deadbeef' WHERE version = 1",
            [],
        )
        .unwrap();
    let mut refused = sandbox.daemon().log_name("tampered").spawn();
    let logs = exits_with_failure(&mut refused);
    assert!(
        logs.contains("migration 0001_projects was applied"),
        "{logs}"
    );
    assert!(logs.contains("checksum deadbeef"), "{logs}");
    assert!(
        logs.contains(&format!("newest backup: {}", backup.display())),
        "{logs}"
    );
    assert!(
        !sandbox.socket().exists(),
        "a refused daemon must not serve"
    );
}

#[test]
fn newer_schema_is_refused_naming_both_versions_and_the_backup() {
    let sandbox = Sandbox::new();
    version_one_with_a_project(&sandbox, "kept");
    stop(sandbox.daemon().log_name("upgrade").start());
    db(&sandbox)
        .execute(
            "INSERT INTO schema_migrations VALUES (99, 'future', 'x', '2030-01-01T00:00:00Z', 1, 1)",
            [],
        )
        .unwrap();
    let mut refused = sandbox.daemon().log_name("downgrade").spawn();
    let logs = exits_with_failure(&mut refused);
    assert!(
        logs.contains(&format!(
            "has schema version 99, newer than the {LATEST} this aifactoryd knows"
        )),
        "{logs}"
    );
    assert!(logs.contains("newest backup: "), "{logs}");
    // The data is untouched.
    let names: i64 = db(&sandbox)
        .query_row("SELECT count(*) FROM projects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(names, 1);
}

#[test]
fn a_held_migration_lock_is_waited_for_then_reported_with_its_holder() {
    let sandbox = Sandbox::new();
    sandbox.write_config("migrate_lock_timeout = 2\n");
    let lock = migrate_lock::hold(&sandbox);
    let mut waiting = sandbox.daemon().spawn();
    let logs = exits_with_failure(&mut waiting);
    let me = std::process::id();
    assert!(
        logs.contains(&format!("waiting for the migration lock held by pid {me}")),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("is held by pid {me} on test-host")),
        "{logs}"
    );
    assert!(logs.contains(&format!("ps -p {me}")), "{logs}");
    assert!(
        waiting
            .notify
            .wait_for("EXTEND_TIMEOUT_USEC=", Duration::ZERO)
            .is_some(),
        "systemd must be asked for more start-up time while waiting"
    );
    drop(lock);
    sandbox.daemon().log_name("after").start();
}

#[test]
fn a_lock_released_while_waiting_lets_startup_continue() {
    let sandbox = Sandbox::new();
    let lock = migrate_lock::hold(&sandbox);
    let mut daemon = sandbox.daemon().spawn();
    assert!(
        daemon.wait_log("waiting for the migration lock", Duration::from_secs(20)),
        "{}",
        daemon.logs()
    );
    drop(lock);
    daemon.wait_ready();
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(status["schema_version"], LATEST);
}

fn migrate_cmd(sandbox: &Sandbox, args: &[&str]) -> std::process::Output {
    migrate_cmd_by("aifactoryd", sandbox, args, &[])
}

/// `migrate` of the daemon binary `daemon` (the shipped one, or the hooked one with switches
/// in `env`).
fn migrate_cmd_by(
    daemon: &str,
    sandbox: &Sandbox,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = Command::new(bin(daemon));
    sandbox.apply_env(&mut cmd);
    cmd.envs(env.iter().copied());
    cmd.arg("--state-dir")
        .arg(sandbox.state_dir())
        .arg("--socket")
        .arg(sandbox.socket())
        .arg("migrate")
        .args(args);
    cmd.output().expect("run aifactoryd migrate")
}

#[test]
fn migrate_status_dry_run_and_apply() {
    let sandbox = Sandbox::new();
    let db_file = sandbox.state_dir().join("aifactory.db");

    let dry = migrate_cmd(&sandbox, &["--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(text.contains("would apply 0001_projects"), "{text}");
    assert!(!db_file.exists(), "a dry run creates nothing");

    let status = migrate_cmd(&sandbox, &["--status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("0002_legacy_imports") && text.contains("pending"),
        "{text}"
    );
    assert!(text.contains("lock           free"), "{text}");

    let apply = migrate_cmd(&sandbox, &[]);
    assert!(apply.status.success(), "{apply:?}");
    assert!(String::from_utf8_lossy(&apply.stdout).contains("applied 0002_legacy_imports"));
    assert_eq!(schema_version(&db(&sandbox)), LATEST);

    let lock = migrate_lock::hold(&sandbox);
    let status = migrate_cmd(&sandbox, &["--status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("held by pid {} on test-host", std::process::id())),
        "{text}"
    );
    assert!(text.contains("sha256 "), "{text}");
    assert!(!text.contains("pending"), "{text}");
    drop(lock);
}
