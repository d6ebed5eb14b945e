//! Where users see what an agent did, end to end: a `claude-code` task whose agent prints real
//! Claude Code stream-json (captured from `@anthropic-ai/claude-code` 2.1.332 against the
//! scripted model server, `tests/fixtures/agents/claude-success.jsonl`) through the test
//! override command, then `aifactoryctl tasks transcript` (text, `--json`, `--follow`),
//! `tasks show`, the board, `projects show`, and the shim's `GET /transcript` and SSE.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aifactory_tests::wait::{wait_file, wait_for};
use aifactory_tests::{Http, Sandbox};
use serde_json::Value;

/// A liveness bound for a loaded 2-core machine, not a speed target.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The real run's conversation id and cost, as the fixture has them.
const SESSION: &str = "c32ea3c1-cae7-439f-8b0d-ad625a9e8633";
const COST: &str = "$0.0016";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/agents/claude-success.jsonl")
}

/// One headless `claude-code` profile, never restarted, whose command the test override
/// replaces. `IS_SANDBOX=1`: the test's tree is a disposable sandbox, which is what lets
/// claude bypass permissions as root.
fn claude_config(sandbox: &Sandbox) {
    // The fixture agent runs in its task's cage: it may read the fixtures it replays.
    let fixtures = fixture().parent().unwrap().to_path_buf();
    sandbox.write_config(&format!(
        "{}read_only = [{:?}]\n",
        concat!(
            "default_agent = \"claude\"\n",
            "[agents.claude]\n",
            "kind = \"claude-code\"\n",
            "command = [\"claude\", \"-p\", \"--output-format\", \"stream-json\", \"--verbose\", \"--permission-mode\", \"bypassPermissions\"]\n",
            "restart = \"never\"\n",
            "env = { IS_SANDBOX = \"1\" }\n",
        ),
        fixtures.to_str().unwrap()
    ));
}

/// Project `demo` and a task in it; returns the task's id.
fn task(sandbox: &Sandbox) -> String {
    sandbox.add_project("demo");
    sandbox.create_task("demo", "001-hello", &[])
}

/// Waits until the task is in `phase` with `input_tokens` used (one run's result is 200).
fn wait_phase(sandbox: &Sandbox, id: &str, phase: &str, input_tokens: u64) -> Value {
    wait_for(&format!("task {id} {phase}"), TIMEOUT, || {
        let t = sandbox.show_task(id);
        if t["phase"] == phase && t["usage"]["input_tokens"] == input_tokens {
            Ok(t)
        } else {
            Err(t)
        }
    })
}

