//! A full panes root, for real (a tiny tmpfs): at a restart it is passed over for another root
//! while the sessions living in it keep running there; a session whose output cannot be
//! appended is held, reported everywhere (show, list, status, doctor, an event, the log) and
//! resumes with nothing lost once there is room; a session whose files cannot be written is
//! refused at `new`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aifactory_common::diagnose::{Check, CheckStatus};
use aifactory_common::protocol::{Request, StreamItem};
use aifactory_tests::process::has_ended;
use aifactory_tests::tmpfs::Tmpfs;
use aifactory_tests::wait::{wait_file, wait_for, wait_until};
use aifactory_tests::{DaemonBuilder, Sandbox, chown_tree, skip};
use nix::sys::signal::Signal;

const NOBODY: u32 = 65534;
const WAIT: Duration = Duration::from_secs(60);

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn new_session(sandbox: &Sandbox, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["sessions", "new", "--json", "--cwd", s(sandbox.path())];
    full.extend_from_slice(args);
    sandbox.ctl(&full).assert_ok().json()
}

fn show(sandbox: &Sandbox, id: &str) -> serde_json::Value {
    sandbox
        .ctl(&["sessions", "show", id, "--json"])
        .assert_ok()
        .json()
}

fn doctor(sandbox: &Sandbox) -> Vec<Check> {
    let out = sandbox.ctl(&["doctor", "--json", "--http", "127.0.0.1:9"]);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not a list of checks ({e}): {out:?}"))
}

fn check(checks: &[Check], name: &str) -> Check {
    checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
        .clone()
}

fn pane_dir(session: &serde_json::Value) -> PathBuf {
    PathBuf::from(session["pane_dir"].as_str().expect("pane_dir"))
}

/// The monitor wrote `meta.json` (after its readiness): from here it writes only output.
fn wait_meta(session: &serde_json::Value) {
    let meta = pane_dir(session).join("meta.json");
    wait_file(&meta, WAIT, |bytes| !bytes.is_empty());
}

#[test]
fn a_full_panes_root_at_restart_keeps_its_sessions_and_says_why_it_was_passed_over() {
    let test = "a_full_panes_root_at_restart_keeps_its_sessions_and_says_why_it_was_passed_over";
    let disk = match Tmpfs::mount("1m", Some((NOBODY, NOBODY))) {
        Ok(disk) => disk,
        Err(why) => return skip(test, &why),
    };
    let mut sandbox = Sandbox::new();
    let root_a = sandbox.panes_under(disk.path(), "");
    // The daemon runs as nobody, so its fallback is the sandbox's XDG root rather than the
    // machine's /run/aifactory/panes.
    chown_tree(sandbox.path(), NOBODY, NOBODY);
    chown_tree(disk.path(), NOBODY, NOBODY);
    let as_nobody =
        |name| -> DaemonBuilder<'_> { sandbox.daemon().log_name(name).as_user(NOBODY, NOBODY) };
    let mut daemon = as_nobody("first").start();
    let old = new_session(&sandbox, &["--", "sh", "-c", "echo ready; exec sleep 900"]);
    let id = old["id"].as_str().unwrap().to_string();
    let pid = old["pid"].as_u64().unwrap() as u32;
    assert!(pane_dir(&old).starts_with(&root_a), "{old:#}");
    wait_file(&pane_dir(&old).join("output.log"), WAIT, |b| {
        b.starts_with(b"ready")
    });
    wait_meta(&old);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(WAIT).expect("the daemon stops");
    drop(daemon);

    disk.fill();
    let daemon = as_nobody("again").start();
    // The session lives where it was created: still running, the same process, attachable
    // there (its output is served from root A).
    let seen = show(&sandbox, &id);
    assert_eq!(seen["state"], "running", "{seen:#}");
    assert_eq!(seen["pane_dir"], old["pane_dir"]);
    assert!(!has_ended(pid), "its program was killed");
    let tail = sandbox.ctl(&["sessions", "tail", &id]);
    tail.assert_ok();
    assert!(tail.stdout.starts_with("ready"), "{tail:?}");
    // New sessions go to the fallback.
    let fallback = sandbox.path().join("run/aifactory-rmux/panes");
    let new = new_session(&sandbox, &["--", "sleep", "900"]);
    assert!(pane_dir(&new).starts_with(&fallback), "{new:#}");

    // Status names the root in use, the one passed over and why, typed too.
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(status["panes_dir"], s(&fallback), "{status:#}");
    let skipped = &status["panes_skipped"][0];
    assert_eq!(skipped[0], s(&root_a), "{status:#}");
    let why = skipped[1].as_str().unwrap();
    assert!(why.contains("no free space"), "{status:#}");
    assert!(why.contains("df -h"), "the fix: {status:#}");
    assert!(
        status["panes_skip_reasons"][0]["reason"]
            .get("no-space")
            .is_some(),
        "{status:#}"
    );
    let text = sandbox.ctl(&["status"]).assert_ok().stdout.clone();
    assert!(
        text.contains(s(&root_a)) && text.contains("no free space"),
        "{text}"
    );
    // Doctor too, with the fix.
    let c = check(&doctor(&sandbox), "panes-root");
    assert_eq!(c.status, CheckStatus::Warn, "{c:#?}");
    assert!(
        c.message.contains(s(&fallback))
            && c.message.contains(s(&root_a))
            && c.message.contains("no free space"),
        "{c:#?}"
    );
    let fix = c.fix.unwrap_or_default();
    assert!(
        fix.contains("free space") && fix.contains(s(&root_a)),
        "{fix}"
    );
    // The log says it beyond a WARN line's candidate: the root in use and the reason.
    assert!(daemon.logs().contains("no free space"), "{}", daemon.logs());

    // It ends as it should, seen where it lives.
    disk.free();
    sandbox.ctl(&["sessions", "kill", &id]).assert_ok();
    let ended = sandbox.ctl(&["sessions", "wait", &id, "--json"]).json();
    assert_eq!(ended["state"], "exited", "{ended:#}");
    sandbox
        .ctl(&["sessions", "kill", new["id"].as_str().unwrap()])
        .assert_ok();
}

