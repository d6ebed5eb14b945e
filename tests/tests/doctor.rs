//! `aifactoryctl doctor`: each failure of the troubleshooting guide reproduced for real, and
//! the one check that must report it, with a fix.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use aifactory_common::diagnose::{Check, CheckStatus};
use aifactory_tests::git::{git, init_repo};
use aifactory_tests::nobody::nobody;
use aifactory_tests::process::has_ended;
use aifactory_tests::wait::wait_until;
use aifactory_tests::{CTL_TIMEOUT, CtlOutput, Sandbox, chown_tree, migrate_lock, output_within};
use nix::sys::signal::Signal;

fn doctor(sandbox: &Sandbox, extra: &[&str]) -> (Option<i32>, Vec<Check>) {
    // Nothing listens on port 9 (discard) on loopback here: the shim is "not running".
    let mut args = vec!["doctor", "--json"];
    if !extra.contains(&"--http") {
        args.extend_from_slice(&["--http", "127.0.0.1:9"]);
    }
    args.extend_from_slice(extra);
    let out = sandbox.ctl(&args);
    let checks: Vec<Check> = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not a list of checks ({e}): {out:?}"));
    (out.code, checks)
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
}

/// `name` is `status` with a fix; every other check that is not about the shim is OK (the shim
/// does not run unless the test starts it: its checks warn or are skipped).
fn only(checks: &[Check], name: &str, status: CheckStatus) -> Check {
    let found = find(checks, name).clone();
    assert_eq!(found.status, status, "{found:#?}");
    assert!(
        found.fix.as_deref().is_some_and(|f| !f.is_empty()),
        "a {status:?} comes with a fix: {found:#?}"
    );
    for c in checks {
        if c.check != name && !c.check.starts_with("http-") && c.check != "console-auth" {
            assert_eq!(c.status, CheckStatus::Ok, "only {name} is not OK: {c:#?}");
        }
    }
    found
}

fn repo(sandbox: &Sandbox, name: &str, origin: &str) -> std::path::PathBuf {
    init_repo(&sandbox.path().join(name), "main", Some(origin))
}

/// A config whose only agent can run here.
const GOOD_AGENT: &str =
    "default_agent = \"ok\"\n[agents.ok]\nkind = \"custom\"\ncommand = [\"sleep\", \"300\"]\n";

#[test]
fn a_headless_claude_without_bypass_permissions_fails_agent_profiles() {
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "default_agent = \"claude\"\n[agents.claude]\nkind = \"claude-code\"\ncommand = [\"sleep\", \"-p\"]\n",
    );
    let _d = sandbox.daemon().start();
    let (code, checks) = doctor(&sandbox, &[]);
    assert_eq!(code, Some(1), "a FAIL exits 1");
    let c = only(&checks, "agent-profiles", CheckStatus::Fail);
    assert!(
        c.message.contains("bypassPermissions") && c.message.contains("Stream closed"),
        "{c:#?}"
    );
    assert!(c.fix.unwrap().contains("[agents.claude]"));
}

#[test]
fn an_unusable_panes_root_is_a_warning_naming_the_fallback() {
    let sandbox = Sandbox::new();
    // Nobody can create a directory in /proc, root included.
    sandbox.write_config(&format!(
        "panes_dir = \"/proc/aifactory-panes\"\n{GOOD_AGENT}"
    ));
    let _d = sandbox.daemon().start();
    let (code, checks) = doctor(&sandbox, &[]);
    assert_eq!(
        code,
        Some(6),
        "a WARN is not a failure; only the console (no shim here) is not checked: {checks:#?}"
    );
    let c = only(&checks, "panes-root", CheckStatus::Warn);
    assert!(c.message.contains("fell back to"), "{c:#?}");
    assert!(c.message.contains("/proc/aifactory-panes"), "{c:#?}");
}

