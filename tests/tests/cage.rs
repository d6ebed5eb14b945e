//! Each task's agent in its cage (issue 16, the Landlock half), on the real kernel: a test agent
//! tries to escape (the http-token and the rest of the state directory, the database opened
//! for writing, another task's worktree, the real home's `.ssh`, the control socket), and each
//! try must be refused with EACCES or EPERM with nothing changed, while in the same run its
//! own work succeeds (a file and a `git commit` in its worktree, its home and tmp). Then
//! `sandbox = "off"` really turns the cage off, and `required` refuses to start where Landlock
//! is missing (simulated by the daemon's test-only switch; `best-effort` runs and says so).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aifactory_tests::bins::bin;
use aifactory_tests::git::committed_repo;
use aifactory_tests::{Sandbox, skip};

/// What this kernel's Landlock answers: its ABI, 0 without it.
fn landlock_abi() -> i64 {
    // SAFETY: a null attribute, size 0 and LANDLOCK_CREATE_RULESET_VERSION create nothing.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    abi.max(0)
}

/// A config with one custom agent profile `caged` (the default) running the shell `script`.
fn config(sandbox: &Sandbox, script: &Path, profile_extra: &str) {
    sandbox.write_config(&format!(
        "default_agent = \"caged\"\n[agents.caged]\nkind = \"custom\"\ncommand = [\"sh\", {:?}]\n{profile_extra}\n",
        script.to_str().unwrap()
    ));
}

/// The project's repository (made before the daemon starts, so the agent's script can live in
/// it: the rest of the project is what a caged agent may read).
fn repo(sandbox: &Sandbox) -> PathBuf {
    committed_repo(&sandbox.path().join("demo"))
}

fn add_project(sandbox: &Sandbox, path: &Path) {
    sandbox
        .ctl(&["projects", "add", path.to_str().unwrap(), "--name", "demo"])
        .assert_ok();
}

fn create(sandbox: &Sandbox, spec: &str) -> serde_json::Value {
    sandbox
        .ctl(&[
            "tasks",
            "create",
            "--project",
            "demo",
            "--spec",
            spec,
            "--json",
        ])
        .assert_ok()
        .json()
}

/// Waits until task `id` is in one of `phases`; returns its record.
fn wait_phase(sandbox: &Sandbox, id: &str, phases: &[&str]) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let task = sandbox
            .ctl(&["tasks", "show", id, "--json"])
            .assert_ok()
            .json();
        if phases.iter().any(|p| task["phase"] == *p) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} never reached {phases:?}: {task:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The agent's report: one line per try, `NAME ok` or `NAME refused: ERROR`.
fn report(worktree: &Path) -> String {
    std::fs::read_to_string(worktree.join("cage-report")).unwrap()
}

fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in the report:\n{report}"))
}

fn assert_refused(report: &str, name: &str) {
    let line = line(report, name);
    assert!(
        line.contains(" refused: ")
            && (line.contains("Permission denied") || line.contains("Operation not permitted")),
        "{name} must be refused with EACCES/EPERM: {line}\n{report}"
    );
}

fn assert_ok(report: &str, name: &str) {
    let line = line(report, name);
    assert!(
        line.ends_with(" ok"),
        "{name} must succeed: {line}\n{report}"
    );
}

/// The agent: each try in a subshell, its outcome and error on one line of ./cage-report.
const TRIES: &str = r#"
out="$PWD/cage-report"
: > "$out"
err="${TMPDIR:-/tmp}/cage-err.$$"
try() { name=$1; shift; if ( "$@" ) >/dev/null 2>"$err"; then echo "$name ok" >> "$out"; else echo "$name refused: $(tr '\n' ' ' < "$err")" >> "$out"; fi; }
"#;

