//! rmux sessions end to end: real PTYs under pane monitors, driven through aifactoryctl.
//!
//! One file past 600 lines on purpose: it is one feature's end-to-end suite, built as one test
//! binary; what its tests share beyond this file lives in the harness (`tests/src`).

use std::path::PathBuf;
use std::time::Duration;

use aifactory_common::pane::EXIT_FILE;
use aifactory_tests::bench::find_in_path;
use aifactory_tests::process::has_ended;
use aifactory_tests::wait::{wait_file, wait_until};
use aifactory_tests::{CtlOutput, Sandbox, chown_tree, is_root};
use nix::sys::signal::Signal;

fn new_session(sandbox: &Sandbox, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["sessions", "new", "--json"];
    full.extend_from_slice(args);
    sandbox.ctl(&full).assert_ok().json()
}

fn output_log(session: &serde_json::Value) -> PathBuf {
    PathBuf::from(session["pane_dir"].as_str().expect("pane_dir")).join("output.log")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn exact_output_reaches_the_log_and_tail() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    // Raw mode first, so the bytes are exactly what printf wrote (no \n → \r\n translation).
    let s = new_session(
        &sandbox,
        &[
            "--",
            "sh",
            "-c",
            "stty raw -echo; printf 'a\\001b\\377c\\n'; printf 'end'",
        ],
    );
    let id = s["id"].as_str().unwrap();
    let wait = sandbox.ctl(&["sessions", "wait", id]);
    assert_eq!(wait.code, Some(0), "{wait:?}");
    let log = std::fs::read(output_log(&s)).unwrap();
    assert_eq!(log, b"a\x01b\xffc\nend");
    let tail = sandbox.ctl(&["sessions", "tail", id]);
    tail.assert_ok();
    assert_eq!(
        tail.stdout.as_bytes(),
        String::from_utf8_lossy(&log).as_bytes()
    );
    let from = sandbox.ctl(&["sessions", "tail", id, "--from", "4"]);
    assert_eq!(
        from.stdout.as_bytes(),
        String::from_utf8_lossy(&log[4..]).as_bytes()
    );
}

#[test]
fn tail_follow_streams_until_the_end_and_exits_with_its_status() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    let s = new_session(
        &sandbox,
        &[
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line$i; sleep 0.1; done; exit 3",
        ],
    );
    let out = sandbox.ctl(&["sessions", "tail", s["id"].as_str().unwrap(), "--follow"]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.stdout, "line1\r\nline2\r\nline3\r\nline4\r\nline5\r\n");
    let shown = sandbox
        .ctl(&["sessions", "show", s["id"].as_str().unwrap(), "--json"])
        .assert_ok()
        .json();
    assert_eq!(shown["state"], "exited");
    assert_eq!(shown["exit"]["code"], 3);
}

#[test]
fn input_and_resize_reach_the_program() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    let s = new_session(
        &sandbox,
        &[
            "--size",
            "100x30",
            "--",
            "sh",
            "-c",
            "stty size; read line; echo got:$line; trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done",
        ],
    );
    let id = s["id"].as_str().unwrap();
    let log = output_log(&s);
    wait_file(&log, Duration::from_secs(10), |b| contains(b, b"30 100"));
    sandbox
        .ctl(&["sessions", "send", id, "hello world", "--enter"])
        .assert_ok();
    wait_file(&log, Duration::from_secs(10), |b| {
        contains(b, b"got:hello world") && contains(b, b"ready")
    });
    sandbox
        .ctl(&["sessions", "resize", id, "90x20"])
        .assert_ok();
    wait_file(&log, Duration::from_secs(10), |b| contains(b, b"20 90"));
    let shown = sandbox
        .ctl(&["sessions", "show", id, "--json"])
        .assert_ok()
        .json();
    assert_eq!(
        (shown["cols"].as_u64(), shown["rows"].as_u64()),
        (Some(90), Some(20))
    );
    sandbox
        .ctl(&["sessions", "kill", id, "--grace", "1"])
        .assert_ok();
}

