//! The harness itself: a test process that dies without unwinding still leaves no session
//! running behind it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aifactory_common::procfs;
use aifactory_tests::Sandbox;
use aifactory_tests::process::has_ended;

const HELPER: &str = "killed_test_process_helper";

/// Run by [`a_killed_test_process_leaves_no_session_behind`] as a child process: starts a
/// daemon and a session, prints what the parent needs, then waits to be killed.
#[test]
#[ignore = "a helper that runs only as a child of a_killed_test_process_leaves_no_session_behind"]
fn killed_test_process_helper() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let s = sandbox
        .ctl(&["sessions", "new", "--json", "--", "sleep", "1000"])
        .assert_ok()
        .json();
    println!(
        "READY {} {} {} {}",
        daemon.pid(),
        s["pid"],
        s["monitor_pid"],
        sandbox.path().display()
    );
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_test_process_leaves_no_session_behind() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            HELPER,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // libtest prints `test NAME ... ` before the helper's own line.
    while !line.contains("READY ") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the helper ended before it was ready"
        );
    }
    let line = line[line.find("READY ").unwrap()..].to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let pids: Vec<u32> = fields[1..4].iter().map(|f| f.parse().unwrap()).collect();
    let starts: Vec<Option<u64>> = pids.iter().map(|p| procfs::start_time(*p).ok()).collect();
    assert!(starts.iter().all(Option::is_some), "{line}");
    // As `timeout` or a hung test's Ctrl-C would, without unwinding.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alive: Vec<u32> = pids
            .iter()
            .zip(&starts)
            .filter(|(pid, start)| procfs::start_time(**pid).ok() == **start && !has_ended(**pid))
            .map(|(pid, _)| *pid)
            .collect();
        if alive.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for pid in &alive {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            panic!(
                "still running after the test process died (daemon, program, monitor = {line}): {alive:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(fields[4]);
}