#[test]
fn a_stale_session_from_a_previous_daemon_is_reported() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let mut d = sandbox.daemon().start();
    let s = sandbox
        .ctl(&["sessions", "new", "--json", "--", "sleep", "300"])
        .assert_ok()
        .json();
    let monitor = s["monitor_pid"].as_u64().unwrap() as i32;
    let program = s["pid"].as_u64().unwrap() as i32;
    // The daemon dies, and so does everything of the session, with no record of how.
    d.signal(Signal::SIGKILL);
    d.wait_exit(Duration::from_secs(10)).expect("killed");
    for pid in [monitor, program] {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    wait_until(
        "the session's monitor and program to end",
        Duration::from_secs(10),
        || [monitor, program].iter().all(|&pid| has_ended(pid as u32)),
    );
    let _d = sandbox.daemon().start();
    let (_, checks) = doctor(&sandbox, &[]);
    let c = only(&checks, "stale-sessions", CheckStatus::Warn);
    assert!(c.message.contains(s["id"].as_str().unwrap()), "{c:#?}");
    assert!(c.fix.unwrap().contains("aifactoryctl sessions remove"));
}

#[test]
fn the_old_project_list_read_only_or_not_imported_is_reported() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let _d = sandbox.daemon().start();
    let project = repo(&sandbox, "old", "https://github.com/o/old.git");
    let dir = sandbox.path().join("home/.aifactory");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("projects.json");
    std::fs::write(
        &file,
        format!(
            "[{{\"path\": {:?}, \"name\": \"old\"}}]",
            project.display().to_string()
        ),
    )
    .unwrap();

    let (_, checks) = doctor(&sandbox, &[]);
    let c = only(&checks, "legacy-projects", CheckStatus::Warn);
    assert!(c.message.contains("not registered"), "{c:#?}");
    assert_eq!(
        c.fix.as_deref(),
        Some("aifactoryctl projects import-legacy")
    );

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let (_, checks) = doctor(&sandbox, &[]);
    let c = only(&checks, "legacy-projects", CheckStatus::Warn);
    assert!(
        c.message.contains("mode 0444") && c.message.contains("Project not found"),
        "{c:#?}"
    );
    assert!(c.fix.unwrap().contains("chmod u+w"));

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    sandbox.ctl(&["projects", "import-legacy"]).assert_ok();
    let (_, checks) = doctor(&sandbox, &[]);
    assert_eq!(find(&checks, "legacy-projects").status, CheckStatus::Ok);
}

#[test]
fn a_provider_set_by_hand_against_the_origin_is_reported() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let _d = sandbox.daemon().start();
    let path = repo(&sandbox, "lab", "https://github.com/org/lab.git");
    sandbox
        .ctl(&[
            "projects",
            "add",
            path.to_str().unwrap(),
            "--provider",
            "gitlab",
        ])
        .assert_ok();
    let (_, checks) = doctor(&sandbox, &[]);
    let c = only(&checks, "pr-providers", CheckStatus::Warn);
    assert!(
        c.message.contains("set by hand to gitlab") && c.message.contains("says github"),
        "{c:#?}"
    );
}

#[test]
fn a_gemini_profile_past_its_end_of_life_fails_deprecated_providers() {
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "default_agent = \"g\"\n[agents.g]\nkind = \"gemini-cli\"\ncommand = [\"sleep\", \"300\"]\n",
    );
    let _d = sandbox.daemon().start();
    let (code, checks) = doctor(&sandbox, &[]);
    assert_eq!(code, Some(1));
    let c = only(&checks, "deprecated-providers", CheckStatus::Fail);
    assert!(c.message.contains("2026-06-18"), "{c:#?}");
    assert!(c.fix.unwrap().contains("openai-compatible"));
}

#[test]
fn a_leftover_test_agent_command_is_a_warning() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let _d = sandbox
        .daemon()
        .env("AIFACTORY_TEST_AGENT_CMD", "sleep 300")
        .start();
    let (_, checks) = doctor(&sandbox, &[]);
    let c = only(&checks, "test-fixtures", CheckStatus::Warn);
    assert!(
        c.message.contains("AIFACTORY_TEST_AGENT_CMD") && c.message.contains("sleep 300"),
        "{c:#?}"
    );
}