#[test]
fn kill_reaches_the_whole_group_and_ignore_missing_succeeds() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    let s = new_session(
        &sandbox,
        &[
            "--name",
            "grp",
            "--",
            "sh",
            "-c",
            "sleep 1000 & echo $! > child.pid; wait",
        ],
    );
    let pane = PathBuf::from(s["pane_dir"].as_str().unwrap());
    let _ = pane;
    let child_pid_file = PathBuf::from(s["cwd"].as_str().unwrap()).join("child.pid");
    let bytes = wait_file(&child_pid_file, Duration::from_secs(10), |b| {
        b.ends_with(b"\n")
    });
    let child: i32 = String::from_utf8_lossy(&bytes).trim().parse().unwrap();
    let killed = sandbox
        .ctl(&["sessions", "kill", "grp", "--json"])
        .assert_ok()
        .json();
    assert_eq!(killed["state"], "exited");
    assert!(
        killed["exit"]["signal"].is_number() || killed["exit"]["code"].is_number(),
        "{killed}"
    );
    // The background sleep was in the group too.
    wait_until(
        &format!("the group's background child {child} to end after the kill"),
        Duration::from_secs(5),
        || has_ended(child as u32),
    );
    let again = sandbox.ctl(&["sessions", "kill", "grp", "--ignore-missing"]);
    assert_eq!(again.code, Some(0), "{again:?}");
    let never = sandbox.ctl(&["sessions", "kill", "no-such-session", "--ignore-missing"]);
    assert_eq!(never.code, Some(0), "{never:?}");
    let strict = sandbox.ctl(&["sessions", "kill", "no-such-session"]);
    assert_eq!(strict.code, Some(4), "{strict:?}");
}

#[test]
fn names_are_unique_among_running_sessions() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    new_session(&sandbox, &["--name", "agent", "--", "sleep", "1000"]);
    let clash = sandbox.ctl(&["sessions", "new", "--name", "agent", "--", "sleep", "1"]);
    assert_eq!(clash.code, Some(1), "{clash:?}");
    assert!(clash.stderr.contains("already named `agent`"), "{clash:?}");
    // The stale-session pattern: kill by name, ignoring a missing one, then start afresh.
    sandbox
        .ctl(&[
            "sessions",
            "kill",
            "agent",
            "--ignore-missing",
            "--grace",
            "1",
        ])
        .assert_ok();
    new_session(&sandbox, &["--name", "agent", "--", "sleep", "1000"]);
    sandbox
        .ctl(&["sessions", "kill", "agent", "--grace", "1"])
        .assert_ok();
}

