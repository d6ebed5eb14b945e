//! Writes that cannot happen: a read-only database file, a read-only state directory, a full
//! disk. Each must be refused with the file, the OS error and the fix, nothing may be reported
//! as saved that was not, and the daemon keeps answering.
//!
//! As root, permissions do not stop writes, so the daemon runs as `nobody` over a sandbox it
//! owns; the full disk is a tiny tmpfs, which needs root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aifactory_tests::git::init_repo;
use aifactory_tests::{Daemon, DaemonBuilder, Sandbox, chown_tree, is_root, skip};
use nix::sys::signal::Signal;

const NOBODY: u32 = 65534;

/// The uid/gid the daemon runs as: nobody when we are root (so permissions bite), else us.
fn owner() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(NOBODY))
        .ok()
        .flatten()
        .expect("a user with uid 65534 (nobody) exists");
    Some((NOBODY, user.gid.as_raw()))
}

fn daemon<'a>(sandbox: &'a Sandbox, name: &'static str) -> DaemonBuilder<'a> {
    let builder = sandbox.daemon().log_name(name);
    match owner() {
        Some((uid, gid)) => builder.as_user(uid, gid),
        None => builder,
    }
}

/// A sandbox, a git work tree in it, both owned by the daemon's user.
fn sandbox_with_repo() -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::new();
    let repo = init_repo(&sandbox.path().join("repo"), "main", None);
    std::fs::create_dir_all(sandbox.path().join("repo2/.keep")).unwrap();
    init_repo(&sandbox.path().join("repo2"), "main", None);
    if let Some((uid, gid)) = owner() {
        sandbox.write_config("");
        chown_tree(sandbox.path(), uid, gid);
    }
    (sandbox, repo)
}

fn stop(mut d: Daemon) {
    d.signal(Signal::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(10)).expect("stops");
    assert!(status.success(), "{}", d.logs());
}

fn project_count(sandbox: &Sandbox) -> usize {
    sandbox
        .ctl(&["projects", "list", "--json"])
        .assert_ok()
        .json()
        .as_array()
        .unwrap()
        .len()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn read_only_database_file_serves_reads_and_refuses_writes_clearly() {
    let (sandbox, repo) = sandbox_with_repo();
    let first = daemon(&sandbox, "first").start();
    sandbox.ctl(&["projects", "add", s(&repo)]).assert_ok();
    stop(first);
    let db = sandbox.state_dir().join("aifactory.db");
    // A clean stop checkpoints the WAL: the database is one self-contained file.
    let wal = sandbox.state_dir().join("aifactory.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "the WAL was left behind by a clean stop"
    );
    chmod(&db, 0o444);

    let _d = daemon(&sandbox, "ro").start();
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(status["store_writable"], false, "{status}");
    let store = status["store"].as_str().unwrap();
    assert!(store.starts_with("read-only"), "{store}");
    assert!(
        store.contains(s(&db)) && store.contains("chmod u+w"),
        "{store}"
    );
    assert_eq!(
        status["schema_version"],
        aifactoryd::migrate::MIGRATIONS.len() as u64
    );

    assert_eq!(project_count(&sandbox), 1, "reads are still served");
    let refused = sandbox.ctl(&["projects", "add", s(&sandbox.path().join("repo2"))]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains(s(&db)), "{refused:?}");
    assert!(refused.stderr.contains("read-only"), "{refused:?}");
    assert!(refused.stderr.contains("chmod u+w"), "{refused:?}");
    assert_eq!(project_count(&sandbox), 1, "nothing was saved");
    sandbox.ctl(&["status"]).assert_ok();
}

#[test]
fn read_only_state_directory_serves_reads_and_refuses_writes_clearly() {
    let (sandbox, repo) = sandbox_with_repo();
    let first = daemon(&sandbox, "first").start();
    sandbox.ctl(&["projects", "add", s(&repo)]).assert_ok();
    stop(first);
    chmod(&sandbox.state_dir(), 0o555);

    let _d = daemon(&sandbox, "ro-dir").start();
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(status["store_writable"], false, "{status}");
    let store = status["store"].as_str().unwrap();
    assert!(store.contains(s(&sandbox.state_dir())), "{store}");
    assert_eq!(project_count(&sandbox), 1, "reads are still served");

    let refused = sandbox.ctl(&["projects", "add", s(&sandbox.path().join("repo2"))]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains(s(&sandbox.state_dir())),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("writable"), "{refused:?}");
    assert_eq!(project_count(&sandbox), 1);
    sandbox.ctl(&["status"]).assert_ok();
    chmod(&sandbox.state_dir(), 0o700);
}

/// A tmpfs mounted for one test, lazily unmounted when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_refused_clearly_and_nothing_unsaved_is_reported_saved() {
    let test = "full_disk_is_refused_clearly_and_nothing_unsaved_is_reported_saved";
    let sandbox = Sandbox::new();
    let state = sandbox.state_dir();
    let Some(_mount) = tmpfs(test, &state, "512k") else {
        return;
    };
    let repos: Vec<PathBuf> = (0..40)
        .map(|i| {
            let path = sandbox.path().join(format!("r{i}"));
            assert!(
                Command::new("git")
                    .args(["init", "-q"])
                    .arg(&path)
                    .status()
                    .unwrap()
                    .success()
            );
            path
        })
        .collect();
    let daemon = sandbox.daemon().start();
    sandbox.ctl(&["projects", "add", s(&repos[0])]).assert_ok();

    let filler = fill(&state);

    let mut saved = 1;
    let mut refusal = None;
    for repo in &repos[1..] {
        let out = sandbox.ctl(&["projects", "add", s(repo)]);
        match out.code {
            Some(0) => saved += 1,
            _ => {
                refusal = Some(out);
                break;
            }
        }
    }
    let refusal = refusal.expect("a write on a full disk must fail");
    assert_eq!(refusal.code, Some(1), "{refusal:?}");
    assert!(refusal.stderr.contains("the disk is full"), "{refusal:?}");
    assert!(
        refusal.stderr.contains(s(&state.join("aifactory.db"))),
        "{refusal:?}"
    );
    assert!(refusal.stderr.contains("df -h"), "{refusal:?}");

    // The daemon still answers and says what happened; what it called saved is there.
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert!(
        status["store"]
            .as_str()
            .unwrap()
            .contains("last write failed"),
        "{status}"
    );
    assert_eq!(project_count(&sandbox), saved);

    std::fs::remove_file(&filler).unwrap();
    sandbox.ctl(&["projects", "add", s(&repos[39])]).assert_ok();
    assert_eq!(project_count(&sandbox), saved + 1);
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(status["store_writable"], true, "{status}");
    drop(daemon);
}