/// The session's `output_blocked` field, waited for until `pred` holds.
fn wait_blocked(
    sandbox: &Sandbox,
    id: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(what, WAIT, || {
        let seen = show(sandbox, id);
        if pred(&seen["output_blocked"]) {
            Ok(seen)
        } else {
            Err(seen)
        }
    })
}

#[test]
fn a_full_panes_root_blocks_output_reports_it_everywhere_and_loses_nothing() {
    let test = "a_full_panes_root_blocks_output_reports_it_everywhere_and_loses_nothing";
    let disk = match Tmpfs::mount("1m", None) {
        Ok(disk) => disk,
        Err(why) => return skip(test, &why),
    };
    let mut sandbox = Sandbox::new();
    let root = sandbox.panes_under(disk.path(), "");
    let daemon = sandbox.daemon().start();
    const LINES: u32 = 30_000;
    let session = new_session(
        &sandbox,
        &["--", "sh", "-c", &format!("read go; seq 1 {LINES}")],
    );
    let id = session["id"].as_str().unwrap().to_string();
    wait_meta(&session);

    disk.fill();
    sandbox
        .ctl(&["sessions", "send", &id, "go", "--enter"])
        .assert_ok();
    let seen = wait_blocked(&sandbox, &id, "the session's output to be blocked", |b| {
        !b.is_null()
    });
    let blocked = &seen["output_blocked"];
    assert!(
        blocked["reason"]
            .as_str()
            .is_some_and(|r| r.contains("No space left on device")),
        "{seen:#}"
    );
    assert!(
        blocked["since"].as_str().is_some_and(|t| t.contains('T')),
        "{seen:#}"
    );
    assert_eq!(seen["state"], "running", "{seen:#}");
    let list = sandbox
        .ctl(&["sessions", "list", "--json"])
        .assert_ok()
        .json();
    assert_eq!(list[0]["output_blocked"], *blocked, "{list:#}");
    let text = sandbox
        .ctl(&["sessions", "show", &id])
        .assert_ok()
        .stdout
        .clone();
    assert!(text.contains("blocked since"), "{text}");
    let text = sandbox
        .ctl(&["sessions", "list"])
        .assert_ok()
        .stdout
        .clone();
    assert!(text.contains("blocked"), "{text}");
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(status["sessions_output_blocked"], 1, "{status:#}");
    let text = sandbox.ctl(&["status"]).assert_ok().stdout.clone();
    assert!(text.contains("1 with output blocked"), "{text}");
    let c = check(&doctor(&sandbox), "sessions-output");
    assert_eq!(c.status, CheckStatus::Fail, "{c:#?}");
    assert!(
        c.message.contains(&id) && c.message.contains("No space left on device"),
        "{c:#?}"
    );
    let fix = c.fix.unwrap_or_default();
    assert!(
        fix.contains("free space") && fix.contains(s(&root)) && fix.contains("panes_dir"),
        "{fix}"
    );
    assert!(
        daemon.wait_log("session output blocked", WAIT),
        "{}",
        daemon.logs()
    );
    assert!(daemon.logs().contains(&id), "{}", daemon.logs());

    // Room again: it resumes by itself, every byte in order, and the reports clear.
    disk.free();
    wait_blocked(&sandbox, &id, "the session's output to resume", |b| {
        b.is_null()
    });
    let wait = sandbox.ctl(&["sessions", "wait", &id]);
    assert_eq!(wait.code, Some(0), "{wait:?}");
    let log = std::fs::read(pane_dir(&session).join("output.log")).unwrap();
    let numbers: Vec<u32> = String::from_utf8_lossy(&log)
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').parse().ok())
        .collect();
    assert_eq!(
        numbers,
        (1..=LINES).collect::<Vec<_>>(),
        "bytes lost or reordered"
    );
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(status["sessions_output_blocked"], 0, "{status:#}");
    let c = check(&doctor(&sandbox), "sessions-output");
    assert_eq!(c.status, CheckStatus::Ok, "{c:#?}");
    assert!(
        daemon.wait_log("session output resumed", WAIT),
        "{}",
        daemon.logs()
    );

    // Both changes were events.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = daemon.client().await;
        let mut events = client
            .subscribe(Request::SubscribeEvents { after: Some(0) })
            .await
            .unwrap();
        let mut kinds = Vec::new();
        let found = tokio::time::timeout(WAIT, async {
            while let Some(item) = events.next().await {
                if let StreamItem::Event(event) = item {
                    let kind = serde_json::to_value(&event.kind).unwrap();
                    let about = |name: &str| kind.get(name).is_some_and(|k| k["session_id"] == *id);
                    kinds.push(kind.clone());
                    if about("SessionOutputBlocked") {
                        assert!(
                            kind["SessionOutputBlocked"]["blocked"]["reason"]
                                .as_str()
                                .is_some_and(|r| r.contains("No space left")),
                            "{kind:#}"
                        );
                    }
                    if about("SessionOutputResumed") {
                        return true;
                    }
                }
            }
            false
        })
        .await;
        let blocked_first = kinds
            .iter()
            .position(|k| k.get("SessionOutputBlocked").is_some());
        let resumed = kinds
            .iter()
            .position(|k| k.get("SessionOutputResumed").is_some());
        assert!(
            found.unwrap_or(false) && blocked_first < resumed && blocked_first.is_some(),
            "events: {kinds:#?}"
        );
    });
}