#[test]
fn a_bad_command_is_a_clear_error_and_leaves_nothing() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    let out = sandbox.ctl(&["sessions", "new", "--", "/nonexistent/program"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("/nonexistent/program"), "{out:?}");
    let list = sandbox
        .ctl(&["sessions", "list", "--json"])
        .assert_ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn sessions_survive_a_daemon_sigkill_with_no_output_lost() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let counter = "i=0; while :; do i=$((i+1)); echo $i; done";
    let sessions: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            new_session(
                &sandbox,
                &["--name", &format!("count{i}"), "--", "sh", "-c", counter],
            )
        })
        .collect();
    let quitter = new_session(&sandbox, &["--", "sh", "-c", "sleep 1; exit 7"]);
    let pids: Vec<u64> = sessions
        .iter()
        .map(|s| s["pid"].as_u64().unwrap())
        .collect();

    daemon.signal(Signal::SIGKILL);
    drop(daemon);
    // The quitter ends while the daemon is down.
    let quitter_exit =
        PathBuf::from(quitter["pane_dir"].as_str().expect("pane_dir")).join(EXIT_FILE);
    wait_until(
        "the quitter's exit to be recorded",
        Duration::from_secs(30),
        || quitter_exit.exists(),
    );
    let _again = sandbox.daemon().log_name("again").start();

    let list = sandbox
        .ctl(&["sessions", "list", "--json"])
        .assert_ok()
        .json();
    let list = list.as_array().unwrap();
    for (s, pid) in sessions.iter().zip(&pids) {
        let now = list
            .iter()
            .find(|x| x["id"] == s["id"])
            .expect("still listed");
        assert_eq!(now["state"], "running", "{now}");
        assert_eq!(
            now["pid"].as_u64(),
            Some(*pid),
            "the same process, not a second start"
        );
    }
    let q = list.iter().find(|x| x["id"] == quitter["id"]).unwrap();
    assert_eq!(q["state"], "exited", "{q}");
    assert_eq!(q["exit"]["code"], 7, "{q}");

    // Stop the counters, then check every number is there once, in order.
    for s in &sessions {
        sandbox
            .ctl(&[
                "sessions",
                "kill",
                s["id"].as_str().unwrap(),
                "--grace",
                "1",
            ])
            .assert_ok();
    }
    for s in &sessions {
        let log = std::fs::read(output_log(s)).unwrap();
        let text = String::from_utf8_lossy(&log);
        let mut expected = 1u64;
        for line in text.split("\r\n") {
            let Ok(n) = line.parse::<u64>() else { continue };
            assert_eq!(
                n, expected,
                "session {}: a gap or repeat at {expected}",
                s["id"]
            );
            expected += 1;
        }
        assert!(
            expected > 100,
            "session {} printed only {expected} numbers",
            s["id"]
        );
    }
}

#[test]
fn unwritable_first_choice_falls_back_to_xdg_and_says_so() {
    let sandbox = Sandbox::new();
    let blocked = sandbox.path().join("blocked");
    std::fs::write(&blocked, "a file, so nothing can be created under it").unwrap();
    let configured = blocked.join("panes");
    sandbox.write_config(&format!(
        "panes_dir = {:?}\n",
        configured.display().to_string()
    ));
    let builder = sandbox.daemon();
    // As root /run/aifactory/panes is always writable; as nobody it is not, like for any user.
    let builder = if is_root() {
        chown_tree(sandbox.path(), 65534, 65534);
        builder.as_user(65534, 65534)
    } else {
        builder
    };
    let _d = builder.start();
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    let xdg = sandbox.path().join("run/aifactory-rmux/panes");
    assert_eq!(status["panes_dir"], xdg.display().to_string(), "{status}");
    let skipped = status["panes_skipped"].as_array().unwrap();
    assert_eq!(skipped[0][0], configured.display().to_string(), "{status}");
    assert!(
        skipped[0][1].as_str().unwrap().contains("cannot create"),
        "{status}"
    );
    let text = sandbox.ctl(&["status"]).assert_ok().stdout.clone();
    assert!(text.contains("fallback"), "{text}");
}

#[test]
fn no_writable_pane_directory_is_a_clear_startup_error() {
    let sandbox = Sandbox::new();
    let blocked = sandbox.path().join("blocked");
    std::fs::write(&blocked, "x").unwrap();
    sandbox.write_config(&format!(
        "panes_dir = {:?}\n",
        blocked.join("panes").display().to_string()
    ));
    let mut builder = sandbox
        .daemon()
        .env("XDG_RUNTIME_DIR", blocked.to_str().unwrap());
    if is_root() {
        chown_tree(sandbox.path(), 65534, 65534);
        builder = builder.as_user(65534, 65534);
    }
    let mut d = builder.spawn();
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("refuses to start");
    assert_eq!(status.code(), Some(1));
    let logs = d.logs();
    assert!(logs.contains("no usable pane directory"), "{logs}");
    assert!(
        logs.contains(&blocked.join("panes").display().to_string()),
        "{logs}"
    );
    assert!(logs.contains("/run/aifactory/panes"), "{logs}");
    assert!(logs.contains("set panes_dir"), "{logs}");
}

