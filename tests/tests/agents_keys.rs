//! Agents run as the right user with their keys kept secret, end to end: a key from an
//! `env_file` or a systemd credential reaches the agent's environment and nothing else (no
//! file of the daemon's, no reply, event, log line or command line); a profile without a key
//! source, or with a key file others can read, is reported by `agents check`, refused at
//! start and failed by the doctor; Claude Code bypassing permissions as root needs
//! `IS_SANDBOX=1`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use aifactory_common::diagnose::{Check, CheckStatus};
use aifactory_tests::wait::wait_file;
use aifactory_tests::{Sandbox, bin};

/// How long an agent may take to start on a loaded machine (a liveness bound).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A key no other test or file holds.
fn unique_key(tag: &str) -> String {
    format!("sk-{tag}-{}{:016x}", std::process::id(), fastrand::u64(..))
}

fn write_private(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `sha256sum` of `text`, fed on stdin (never argv).
fn sha256(text: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `dir` (not following symlinks) except `skip`.
fn files_under(dir: &Path, skip: &[PathBuf], found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            files_under(&path, skip, found);
        } else if kind.is_file() && !skip.contains(&path) {
            found.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The processes whose command line holds `key`.
fn cmdlines_with(key: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && contains(&cmdline, key)
        {
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

fn print_config(sandbox: &Sandbox) -> String {
    let mut cmd = Command::new(bin("aifactoryd"));
    sandbox.apply_env(&mut cmd);
    let out = cmd
        .arg("--print-config")
        .arg("--config")
        .arg(sandbox.config_file())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn doctor(sandbox: &Sandbox) -> Vec<Check> {
    let out = sandbox.ctl(&["doctor", "--json", "--http", "127.0.0.1:9"]);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not a list of checks ({e}): {out:?}"))
}

fn problems(agents: &serde_json::Value, name: &str) -> String {
    agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .map(|a| a["problems"].to_string())
        .unwrap_or_else(|| panic!("no agent {name}: {agents}"))
}

#[test]
fn a_key_reaches_the_agent_through_its_environment_and_nowhere_else() {
    let sandbox = Sandbox::new();
    let file_key = unique_key("file");
    let cred_key = unique_key("cred");
    let env_file = sandbox.path().join("keys/anthropic.env");
    write_private(
        &env_file,
        &format!("# for the agent\nANTHROPIC_API_KEY={file_key}\n"),
    );
    let creds = sandbox.path().join("credentials");
    let credential = creds.join("anthropic-key");
    write_private(&credential, &format!("{cred_key}\n"));
    let out = sandbox.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // The agent proves it has the key without writing it: its digest, then it keeps running
    // so its command line can be looked at. `out` is outside its cage: the profile opens it.
    let agent = |name: &str| {
        let script = format!(
            "printf %s \"$ANTHROPIC_API_KEY\" | sha256sum > {}/{name}.tmp && mv {0}/{name}.tmp {0}/{name}.sha; exec sleep 300",
            out.display()
        );
        format!(
            "kind = \"claude-code\"\nheadless = false\ncommand = [\"sh\", \"-c\", {script:?}]\nread_write = [{:?}]\n",
            out.to_str().unwrap()
        )
    };
    sandbox.write_config(&format!(
        "default_agent = \"file\"\n[agents.file]\n{}env_file = {:?}\n[agents.cred]\n{}credential = \"anthropic-key\"\n",
        agent("file"),
        env_file.display().to_string(),
        agent("cred"),
    ));
    let d = sandbox
        .daemon()
        .env("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())
        .start();
    sandbox.add_project("demo");
    let agents = sandbox
        .ctl(&["agents", "check", "--json"])
        .assert_ok()
        .json();
    for name in ["file", "cred"] {
        assert_eq!(problems(&agents, name), "[]", "{agents}");
        sandbox.create_task("demo", name, &["--agent", name]);
        sandbox.ctl(&["tasks", "start", name]).assert_ok();
    }
    for (name, key) in [("file", &file_key), ("cred", &cred_key)] {
        let digest = wait_file(&out.join(format!("{name}.sha")), START_TIMEOUT, |b| {
            !b.is_empty()
        });
        assert_eq!(
            String::from_utf8(digest).unwrap(),
            sha256(key),
            "the agent of {name} got the key"
        );
    }
    let leaks = |key: &str| {
        let mut leaks = cmdlines_with(key);
        for args in [
            &["tasks", "show", "file", "--json"][..],
            &["tasks", "show", "cred", "--json"],
            &["tasks", "list", "--json"],
            &["sessions", "list", "--json"],
            &["agents", "list", "--json"],
            &["status", "--json"],
            &["tasks", "logs", "cred"],
            &["tasks", "logs", "file"],
        ] {
            let reply = sandbox.ctl(args);
            if reply.stdout.contains(key) || reply.stderr.contains(key) {
                leaks.push(format!("aifactoryctl {args:?}"));
            }
        }
        leaks
    };
    for key in [&file_key, &cred_key] {
        assert_eq!(leaks(key), Vec::<String>::new(), "while the agents run");
    }
    for name in ["file", "cred"] {
        sandbox.ctl(&["tasks", "stop", name]).assert_ok();
    }
    // Every event of each task since the first, through the real client.
    let events: Vec<String> = ["file", "cred"]
        .iter()
        .map(|name| {
            let watched =
                sandbox.ctl(&["tasks", "watch", name, "--after", "0", "--until", "stopped"]);
            assert_eq!(watched.code, Some(0), "{watched:?}");
            watched.stdout
        })
        .collect();
    let config = print_config(&sandbox);
    let logs = d.logs();
    // The journal says where each key came from, never the key.
    assert!(
        logs.contains("agent started")
            && logs.contains("env_file")
            && logs.contains("systemd credential `anthropic-key`"),
        "{logs}"
    );
    drop(d);
    let mut files = Vec::new();
    files_under(
        sandbox.path(),
        &[env_file.clone(), credential.clone()],
        &mut files,
    );
    assert!(
        files.iter().any(|f| f.ends_with("meta.json")),
        "the walk sees the panes: {files:?}"
    );
    for key in [&file_key, &cred_key] {
        let in_files: Vec<&PathBuf> = files
            .iter()
            .filter(|f| std::fs::read(f).is_ok_and(|b| contains(&b, key)))
            .collect();
        assert!(in_files.is_empty(), "the key is in {in_files:?}");
        assert!(!events.concat().contains(key.as_str()), "in an event");
        assert!(!config.contains(key.as_str()), "in --print-config");
        assert!(!logs.contains(key.as_str()), "in the daemon's log");
    }
}

#[test]
fn key_problems_are_reported_at_check_at_start_and_by_the_doctor() {
    let sandbox = Sandbox::new();
    let open = sandbox.path().join("keys/open.env");
    write_private(&open, "ANTHROPIC_API_KEY=sk-open\n");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let literal = unique_key("literal");
    let claude = "kind = \"claude-code\"\nheadless = false\ncommand = [\"sleep\", \"300\"]\n";
    sandbox.write_config(&format!(
        r#"default_agent = "nokey"
[agents.nokey]
{claude}
[agents.open]
{claude}env_file = {open:?}
[agents.missing]
{claude}env_file = "/nonexistent/keys.env"
[agents.incfg]
{claude}env = {{ ANTHROPIC_API_KEY = "{literal}" }}
[agents.nocred]
{claude}credential = "anthropic-key"
[agents.custom]
kind = "custom"
command = ["sleep", "300"]
"#,
        open = open.display().to_string(),
    ));
    let _d = sandbox.daemon().start();
    sandbox.add_project("demo");
    let check = sandbox.ctl(&["agents", "check"]);
    assert_eq!(check.code, Some(1), "{check:?}");
    assert!(
        check.stderr.contains("5 of 6 agent profiles cannot run"),
        "{check:?}"
    );
    let agents = sandbox
        .ctl(&["agents", "list", "--json"])
        .assert_ok()
        .json();
    let expected = [
        ("nokey", "no source for the key in ANTHROPIC_API_KEY"),
        ("open", "is open to others (mode 644)"),
        ("missing", "key file /nonexistent/keys.env cannot be read"),
        (
            "incfg",
            "the key ANTHROPIC_API_KEY is written in the config",
        ),
        (
            "nocred",
            "systemd credential `anthropic-key` is unavailable",
        ),
    ];
    for (name, sentence) in expected {
        assert!(
            problems(&agents, name).contains(sentence),
            "{name}: {agents}"
        );
    }
    assert_eq!(problems(&agents, "custom"), "[]");
    assert!(!agents.to_string().contains(&literal), "{agents}");
    let config = print_config(&sandbox);
    assert!(!config.contains(&literal), "{config}");
    assert!(config.contains("ANTHROPIC_API_KEY"), "{config}");

    for (name, sentence) in expected {
        sandbox.create_task("demo", name, &["--agent", name]);
        let out = sandbox.ctl(&["tasks", "start", name]);
        assert_eq!(out.code, Some(1), "{name}: {out:?}");
        assert!(out.stderr.contains(sentence), "{name}: {out:?}");
    }

    let checks = doctor(&sandbox);
    let profiles = checks
        .iter()
        .find(|c| c.check == "agent-profiles")
        .unwrap_or_else(|| panic!("{checks:#?}"));
    assert_eq!(profiles.status, CheckStatus::Fail, "{profiles:#?}");
    for (_, sentence) in expected {
        assert!(profiles.message.contains(sentence), "{profiles:#?}");
    }
    assert!(profiles.message.contains("chmod 0600"), "{profiles:#?}");
    assert!(profiles.fix.is_some(), "{profiles:#?}");
}

#[test]
fn claude_bypassing_permissions_as_root_needs_the_sandbox_flag() {
    if !aifactory_tests::is_root() {
        aifactory_tests::skip(
            "claude_bypassing_permissions_as_root_needs_the_sandbox_flag",
            "the rule is about a daemon running as root",
        );
        return;
    }
    let sandbox = Sandbox::new();
    // `sh -c SCRIPT --dangerously-skip-permissions`: the flag is sh's $0, so the profile reads
    // as a claude that bypasses permissions while running a shell.
    let claude = r#"kind = "claude-code"
command = ["sh", "-c", "exec sleep 300", "--dangerously-skip-permissions"]
"#;
    sandbox.write_config(&format!(
        "default_agent = \"rooted\"\n[agents.rooted]\n{claude}[agents.sandboxed]\n{claude}env = {{ IS_SANDBOX = \"1\" }}\n"
    ));
    let _d = sandbox
        .daemon()
        .env("ANTHROPIC_API_KEY", &unique_key("root"))
        .start();
    sandbox.add_project("demo");
    let check = sandbox.ctl(&["agents", "check"]);
    assert_eq!(check.code, Some(1), "{check:?}");
    assert!(
        check
            .stderr
            .contains("1 of 2 agent profiles cannot run: rooted"),
        "{check:?}"
    );
    let agents = sandbox
        .ctl(&["agents", "list", "--json"])
        .assert_ok()
        .json();
    let rooted = problems(&agents, "rooted");
    assert!(
        rooted.contains("refuses bypassPermissions when run as root")
            && rooted.contains("runs as `aifactory`")
            && rooted.contains("IS_SANDBOX"),
        "{rooted}"
    );
    assert_eq!(problems(&agents, "sandboxed"), "[]");

    sandbox.create_task("demo", "rooted", &["--agent", "rooted"]);
    let refused = sandbox.ctl(&["tasks", "start", "rooted"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("as root"), "{refused:?}");
    sandbox.create_task("demo", "sandboxed", &["--agent", "sandboxed"]);
    sandbox.ctl(&["tasks", "start", "sandboxed"]).assert_ok();
    sandbox.ctl(&["tasks", "stop", "sandboxed"]).assert_ok();

    let checks = doctor(&sandbox);
    let profiles = checks
        .iter()
        .find(|c| c.check == "agent-profiles")
        .unwrap_or_else(|| panic!("{checks:#?}"));
    assert_eq!(profiles.status, CheckStatus::Fail, "{profiles:#?}");
    assert!(
        profiles.message.contains("rooted") && profiles.message.contains("IS_SANDBOX"),
        "{profiles:#?}"
    );
}