/// The line after the first one that starts with `prefix`.
fn line_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"));
    lines.next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_run_reads_as_a_transcript_with_tools_usage_and_cost() {
    let sandbox = Sandbox::new();
    claude_config(&sandbox);
    let agent = format!("cat {}", fixture().display());
    let _daemon = sandbox
        .daemon()
        .env("AIFACTORY_TEST_AGENT_CMD", &agent)
        .start();
    let shim = sandbox.http().start();
    let id = task(&sandbox);
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    let shown = wait_phase(&sandbox, &id, "done", 200);

    // `tasks show --json`: the fields the issue names, with the run's numbers.
    assert_eq!(shown["agent_session_id"], SESSION, "{shown:#}");
    assert_eq!(shown["usage"]["input_tokens"], 200, "{shown:#}");
    assert_eq!(shown["usage"]["output_tokens"], 40, "{shown:#}");
    assert_eq!(shown["usage"]["cost_usd"], 0.0016, "{shown:#}");
    assert_eq!(shown["turns"], 3, "{shown:#}");
    assert_eq!(shown["last_tool"], "Bash", "{shown:#}");
    assert!(shown["failure"].is_null(), "{shown:#}");

    // As a person reads it: each call with its result right under it, the result line.
    let text = sandbox
        .ctl(&["tasks", "transcript", &id])
        .assert_ok()
        .stdout
        .clone();
    assert!(
        text.starts_with(&format!("● started claude-opus-5-5 (session {SESSION}")),
        "{text}"
    );
    assert!(
        text.contains("Writing the file and the progress line.\n"),
        "{text}"
    );
    assert!(
        line_after(&text, "→ Write").starts_with("  ✓ ok: File created successfully"),
        "{text}"
    );
    assert!(
        line_after(&text, "→ Bash").starts_with("  ✓ ok: (Bash completed with no output)"),
        "{text}"
    );
    assert!(
        text.contains("progress: 50"),
        "the Bash command is shown: {text}"
    );
    let result = text
        .lines()
        .find(|l| l.starts_with("■ "))
        .unwrap_or_else(|| panic!("no result line: {text}"));
    assert!(result.starts_with("■ success: 3 turns"), "{result}");
    assert!(result.contains("tokens in 200, out 40"), "{result}");
    assert!(result.ends_with(COST), "{result}");

    // --json: one entry per line, in order.
    let json = sandbox
        .ctl(&["tasks", "transcript", &id, "--json"])
        .assert_ok()
        .stdout
        .clone();
    let entries: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(entries.iter().all(|e| e["attempt"] == 1), "{json}");
    assert!(
        entries
            .iter()
            .any(|e| e["event"]["tool_call"]["tool"] == "Bash"),
        "{json}"
    );
    let last = entries.last().unwrap();
    assert_eq!(
        last["event"]["result"]["usage"]["cost_usd"], 0.0016,
        "{json}"
    );

    // The text views carry the cost.
    let show_text = sandbox
        .ctl(&["tasks", "show", &id])
        .assert_ok()
        .stdout
        .clone();
    assert!(show_text.contains(COST), "{show_text}");
    assert!(
        show_text.contains(&format!("agent sess  {SESSION}")),
        "{show_text}"
    );
    assert!(show_text.contains("last tool   Bash"), "{show_text}");
    let board = sandbox.ctl_with(&["tasks", "board"], |c| {
        c.env("COLUMNS", "200");
    });
    assert!(board.assert_ok().stdout.contains(COST), "{board:?}");
    let project = sandbox
        .ctl(&["projects", "show", "demo"])
        .assert_ok()
        .stdout
        .clone();
    assert!(
        project.contains(&format!(
            "tokens in 200, out 40, cache read 0, cache write 0, {COST}"
        )),
        "{project}"
    );

    // The shim: the same transcript, `after` pages it, and SSE carries the entries.
    let http = reqwest::Client::new();
    let get = async |query: &str| -> Value {
        let response = http
            .get(shim.url(&format!("/api/v1/tasks/{id}/transcript{query}")))
            .bearer_auth(&shim.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    };
    let whole = get("").await;
    assert_eq!(whole["task_id"], id.as_str());
    assert_eq!(whole["dropped"], 0);
    assert_eq!(whole["entries"].as_array().unwrap(), &entries);
    let tail = get(&format!("?after={}", seqs[seqs.len() - 2])).await;
    assert_eq!(
        tail["entries"].as_array().unwrap(),
        &entries[entries.len() - 1..]
    );
    let agent_events = sse_task_agent(&shim, &id, entries.len()).await;
    let streamed: Vec<&Value> = agent_events
        .iter()
        .map(|e| &e["kind"]["TaskAgent"]["entry"])
        .collect();
    assert_eq!(streamed, entries.iter().collect::<Vec<_>>());

    // A fresh restart by hand is a new run (attempts count from 1 again), set apart in the
    // transcript; the usage adds up.
    sandbox
        .ctl(&["tasks", "restart", &id, "--fresh"])
        .assert_ok();
    let shown = wait_phase(&sandbox, &id, "done", 400);
    assert_eq!(shown["usage"]["cost_usd"], 0.0032, "{shown:#}");
    let text = sandbox
        .ctl(&["tasks", "transcript", &id])
        .assert_ok()
        .stdout
        .clone();
    assert_eq!(text.matches("● started").count(), 2, "{text}");
    assert_eq!(text.matches("── new run ──").count(), 1, "{text}");

    // The shim's restart takes `fresh` too, and refuses what is not a boolean.
    let restart = async |query: &str| {
        http.post(shim.url(&format!("/api/v1/tasks/{id}/restart{query}")))
            .bearer_auth(&shim.token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(restart("?fresh=maybe").await, 400);
    assert_eq!(restart("?fresh=true&grace=1").await, 200);
    wait_phase(&sandbox, &id, "done", 600);
}

/// The first `count` `TaskAgent` events of `task` on the shim's SSE stream, from the first
/// kept event.
async fn sse_task_agent(shim: &Http, task: &str, count: usize) -> Vec<Value> {
    let mut response = reqwest::Client::new()
        .get(shim.url("/api/v1/events?after=0"))
        .bearer_auth(&shim.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let (mut buffer, mut found) = (String::new(), Vec::new());
    while found.len() < count {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} TaskAgent events by SSE within {TIMEOUT:?}; got {found:#?}",
                    count
                )
            })
            .unwrap()
            .expect("the stream goes on");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if !event.lines().any(|l| l == "event: TaskAgent") {
                continue;
            }
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("no data: {event}"));
            let data: Value = serde_json::from_str(data).unwrap();
            if data["kind"]["TaskAgent"]["task_id"] == task {
                found.push(data);
            }
        }
    }
    found
}