#[test]
fn a_pane_root_owned_by_another_uid_is_refused() {
    let sandbox = Sandbox::new();
    // /usr belongs to root: for any other user it is another uid's directory. As root, the
    // daemon runs as nobody so that holds too.
    sandbox.write_config("panes_dir = \"/usr\"\n");
    let mut builder = sandbox.daemon();
    if is_root() {
        chown_tree(sandbox.path(), 65534, 65534);
        builder = builder.as_user(65534, 65534);
    }
    let _d = builder.start();
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_ne!(status["panes_dir"], "/usr");
    let skipped = status["panes_skipped"].as_array().unwrap();
    assert_eq!(skipped[0][0], "/usr");
    assert!(
        skipped[0][1].as_str().unwrap().contains("owned by uid 0"),
        "{status}"
    );
}

#[test]
fn a_start_interrupted_before_it_was_recorded_is_adopted_not_orphaned() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let s = new_session(&sandbox, &["--", "sleep", "1000"]);
    let id = s["id"].as_str().unwrap().to_string();
    daemon.signal(Signal::SIGKILL);
    drop(daemon);
    // As if the daemon had died after starting the monitor but before recording it.
    let db = rusqlite::Connection::open(sandbox.state_dir().join("aifactory.db")).unwrap();
    db.execute(
        "UPDATE sessions SET state = 'starting', pid = NULL, start_time = NULL,
                monitor_pid = NULL, monitor_start_time = NULL WHERE id = ?1",
        [&id],
    )
    .unwrap();
    drop(db);
    let _again = sandbox.daemon().log_name("again").start();
    let now = sandbox
        .ctl(&["sessions", "show", &id, "--json"])
        .assert_ok()
        .json();
    assert_eq!(now["state"], "running", "{now}");
    assert_eq!(
        now["pid"], s["pid"],
        "the program that was started, adopted: {now}"
    );
    sandbox
        .ctl(&["sessions", "kill", &id, "--grace", "1"])
        .assert_ok();
}

#[test]
fn input_the_program_does_not_read_is_refused_and_the_session_stays_usable() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    // Raw mode without echo, so input is neither echoed nor edited. Until the test creates
    // `go`, nothing reads the terminal and its input queue fills up; then `cat` takes
    // everything, so what got through is exactly what the terminal took.
    let s = new_session(
        &sandbox,
        &[
            "--",
            "sh",
            "-c",
            "stty raw -echo; trap 'stty size' WINCH; echo ready; while [ ! -e go ]; do sleep 0.05; done; exec cat > got",
        ],
    );
    let id = s["id"].as_str().unwrap().to_string();
    let log = output_log(&s);
    wait_file(&log, Duration::from_secs(10), |b| contains(b, b"ready"));

    const SENT: usize = 100_000;
    let send = {
        let mut cmd = sandbox.ctl_command(&["sessions", "send", &id, &"x".repeat(SENT)]);
        std::thread::spawn(move || CtlOutput::from(cmd.output().expect("run aifactoryctl")))
    };
    // While that input waits, the session keeps serving: a resize reaches the program and its
    // output reaches the log. The send is under way once its connection is open (beside the
    // one asking).
    wait_until("the send to connect", Duration::from_secs(10), || {
        sandbox.ctl(&["status", "--json"]).assert_ok().json()["connections"]
            .as_u64()
            .is_some_and(|open| open >= 2)
    });
    sandbox
        .ctl(&["sessions", "resize", &id, "77x22"])
        .assert_ok();
    wait_file(&log, Duration::from_secs(5), |b| contains(b, b"22 77"));
    assert!(!send.is_finished(), "the send returned before the resize");

    let refused = send.join().unwrap();
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("not reading") && refused.stderr.contains("10 s"),
        "{refused:?}"
    );
    // The reason says how much the terminal took before it filled up.
    let taken: usize = refused
        .stderr
        .split("took ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {refused:?}"));
    assert!(taken > 0 && taken < SENT, "{refused:?}");
    let shown = sandbox
        .ctl(&["sessions", "show", &id, "--json"])
        .assert_ok()
        .json();
    assert_eq!(shown["state"], "running", "{shown}");

    // Once the program reads, it gets exactly what was taken, nothing of the refused rest,
    // and later input arrives.
    std::fs::write(sandbox.path().join("go"), "").unwrap();
    sandbox
        .ctl(&["sessions", "send", &id, "MARKER"])
        .assert_ok();
    let got = sandbox.path().join("got");
    let bytes = wait_file(&got, Duration::from_secs(10), |b| b.ends_with(b"MARKER"));
    assert_eq!(bytes.len(), taken + "MARKER".len());
    assert!(bytes[..taken].iter().all(|&b| b == b'x'));

    let killed = sandbox
        .ctl(&["sessions", "kill", &id, "--grace", "1", "--json"])
        .assert_ok()
        .json();
    assert_eq!(killed["state"], "exited", "{killed}");
}