#[test]
fn a_pending_migration_and_a_held_lock_are_reported_without_a_daemon() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    // A database one migration behind: what an upgrade that did not migrate leaves.
    let known = aifactoryd::migrate::MIGRATIONS;
    let last = &known[known.len() - 1];
    let out = Command::new(aifactory_tests::bin(aifactory_tests::HOOKED_DAEMON))
        .env(
            "AIFACTORY_TEST_MIGRATION_LIMIT",
            (known.len() - 1).to_string(),
        )
        .arg("--state-dir")
        .arg(sandbox.state_dir())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let _lock = migrate_lock::hold(&sandbox);
    let state = sandbox.state_dir();
    let config = sandbox.config_file();
    let (code, checks) = doctor(
        &sandbox,
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "the daemon is down: {checks:#?}");
    let c = find(&checks, "migrations");
    assert_eq!(c.status, CheckStatus::Warn, "{c:#?}");
    assert!(
        c.message
            .contains(&format!("pending: {:04}_{}", last.version, last.name)),
        "{c:#?}"
    );
    assert!(
        c.message
            .contains(&format!("held by pid {} on test-host", std::process::id())),
        "{c:#?}"
    );
    assert!(c.fix.as_deref().unwrap().contains("kill"), "{c:#?}");
    assert_eq!(find(&checks, "daemon").status, CheckStatus::Fail);
    // What could be checked without the daemon was.
    assert_eq!(find(&checks, "agent-profiles").status, CheckStatus::Ok);
    assert_eq!(find(&checks, "state-dir").status, CheckStatus::Ok);
}

#[test]
fn a_task_stuck_without_output_or_progress_fails_tasks_stuck_with_its_evidence() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&format!("stall_after = 1\n{GOOD_AGENT}"));
    let _d = sandbox.daemon().start();
    let path = repo(&sandbox, "demo", "https://github.com/o/demo.git");
    std::fs::write(path.join("f"), "x").unwrap();
    git(&["add", "f"], &path);
    git(&["commit", "-q", "-m", "init"], &path);
    sandbox
        .ctl(&["projects", "add", path.to_str().unwrap()])
        .assert_ok();
    sandbox
        .ctl(&["tasks", "create", "--project", "demo", "--spec", "stuck"])
        .assert_ok();
    sandbox.ctl(&["tasks", "start", "stuck"]).assert_ok();
    wait_until("the task to stall", Duration::from_secs(20), || {
        sandbox.ctl(&["tasks", "show", "stuck", "--json"]).json()["phase"] == "stalled"
    });
    let (code, checks) = doctor(&sandbox, &[]);
    assert_eq!(code, Some(1));
    let c = only(&checks, "tasks-stuck", CheckStatus::Fail);
    assert!(
        c.message.contains("is stalled since") && c.message.contains("S (sleeping)"),
        "{c:#?}"
    );
    assert!(c.fix.unwrap().contains("aifactoryctl tasks logs"));
    sandbox
        .ctl(&["tasks", "stop", "stuck", "--grace", "1"])
        .assert_ok();
}

