//! Tasks and agent supervision end to end: real git worktrees, agents in real rmux sessions,
//! progress files watched with inotify, hang detection, whole-tree stops and restart policies,
//! driven through aifactoryctl and the protocol client.
//!
//! One file past 600 lines on purpose: it is one feature's end-to-end suite, built as one test
//! binary; what its tests share beyond this file lives in the harness (`tests/src`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aifactory_common::Client;
use aifactory_common::Subscription;
use aifactory_common::protocol::{Event, EventKind, Reply, Request, StreamItem, TaskPhase};
use aifactory_tests::git::{committed_repo, git};
use aifactory_tests::process::has_ended;
use aifactory_tests::wait::{wait_for, wait_until};
use aifactory_tests::{Daemon, Sandbox};
use nix::sys::signal::Signal;

/// How long an event may take on a loaded machine (a liveness bound, not a speed target).
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A git repository with one commit on `main`, registered as project `name`.
fn project(sandbox: &Sandbox, name: &str) -> PathBuf {
    let path = committed_repo(&sandbox.path().join(name));
    sandbox
        .ctl(&["projects", "add", path.to_str().unwrap(), "--name", name])
        .assert_ok();
    path
}

/// An executable shell script in the sandbox.
fn script(sandbox: &Sandbox, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = sandbox.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A config with one custom agent profile `fake` (the default) running `command`.
fn fake_agent_config(sandbox: &Sandbox, top: &str, command: &[&str], extra: &str) {
    let command: Vec<String> = command.iter().map(|a| format!("{a:?}")).collect();
    sandbox.write_config(&format!(
        "default_agent = \"fake\"\n{top}\n[agents.fake]\nkind = \"custom\"\ncommand = [{}]\n{extra}\n",
        command.join(", ")
    ));
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

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

async fn subscribe(daemon: &Daemon, after: Option<u64>) -> (Client, Subscription) {
    let client = daemon.client().await;
    let sub = client
        .subscribe(Request::SubscribeEvents { after })
        .await
        .expect("subscribe");
    (client, sub)
}

/// The next event of `task` that `pred` accepts; earlier ones are returned too, in order.
async fn until(
    sub: &mut Subscription,
    task: &str,
    what: &str,
    pred: impl Fn(&EventKind) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let item = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} event within {EVENT_TIMEOUT:?}; saw {seen:#?}"))
            .expect("event stream ended");
        if let StreamItem::Event(event) = item {
            let about_task = event.kind.task_id() == Some(task);
            let hit = about_task && pred(&event.kind);
            if about_task {
                seen.push(event);
            }
            if hit {
                return seen;
            }
        }
    }
}

fn phase_to(to: TaskPhase) -> impl Fn(&EventKind) -> bool {
    move |k| matches!(k, EventKind::TaskPhase { to: t, .. } if *t == to)
}

fn progress_is(percent: u8) -> impl Fn(&EventKind) -> bool {
    move |k| matches!(k, EventKind::TaskProgress { progress, .. } if progress.percent == Some(percent))
}

#[test]
fn create_makes_a_worktree_and_refuses_bad_or_duplicate_specs() {
    let sandbox = Sandbox::new();
    fake_agent_config(&sandbox, "", &["sleep", "300"], "");
    let _d = sandbox.daemon().start();
    let repo = project(&sandbox, "demo");
    let t = create(&sandbox, "001-login");
    assert_eq!(t["phase"], "backlog");
    assert_eq!(t["spec_id"], "001-login");
    assert_eq!(t["title"], "001-login");
    assert!(t["session_id"].is_null());
    let worktree = repo.join(".aifactory/worktrees/tasks/001-login");
    assert_eq!(PathBuf::from(t["worktree"].as_str().unwrap()), worktree);
    assert!(
        worktree.join("README").is_file(),
        "the worktree is checked out"
    );
    assert_eq!(
        git(&["symbolic-ref", "--short", "HEAD"], &worktree),
        "aifactory/001-login"
    );
    assert!(worktree.join(".aifactory/specs/001-login").is_dir());
    // The project's own status stays clean.
    assert_eq!(git(&["status", "--porcelain"], &repo), "");

    let dup = sandbox.ctl(&[
        "tasks",
        "create",
        "--project",
        "demo",
        "--spec",
        "001-login",
    ]);
    assert_eq!(dup.code, Some(1), "{dup:?}");
    assert!(
        dup.stderr
            .contains("already has a task for spec `001-login`"),
        "{dup:?}"
    );
    for bad in ["../x", "A", "-a", "a/b", ""] {
        let spec = format!("--spec={bad}");
        let out = sandbox.ctl(&["tasks", "create", "--project", "demo", &spec]);
        assert_eq!(out.code, Some(1), "{bad}: {out:?}");
        assert!(out.stderr.contains("is not usable"), "{bad}: {out:?}");
    }
    let missing = sandbox.ctl(&["tasks", "create", "--project", "nope", "--spec", "x"]);
    assert_eq!(missing.code, Some(4), "{missing:?}");

    // Remove: the worktree goes only when clean, or with --force; the branch stays.
    std::fs::write(worktree.join("README"), "changed\n").unwrap();
    let refused = sandbox.ctl(&["tasks", "remove", "001-login", "--prune"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("git says"),
        "git's own words: {refused:?}"
    );
    assert!(refused.stderr.contains("--force"), "{refused:?}");
    assert!(worktree.is_dir());
    sandbox
        .ctl(&["tasks", "remove", "001-login", "--prune", "--force"])
        .assert_ok();
    assert!(!worktree.exists());
    git(&["rev-parse", "--verify", "aifactory/001-login"], &repo);
    let list = sandbox.ctl(&["tasks", "list", "--json"]).assert_ok().json();
    assert_eq!(list.as_array().unwrap().len(), 0);
    // The spec can be created again, and continues its branch.
    create(&sandbox, "001-login");
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_lines_arrive_as_events_in_order_and_torn_writes_do_no_harm() {
    let sandbox = Sandbox::new();
    fake_agent_config(&sandbox, "", &["sleep", "300"], "");
    let d = sandbox.daemon().start();
    project(&sandbox, "demo");
    let t = create(&sandbox, "progress");
    let id = t["id"].as_str().unwrap().to_string();
    let file = PathBuf::from(t["progress_file"].as_str().unwrap());
    let (_client, mut sub) = subscribe(&d, None).await;

    let started = sandbox
        .ctl(&["tasks", "start", &id, "--json"])
        .assert_ok()
        .json();
    assert_eq!(started["phase"], "planning");
    assert_eq!(started["attempts"], 1);
    let sid = started["session_id"].as_str().unwrap().to_string();
    until(&mut sub, &id, "planning", phase_to(TaskPhase::Planning)).await;

    append(&file, "phase: coding\nprogress: 40\nsubtask: 3/7\n");
    let seen = until(&mut sub, &id, "progress 40", progress_is(40)).await;
    assert!(
        matches!(
            seen[0].kind,
            EventKind::TaskPhase {
                from: TaskPhase::Planning,
                to: TaskPhase::Coding,
                ..
            }
        ),
        "the phase comes first: {seen:#?}"
    );
    match &seen.last().unwrap().kind {
        EventKind::TaskProgress { progress, .. } => {
            assert_eq!(
                (progress.subtasks_done, progress.subtasks_total),
                (Some(3), Some(7))
            );
        }
        other => panic!("{other:?}"),
    }

    // A torn write: half a line is not read, and nothing is lost.
    append(&file, "progress: 5");
    let now = sandbox.show_task(&id);
    assert_eq!(now["progress"]["percent"], 40);
    append(&file, "0\nwrote the login form\n");
    let seen = until(&mut sub, &id, "progress 50", progress_is(50)).await;
    assert!(
        seen.iter().all(|e| !matches!(e.kind, EventKind::TaskProgress { progress, .. } if progress.percent == Some(5))),
        "the torn value never showed: {seen:#?}"
    );
    match &seen.last().unwrap().kind {
        EventKind::TaskProgress { note, .. } => {
            assert_eq!(note.as_deref(), Some("wrote the login form"));
        }
        other => panic!("{other:?}"),
    }

    // A rewrite (truncate, then write) and a rename onto the file are both seen; values
    // only change when a line says so.
    std::fs::write(&file, "phase: qa\n").unwrap();
    until(&mut sub, &id, "qa", phase_to(TaskPhase::Qa)).await;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, "phase: qa\nprogress: 90\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    until(&mut sub, &id, "progress 90", progress_is(90)).await;

    // A marker in the agent's output moves it too (the terminal echoes what is typed).
    sandbox
        .ctl(&["sessions", "send", &sid, "__EXEC_PHASE__:coding", "--enter"])
        .assert_ok();
    until(&mut sub, &id, "marker coding", phase_to(TaskPhase::Coding)).await;

    let shown = sandbox.show_task(&id);
    assert_eq!(shown["phase"], "coding");
    assert_eq!(shown["progress"]["percent"], 90);
    assert_eq!(shown["progress"]["subtasks_done"], 3);
    assert_eq!(shown["progress"]["subtasks_total"], 7);
    assert_eq!(shown["session_id"], sid.as_str());
    assert!(shown["last_progress_at"].is_string());

    let stop = sandbox
        .ctl(&["tasks", "stop", &id, "--grace", "1", "--json"])
        .assert_ok()
        .json();
    assert_eq!(stop["task"]["phase"], "stopped");
    assert!(stop["survivors"].as_array().unwrap().is_empty());
    let session = sandbox
        .ctl(&["sessions", "show", &sid, "--json"])
        .assert_ok()
        .json();
    assert_eq!(session["state"], "exited");
    let again = sandbox.ctl(&["tasks", "stop", &id]);
    assert_eq!(again.code, Some(1));
    assert!(again.stderr.contains("is not running"), "{again:?}");
}

#[test]
fn bad_profiles_are_refused_with_the_reason_and_the_daemon_keeps_serving() {
    let sandbox = Sandbox::new();
    let gemini = script(&sandbox, "gemini", "exec sleep 300");
    let g = gemini.to_str().unwrap();
    sandbox.write_config(&format!(
        r#"default_agent = "ok"
[agents.ok]
kind = "custom"
command = ["sleep", "300"]
[agents.claude]
kind = "claude-code"
command = ["sleep", "300", "-p"]
[agents.gemini]
kind = "gemini-cli"
command = ["{g}"]
[agents.gemini-eol]
kind = "gemini-cli"
command = ["{g}"]
allow_eol = true
[agents.openai]
kind = "openai-compatible"
command = ["sleep", "300"]
[agents.missing]
kind = "custom"
command = ["no-such-agent-binary"]
[agents.broken]
kind = "custom"
command = "not a list"
"#
    ));
    let _d = sandbox.daemon().start();
    project(&sandbox, "demo");

    let check = sandbox.ctl(&["agents", "check"]);
    assert_eq!(check.code, Some(1), "{check:?}");
    assert!(
        check.stderr.contains("5 of 7 agent profiles cannot run"),
        "{check:?}"
    );
    let agents = sandbox
        .ctl(&["agents", "list", "--json"])
        .assert_ok()
        .json();
    let problems = |name: &str| -> String {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .map(|a| a["problems"].to_string())
            .unwrap_or_else(|| panic!("no agent {name}: {agents}"))
    };
    assert_eq!(problems("ok"), "[]");
    assert_eq!(problems("gemini-eol"), "[]");
    assert!(problems("claude").contains("bypassPermissions"));
    assert!(problems("gemini").contains("end of life on 2026-06-18"));
    assert!(problems("openai").contains("base_url") && problems("openai").contains("api_key_env"));
    assert!(problems("missing").contains("not an executable on aifactoryd's PATH"));
    assert!(problems("broken").contains("cannot be read"));

    for (agent, expected) in [
        ("claude", "Stream closed"),
        ("gemini", "openai-compatible"),
        ("missing", "PATH"),
        ("broken", "cannot be read"),
    ] {
        let spec = format!("spec-{agent}");
        sandbox
            .ctl(&[
                "tasks",
                "create",
                "--project",
                "demo",
                "--spec",
                &spec,
                "--agent",
                agent,
            ])
            .assert_ok();
        let out = sandbox.ctl(&["tasks", "start", &spec]);
        assert_eq!(out.code, Some(1), "{agent}: {out:?}");
        assert!(out.stderr.contains(expected), "{agent}: {out:?}");
        let t = sandbox.show_task(&spec);
        assert_eq!(t["phase"], "backlog", "{agent}");
        assert!(
            t["last_error"].as_str().unwrap().contains(expected),
            "{agent}: {t}"
        );
    }
    sandbox
        .ctl(&[
            "tasks",
            "create",
            "--project",
            "demo",
            "--spec",
            "g",
            "--agent",
            "gemini-eol",
        ])
        .assert_ok();
    let started = sandbox
        .ctl(&["tasks", "start", "g", "--json"])
        .assert_ok()
        .json();
    assert_eq!(started["phase"], "planning");
    sandbox
        .ctl(&["tasks", "stop", "g", "--grace", "1"])
        .assert_ok();
    let unknown = sandbox.ctl(&[
        "tasks",
        "create",
        "--project",
        "demo",
        "--spec",
        "u",
        "--agent",
        "zzz",
    ]);
    assert!(
        unknown.stderr.contains("no agent profile is named `zzz`"),
        "{unknown:?}"
    );
    sandbox.ctl(&["status"]).assert_ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_agent_is_stalled_with_evidence_and_wakes_up() {
    let sandbox = Sandbox::new();
    fake_agent_config(&sandbox, "stall_after = 1", &["sleep", "300"], "");
    let d = sandbox.daemon().start();
    project(&sandbox, "demo");
    let t = create(&sandbox, "quiet");
    let id = t["id"].as_str().unwrap().to_string();
    let (_client, mut sub) = subscribe(&d, None).await;
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    let seen = until(&mut sub, &id, "stalled", |k| {
        matches!(k, EventKind::TaskStalled { .. })
    })
    .await;
    let EventKind::TaskStalled { evidence, .. } = &seen.last().unwrap().kind else {
        unreachable!()
    };
    assert_eq!(evidence.stall_after_s, 1);
    assert!(evidence.pid.is_some());
    assert_eq!(
        evidence.process_state.as_deref(),
        Some("S (sleeping)"),
        "{evidence:?}"
    );
    assert!(evidence.cpu_time_ms.is_some());
    let shown = sandbox.show_task(&id);
    assert_eq!(shown["phase"], "stalled");
    assert_eq!(shown["stall"]["pid"], evidence.pid.unwrap());
    let text = sandbox
        .ctl(&["tasks", "show", &id])
        .assert_ok()
        .stdout
        .clone();
    assert!(text.contains("stalled     since"), "{text}");

    // Life again: back where it was.
    append(
        &PathBuf::from(t["progress_file"].as_str().unwrap()),
        "progress: 10\n",
    );
    let seen = until(&mut sub, &id, "unstalled", phase_to(TaskPhase::Planning)).await;
    assert!(seen.iter().any(|e| matches!(
        &e.kind,
        EventKind::TaskPhase {
            from: TaskPhase::Stalled,
            ..
        }
    )));
    // With stall_after = 1 the watch re-arms at once: on a busy machine the task may already
    // have stalled again, with new evidence. The old evidence must be gone either way.
    let stall = &sandbox.show_task(&id)["stall"];
    assert!(
        stall.is_null() || stall["detected_at"] != evidence.detected_at.as_str(),
        "the first stall's evidence outlived it: {stall}"
    );
    sandbox
        .ctl(&["tasks", "stop", &id, "--grace", "1"])
        .assert_ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_stall_restart_starts_a_new_attempt() {
    let sandbox = Sandbox::new();
    fake_agent_config(
        &sandbox,
        "stall_after = 1",
        &["sleep", "300"],
        "on_stall = \"restart\"\nrestart = \"on-failure\"\nmax_attempts = 2",
    );
    let d = sandbox.daemon().start();
    project(&sandbox, "demo");
    let id = create(&sandbox, "hang")["id"].as_str().unwrap().to_string();
    let (_client, mut sub) = subscribe(&d, None).await;
    let first = sandbox
        .ctl(&["tasks", "start", &id, "--json"])
        .assert_ok()
        .json();
    until(&mut sub, &id, "restart", |k| {
        matches!(
            k,
            EventKind::TaskExited {
                restart_in_ms: Some(_),
                ..
            }
        )
    })
    .await;
    // The second attempt stalls too, and then there are none left.
    until(&mut sub, &id, "failed", phase_to(TaskPhase::Failed)).await;
    let shown = sandbox.show_task(&id);
    assert_eq!(shown["attempts"], 2);
    assert_ne!(shown["session_id"], first["session_id"]);
    let old = sandbox
        .ctl(&[
            "sessions",
            "show",
            first["session_id"].as_str().unwrap(),
            "--json",
        ])
        .assert_ok()
        .json();
    assert_eq!(
        old["state"], "exited",
        "the stalled attempt was stopped: {old}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_for_input_is_noticed() {
    let sandbox = Sandbox::new();
    let agent = script(
        &sandbox,
        "asker",
        "printf 'Apply these changes? (y/n) '; read answer; echo \"got $answer\"; sleep 300",
    );
    fake_agent_config(&sandbox, "", &[agent.to_str().unwrap()], "");
    let d = sandbox.daemon().start();
    project(&sandbox, "demo");
    let id = create(&sandbox, "ask")["id"].as_str().unwrap().to_string();
    let (_client, mut sub) = subscribe(&d, None).await;
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    let seen = until(&mut sub, &id, "waiting input", |k| {
        matches!(k, EventKind::TaskWaitingInput { .. })
    })
    .await;
    let EventKind::TaskWaitingInput { prompt, .. } = &seen.last().unwrap().kind else {
        unreachable!()
    };
    assert_eq!(prompt, "Apply these changes? (y/n)");
    assert_eq!(
        sandbox.show_task(&id)["waiting_input"],
        "Apply these changes? (y/n)"
    );
    let sid = sandbox.show_task(&id)["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    sandbox
        .ctl(&["sessions", "send", &sid, "y", "--enter"])
        .assert_ok();
    wait_until("waiting_input to clear", EVENT_TIMEOUT, || {
        sandbox.show_task(&id)["waiting_input"].is_null()
    });
    sandbox
        .ctl(&["tasks", "stop", &id, "--grace", "1"])
        .assert_ok();
}

/// The prompt patterns are compiled once per config and shared by every runner: a reload must
/// still reach the tasks started after it, and leave a running one with the patterns it
/// started with (settings are read at each attempt).
#[tokio::test(flavor = "multi_thread")]
async fn reloaded_prompt_patterns_apply_to_tasks_started_after_the_reload() {
    let sandbox = Sandbox::new();
    let agent = script(
        &sandbox,
        "custom-prompt",
        "echo 'progress: 1' >> \"$AIFACTORY_PROGRESS_FILE\"; printf 'ready> '; read answer; sleep 300",
    );
    let command = [agent.to_str().unwrap()];
    fake_agent_config(&sandbox, "", &command, "");
    let d = sandbox.daemon().start();
    project(&sandbox, "demo");
    let (_client, mut sub) = subscribe(&d, None).await;
    let before = create(&sandbox, "before")["id"]
        .as_str()
        .unwrap()
        .to_string();
    sandbox.ctl(&["tasks", "start", &before]).assert_ok();
    // Its runner read its settings before it read the progress file.
    until(&mut sub, &before, "progress 1", progress_is(1)).await;

    fake_agent_config(
        &sandbox,
        r#"waiting_input_patterns = ['^ready>\s*$']"#,
        &command,
        "",
    );
    d.signal(Signal::SIGHUP);
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let item = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("no ConfigReloaded event after SIGHUP")
            .expect("event stream ended");
        match item {
            StreamItem::Event(Event {
                kind: EventKind::ConfigReloaded,
                ..
            }) => break,
            StreamItem::Event(Event {
                kind: EventKind::ConfigRejected { reason },
                ..
            }) => panic!("the new config was rejected: {reason}"),
            _ => {}
        }
    }

    let after = create(&sandbox, "after")["id"]
        .as_str()
        .unwrap()
        .to_string();
    sandbox.ctl(&["tasks", "start", &after]).assert_ok();
    let seen = until(&mut sub, &after, "waiting input", |k| {
        matches!(k, EventKind::TaskWaitingInput { .. })
    })
    .await;
    let EventKind::TaskWaitingInput { prompt, .. } = &seen.last().unwrap().kind else {
        unreachable!()
    };
    assert_eq!(prompt, "ready>");
    // The first task printed the same prompt earlier, and its quiet check ran with the default
    // patterns, which do not match it.
    assert!(
        sandbox.show_task(&before)["waiting_input"].is_null(),
        "{}",
        sandbox.show_task(&before)
    );
    for id in [&before, &after] {
        sandbox
            .ctl(&["tasks", "stop", id, "--grace", "1"])
            .assert_ok();
    }
}

#[test]
fn stop_kills_processes_that_escaped_with_setsid_and_a_double_fork() {
    let sandbox = Sandbox::new();
    // In a directory the agent's cage lets it write (the profile's read_write).
    let shared = sandbox.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let pidfile = shared.join("escaped.pid");
    let stubborn_pidfile = shared.join("stubborn.pid");
    let agent = script(
        &sandbox,
        "escaper",
        &format!(
            "( setsid sleep 1000 & echo $! > {p} )\n( trap '' TERM HUP; exec sleep 1001 ) &\necho $! > {q}\nexec sleep 300",
            p = pidfile.display(),
            q = stubborn_pidfile.display()
        ),
    );
    fake_agent_config(
        &sandbox,
        "",
        &[agent.to_str().unwrap()],
        &format!("read_write = [{:?}]", shared.to_str().unwrap()),
    );
    let _d = sandbox.daemon().start();
    project(&sandbox, "demo");
    let id = create(&sandbox, "escape")["id"]
        .as_str()
        .unwrap()
        .to_string();
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    let escaped: u32 = wait_for("the agent to fork", EVENT_TIMEOUT, || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or("no pid in the pid file yet")
    });
    // Once each runs sleep (a fork may not have exec'd yet when its pid is written).
    wait_until("the escaped process to run sleep", EVENT_TIMEOUT, || {
        std::fs::read(format!("/proc/{escaped}/cmdline")).unwrap_or_default()
            == b"sleep\x001000\x00"
    });
    let stubborn: u32 = wait_for("the agent to fork again", EVENT_TIMEOUT, || {
        std::fs::read_to_string(&stubborn_pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or("no pid in the second pid file yet")
    });
    wait_until(
        "the one ignoring SIGTERM to run sleep",
        EVENT_TIMEOUT,
        || {
            std::fs::read(format!("/proc/{stubborn}/cmdline")).unwrap_or_default()
                == b"sleep\x001001\x00"
        },
    );
    assert!(!has_ended(escaped));

    let report = sandbox
        .ctl(&["tasks", "stop", &id, "--grace", "1", "--json"])
        .assert_ok()
        .json();
    let signalled = report["signalled"].as_array().unwrap();
    assert!(
        signalled
            .iter()
            .any(|p| p["pid"] == escaped && p["command"] == "sleep 1000"),
        "the escaped sleep is listed: {report}"
    );
    assert!(
        signalled.iter().any(|p| p["command"] == "sleep 1001"),
        "the one ignoring SIGTERM is listed: {report}"
    );
    assert!(
        report["survivors"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(has_ended(escaped), "the escaped process is gone");
    let left = Command::new("pgrep")
        .args(["-f", "sleep 100[01]"])
        .output()
        .unwrap();
    let left: Vec<u32> = String::from_utf8_lossy(&left.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|pid| !has_ended(*pid))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/environ"))
                .map(|env| env.contains(&id))
                .unwrap_or(false)
        })
        .collect();
    assert!(left.is_empty(), "nothing of the task runs: {left:?}");
    assert_eq!(report["task"]["phase"], "stopped");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_failure_restarts_with_backoff_and_stops_at_the_maximum() {
    let sandbox = Sandbox::new();
    fake_agent_config(
        &sandbox,
        "",
        &["sh", "-c", "echo attempt; exit 3"],
        "restart = \"on-failure\"\nmax_attempts = 3",
    );
    let d = sandbox.daemon().start();
    project(&sandbox, "demo");
    let id = create(&sandbox, "flaky")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_client, mut sub) = subscribe(&d, None).await;
    let started = Instant::now();
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    let seen = until(&mut sub, &id, "failed", phase_to(TaskPhase::Failed)).await;
    let elapsed = started.elapsed();
    let delays: Vec<Option<u64>> = seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskExited {
                restart_in_ms,
                exit,
                ..
            } => {
                assert_eq!(exit.as_ref().and_then(|x| x.code), Some(3));
                Some(*restart_in_ms)
            }
            _ => None,
        })
        .collect();
    assert_eq!(delays, [Some(1000), Some(2000), None], "{seen:#?}");
    assert!(
        elapsed >= Duration::from_secs(3),
        "backoff was waited: {elapsed:?}"
    );
    let shown = sandbox.show_task(&id);
    assert_eq!(shown["attempts"], 3);
    assert!(
        shown["last_error"]
            .as_str()
            .unwrap()
            .contains("attempt 3 of 3"),
        "{shown}"
    );
    // Each attempt had its own session.
    let sessions = sandbox
        .ctl(&["sessions", "list", "--json"])
        .assert_ok()
        .json();
    assert_eq!(sessions.as_array().unwrap().len(), 3);

    // The history keeps every attempt, each with its own session, exit and reason.
    let attempts = sandbox
        .ctl(&["tasks", "attempts", &id, "--json"])
        .assert_ok()
        .json();
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    let listed: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["n"], i + 1, "{a}");
        assert_eq!(a["attempt"], i + 1, "{a}");
        assert_eq!(a["exit"]["code"], 3, "{a}");
        assert!(a["ended_at"].is_string(), "{a}");
        assert!(listed.contains(&a["session_id"].as_str().unwrap()), "{a}");
        let reason = a["reason"].as_str().unwrap();
        if i < 2 {
            assert!(reason.contains("restarting after"), "{a}");
        } else {
            assert!(reason.contains("attempt 3 of 3"), "{a}");
        }
    }
    let text = sandbox
        .ctl(&["tasks", "attempts", &id])
        .assert_ok()
        .stdout
        .clone();
    assert!(text.contains("#3 (attempt 3 of its run)"), "{text}");
    assert!(text.contains("exited 3"), "{text}");

    // A new start begins a new run: its attempts count from 1 again, the history goes on.
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    until(&mut sub, &id, "failed again", phase_to(TaskPhase::Failed)).await;
    let attempts = sandbox
        .ctl(&["tasks", "attempts", &id, "--json"])
        .assert_ok()
        .json();
    let runs: Vec<(u64, u64)> = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["n"].as_u64().unwrap(), a["attempt"].as_u64().unwrap()))
        .collect();
    assert_eq!(runs, [(1, 1), (2, 2), (3, 3), (4, 1), (5, 2), (6, 3)]);
}