#[test]
fn a_caged_agent_is_refused_every_escape_and_does_its_own_work() {
    const NAME: &str = "a_caged_agent_is_refused_every_escape_and_does_its_own_work";
    if landlock_abi() < 6 {
        return skip(
            NAME,
            &format!(
                "this kernel's Landlock ABI is {} (the cage's tests need 6 or newer)",
                landlock_abi()
            ),
        );
    }
    let sandbox = Sandbox::new();
    let state = sandbox.state_dir();
    let real_home = sandbox.path().join("home");
    let ctl = bin("aifactoryctl");
    let ctl_dir = ctl.parent().unwrap().to_path_buf();
    let other = sandbox
        .path()
        .join("demo/.aifactory/worktrees/tasks/002-other");
    let repo = repo(&sandbox);
    let script = repo.join("agent.sh");
    std::fs::write(
        &script,
        format!(
            r#"{TRIES}
try read-token cat {state}/http-token
try list-state ls {state}
try write-db sh -c ': >> {state}/aifactory.db'
try write-other sh -c 'echo pwned > {other}/pwned'
try write-ssh sh -c 'mkdir -p {home}/.ssh && echo key >> {home}/.ssh/authorized_keys'
try socket {ctl} --socket {socket} status
try own-file sh -c 'echo mine > own-file'
try commit sh -c 'git add own-file && git -c user.name=t -c user.email=t@example.org commit -q -m caged'
try own-home sh -c 'echo state > "$HOME/cli-state" && test "$HOME" != {home}'
try own-tmp sh -c 'echo scratch > "$TMPDIR/scratch"'
try tmp sh -c 'echo x > /tmp/aifactory-cage-test-$$'
"#,
            state = state.display(),
            other = other.display(),
            home = real_home.display(),
            ctl = ctl.display(),
            socket = sandbox.socket().display(),
        ),
    )
    .unwrap();
    // aifactoryctl is readable for the socket's try only: without it the try would be
    // refused by the file rules, not by the daemon.
    config(
        &sandbox,
        &script,
        &format!("read_only = [{:?}]", ctl_dir.to_str().unwrap()),
    );
    let daemon = sandbox.daemon().start();
    add_project(&sandbox, &repo);
    std::fs::write(state.join("http-token"), "secret-token\n").unwrap();
    let db_before = std::fs::read(state.join("aifactory.db")).unwrap().len();
    create(&sandbox, "002-other");
    let task = create(&sandbox, "001-caged");
    let id = task["id"].as_str().unwrap();
    let worktree = PathBuf::from(task["worktree"].as_str().unwrap());

    sandbox.ctl(&["tasks", "start", id]).assert_ok();
    let done = wait_phase(&sandbox, id, &["done", "failed"]);
    let report = report(&worktree);
    assert_eq!(done["phase"], "done", "{done:#}\n{report}");

    for escape in [
        "read-token",
        "list-state",
        "write-db",
        "write-other",
        "write-ssh",
        "tmp",
    ] {
        assert_refused(&report, escape);
    }
    let socket = line(&report, "socket");
    assert!(
        socket.contains(" refused: ") && socket.contains("task session"),
        "the daemon must refuse the agent on its socket: {socket}\n{report}"
    );
    for work in ["own-file", "commit", "own-home", "own-tmp"] {
        assert_ok(&report, work);
    }

    // Nothing changed where it was refused; its own work is there.
    assert_eq!(
        std::fs::read_to_string(state.join("http-token")).unwrap(),
        "secret-token\n"
    );
    assert!(std::fs::read(state.join("aifactory.db")).unwrap().len() >= db_before);
    assert!(!other.join("pwned").exists());
    assert!(!real_home.join(".ssh").exists());
    let log = std::process::Command::new("git")
        .args(["log", "-1", "--format=%s", "aifactory/001-caged"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout).trim(), "caged");
    let cage_home = repo.join(".aifactory/cages").join(id).join("home");
    assert_eq!(
        std::fs::read_to_string(cage_home.join("cli-state")).unwrap(),
        "state\n"
    );
    // The start says what the cage is, in the log and in the start event.
    assert!(
        daemon.wait_log("confined by Landlock ABI", Duration::from_secs(5)),
        "{}",
        daemon.logs()
    );
    assert!(
        daemon.logs().contains("refused a connection"),
        "the socket's refusal is logged"
    );
}

#[test]
fn sandbox_off_really_turns_the_cage_off() {
    let sandbox = Sandbox::new();
    let state = sandbox.state_dir();
    let repo = repo(&sandbox);
    let script = repo.join("agent.sh");
    std::fs::write(
        &script,
        format!(
            "{TRIES}\ntry read-state cat {state}/canary\ntry real-home test \"$HOME\" = {home}\n",
            state = state.display(),
            home = sandbox.path().join("home").display()
        ),
    )
    .unwrap();
    config(&sandbox, &script, "sandbox = \"off\"");
    let _daemon = sandbox.daemon().start();
    add_project(&sandbox, &repo);
    std::fs::write(state.join("canary"), "visible\n").unwrap();
    let task = create(&sandbox, "001-open");
    let id = task["id"].as_str().unwrap();
    sandbox.ctl(&["tasks", "start", id]).assert_ok();
    let done = wait_phase(&sandbox, id, &["done", "failed"]);
    let report = report(Path::new(task["worktree"].as_str().unwrap()));
    assert_eq!(done["phase"], "done", "{done:#}\n{report}");
    assert_ok(&report, "read-state");
    assert_ok(&report, "real-home");
}

#[test]
fn without_landlock_required_refuses_to_start_and_best_effort_runs_unconfined() {
    let sandbox = Sandbox::new();
    let repo = repo(&sandbox);
    let script = repo.join("agent.sh");
    std::fs::write(&script, "exit 0\n").unwrap();
    sandbox.write_config(&format!(
        "default_agent = \"strict\"\n\
         [agents.strict]\nkind = \"custom\"\ncommand = [\"sh\", {s:?}]\nsandbox = \"required\"\n\
         [agents.lenient]\nkind = \"custom\"\ncommand = [\"sh\", {s:?}]\nsandbox = \"best-effort\"\n",
        s = script.to_str().unwrap()
    ));
    let daemon = sandbox
        .daemon()
        .env("AIFACTORY_TEST_LANDLOCK_ABI", "0")
        .start();
    add_project(&sandbox, &repo);
    let strict = create(&sandbox, "001-strict");
    let refused = sandbox.ctl(&["tasks", "start", strict["id"].as_str().unwrap()]);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(
        refused.stderr.contains("sandbox = \"required\"")
            && refused.stderr.contains("Landlock is unavailable"),
        "{refused:?}"
    );
    let lenient = sandbox
        .ctl(&[
            "tasks",
            "create",
            "--project",
            "demo",
            "--spec",
            "002-lenient",
            "--agent",
            "lenient",
            "--json",
        ])
        .assert_ok()
        .json();
    let id = lenient["id"].as_str().unwrap();
    sandbox.ctl(&["tasks", "start", id]).assert_ok();
    assert_eq!(
        wait_phase(&sandbox, id, &["done", "failed"])["phase"],
        "done"
    );
    assert!(
        daemon.wait_log(
            "NOT confined: Landlock is unavailable",
            Duration::from_secs(5)
        ),
        "{}",
        daemon.logs()
    );
    assert!(daemon.logs().contains("AIFACTORY_TEST_LANDLOCK_ABI"));
}