#[test]
fn a_healthy_setup_with_the_shim_reports_every_check_ok() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let _d = sandbox.daemon().start();
    let http = sandbox.http().start();
    let addr = http.base.trim_start_matches("http://").to_string();
    let path = repo(&sandbox, "app", "https://gitlab.com/org/app.git");
    sandbox
        .ctl(&["projects", "add", path.to_str().unwrap()])
        .assert_ok();
    let out = sandbox.ctl(&["doctor", "--json", "--http", &addr]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let checks: Vec<Check> = serde_json::from_str(&out.stdout).unwrap();
    assert!(checks.len() >= 17, "{checks:#?}");
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Ok, "{c:#?}");
        assert!(c.fix.is_none(), "{c:#?}");
    }
    let auth = find(&checks, "console-auth");
    assert!(
        auth.message.contains("refused (401)") && auth.message.contains("let through"),
        "{auth:#?}"
    );
    let text = sandbox
        .ctl(&["doctor", "--http", &addr])
        .assert_ok()
        .stdout
        .clone();
    let (summary, lines) = text
        .trim_end()
        .rsplit_once('\n')
        .map(|(l, s)| (s, l))
        .unwrap();
    assert!(lines.lines().all(|l| l.starts_with("OK ")), "{text}");
    assert_eq!(summary, format!("summary: all {} checks OK", checks.len()));
}

#[test]
fn a_shim_that_is_down_or_a_token_file_others_can_read_is_reported() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let _d = sandbox.daemon().start();
    let http = sandbox.http().start();
    let addr = http.base.trim_start_matches("http://").to_string();
    drop(http);
    let (_, checks) = doctor(&sandbox, &["--http", &addr]);
    let shim = find(&checks, "http-shim");
    assert_eq!(shim.status, CheckStatus::Warn, "{shim:#?}");
    assert!(shim.fix.as_deref().unwrap().contains("aifactory-http"));
    let token = sandbox.state_dir().join("http-token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, checks) = doctor(&sandbox, &["--http", &addr]);
    assert_eq!(code, Some(1));
    let c = find(&checks, "http-token");
    assert_eq!(c.status, CheckStatus::Fail, "{c:#?}");
    assert_eq!(
        c.fix.as_deref(),
        Some(format!("chmod 0600 {}", token.display()).as_str())
    );
}

#[test]
fn a_monitor_without_a_record_is_a_failure() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let mut d = sandbox.daemon().start();
    let s = sandbox
        .ctl(&["sessions", "new", "--json", "--", "sleep", "300"])
        .assert_ok()
        .json();
    let id = s["id"].as_str().unwrap().to_string();
    d.signal(Signal::SIGKILL);
    d.wait_exit(Duration::from_secs(10)).expect("killed");
    // The record is gone (a database restored from a backup, say); the monitor runs on.
    rusqlite::Connection::open(sandbox.state_dir().join("aifactory.db"))
        .unwrap()
        .execute("DELETE FROM sessions WHERE id = ?1", [&id])
        .unwrap();
    let _d = sandbox.daemon().start();
    let (code, checks) = doctor(&sandbox, &[]);
    assert_eq!(code, Some(1));
    let c = find(&checks, "stale-sessions");
    assert_eq!(c.status, CheckStatus::Fail, "{c:#?}");
    assert!(
        c.message.contains(&id) && c.message.contains("does not have"),
        "{c:#?}"
    );
    // Its program carries the session's mark, and no session accounts for it any more.
    let program = s["pid"].as_u64().unwrap() as i32;
    let stray = find(&checks, "stray-processes");
    assert_eq!(stray.status, CheckStatus::Fail, "{stray:#?}");
    assert!(
        stray
            .message
            .contains(&format!("{program} (sleep 300) of session {id}")),
        "{stray:#?}"
    );
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(program), Signal::SIGKILL);
}

/// The doctor's JSON as plain values: a status it does not know yet still reads.
fn doctor_raw(sandbox: &Sandbox, args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = sandbox.ctl(args);
    let checks = out
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("doctor --json is not a list: {out:?}"))
        .clone();
    (out.code, checks)
}

fn raw_find<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
}

