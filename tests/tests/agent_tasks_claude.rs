//! The real Claude Code CLI (2.1.332, from `tests/agents/install`) run by the daemon as a
//! task's agent, offline against the harness's scripted Anthropic API, in each scenario the
//! daemon must understand: success with tool calls, a refused key, an overloaded provider, a
//! tool call denied for want of permission, a resumed conversation, a hung stream, root
//! without a sandbox, and its Bash tool trying to escape the task's cage. Every test also checks that no host but the loopback API was contacted.
//!
//! The profile uses the built-in headless command (no `command`), `program` pointing at the
//! installed CLI; the key comes from the daemon's own environment, never from the config.

use std::path::PathBuf;
use std::time::Duration;

use aifactory_common::protocol::{AgentEvent, EventKind, FailureKind, StreamItem, Transcript};
use aifactory_tests::agent_clis::{self, CLAUDE_QUIET_ENV, FAKE_API_KEY};
use aifactory_tests::anthropic_api::{AnthropicApi, Turn};
use aifactory_tests::browser::{self, Browser};
use aifactory_tests::egress::EgressTrap;
use aifactory_tests::wait::wait_for;
use aifactory_tests::{Daemon, Sandbox, escapes, skip};
use serde_json::{Value, json};

/// A liveness bound for real CLIs on a loaded 2-core machine, not a speed target.
const TIMEOUT: Duration = Duration::from_secs(90);

/// One scenario: the scripted API, the egress trap, a daemon whose default profile runs the
/// real claude, and a task in a fresh git project.
struct World {
    api: AnthropicApi,
    egress: EgressTrap,
    sandbox: Sandbox,
    daemon: Daemon,
    task: String,
}

impl World {
    /// `None` (after reporting the skip) when the CLIs are not installed. `profile` adds
    /// lines to the `[agents.claude]` table; `retries` is claude's own retry budget
    /// (`None`: its default of ten).
    fn new(test: &str, turns: Vec<Turn>, profile: &str, retries: Option<u32>) -> Option<World> {
        World::with_config(test, turns, profile, retries, |config| config)
    }

    /// [`World::new`], with the config text changed by `tweak` before the daemon reads it.
    fn with_config(
        test: &str,
        turns: Vec<Turn>,
        profile: &str,
        retries: Option<u32>,
        tweak: impl FnOnce(String) -> String,
    ) -> Option<World> {
        let claude = match agent_clis::claude() {
            Ok(path) => path,
            Err(e) => {
                skip(test, &e.to_string());
                return None;
            }
        };
        let api = AnthropicApi::start(turns);
        let egress = EgressTrap::start();
        let sandbox = Sandbox::new();
        let home = sandbox.path().join("agent-home");
        let mut env: Vec<(String, String)> = vec![
            ("IS_SANDBOX".into(), "1".into()),
            ("HOME".into(), home.display().to_string()),
            (
                "CLAUDE_CONFIG_DIR".into(),
                home.join(".claude").display().to_string(),
            ),
            ("ANTHROPIC_BASE_URL".into(), api.base_url()),
        ];
        env.extend(
            CLAUDE_QUIET_ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env.extend(egress.env().into_iter().map(|(k, v)| (k.to_string(), v)));
        if let Some(n) = retries {
            env.push(("CLAUDE_CODE_MAX_RETRIES".into(), n.to_string()));
        }
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
        sandbox.write_config(&tweak(format!(
            "default_agent = \"claude\"\n\
             [agents.claude]\nkind = \"claude-code\"\nprogram = {:?}\nenv = {{ {} }}\n{profile}\n",
            claude.to_str().unwrap(),
            env.join(", "),
        )));
        let daemon = sandbox
            .daemon()
            .env("ANTHROPIC_API_KEY", FAKE_API_KEY)
            .start();
        sandbox.add_project("demo");
        let task = sandbox.create_task("demo", "001-hello", &["--title", "Write hello.txt"]);
        Some(World {
            api,
            egress,
            sandbox,
            daemon,
            task,
        })
    }

    fn show(&self) -> Value {
        self.sandbox
            .ctl(&["tasks", "show", &self.task, "--json"])
            .assert_ok()
            .json()
    }

    fn worktree(&self) -> PathBuf {
        PathBuf::from(self.show()["worktree"].as_str().unwrap())
    }

    fn start(&self) {
        self.sandbox
            .ctl(&["tasks", "start", &self.task])
            .assert_ok();
    }

    /// Waits for the task to settle in `phase` (with `attempts` when given).
    fn wait_phase(&self, phase: &str, attempts: Option<u64>) -> Value {
        wait_for(&format!("task {phase}"), TIMEOUT, || {
            let t = self.show();
            if t["phase"] == phase && attempts.is_none_or(|n| t["attempts"] == n) {
                Ok(t)
            } else {
                Err(format!("{t:#}"))
            }
        })
    }

    async fn transcript(&self) -> Transcript {
        let client = self.daemon.client().await;
        client
            .task_transcript(self.task.clone(), None)
            .await
            .unwrap()
    }

    /// Nothing but the loopback API was contacted.
    fn assert_offline(&self) {
        assert_eq!(self.egress.attempts(), Vec::<String>::new(), "egress");
    }
}

fn tools_of(transcript: &Transcript) -> Vec<String> {
    transcript
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            AgentEvent::ToolCall { tool, .. } => Some(tool.clone()),
            _ => None,
        })
        .collect()
}

