//! Processes that escape a session (`setsid`) end with it: `sessions kill` stops the whole
//! tree and says what it stopped, `remove` refuses while anything of the session still runs, a
//! session whose monitor was SIGKILLed has its escapees cleaned up when it is marked lost, and
//! `doctor` names any process of a session that no live session accounts for.

use std::path::PathBuf;
use std::time::Duration;

use aifactory_common::diagnose::{Check, CheckStatus};
use aifactory_tests::Sandbox;
use aifactory_tests::process::has_ended;
use aifactory_tests::wait::{wait_file, wait_until};
use nix::sys::signal::Signal;

/// Starts `sh -c script` in a session; returns it and the pid the script wrote to
/// `escapee.pid` in the sandbox (each test's own file: the sandbox is private).
fn session_with_escapee(sandbox: &Sandbox, script: &str) -> (serde_json::Value, u32) {
    let s = sandbox
        .ctl(&["sessions", "new", "--json", "--", "sh", "-c", script])
        .assert_ok()
        .json();
    let file = PathBuf::from(s["cwd"].as_str().expect("cwd")).join("escapee.pid");
    let bytes = wait_file(&file, Duration::from_secs(20), |b| b.ends_with(b"\n"));
    let pid = String::from_utf8_lossy(&bytes)
        .trim()
        .parse()
        .expect("a pid in escapee.pid");
    // `setsid` execs `sleep` in the same process: wait until it did, so the command is known.
    wait_until("the escapee to exec sleep", Duration::from_secs(20), || {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
    });
    (s, pid)
}

fn doctor(sandbox: &Sandbox) -> Vec<Check> {
    let out = sandbox.ctl(&["doctor", "--json", "--http", "127.0.0.1:9"]);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not a list of checks ({e}): {out:?}"))
}

fn find(checks: &[Check], name: &str) -> Check {
    checks
        .iter()
        .find(|c| c.check == name)
        .cloned()
        .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
}

#[test]
fn kill_stops_a_setsid_escapee_and_the_monitor_and_remove_follows() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    let (s, escapee) = session_with_escapee(
        &sandbox,
        "setsid sleep 1001 & echo $! > escapee.pid; while :; do sleep 1; done",
    );
    let id = s["id"].as_str().unwrap();
    let monitor = s["monitor_pid"].as_u64().unwrap() as u32;
    let killed = sandbox
        .ctl(&["sessions", "kill", id, "--json", "--grace", "2"])
        .assert_ok()
        .json();
    assert_eq!(killed["state"], "exited", "{killed}");
    // The kill waited for the whole tree: the escapee is gone when it answers.
    assert!(
        has_ended(escapee),
        "the setsid escapee {escapee} still runs after `sessions kill`: {killed}"
    );
    let signalled = killed["signalled"].as_array().expect("signalled");
    assert!(
        signalled
            .iter()
            .any(|p| p["pid"] == escapee && p["command"] == "sleep 1001"),
        "{killed}"
    );
    assert_eq!(killed["survivors"], serde_json::json!([]), "{killed}");
    // Nothing holds the terminal any more: the monitor finishes and exits on its own.
    wait_until("the monitor to exit", Duration::from_secs(60), || {
        has_ended(monitor)
    });
    sandbox.ctl(&["sessions", "remove", id]).assert_ok();
}

#[test]
fn an_ended_session_with_a_running_escapee_is_reported_and_not_removed_until_killed() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    // The program exits 0 once its escapee left its session (before that, the terminal's
    // hangup at the program's exit would end it too); the escapee goes on, holding the terminal.
    let (s, escapee) = session_with_escapee(
        &sandbox,
        "setsid sh -c 'echo $$ > escapee.pid; exec sleep 1002' &
         while [ ! -s escapee.pid ]; do sleep 0.1; done",
    );
    let id = s["id"].as_str().unwrap();
    let monitor = s["monitor_pid"].as_u64().unwrap() as u32;
    sandbox.ctl(&["sessions", "wait", id]).assert_ok();

    let stray = find(&doctor(&sandbox), "stray-processes");
    assert_eq!(stray.status, CheckStatus::Fail, "{stray:#?}");
    assert!(
        stray.message.contains(&format!("{escapee} (sleep 1002)")) && stray.message.contains(id),
        "{stray:#?}"
    );
    assert!(
        stray
            .fix
            .as_deref()
            .is_some_and(|f| f.contains(&format!("kill {escapee}"))),
        "{stray:#?}"
    );

    let refused = sandbox.ctl(&["sessions", "remove", id]);
    assert_ne!(refused.code, Some(0), "remove must refuse: {refused:?}");
    assert!(
        refused.stderr.contains(&escapee.to_string())
            && refused.stderr.contains("aifactoryctl sessions kill"),
        "{refused:?}"
    );
    assert!(!has_ended(escapee), "a refused remove kills nothing");

    let killed = sandbox
        .ctl(&["sessions", "kill", id, "--json"])
        .assert_ok()
        .json();
    assert!(has_ended(escapee), "{killed}");
    assert!(
        killed["signalled"]
            .as_array()
            .is_some_and(|s| s.iter().any(|p| p["pid"] == escapee)),
        "{killed}"
    );
    sandbox.ctl(&["sessions", "remove", id]).assert_ok();
    // Gone means gone: the monitor too.
    assert!(
        has_ended(monitor),
        "the monitor {monitor} outlived `remove`"
    );
    let clean = find(&doctor(&sandbox), "stray-processes");
    assert_eq!(clean.status, CheckStatus::Ok, "{clean:#?}");
}

#[test]
fn escapees_of_a_session_whose_monitor_was_sigkilled_end_when_it_is_marked_lost() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    let (s, escapee) = session_with_escapee(
        &sandbox,
        "setsid sleep 1003 & echo $! > escapee.pid; while :; do sleep 1; done",
    );
    let id = s["id"].as_str().unwrap();
    let monitor = s["monitor_pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), Signal::SIGKILL)
        .expect("SIGKILL the monitor");
    let waited = sandbox.ctl(&["sessions", "wait", id, "--json"]);
    assert!(waited.stdout.contains("\"lost\""), "{waited:?}");
    wait_until(
        &format!("the lost session's escapee {escapee} to be stopped"),
        Duration::from_secs(30),
        || has_ended(escapee),
    );
    let clean = find(&doctor(&sandbox), "stray-processes");
    assert_eq!(clean.status, CheckStatus::Ok, "{clean:#?}");
}