/// Copies the daemon (and, with `with_monitor`, its monitor) into a directory of its own in
/// the sandbox; returns the daemon's path.
fn private_binaries(sandbox: &Sandbox, with_monitor: bool) -> PathBuf {
    let dir = sandbox.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let names: &[&str] = if with_monitor {
        &["aifactoryd", "aifactory-pane"]
    } else {
        &["aifactoryd"]
    };
    for name in names {
        // `cp`, so no write descriptor of ours can leak into a concurrent fork (ETXTBSY).
        let copied = std::process::Command::new("cp")
            .arg(aifactory_tests::bin_dir().join(name))
            .arg(dir.join(name))
            .status()
            .unwrap();
        assert!(copied.success());
    }
    dir.join("aifactoryd")
}

#[test]
fn a_missing_or_unusable_monitor_binary_is_a_clear_startup_error() {
    let sandbox = Sandbox::new();
    let daemon = private_binaries(&sandbox, false);
    let monitor = daemon.with_file_name("aifactory-pane");
    let mut d = sandbox.daemon().program(&daemon).spawn();
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("refuses to start");
    assert_eq!(status.code(), Some(1));
    let logs = d.logs();
    assert!(logs.contains(&monitor.display().to_string()), "{logs}");
    assert!(logs.contains("install it beside aifactoryd"), "{logs}");

    std::fs::write(&monitor, "not a program").unwrap();
    let mut d = sandbox.daemon().log_name("again").program(&daemon).spawn();
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("refuses to start");
    assert_eq!(status.code(), Some(1));
    let logs = d.logs();
    assert!(logs.contains("is not an executable file"), "{logs}");
    assert!(logs.contains("chmod 755"), "{logs}");
}