/// The turns of a run that writes `hello.txt` in the worktree and reports `progress: 50`.
fn writes_hello(w: &World) -> Vec<Turn> {
    vec![
        Turn::tools(
            "Writing the file and the progress line.",
            &[
                (
                    "Write",
                    json!({"file_path": w.worktree().join("hello.txt"), "content": "hello\n"}),
                ),
                (
                    "Bash",
                    json!({"command": "echo 'progress: 50' >> \"$AIFACTORY_PROGRESS_FILE\""}),
                ),
            ],
        ),
        Turn::text("Done: hello.txt written."),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn success_writes_files_reports_progress_and_leaves_usage_cost_and_transcript() {
    let Some(w) = World::new("claude success", vec![], "", Some(0)) else {
        return;
    };
    for turn in writes_hello(&w) {
        w.api.push(turn);
    }
    w.start();
    let task = w.wait_phase("done", Some(1));
    assert_eq!(
        std::fs::read_to_string(w.worktree().join("hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(task["progress"]["percent"], 50, "{task:#}");
    assert!(task["agent_session_id"].as_str().is_some(), "{task:#}");
    assert!(task["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(task["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(
        task["usage"]["cost_usd"].as_f64().unwrap() > 0.0,
        "{task:#}"
    );
    assert_eq!(task["last_tool"], "Bash");
    assert!(task["failure"].is_null(), "{task:#}");
    let transcript = w.transcript().await;
    assert_eq!(tools_of(&transcript), ["Write", "Bash"]);
    assert!(transcript.entries.iter().any(|e| matches!(
        &e.event,
        AgentEvent::ToolResult {
            ok: true,
            call_id: Some(_),
            ..
        }
    )));
    let text = w
        .sandbox
        .ctl(&["tasks", "transcript", &w.task])
        .assert_ok()
        .stdout
        .clone();
    assert!(text.contains("hello.txt"), "{text}");
    assert_eq!(w.api.message_requests().len(), 2);
    w.assert_offline();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_fails_as_auth_at_once_and_is_never_retried() {
    // Claude's own default of ten retries: the daemon stops it at its first retry of a 401.
    let Some(w) = World::new(
        "claude 401",
        vec![],
        "restart = \"on-failure\"\nmax_attempts = 3",
        None,
    ) else {
        return;
    };
    w.api.when_exhausted(Turn::unauthorized());
    w.start();
    let task = w.wait_phase("failed", Some(1));
    assert_eq!(task["failure"]["kind"], "auth", "{task:#}");
    assert!(
        task["failure"]["fix"].as_str().unwrap().contains("key"),
        "{task:#}"
    );
    assert!(
        task["last_error"].as_str().unwrap().contains("not retried"),
        "{task:#}"
    );
    w.assert_offline();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overloaded_provider_is_retried_after_a_backoff_until_done() {
    let Some(w) = World::new(
        "claude overloaded",
        vec![Turn::overloaded(), Turn::overloaded()],
        "restart = \"on-failure\"\nmax_attempts = 3",
        Some(0),
    ) else {
        return;
    };
    for turn in writes_hello(&w) {
        w.api.push(turn);
    }
    let client = w.daemon.client().await;
    let mut events = client
        .subscribe(aifactory_common::protocol::Request::SubscribeEvents { after: None })
        .await
        .unwrap();
    w.start();
    let task = w.wait_phase("done", Some(3));
    assert!(task["failure"].is_null(), "{task:#}");
    let mut restarts = Vec::new();
    while restarts.len() < 2 {
        let item = tokio::time::timeout(TIMEOUT, events.next())
            .await
            .expect("the TaskExited events")
            .expect("stream open");
        if let StreamItem::Event(e) = item
            && let EventKind::TaskExited {
                restart_in_ms: Some(ms),
                failure: Some(f),
                ..
            } = e.kind
        {
            restarts.push((ms, f.kind));
        }
    }
    assert_eq!(
        restarts.iter().map(|r| r.1).collect::<Vec<_>>(),
        [FailureKind::Overloaded, FailureKind::Overloaded]
    );
    assert!(restarts.iter().all(|r| r.0 >= 1000), "{restarts:?}");
    w.assert_offline();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_bypass_a_denied_tool_call_fails_naming_the_profile_fix() {
    // Its own command without bypassPermissions; not headless, so the profile check lets it run.
    let Some(w) = World::with_config("claude denied", vec![], "", Some(0), |config| {
        let (program, rest) = config.split_once("program = ").unwrap();
        let (path, rest) = rest.split_once('\n').unwrap();
        format!(
            "{program}command = [{path}, \"-p\", \"--output-format\", \"stream-json\", \"--verbose\", \"{{prompt}}\"]\nheadless = false\n{rest}"
        )
    }) else {
        return;
    };
    w.api.push(Turn::tools(
        "Recording progress.",
        &[(
            "Bash",
            json!({"command": "echo 'progress: 50' > /tmp/aifactory-denied-probe"}),
        )],
    ));
    w.api.push(Turn::text("I could not run it."));
    w.start();
    let task = w.wait_phase("failed", None);
    assert_eq!(task["failure"]["kind"], "permission_denied", "{task:#}");
    assert!(
        task["failure"]["fix"]
            .as_str()
            .unwrap()
            .contains("bypassPermissions"),
        "{task:#}"
    );
    let transcript = w.transcript().await;
    assert!(
        transcript
            .entries
            .iter()
            .any(|e| matches!(&e.event, AgentEvent::Denied { tool, .. } if tool == "Bash")),
        "{transcript:#?}"
    );
    w.assert_offline();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_resumes_the_conversation_with_its_earlier_turns() {
    let Some(w) = World::new("claude resume", vec![], "", Some(0)) else {
        return;
    };
    for turn in writes_hello(&w) {
        w.api.push(turn);
    }
    w.start();
    let first = w.wait_phase("done", None);
    w.api.push(Turn::text("Checked again: all done."));
    w.sandbox.ctl(&["tasks", "restart", &w.task]).assert_ok();
    wait_for("the resumed run's request", TIMEOUT, || {
        let n = w.api.message_requests().len();
        if n >= 3 { Ok(()) } else { Err(n) }
    });
    let task = w.wait_phase("done", None);
    assert_eq!(task["agent_session_id"], first["agent_session_id"]);
    let resumed = w.api.message_requests().pop().unwrap().to_string();
    assert!(
        resumed.contains("Done: hello.txt written."),
        "the earlier turns are sent again: {resumed}"
    );
    assert!(resumed.contains("restarted by hand"), "{resumed}");
    w.assert_offline();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_stream_stalls_the_task_and_on_stall_restart_resumes_it() {
    let Some(w) = World::new(
        "claude hang",
        vec![Turn::hang("Thinking about it")],
        "stall_after = 3\non_stall = \"restart\"\nmax_attempts = 3",
        Some(0),
    ) else {
        return;
    };
    w.api.push(Turn::text("Done after the hang."));
    let client = w.daemon.client().await;
    let mut events = client
        .subscribe(aifactory_common::protocol::Request::SubscribeEvents { after: None })
        .await
        .unwrap();
    w.start();
    let evidence = loop {
        let item = tokio::time::timeout(TIMEOUT, events.next())
            .await
            .expect("a TaskStalled event")
            .expect("stream open");
        if let StreamItem::Event(e) = item
            && let EventKind::TaskStalled { evidence, .. } = e.kind
        {
            break evidence;
        }
    };
    assert_eq!(evidence.stall_after_s, 3);
    assert!(evidence.pid.is_some(), "{evidence:?}");
    let task = w.wait_phase("done", Some(2));
    assert!(task["failure"].is_null(), "{task:#}");
    let requests = w.api.message_requests();
    let last = requests.last().unwrap().to_string();
    assert!(
        last.contains("stalled"),
        "the resumed prompt says why: {last}"
    );
    w.api.release_hangs();
    w.assert_offline();
}

#[tokio::test(flavor = "multi_thread")]
async fn as_root_without_the_sandbox_flag_claude_is_refused_at_check_and_start() {
    if !aifactory_tests::is_root() {
        skip(
            "claude root",
            "needs root: claude refuses bypassPermissions only as root",
        );
        return;
    }
    let Some(w) = World::with_config("claude root", vec![], "", Some(0), |config| {
        config.replace("IS_SANDBOX = \"1\", ", "")
    }) else {
        return;
    };
    let check = w.sandbox.ctl(&["agents", "check"]);
    assert_ne!(check.code, Some(0), "{check:?}");
    assert!(check.stdout.contains("IS_SANDBOX"), "{}", check.stdout);
    let start = w.sandbox.ctl(&["tasks", "start", &w.task]);
    assert_ne!(start.code, Some(0), "{start:?}");
    assert!(start.stderr.contains("root"), "{}", start.stderr);
    assert!(w.api.message_requests().is_empty());
    w.assert_offline();
}

/// Issue 16 through the real CLI: claude, caged by default, drives its Bash tool through every
/// escape (the http-token, the state directory, the database, another task's worktree, the
/// real home's `.ssh`, the control socket), each refused with nothing changed, while the same
/// command's own work (a file and a `git commit` in its worktree, its home and tmp) succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_caged_claude_is_refused_every_escape_through_its_bash_tool() {
    const NAME: &str = "claude caged escapes";
    if !escapes::landlock_at_least(NAME, 6, "the cage's tests") {
        return;
    }
    let ctl = aifactory_tests::bin("aifactoryctl");
    // aifactoryctl is readable for the socket's try only: without it the try would be refused
    // by the file rules, not by the daemon.
    let profile = format!(
        "read_only = [{:?}]",
        ctl.parent().unwrap().to_str().unwrap()
    );
    let Some(w) = World::new(NAME, vec![], &profile, Some(0)) else {
        return;
    };
    let state = w.sandbox.state_dir();
    std::fs::write(state.join("http-token"), "secret-token\n").unwrap();
    let other = w.sandbox.create_task("demo", "002-other", &[]);
    let other_worktree = w.sandbox.show_task(&other)["worktree"]
        .as_str()
        .map(PathBuf::from)
        .unwrap();
    let targets = escapes::Targets {
        state: state.clone(),
        other_worktree,
        real_home: w.sandbox.path().join("home"),
        ctl,
        socket: w.sandbox.socket(),
    };
    w.api.push(Turn::tools(
        "Trying my way out, then my own work.",
        &[("Bash", json!({"command": escapes::script(&targets)}))],
    ));
    w.api.push(Turn::text("Done."));
    w.start();
    let task = w.wait_phase("done", Some(1));
    let worktree = w.worktree();
    let report = escapes::report(&worktree);
    escapes::assert_caged(&report, &targets);
    assert_eq!(
        std::fs::read_to_string(state.join("http-token")).unwrap(),
        "secret-token\n"
    );
    assert_eq!(task["last_tool"], "Bash", "{task:#}");
    let log = std::process::Command::new("git")
        .args(["log", "-1", "--format=%s", "aifactory/001-hello"])
        .current_dir(&worktree)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout).trim(), "caged");
    w.assert_offline();
}

/// The task page in a real browser shows what the real CLI did: its tool calls, each with its
/// result folded under it, and the result line with tokens and cost.
#[tokio::test(flavor = "multi_thread")]
async fn the_task_page_shows_the_real_clis_tool_calls_in_a_browser() {
    const TEST: &str = "claude transcript in the browser";
    let Some(w) = World::new(TEST, vec![], "", Some(0)) else {
        return;
    };
    for turn in writes_hello(&w) {
        w.api.push(turn);
    }
    let shim = w.sandbox.http().start();
    w.start();
    w.wait_phase("done", Some(1));
    let Some(browser) = Browser::launch_or_skip(TEST, w.sandbox.path()).await else {
        return;
    };
    let page = browser.new_page().await;
    page.set_viewport(1280, 800).await;
    page.goto(&shim.login_url()).await;
    page.wait_until(
        "document.querySelector('#board') !== null",
        "the board",
        browser::TIMEOUT,
    )
    .await;
    page.goto(&shim.url(&format!("/tasks/{}", w.task))).await;
    page.wait_until(
        "document.querySelectorAll('#transcript li.entry[data-kind=tool_call]').length === 2
         && document.querySelector('#transcript li.entry[data-kind=result]') !== null",
        "two tool calls and the result line",
        browser::TIMEOUT,
    )
    .await;
    let tools: Vec<(String, String, bool)> = page
        .eval(
            "[...document.querySelectorAll('#transcript li.entry[data-kind=tool_call] details.tool')]
               .map((d) => [d.querySelector('.tool-name').textContent,
                            d.querySelector('.tool-result').className,
                            d.open])",
        )
        .await;
    assert_eq!(
        tools,
        [
            ("Write".into(), "tool-result ok".into(), false),
            ("Bash".into(), "tool-result ok".into(), false),
        ],
        "each call with its result, folded"
    );
    let result: String = page
        .eval("document.querySelector('#transcript li.entry[data-kind=result]').textContent")
        .await;
    assert!(
        result.contains('$'),
        "the result line shows the cost: {result}"
    );
    page.screenshot(&browser::screenshots().join("transcript.png"))
        .await;
    browser.close();
    w.assert_offline();
}