#[test]
fn a_check_that_could_not_run_is_skipped_never_ok() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let d = sandbox.daemon().start();
    // The shim does not run: the console's authentication cannot be checked.
    let (code, checks) = doctor_raw(&sandbox, &["doctor", "--json", "--http", "127.0.0.1:9"]);
    let auth = raw_find(&checks, "console-auth");
    assert_eq!(auth["status"], "skip", "{auth:#?}");
    assert!(
        auth["message"]
            .as_str()
            .unwrap()
            .contains("aifactory-http does not answer"),
        "{auth:#?}"
    );
    assert_eq!(
        code,
        Some(6),
        "nothing failed but not everything was checked: {checks:#?}"
    );
    let text = sandbox.ctl(&["doctor", "--http", "127.0.0.1:9"]);
    assert_eq!(text.code, Some(6), "{text:?}");
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("SKIP ") && l.contains("console-auth")),
        "{text:?}"
    );
    let summary = text.stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains("1 not checked") && !summary.contains("all"),
        "the summary counts the skip: {text:?}"
    );

    // Without the daemon, what only the daemon knows is not checked either.
    drop(d);
    let state = sandbox.state_dir();
    let config = sandbox.config_file();
    let (code, checks) = doctor_raw(
        &sandbox,
        &[
            "doctor",
            "--json",
            "--http",
            "127.0.0.1:9",
            "--state-dir",
            state.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "the daemon is down: {checks:#?}");
    assert_eq!(raw_find(&checks, "daemon")["status"], "fail");
    for name in [
        "socket-access",
        "tasks-stuck",
        "stale-sessions",
        "console-auth",
        "project-paths",
        "pr-providers",
    ] {
        let c = raw_find(&checks, name);
        assert_eq!(c["status"], "skip", "{c:#?}");
        assert!(
            c["message"].as_str().unwrap().starts_with("not checked: "),
            "{c:#?}"
        );
    }
    for c in &checks {
        assert!(
            c["status"] != "ok" || !c["message"].as_str().unwrap().contains("not checked"),
            "an OK that did not run: {c:#?}"
        );
    }
}

#[test]
fn an_old_project_whose_directory_is_gone_is_a_warning_with_the_reason() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let _d = sandbox.daemon().start();
    let project = repo(&sandbox, "kept", "https://github.com/o/kept.git");
    sandbox
        .ctl(&["projects", "add", project.to_str().unwrap()])
        .assert_ok();
    let gone = sandbox.path().join("gone");
    let dir = sandbox.path().join("home/.aifactory");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("projects.json"),
        format!(
            "[{{\"path\": {:?}, \"name\": \"kept\"}}, {{\"path\": {:?}, \"name\": \"gone\"}}]",
            project.display().to_string(),
            gone.display().to_string()
        ),
    )
    .unwrap();
    let (_, checks) = doctor(&sandbox, &[]);
    let c = find(&checks, "legacy-projects");
    assert_eq!(c.status, CheckStatus::Warn, "{c:#?}");
    assert!(
        c.message.contains(&gone.display().to_string()) && c.message.contains("does not exist"),
        "{c:#?}"
    );
    assert!(!c.message.contains("every project"), "{c:#?}");
    assert!(c.fix.as_deref().is_some_and(|f| !f.is_empty()), "{c:#?}");
}

/// A loopback listener that answers every connection with `answer` (nothing: it closes).
fn impostor(answer: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
        }
    });
    addr
}

#[test]
fn a_console_without_a_token_that_is_not_refused_with_401_fails() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let _d = sandbox.daemon().start();
    for (what, answer) in [
        (
            "a server that lets everything through",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        ),
        ("a server that closes without an answer", ""),
    ] {
        let addr = impostor(answer);
        let (code, checks) = doctor_raw(&sandbox, &["doctor", "--json", "--http", &addr]);
        let c = raw_find(&checks, "console-auth");
        assert_eq!(c["status"], "fail", "{what}: {c:#?}");
        assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c:#?}");
        assert_eq!(code, Some(1), "{what}: {checks:#?}");
    }
}

/// `GET path` on the shim, with `token` as the bearer when given: the status and the JSON body.
fn shim_get(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .unwrap();
        let mut request = http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let body = answer.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    })
}

