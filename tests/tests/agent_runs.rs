//! What the daemon understands of the agents it runs, end to end through a real daemon, git
//! worktrees and rmux sessions: a `claude-code` profile with its built-in headless command
//! (its program a script that prints what Claude Code prints) gets a transcript, usage and
//! cost, its conversation id, and resumes that conversation when restarted by hand — or starts
//! over with `fresh`. The real CLIs against a scripted model API are in `agent_clis*.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aifactory_common::protocol::{AgentEvent, EventKind, Request, StreamItem, TaskPhase};
use aifactory_tests::wait::wait_until;
use aifactory_tests::{Daemon, Sandbox};

const TIMEOUT: Duration = Duration::from_secs(30);
const SESSION_ID: &str = "5f0b7c7e-2b1d-4d8e-9a3a-0c1f2e3d4b5a";

/// A stand-in for `claude` that records its argv (NUL-separated) in `runs/argv-N` and
/// prints one headless run's stream-json: start, a tool call and its result, the result.
fn fake_claude(sandbox: &Sandbox) -> PathBuf {
    let record = sandbox.path().join("runs");
    std::fs::create_dir_all(&record).unwrap();
    let body = format!(
        r#"n=$(ls {record} | wc -l)
for a in "$@"; do printf '%s\0' "$a"; done > {record}/argv-$n
cat <<'EOF'
{{"type":"system","subtype":"init","session_id":"{SESSION_ID}","model":"claude-test","tools":["Bash","Write"],"permissionMode":"bypassPermissions"}}
{{"type":"assistant","message":{{"content":[{{"type":"text","text":"Writing the file."}},{{"type":"tool_use","id":"toolu_1","name":"Write","input":{{"file_path":"a.txt","content":"hi"}}}}]}},"session_id":"{SESSION_ID}"}}
{{"type":"user","message":{{"content":[{{"type":"tool_result","tool_use_id":"toolu_1","content":"File created","is_error":false}}]}},"session_id":"{SESSION_ID}"}}
not json: a line the adapter must leave alone
{{"type":"result","subtype":"success","is_error":false,"duration_ms":1200,"num_turns":2,"result":"Done.","session_id":"{SESSION_ID}","total_cost_usd":0.0125,"usage":{{"input_tokens":100,"output_tokens":20,"cache_read_input_tokens":300,"cache_creation_input_tokens":40}}}}
EOF
"#,
        record = record.display()
    );
    sandbox.script("claude", &body)
}

fn argv_of_run(sandbox: &Sandbox, n: usize) -> Vec<String> {
    let file = sandbox.path().join("runs").join(format!("argv-{n}"));
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .split_terminator('\0')
        .map(str::to_string)
        .collect()
}

/// A daemon whose default profile is Claude Code's built-in command, run by `program`; the
/// stand-in's record of its runs is outside the task's cage, so the profile lets it write there.
fn daemon_with_claude(sandbox: &Sandbox, program: &Path) -> Daemon {
    sandbox.write_config(&format!(
        "default_agent = \"claude\"\n[agents.claude]\nkind = \"claude-code\"\nprogram = {:?}\n\
         env = {{ IS_SANDBOX = \"1\" }}\nread_write = [{:?}]\n",
        program.to_str().unwrap(),
        sandbox.path().join("runs").to_str().unwrap()
    ));
    // The daemon's own environment is the key's source here.
    sandbox
        .daemon()
        .env("ANTHROPIC_API_KEY", "sk-ant-test-not-a-key")
        .start()
}

fn create_task(sandbox: &Sandbox) -> String {
    sandbox.add_project("demo");
    sandbox.create_task("demo", "001-hello", &["--title", "Say hello"])
}

