//! Each task's agent in its cage (issue 16, the Landlock half), on the real kernel: a test agent
//! tries to escape (the http-token and the rest of the state directory, the database opened
//! for writing, another task's worktree, the real home's `.ssh`, the control socket), and each
//! try must be refused with EACCES or EPERM with nothing changed, while in the same run its
//! own work succeeds (a file and a `git commit` in its worktree, its home and tmp). Then
//! `sandbox = "off"` really turns the cage off, and `required` refuses to start where Landlock
//! is missing (simulated by the test daemon's hook; `best-effort` runs and says so).

use std::path::{Path, PathBuf};
use std::time::Duration;

use aifactory_tests::Sandbox;
use aifactory_tests::bins::bin;
use aifactory_tests::escapes::{
    self, TRIES, Targets, assert_caged, assert_ok, assert_refused, landlock_at_least, report,
};
use aifactory_tests::git::committed_repo;
use aifactory_tests::wait::wait_for;

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

/// Creates a task of project `demo` (`extra`: more `tasks create` arguments); its record.
fn create(sandbox: &Sandbox, spec: &str, extra: &[&str]) -> serde_json::Value {
    sandbox.show_task(&sandbox.create_task("demo", spec, extra))
}

/// Waits until task `id` is in one of `phases`; returns its record.
fn wait_phase(sandbox: &Sandbox, id: &str, phases: &[&str]) -> serde_json::Value {
    wait_for(
        &format!("task {id} in {phases:?}"),
        Duration::from_secs(60),
        || {
            let task = sandbox.show_task(id);
            if phases.iter().any(|p| task["phase"] == *p) {
                Ok(task)
            } else {
                Err(format!("{task:#}"))
            }
        },
    )
}

#[test]
fn a_caged_agent_is_refused_every_escape_and_does_its_own_work() {
    const NAME: &str = "a_caged_agent_is_refused_every_escape_and_does_its_own_work";
    if !landlock_at_least(NAME, 6, "the cage's tests") {
        return;
    }
    let sandbox = Sandbox::new();
    let state = sandbox.state_dir();
    let ctl = bin("aifactoryctl");
    let ctl_dir = ctl.parent().unwrap().to_path_buf();
    let targets = Targets {
        state: state.clone(),
        other_worktree: sandbox
            .path()
            .join("demo/.aifactory/worktrees/tasks/002-other"),
        real_home: sandbox.path().join("home"),
        ctl,
        socket: sandbox.socket(),
    };
    let repo = repo(&sandbox);
    let script = repo.join("agent.sh");
    std::fs::write(&script, escapes::script(&targets)).unwrap();
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
    create(&sandbox, "002-other", &[]);
    let task = create(&sandbox, "001-caged", &[]);
    let id = task["id"].as_str().unwrap();
    let worktree = PathBuf::from(task["worktree"].as_str().unwrap());

    sandbox.ctl(&["tasks", "start", id]).assert_ok();
    let done = wait_phase(&sandbox, id, &["done", "failed"]);
    let report = report(&worktree);
    assert_eq!(done["phase"], "done", "{done:#}\n{report}");

    assert_caged(&report, &targets);

    // Nothing changed where it was refused; its own work is there.
    assert_eq!(
        std::fs::read_to_string(state.join("http-token")).unwrap(),
        "secret-token\n"
    );
    assert!(std::fs::read(state.join("aifactory.db")).unwrap().len() >= db_before);
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
    let task = create(&sandbox, "001-open", &[]);
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
        .hooked()
        .env("AIFACTORY_TEST_LANDLOCK_ABI", "0")
        .start();
    add_project(&sandbox, &repo);
    let strict = create(&sandbox, "001-strict", &[]);
    let refused = sandbox.ctl(&["tasks", "start", strict["id"].as_str().unwrap()]);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(
        refused.stderr.contains("sandbox = \"required\"")
            && refused.stderr.contains("Landlock is unavailable"),
        "{refused:?}"
    );
    let lenient = create(&sandbox, "002-lenient", &["--agent", "lenient"]);
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
    assert!(daemon.logs().contains("simulated by a test hook"));
}

/// `connect_ports` lets the agent reach the listed TCP ports and no other: a real connection
/// to a listener on an allowed port is made (the listener sees it), one to a listener on
/// another port is refused with EACCES before it leaves the machine (that listener sees none).
#[test]
fn connect_ports_lets_the_agent_reach_only_the_listed_ports() {
    const NAME: &str = "connect_ports_lets_the_agent_reach_only_the_listed_ports";
    if !landlock_at_least(NAME, 4, "TCP rules") {
        return;
    }
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let (allowed_port, other_port) = (
        allowed.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    let sandbox = Sandbox::new();
    let repo = repo(&sandbox);
    let script = repo.join("agent.sh");
    let connect = |port: u16| {
        format!(
            "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 10).sendall(b\"hello\")'"
        )
    };
    std::fs::write(
        &script,
        format!(
            "{TRIES}\ntry allowed {}\ntry other {}\n",
            connect(allowed_port),
            connect(other_port)
        ),
    )
    .unwrap();
    config(
        &sandbox,
        &script,
        &format!("connect_ports = [{allowed_port}]"),
    );
    let daemon = sandbox.daemon().start();
    add_project(&sandbox, &repo);
    let task = create(&sandbox, "001-net", &[]);
    let id = task["id"].as_str().unwrap();
    sandbox.ctl(&["tasks", "start", id]).assert_ok();
    let done = wait_phase(&sandbox, id, &["done", "failed"]);
    let report = report(Path::new(task["worktree"].as_str().unwrap()));
    assert_eq!(done["phase"], "done", "{done:#}\n{report}");
    assert_ok(&report, "allowed");
    assert_refused(&report, "other");

    let (mut conn, _) = allowed.accept().unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut conn, &mut got).unwrap();
    assert_eq!(
        got, "hello",
        "the allowed connection carried the agent's bytes"
    );
    assert_eq!(
        other.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "nothing reached the other port"
    );
    assert!(
        daemon
            .logs()
            .contains(&format!("tcp: only to port {allowed_port}")),
        "the start log names the allowed ports: {}",
        daemon.logs()
    );
}