#[test]
fn a_replaced_monitor_binary_is_used_only_after_a_restart() {
    let sandbox = Sandbox::new();
    let daemon_bin = private_binaries(&sandbox, true);
    let monitor_bin = daemon_bin.with_file_name("aifactory-pane");
    let mut daemon = sandbox.daemon().program(&daemon_bin).start();
    let before = new_session(&sandbox, &["--", "sleep", "1000"]);

    // As a package upgrade does: a new file renamed over the old one. This one (`false`, an
    // ELF binary as every monitor is) only fails.
    let replacement = sandbox.path().join("bin/.aifactory-pane.new");
    let copied = std::process::Command::new("cp")
        .arg(find_in_path("false").expect("false is on PATH"))
        .arg(&replacement)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::rename(&replacement, &monitor_bin).unwrap();

    // The running daemon still starts the monitor it opened at startup: the replaced file.
    let during = new_session(&sandbox, &["--", "sh", "-c", "echo started; sleep 1000"]);
    assert_eq!(during["state"], "running", "{during}");
    wait_file(&output_log(&during), Duration::from_secs(10), |b| {
        contains(b, b"started")
    });
    let exe = std::fs::read_link(format!("/proc/{}/exe", during["monitor_pid"])).unwrap();
    assert_eq!(
        exe.to_string_lossy(),
        format!("{} (deleted)", monitor_bin.display()),
        "the monitor runs the file the daemon opened at startup"
    );

    // A restarted daemon takes the new file, keeps the sessions, and says why one fails.
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(20)).is_some());
    let _again = sandbox
        .daemon()
        .log_name("again")
        .program(&daemon_bin)
        .start();
    for s in [&before, &during] {
        let shown = sandbox
            .ctl(&["sessions", "show", s["id"].as_str().unwrap(), "--json"])
            .assert_ok()
            .json();
        assert_eq!(shown["state"], "running", "{shown}");
    }
    let failed = sandbox.ctl(&["sessions", "new", "--", "sleep", "1000"]);
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(
        failed.stderr.contains("did not start (exit status: 1)"),
        "{failed:?}"
    );
    for s in [&before, &during] {
        sandbox
            .ctl(&[
                "sessions",
                "kill",
                s["id"].as_str().unwrap(),
                "--grace",
                "1",
            ])
            .assert_ok();
    }
}

#[test]
fn the_program_gets_exactly_its_environment() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    let s = new_session(
        &sandbox,
        &[
            "--env",
            "FOO=bar",
            "--env",
            "SPACED=a b=c",
            "--",
            "sh",
            "-c",
            "env | sort",
        ],
    );
    let id = s["id"].as_str().unwrap();
    sandbox.ctl(&["sessions", "wait", id]).assert_ok();
    let log =
        String::from_utf8_lossy(&std::fs::read(output_log(&s)).unwrap()).replace("\r\n", "\n");
    let names: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| !["PWD", "SHLVL", "_"].contains(k))
        .collect();
    // The daemon's own variables (XDG_RUNTIME_DIR, NOTIFY_SOCKET, ...) stay out; the base set
    // the harness gives the daemon (PATH, HOME) and TERM come in, then the session's own, and
    // the mark that tells the session's processes wherever they go.
    assert_eq!(
        names,
        [
            "AIFACTORY_SESSION_DB",
            "AIFACTORY_SESSION_ID",
            "FOO",
            "HOME",
            "PATH",
            "SPACED",
            "TERM"
        ],
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "\nAIFACTORY_SESSION_ID={}\n",
            s["id"].as_str().unwrap()
        )),
        "{log}"
    );
    assert!(log.contains("\nSPACED=a b=c\n"), "{log}");
    assert!(log.contains("\nTERM=xterm-256color\n"), "{log}");
}