#[test]
fn the_end_to_end_fixture_runs_a_task_through_aifactoryctl() {
    let sandbox = Sandbox::new();
    std::fs::create_dir_all("/tmp/aifactory-e2e-fixture").unwrap();
    // No config at all: the built-in `claude` profile, whose command the fixture replaces.
    let d = sandbox
        .daemon()
        .env("AIFACTORY_TEST_AGENT_CMD", "sleep 300")
        .start();
    assert!(
        d.wait_log("AIFACTORY_TEST_AGENT_CMD", Duration::from_secs(5)),
        "the override is logged"
    );
    project(&sandbox, "demo");
    let agents = sandbox
        .ctl(&["agents", "check", "--json"])
        .assert_ok()
        .json();
    assert_eq!(
        agents[0]["effective_command"],
        serde_json::json!(["sh", "-c", "sleep 300"])
    );
    let t = create(&sandbox, "e2e");
    let id = t["id"].as_str().unwrap().to_string();
    let watch = sandbox
        // From the first event: a watcher that subscribes after the start still sees it.
        .ctl_command(&["tasks", "watch", &id, "--after", "0", "--until", "stopped"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = sandbox
        .ctl(&["tasks", "start", &id, "--json"])
        .assert_ok()
        .json();
    assert_eq!(started["phase"], "planning");
    let sid = started["session_id"].as_str().unwrap();
    let session = sandbox
        .ctl(&["sessions", "show", sid, "--json"])
        .assert_ok()
        .json();
    assert_eq!(
        session["command"],
        serde_json::json!(["sh", "-c", "sleep 300"])
    );
    assert_eq!(session["cwd"], t["worktree"]);
    let board = sandbox.ctl(&["tasks", "board"]).assert_ok().stdout.clone();
    assert!(
        board.contains("PLANNING (1)") && board.contains("e2e"),
        "{board}"
    );
    sandbox
        .ctl(&["tasks", "stop", &id, "--grace", "1"])
        .assert_ok();
    let out = watch.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("backlog -> planning"), "{text}");
    assert!(text.contains("planning -> stopped"), "{text}");
    let logs = sandbox.ctl(&["tasks", "logs", &id]);
    assert_eq!(logs.code, Some(0), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_survives_a_daemon_crash_and_events_resume_without_a_gap() {
    let sandbox = Sandbox::new();
    fake_agent_config(&sandbox, "", &["sleep", "300"], "");
    let mut d = sandbox.daemon().start();
    project(&sandbox, "demo");
    let t = create(&sandbox, "durable");
    let id = t["id"].as_str().unwrap().to_string();
    let file = PathBuf::from(t["progress_file"].as_str().unwrap());
    let (client, mut sub) = subscribe(&d, None).await;
    let started = sandbox
        .ctl(&["tasks", "start", &id, "--json"])
        .assert_ok()
        .json();
    append(&file, "progress: 20\n");
    let seen = until(&mut sub, &id, "progress 20", progress_is(20)).await;
    let last_seq = seen.last().unwrap().seq;
    drop(sub);
    drop(client);

    d.signal(Signal::SIGKILL);
    d.wait_exit(Duration::from_secs(10)).expect("daemon died");
    // Written while no daemon runs: seen once it is back.
    append(&file, "progress: 30\n");
    let d = sandbox.daemon().start();
    let shown = sandbox.show_task(&id);
    assert_eq!(shown["phase"], "planning");
    assert_eq!(shown["session_id"], started["session_id"]);
    let session = sandbox
        .ctl(&[
            "sessions",
            "show",
            started["session_id"].as_str().unwrap(),
            "--json",
        ])
        .assert_ok()
        .json();
    assert_eq!(session["state"], "running");

    // Resume from the last number seen: every later event, in order, none twice.
    let (_client, mut sub) = subscribe(&d, Some(last_seq)).await;
    until(&mut sub, &id, "progress 30", progress_is(30)).await;
    append(&file, "progress: 40\n");
    let seen = until(&mut sub, &id, "progress 40", progress_is(40)).await;
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(seqs[0] > last_seq);
    assert_eq!(sandbox.show_task(&id)["progress"]["percent"], 40);

    // A reconnect from before everything replays it all, gapless.
    let client = d.client().await;
    let mut all = client
        .subscribe(Request::SubscribeEvents { after: Some(0) })
        .await
        .unwrap();
    let mut expected = 1;
    let newest = seen.last().unwrap().seq;
    while expected <= newest {
        match tokio::time::timeout(EVENT_TIMEOUT, all.next())
            .await
            .unwrap()
            .unwrap()
        {
            StreamItem::Event(e) => {
                assert_eq!(e.seq, expected, "replay is gapless");
                expected += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    let stopped = client
        .request(Request::TaskStop {
            key: id.clone(),
            grace_ms: 1000,
        })
        .await
        .unwrap();
    assert!(
        matches!(stopped, Reply::TaskStopped(ref r) if r.task.phase == TaskPhase::Stopped),
        "{stopped:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_inotify_progress_is_polled_and_still_arrives() {
    let sandbox = Sandbox::new();
    fake_agent_config(&sandbox, "", &["sleep", "300"], "");
    let d = sandbox
        .daemon()
        .hooked()
        .env("AIFACTORY_TEST_PROGRESS_POLLING", "1")
        .start();
    assert!(d.wait_log("progress files are polled", Duration::from_secs(5)));
    project(&sandbox, "demo");
    let t = create(&sandbox, "polled");
    let id = t["id"].as_str().unwrap().to_string();
    let (_client, mut sub) = subscribe(&d, None).await;
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    append(
        &PathBuf::from(t["progress_file"].as_str().unwrap()),
        "phase: coding\nprogress: 70\n",
    );
    until(&mut sub, &id, "progress 70", progress_is(70)).await;
    assert_eq!(sandbox.show_task(&id)["phase"], "coding");
    sandbox
        .ctl(&["tasks", "stop", &id, "--grace", "1"])
        .assert_ok();
}

#[test]
fn a_project_with_tasks_cannot_be_removed() {
    let sandbox = Sandbox::new();
    fake_agent_config(&sandbox, "", &["sleep", "300"], "");
    let _d = sandbox.daemon().start();
    project(&sandbox, "demo");
    create(&sandbox, "keep");
    let out = sandbox.ctl(&["projects", "remove", "demo"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("still has 1 task(s)"), "{out:?}");
    sandbox.ctl(&["tasks", "remove", "keep"]).assert_ok();
    sandbox.ctl(&["projects", "remove", "demo"]).assert_ok();
}

#[test]
fn a_stall_time_past_any_clock_is_refused_by_name() {
    // The config's: once accepted, and the first `tasks start` panicked ("overflow when adding
    // duration to instant"), leaving the task in planning.
    let sandbox = Sandbox::new();
    fake_agent_config(
        &sandbox,
        "stall_after = 9223372036854775807",
        &["sleep", "300"],
        "",
    );
    let mut d = sandbox.daemon().spawn();
    let status = d
        .wait_exit(EVENT_TIMEOUT)
        .unwrap_or_else(|| panic!("the daemon started with it:\n{}", d.logs()));
    assert!(!status.success());
    let logs = d.logs();
    assert!(
        logs.contains("`stall_after`")
            && logs.contains("1..=2592000")
            && logs.contains(sandbox.config_file().to_str().unwrap()),
        "{logs}"
    );

    // A profile's: the profile is unusable, says why, and the start is refused.
    let sandbox = Sandbox::new();
    fake_agent_config(
        &sandbox,
        "",
        &["sleep", "300"],
        "stall_after = 9223372036854775807",
    );
    let _d = sandbox.daemon().start();
    project(&sandbox, "demo");
    let id = create(&sandbox, "forever")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = sandbox.ctl(&["tasks", "start", &id]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("stall_after") && refused.stderr.contains("1..=2592000"),
        "{refused:?}"
    );
    assert_eq!(sandbox.show_task(&id)["phase"], "backlog");
    sandbox.ctl(&["status"]).assert_ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_reports_done_and_exits_0_ends_as_a_normal_end() {
    let sandbox = Sandbox::new();
    let agent = script(
        &sandbox,
        "done-agent",
        "printf 'working\\n__EXEC_PHASE__:done\\n'; exit 0",
    );
    fake_agent_config(&sandbox, "", &[agent.to_str().unwrap()], "");
    let d = sandbox.daemon().start();
    project(&sandbox, "demo");
    let id = create(&sandbox, "finishes")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_client, mut sub) = subscribe(&d, None).await;
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    until(&mut sub, &id, "done", phase_to(TaskPhase::Done)).await;
    until(&mut sub, &id, "exit", |k| {
        matches!(k, EventKind::TaskExited { .. })
    })
    .await;
    let line = format!("task_id={id}");
    assert!(
        d.wait_log(
            "the agent reported done and then its attempt ended (agent exited 0)",
            EVENT_TIMEOUT
        ),
        "the end is told as such:\n{}",
        d.logs()
    );
    let logs = d.logs();
    let about: Vec<&str> = logs.lines().filter(|l| l.contains(&line)).collect();
    assert!(
        about
            .iter()
            .all(|l| !l.contains("cannot move") && !l.contains(" ERROR ") && !l.contains(" WARN ")),
        "a normal end is logged as one:\n{}",
        about.join("\n")
    );
    assert!(
        about
            .iter()
            .any(|l| l.contains(" INFO ") && l.contains("reported done and then its attempt ended")),
        "{}",
        about.join("\n")
    );
    let shown = sandbox.show_task(&id);
    assert_eq!(shown["phase"], "done");
    assert!(shown["last_error"].is_null(), "{shown}");
}