#[test]
fn the_shim_serves_the_same_checks_as_aifactoryctl_doctor_for_the_same_daemon() {
    let sandbox = Sandbox::new();
    // A profile past its end of life: deprecated-providers fails, with its fix.
    sandbox.write_config(
        "default_agent = \"g\"\n[agents.g]\nkind = \"gemini-cli\"\ncommand = [\"sleep\", \"300\"]\n",
    );
    let d = sandbox.daemon().start();
    let http = sandbox.http().start();
    let addr = http.base.trim_start_matches("http://").to_string();
    let path = repo(&sandbox, "app", "https://gitlab.com/org/app.git");
    sandbox
        .ctl(&["projects", "add", path.to_str().unwrap()])
        .assert_ok();

    let (code, ctl) = doctor(&sandbox, &["--http", &addr]);
    assert_eq!(code, Some(1), "{ctl:#?}");
    let (status, body) = shim_get(&http.url("/api/v1/doctor"), Some(&http.token));
    assert_eq!(
        status, 200,
        "a failing check is data, not an HTTP error: {body:#}"
    );
    let shim: Vec<Check> = serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not a list of checks ({e}): {body:#}"));

    // The same checks in the same order, each with the same verdict.
    let names = |checks: &[Check]| checks.iter().map(|c| c.check.clone()).collect::<Vec<_>>();
    assert_eq!(names(&shim), names(&ctl));
    for (s, c) in shim.iter().zip(&ctl) {
        // Those about the caller (its uid, HOME, how it reaches the shim) agree here too: both
        // run as the same user with the same HOME, and the shim's token file is the one in the
        // daemon's state directory.
        assert_eq!(s.status, c.status, "shim {s:#?}\naifactoryctl {c:#?}");
        if !aifactory_doctor::CALLER_DEPENDENT.contains(&c.check.as_str()) {
            assert_eq!(s, c, "the same facts, the same words");
        }
    }
    let eol = find(&shim, "deprecated-providers");
    assert_eq!(eol.status, CheckStatus::Fail, "{eol:#?}");
    assert!(
        eol.fix
            .as_deref()
            .is_some_and(|f| f.contains("openai-compatible")),
        "a failing check shows its fix: {eol:#?}"
    );
    let auth = find(&shim, "console-auth");
    assert!(
        auth.message.contains("refused (401)") && auth.message.contains("let through"),
        "the shim checked its own console's auth: {auth:#?}"
    );

    // Behind the token like every /api route.
    let (status, body) = shim_get(&http.url("/api/v1/doctor"), None);
    assert_eq!(status, 401, "{body:#}");
    assert_eq!(body["error"]["code"], "missing_token", "{body:#}");

    // Without the daemon: still 200, the daemon check fails, what only it knows is skipped.
    drop(d);
    let (status, body) = shim_get(&http.url("/api/v1/doctor"), Some(&http.token));
    assert_eq!(status, 200, "{body:#}");
    let shim: Vec<Check> = serde_json::from_value(body).unwrap();
    assert_eq!(names(&shim), names(&ctl));
    assert_eq!(find(&shim, "daemon").status, CheckStatus::Fail);
    for name in [
        "socket-access",
        "tasks-stuck",
        "stale-sessions",
        "project-paths",
    ] {
        let c = find(&shim, name);
        assert_eq!(c.status, CheckStatus::Skip, "{c:#?}");
        assert!(c.message.starts_with("not checked: "), "{c:#?}");
    }
}

#[test]
fn a_project_whose_directory_is_gone_or_not_a_work_tree_fails_project_paths_with_the_fix() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let _d = sandbox.daemon().start();
    let path = repo(&sandbox, "app", "https://gitlab.com/org/app.git");
    sandbox
        .ctl(&["projects", "add", path.to_str().unwrap()])
        .assert_ok();
    let (_, checks) = doctor(&sandbox, &[]);
    let c = find(&checks, "project-paths");
    assert_eq!(c.status, CheckStatus::Ok, "{c:#?}");
    assert_eq!(c.message, "1 project(s), each a git work tree", "{c:#?}");

    std::fs::remove_dir_all(path.join(".git")).unwrap();
    let (code, checks) = doctor(&sandbox, &[]);
    assert_eq!(code, Some(1), "{checks:#?}");
    let c = only(&checks, "project-paths", CheckStatus::Fail);
    assert!(
        c.message.contains(&path.display().to_string())
            && c.message.contains("is not a git work tree"),
        "{c:#?}"
    );

    std::fs::remove_dir_all(&path).unwrap();
    let (code, checks) = doctor(&sandbox, &[]);
    assert_eq!(code, Some(1), "{checks:#?}");
    let c = only(&checks, "project-paths", CheckStatus::Fail);
    assert!(
        c.message.contains(&format!(
            "app ({}): {} does not exist",
            project_id(&sandbox, "app"),
            path.display()
        )),
        "{c:#?}"
    );
    assert!(
        c.fix
            .as_deref()
            .is_some_and(|f| f.contains("aifactoryctl projects remove NAME")),
        "{c:#?}"
    );
}