#[tokio::test]
async fn a_nul_byte_in_the_command_or_environment_is_refused() {
    use aifactory_common::protocol::{Request, SessionSpec};
    let sandbox = Sandbox::new();
    let d = sandbox.daemon().start();
    let client = d.client().await;
    let spec = |command: &str, value: &str| SessionSpec {
        name: None,
        command: vec!["sh".into(), "-c".into(), command.into()],
        cwd: sandbox.path().to_path_buf(),
        env: vec![("X".into(), value.into())],
        cols: None,
        rows: None,
    };
    for (command, value, needle) in [
        ("true\0x", "1", "command argument"),
        ("true", "a\0b", "value of X"),
    ] {
        let refused = client
            .request(Request::SessionNew(spec(command, value)))
            .await
            .expect_err("a NUL byte was accepted");
        let text = refused.to_string();
        assert!(text.contains("NUL byte") && text.contains(needle), "{text}");
    }
    let list = sandbox
        .ctl(&["sessions", "list", "--json"])
        .assert_ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn a_restart_with_another_panes_root_keeps_the_sessions_where_they_live() {
    let sandbox = Sandbox::new();
    let first_root = sandbox.path().join("panes-a");
    let second_root = sandbox.path().join("panes-b");
    sandbox.write_config(&format!("panes_dir = {:?}\n", first_root.to_str().unwrap()));
    let mut daemon = sandbox.daemon().start();
    let old = new_session(&sandbox, &["--", "sleep", "900"]);
    let pid = old["pid"].as_u64().unwrap() as u32;
    assert!(
        old["pane_dir"]
            .as_str()
            .unwrap()
            .starts_with(first_root.to_str().unwrap())
    );
    daemon.signal(Signal::SIGTERM);
    daemon
        .wait_exit(Duration::from_secs(30))
        .expect("the daemon stops");
    drop(daemon);

    sandbox.write_config(&format!(
        "panes_dir = {:?}\n",
        second_root.to_str().unwrap()
    ));
    let _again = sandbox.daemon().log_name("again").start();
    // Re-adopted from where it lives, and watched there: still running, the same process.
    let seen = sandbox
        .ctl(&["sessions", "show", old["id"].as_str().unwrap(), "--json"])
        .assert_ok()
        .json();
    assert_eq!(seen["state"], "running", "{seen:#}");
    assert!(!has_ended(pid), "its program was killed");
    assert_eq!(seen["pane_dir"], old["pane_dir"]);
    // New sessions go to the new root.
    let new = new_session(&sandbox, &["--", "sleep", "900"]);
    assert!(
        new["pane_dir"]
            .as_str()
            .unwrap()
            .starts_with(second_root.to_str().unwrap())
    );
    // And the old one ends as it should, seen where it lives: exited (by the kill's signal),
    // not lost (a watcher looking in the new root finds no monitor and records it lost).
    sandbox
        .ctl(&["sessions", "kill", old["id"].as_str().unwrap()])
        .assert_ok();
    let ended = sandbox
        .ctl(&["sessions", "wait", old["id"].as_str().unwrap(), "--json"])
        .json();
    assert_eq!(ended["state"], "exited", "{ended:#}");
    // Sessions outlive their daemon by design: end the new one too, so nothing is left running.
    sandbox
        .ctl(&["sessions", "kill", new["id"].as_str().unwrap()])
        .assert_ok();
}

#[test]
fn cwd_is_stored_without_dot_dot_and_one_that_cannot_be_read_lexically_is_refused() {
    let sandbox = Sandbox::new();
    let _d = sandbox.daemon().start();
    let base = sandbox.path().join("work");
    std::fs::create_dir_all(base.join("a/b")).unwrap();
    std::fs::create_dir_all(base.join("c")).unwrap();
    let s = new_session(
        &sandbox,
        &[
            "--cwd",
            &format!("{}/a/./b/../../c/", base.display()),
            "--",
            "sleep",
            "300",
        ],
    );
    assert_eq!(s["cwd"], base.join("c").to_str().unwrap(), "{s}");
    let shown = sandbox
        .ctl(&["sessions", "show", s["id"].as_str().unwrap(), "--json"])
        .assert_ok()
        .json();
    assert_eq!(shown["cwd"], base.join("c").to_str().unwrap(), "{shown}");

    // `..` after a symbolic link leaves the link's target, not the directory the path names:
    // the two readings disagree, so the path is refused with both.
    std::os::unix::fs::symlink(base.join("a/b"), base.join("link")).unwrap();
    let through = format!("{}/link/..", base.display());
    let refused = sandbox.ctl(&["sessions", "new", "--cwd", &through, "--", "true"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("symbolic link")
            && refused.stderr.contains(base.join("a").to_str().unwrap())
            && refused.stderr.contains(&through),
        "{refused:?}"
    );
    // `..` after a directory that does not exist cannot be resolved at all.
    let missing = format!("{}/nothing/../c", base.display());
    let refused = sandbox.ctl(&["sessions", "new", "--cwd", &missing, "--", "true"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains(&missing) && refused.stderr.contains("does not exist"),
        "{refused:?}"
    );
}