fn wait_phase(sandbox: &Sandbox, id: &str, phase: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_until(&format!("task {id} {phase}"), TIMEOUT, || {
        last = sandbox.show_task(id);
        last["phase"] == phase
    });
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claude_run_leaves_a_transcript_usage_and_cost() {
    let sandbox = Sandbox::new();
    let program = fake_claude(&sandbox);
    let d = daemon_with_claude(&sandbox, &program);
    let id = create_task(&sandbox);
    let spec_dir = sandbox.show_task(&id)["spec_dir"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        Path::new(&spec_dir).join("spec.md"),
        "Print hello in a.txt.",
    )
    .unwrap();
    let client = d.client().await;
    let mut events = client
        .subscribe(Request::SubscribeEvents { after: None })
        .await
        .unwrap();
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    let task = wait_phase(&sandbox, &id, "done");

    // The built-in headless command, with the prompt built from the task.
    let argv = argv_of_run(&sandbox, 0);
    let prompt = argv.join("\n");
    for flag in ["-p", "--verbose", "bypassPermissions", "stream-json"] {
        assert!(argv.iter().any(|a| a == flag), "{flag} in {argv:?}");
    }
    assert!(prompt.contains("Say hello"), "{prompt}");
    assert!(prompt.contains("Print hello in a.txt."), "{prompt}");
    assert!(prompt.contains("progress: 40"), "{prompt}");
    assert!(!argv.iter().any(|a| a == "--resume"), "{argv:?}");
    assert!(
        !prompt.contains("sk-ant-test"),
        "the key never goes in argv"
    );

    assert_eq!(task["agent_session_id"], SESSION_ID, "{task:#}");
    assert_eq!(task["usage"]["input_tokens"], 100);
    assert_eq!(task["usage"]["output_tokens"], 20);
    assert_eq!(task["usage"]["cache_read_tokens"], 300);
    assert_eq!(task["usage"]["cost_usd"], 0.0125);
    assert_eq!(task["turns"], 2);
    assert_eq!(task["last_tool"], "Write");
    assert!(task["failure"].is_null(), "{task:#}");

    let transcript = client.task_transcript(id.clone(), None).await.unwrap();
    let kinds: Vec<&str> = transcript
        .entries
        .iter()
        .map(|e| match &e.event {
            AgentEvent::Started { .. } => "started",
            AgentEvent::Message { .. } => "message",
            AgentEvent::ToolCall { .. } => "tool_call",
            AgentEvent::ToolResult { .. } => "tool_result",
            AgentEvent::Denied { .. } => "denied",
            AgentEvent::Result(_) => "result",
        })
        .collect();
    assert_eq!(
        kinds,
        ["started", "message", "tool_call", "tool_result", "result"]
    );
    let seqs: Vec<u64> = transcript.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let later = client.task_transcript(id.clone(), Some(3)).await.unwrap();
    assert_eq!(later.entries.len(), 2);

    // Each entry was also an event, in order.
    let mut heard = Vec::new();
    while heard.len() < 5 {
        let item = tokio::time::timeout(TIMEOUT, events.next())
            .await
            .expect("agent events within the timeout")
            .expect("stream open");
        if let StreamItem::Event(e) = item
            && let EventKind::TaskAgent { task_id, entry } = e.kind
        {
            assert_eq!(task_id, id);
            heard.push(entry.seq);
        }
    }
    assert_eq!(heard, seqs);

    // One log line per event with the task's id (journald's TASK_ID under systemd), never the
    // agent's words.
    let logs = d.logs();
    for line in [
        "agent conversation started",
        "agent message",
        "agent called a tool",
        "tool result",
        "agent run ended",
    ] {
        assert!(
            logs.lines().any(|l| l.contains(line) && l.contains(&id)),
            "no `{line}` line for {id} in:\n{logs}"
        );
    }
    assert!(!logs.contains("Writing the file."), "{logs}");

    // The project's totals.
    let project = sandbox
        .ctl(&["projects", "show", "demo", "--json"])
        .assert_ok()
        .json();
    assert_eq!(project["usage"]["output_tokens"], 20, "{project:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_resumes_the_conversation_and_fresh_starts_over() {
    let sandbox = Sandbox::new();
    let program = fake_claude(&sandbox);
    let d = daemon_with_claude(&sandbox, &program);
    let id = create_task(&sandbox);
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    wait_phase(&sandbox, &id, "done");

    let client = d.client().await;
    client
        .task_restart(id.clone(), 1000, false)
        .await
        .expect("restart from done");
    let task = wait_phase_after(&sandbox, &id, 1);
    let argv = argv_of_run(&sandbox, 1);
    let at = argv.iter().position(|a| a == "--resume").expect("resumed");
    assert_eq!(argv[at + 1], SESSION_ID);
    assert!(
        argv.last().unwrap().contains("restarted by hand"),
        "the prompt says why: {argv:?}"
    );
    // Usage adds up over runs.
    assert_eq!(task["usage"]["output_tokens"], 40, "{task:#}");

    client
        .task_restart(id.clone(), 1000, true)
        .await
        .expect("fresh restart");
    wait_phase_after(&sandbox, &id, 2);
    let argv = argv_of_run(&sandbox, 2);
    assert!(!argv.iter().any(|a| a == "--resume"), "{argv:?}");
    assert!(!argv.last().unwrap().contains("restarted"), "{argv:?}");
    assert_eq!(
        TaskPhase::parse(sandbox.show_task(&id)["phase"].as_str().unwrap()),
        Some(TaskPhase::Done)
    );
}

/// The task as it is once run `n` (from 0) finished: its argv is recorded and it is done.
fn wait_phase_after(sandbox: &Sandbox, id: &str, n: usize) -> serde_json::Value {
    let argv = sandbox.path().join("runs").join(format!("argv-{n}"));
    wait_until(&format!("run {n} to start"), TIMEOUT, || argv.exists());
    wait_phase(sandbox, id, "done")
}