fn project_id(sandbox: &Sandbox, name: &str) -> String {
    sandbox
        .ctl(&["projects", "show", name, "--json"])
        .assert_ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `aifactoryctl doctor --json` run as `uid`:`gid` (the shim "not running").
fn doctor_as(sandbox: &Sandbox, uid: u32, gid: u32) -> Vec<Check> {
    let cmd = sandbox.ctl_command_as(uid, gid, &["doctor", "--json", "--http", "127.0.0.1:9"]);
    let out: CtlOutput = output_within(cmd, CTL_TIMEOUT)
        .unwrap_or_else(|partial| panic!("doctor did not finish: {partial:?}"))
        .into();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not a list of checks ({e}): {out:?}"))
}

/// The shim's `GET /api/v1/doctor`, as a list of checks.
fn shim_doctor(http: &aifactory_tests::Http) -> Vec<Check> {
    let (status, body) = shim_get(&http.url("/api/v1/doctor"), Some(&http.token));
    assert_eq!(status, 200, "{body:#}");
    serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not a list of checks ({e}): {body:#}"))
}

/// The daemon (root) can enter a project's directory that its clients (nobody: aifactoryctl
/// and the shim) cannot: the checks about the daemon's paths report what the daemon sees, for
/// both; once the daemon itself cannot see it, both report it with the fix.
#[test]
fn a_project_only_the_daemon_can_see_is_checked_as_the_daemon_sees_it() {
    let test = "a_project_only_the_daemon_can_see_is_checked_as_the_daemon_sees_it";
    let Some(nobody) = nobody(test) else { return };
    let sandbox = Sandbox::new();
    sandbox.open_to_others();
    sandbox.write_config(&format!(
        "socket_mode = \"0666\"\nsocket_group = \"{}\"\n{GOOD_AGENT}",
        nobody.primary_group
    ));
    let _d = sandbox.daemon().start();
    // A project behind a directory only root may enter.
    let private = sandbox.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = init_repo(
        &private.join("app"),
        "main",
        Some("https://gitlab.com/o/app.git"),
    );
    sandbox
        .ctl(&["projects", "add", path.to_str().unwrap()])
        .assert_ok();
    let blind = Command::new("test")
        .arg("-d")
        .arg(&path)
        .uid(nobody.uid)
        .gid(nobody.gid)
        .status()
        .unwrap();
    assert!(!blind.success(), "nobody must not see {}", path.display());

    let shim_state = sandbox.path().join("shim-state");
    std::fs::create_dir(&shim_state).unwrap();
    std::fs::set_permissions(&shim_state, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown_tree(&shim_state, nobody.uid, nobody.gid);
    let http = sandbox
        .http()
        .as_user(nobody.uid, nobody.gid, &shim_state)
        .start();

    let ctl = doctor_as(&sandbox, nobody.uid, nobody.gid);
    let shim = shim_doctor(&http);
    for (who, checks) in [
        ("aifactoryctl as nobody", &ctl),
        ("the shim as nobody", &shim),
    ] {
        let c = find(checks, "project-paths");
        assert_eq!(c.status, CheckStatus::Ok, "{who}: {c:#?}");
        assert_eq!(
            c.message, "1 project(s), each a git work tree",
            "{who}: {c:#?}"
        );
        for name in ["tasks-stuck", "stale-sessions"] {
            let c = find(checks, name);
            assert_eq!(c.status, CheckStatus::Ok, "{who}: {c:#?}");
        }
    }

    // Gone for the daemon too: a finding, with its fix, in both.
    std::fs::remove_dir_all(&path).unwrap();
    let ctl = doctor_as(&sandbox, nobody.uid, nobody.gid);
    let shim = shim_doctor(&http);
    for (who, checks) in [
        ("aifactoryctl as nobody", &ctl),
        ("the shim as nobody", &shim),
    ] {
        let c = find(checks, "project-paths");
        assert_eq!(c.status, CheckStatus::Fail, "{who}: {c:#?}");
        assert!(
            c.message
                .contains(&format!("{} does not exist", path.display())),
            "{who}: {c:#?}"
        );
        assert!(
            c.fix
                .as_deref()
                .is_some_and(|f| f.contains("aifactoryctl projects remove NAME")),
            "{who}: {c:#?}"
        );
    }
    assert_eq!(find(&ctl, "project-paths"), find(&shim, "project-paths"));
}

/// A git that never answers in the daemon: the daemon's bound holds (project-paths is SKIP
/// with why, never OK nor a false FAIL), its other requests are answered meanwhile, and the
/// git is killed.
#[test]
fn a_git_that_hangs_in_the_daemon_is_bounded_and_blocks_nothing_else() {
    let sandbox = Sandbox::new();
    sandbox.write_config(GOOD_AGENT);
    let path = repo(&sandbox, "app", "https://gitlab.com/org/app.git");
    {
        let _d = sandbox.daemon().start();
        sandbox
            .ctl(&["projects", "add", path.to_str().unwrap()])
            .assert_ok();
    }
    let pids = sandbox.path().join("git.pids");
    let hang = sandbox.script(
        "git",
        &format!("echo $$ >> {}\nexec sleep 300", pids.display()),
    );
    let search = format!(
        "{}:{}",
        hang.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _d = sandbox.daemon().env("PATH", &search).start();
    let hung = || {
        std::fs::read_to_string(&pids).ok().and_then(|text| {
            text.lines()
                .next()
                .and_then(|l| l.trim().parse::<u32>().ok())
        })
    };
    let checks = std::thread::scope(|s| {
        let run = s.spawn(|| doctor(&sandbox, &[]));
        wait_until(
            "the daemon to run the git that hangs",
            Duration::from_secs(30),
            || hung().is_some(),
        );
        let pid = hung().unwrap();
        // Answered while the git still hangs (it runs until the daemon's 8 s bound: an order,
        // with a margin of two round trips against 8 s, not a measured duration).
        sandbox.ctl(&["status"]).assert_ok();
        sandbox.ctl(&["projects", "list"]).assert_ok();
        assert!(
            !has_ended(pid),
            "the git ended before the other requests were answered: nothing showed they do not wait for it"
        );
        run.join().expect("the doctor run").1
    });
    let c = find(&checks, "project-paths");
    assert_eq!(c.status, CheckStatus::Skip, "{c:#?}");
    assert!(
        c.message.starts_with("not checked: ") && c.message.contains("app (no answer within 8 s)"),
        "{c:#?}"
    );
    assert!(c.fix.as_deref().is_some_and(|f| !f.is_empty()), "{c:#?}");
    let pid = hung().unwrap();
    wait_until(
        "the daemon to kill the git",
        Duration::from_secs(30),
        || has_ended(pid),
    );
}