#[test]
fn a_session_whose_files_cannot_be_written_is_refused_at_new() {
    let test = "a_session_whose_files_cannot_be_written_is_refused_at_new";
    let disk = match Tmpfs::mount("1m", None) {
        Ok(disk) => disk,
        Err(why) => return skip(test, &why),
    };
    let mut sandbox = Sandbox::new();
    let root = sandbox.panes_under(disk.path(), "");
    let _daemon = sandbox.daemon().start();
    disk.fill();
    let refused = sandbox.ctl(&["sessions", "new", "--", "echo", "hi"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("no free space")
            && refused.stderr.contains(s(&root))
            && refused.stderr.contains("panes_dir"),
        "{refused:?}"
    );
    let list = sandbox
        .ctl(&["sessions", "list", "--json"])
        .assert_ok()
        .json();
    assert_eq!(list, serde_json::json!([]), "nothing half made is kept");
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    disk.free();
    let session = new_session(&sandbox, &["--", "echo", "hi"]);
    let id = session["id"].as_str().unwrap();
    let wait = sandbox.ctl(&["sessions", "wait", id]);
    assert_eq!(wait.code, Some(0), "{wait:?}");
    wait_until("hi in output.log", WAIT, || {
        std::fs::read(pane_dir(&session).join("output.log")).is_ok_and(|b| b.starts_with(b"hi"))
    });
}