fn wait_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "--follow did not exit with the agent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn transcript_follow_prints_entries_as_they_come_and_exits_with_the_agent() {
    let sandbox = Sandbox::new();
    claude_config(&sandbox);
    let release = sandbox.path().join("release");
    // The first three lines (start, a message, the Write call), then the rest once released,
    // then a failing exit status.
    let agent = sandbox.script(
        "agent.sh",
        &format!(
            "head -n 3 {fixture}\nwhile [ ! -e {release} ]; do sleep 0.05; done\ntail -n +4 {fixture}\nexit 7",
            fixture = fixture().display(),
            release = release.display()
        ),
    );
    let _daemon = sandbox
        .daemon()
        .env("AIFACTORY_TEST_AGENT_CMD", agent.to_str().unwrap())
        .start();
    let id = task(&sandbox);
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();

    let out_path = sandbox.path().join("follow.out");
    let mut follow = sandbox
        .ctl_command(&["tasks", "transcript", &id, "--follow"])
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What the agent said so far, while it still runs.
    wait_file(&out_path, TIMEOUT, |b| {
        String::from_utf8_lossy(b).contains("→ Write")
    });
    assert!(
        follow.try_wait().unwrap().is_none(),
        "--follow exited while the agent still runs"
    );
    std::fs::write(&release, "").unwrap();
    assert_eq!(wait_exit(&mut follow), Some(7), "the agent's exit status");
    let text = std::fs::read_to_string(&out_path).unwrap();
    // Everything once: the stored part and the live part meet without a gap or a double.
    for (line, count) in [
        ("● started", 1),
        ("→ Write", 1),
        ("→ Bash", 1),
        ("  ✓ ok", 2),
        ("Done: hello.txt written.", 1),
        ("■ success", 1),
    ] {
        assert_eq!(text.matches(line).count(), count, "{line:?} in:\n{text}");
    }
    assert!(text.contains(COST), "{text}");
    let shown = sandbox.show_task(&id);
    assert_eq!(shown["phase"], "failed", "{shown:#}");

    // The failure by kind, with its fix, in `tasks show` and as the card's badge.
    let failure = &shown["failure"];
    let kind = failure["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("{shown:#}"));
    let (message, fix) = (failure["message"].as_str(), failure["fix"].as_str());
    assert!(
        message.is_some() && fix.is_some_and(|f| !f.is_empty()),
        "{shown:#}"
    );
    let show_text = sandbox
        .ctl(&["tasks", "show", &id])
        .assert_ok()
        .stdout
        .clone();
    assert!(
        show_text.contains(&format!("failure     {kind}: {}\n", message.unwrap())),
        "{show_text}"
    );
    assert!(
        show_text.contains(&format!("fix         {}\n", fix.unwrap())),
        "{show_text}"
    );
    let board = sandbox.ctl_with(&["tasks", "board"], |c| {
        c.env("COLUMNS", "200");
    });
    assert!(
        board.assert_ok().stdout.contains(&format!("[{kind}]")),
        "{board:?}"
    );

    // After the end, --follow prints what is stored and exits with the same status at once.
    let again = sandbox.ctl(&["tasks", "transcript", &id, "--follow", "--json"]);
    assert_eq!(again.code, Some(7), "{again:?}");
    let stored = sandbox.ctl(&["tasks", "transcript", &id, "--json"]);
    assert!(!stored.assert_ok().stdout.is_empty(), "{stored:?}");
    assert_eq!(again.stdout, stored.stdout);
}