/// Mounts a tmpfs of `size` on `dir`; `None` (after a skip) when this machine cannot.
fn tmpfs(test: &str, dir: &Path, size: &str) -> Option<Mount> {
    if !is_root() {
        skip(test, "needs root to mount a tmpfs");
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output()
        .expect("run mount");
    if !mounted.status.success() {
        skip(
            test,
            &format!(
                "cannot mount a tmpfs here: {}",
                String::from_utf8_lossy(&mounted.stderr)
            ),
        );
        return None;
    }
    Some(Mount(dir.to_path_buf()))
}

/// Writes to `dir` until its filesystem has not one byte left; returns the file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let one = [0u8; 1];
    while f.write_all(&one).is_ok() {}
    filler
}

/// A sandbox with two git work trees for a daemon that runs as the test's own user (root: the
/// filesystem, not permissions, is what refuses here).
fn own_sandbox_with_repos() -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::new();
    sandbox.write_config("");
    let repo = init_repo(&sandbox.path().join("repo"), "main", None);
    init_repo(&sandbox.path().join("repo2"), "main", None);
    (sandbox, repo)
}

#[test]
fn a_read_only_mount_is_named_with_its_fix() {
    let test = "a_read_only_mount_is_named_with_its_fix";
    let (sandbox, repo) = own_sandbox_with_repos();
    let state = sandbox.state_dir();
    let Some(_mount) = tmpfs(test, &state, "8m") else {
        return;
    };
    let first = sandbox.daemon().log_name("rw").start();
    sandbox.ctl(&["projects", "add", s(&repo)]).assert_ok();
    stop(first);
    let remount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(remount.success());

    let _d = sandbox.daemon().log_name("ro-mount").start();
    let fix = "read-only file system: remount it read-write or set state_dir elsewhere";
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(status["store_writable"], false, "{status}");
    let store = status["store"].as_str().unwrap();
    assert!(store.contains(fix) && store.contains(s(&state)), "{store}");
    // Making the directory writable by uid 0 would change nothing: root already may.
    assert!(!store.contains("writable by uid"), "{store}");
    assert_eq!(project_count(&sandbox), 1, "reads are still served");
    let refused = sandbox.ctl(&["projects", "add", s(&sandbox.path().join("repo2"))]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains(fix), "{refused:?}");
}

#[test]
fn a_full_state_dir_at_startup_asks_for_free_space() {
    let test = "a_full_state_dir_at_startup_asks_for_free_space";
    let (sandbox, repo) = own_sandbox_with_repos();
    let state = sandbox.state_dir();
    let Some(_mount) = tmpfs(test, &state, "1m") else {
        return;
    };
    // Killed, the daemon leaves its WAL behind and the database opens; stopped, it does not,
    // and SQLite cannot create it. Both must say the disk is full.
    let ways = [
        (
            Signal::SIGKILL,
            "killed",
            "full-after-kill",
            "cleared-after-kill",
        ),
        (
            Signal::SIGTERM,
            "stopped",
            "full-after-stop",
            "cleared-after-stop",
        ),
    ];
    for (end, name, full, cleared) in ways {
        let mut first = sandbox.daemon().log_name(name).start();
        sandbox.ctl(&["projects", "add", s(&repo)]).assert_ok();
        first.signal(end);
        first.wait_exit(Duration::from_secs(10)).expect("ends");
        let filler = fill(&state);

        let d = sandbox.daemon().log_name(full).start();
        let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
        assert_eq!(status["store_writable"], false, "{name}: {status}");
        let store = status["store"].as_str().unwrap();
        assert!(
            store.contains("the disk is full")
                && store.contains("free space")
                && store.contains(&format!("df -h {}", s(&state))),
            "{name}: {store}"
        );
        assert!(!store.contains("writable"), "{name}: {store}");
        assert_eq!(project_count(&sandbox), 1, "{name}: reads are still served");
        stop(d);
        std::fs::remove_file(&filler).unwrap();
        let d = sandbox.daemon().log_name(cleared).start();
        sandbox.ctl(&["projects", "remove", "repo"]).assert_ok();
        stop(d);
    }
}
