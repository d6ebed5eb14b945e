//! The adapters against the real CLIs' output: the fixtures under `tests/fixtures/agents/`
//! were captured from Claude Code 2.1.332 and codex-cli 0.171.0 run against a scripted model
//! API (see `tests/agents/README.md`). Then property tests: whatever the chunking, junk or
//! truncation, the events are the same and nothing panics; and 10 MB of output.
//!
//! One file past 600 lines on purpose: it is the adapters' whole contract with the real CLIs,
//! every fixture next to the others, sharing one set of readers and the `shape` notation.

use aifactory_common::agent::{AgentEvent, FailureKind, Usage};
use aifactory_common::pane::ExitInfo;
use aifactory_common::protocol::AgentKind;
use proptest::prelude::*;
use serde_json::Value;

use super::{
    Adapter, HeadlessSettings, exit_failure, headless_command, inside_cage, lost_failure, prompt,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/agents/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fixture's lines as a PTY shows them: `\r\n` line ends.
fn as_pty(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 64);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn read(kind: AgentKind, bytes: &[u8]) -> (Adapter, Vec<AgentEvent>) {
    let mut adapter = Adapter::for_kind(kind).unwrap();
    let mut events = adapter.feed(bytes);
    events.extend(adapter.finish());
    (adapter, events)
}

fn exited(code: i32) -> ExitInfo {
    ExitInfo {
        code: Some(code),
        signal: None,
        ended_at: "2026-12-03T14:05:17.000Z".into(),
    }
}

/// A field of the fixture's line of `type`, read independently of the adapter (a re-captured
/// fixture has new ids).
fn field_of(bytes: &[u8], line_type: &str, key: &str) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == line_type)
        .and_then(|v| v[key].as_str().map(str::to_string))
        .unwrap()
}

/// `M` message, `C:tool` call, `R:tool:ok|err` result, `D:tool` denial, `S` start, `E:ok|err`
/// end: a run's events at a glance.
fn shape(events: &[AgentEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            AgentEvent::Started { .. } => "S".into(),
            AgentEvent::Message { .. } => "M".into(),
            AgentEvent::ToolCall { tool, .. } => format!("C:{tool}"),
            AgentEvent::ToolResult { tool, ok, .. } => format!(
                "R:{}:{}",
                tool.as_deref().unwrap_or("?"),
                if *ok { "ok" } else { "err" }
            ),
            AgentEvent::Denied { tool, .. } => format!("D:{tool}"),
            AgentEvent::Result(r) => format!("E:{}", if r.ok { "ok" } else { "err" }),
        })
        .collect()
}

fn result(events: &[AgentEvent]) -> &aifactory_common::agent::AgentResult {
    events
        .iter()
        .find_map(|e| match e {
            AgentEvent::Result(r) => Some(r),
            _ => None,
        })
        .unwrap()
}

#[test]
fn claude_success_reads_into_start_messages_tool_calls_results_and_usage() {
    let bytes = fixture("claude-success.jsonl");
    let (adapter, events) = read(AgentKind::ClaudeCode, &as_pty(&bytes));
    assert_eq!(
        shape(&events),
        [
            "S",
            "M",
            "C:Write",
            "C:Bash",
            "R:Write:ok",
            "R:Bash:ok",
            "M",
            "E:ok"
        ]
    );
    let session = field_of(&bytes, "result", "session_id");
    assert_eq!(adapter.agent_session_id(), Some(session.as_str()));
    let AgentEvent::Started {
        agent_session_id,
        model,
        tools,
    } = &events[0]
    else {
        panic!("{:?}", events[0]);
    };
    assert_eq!(agent_session_id, &session);
    assert_eq!(model.as_deref(), Some("claude-opus-5-5"));
    assert!(tools.iter().any(|t| t == "Bash") && tools.iter().any(|t| t == "Write"));
    let AgentEvent::ToolCall {
        call_id, summary, ..
    } = &events[2]
    else {
        panic!("{:?}", events[2]);
    };
    assert_eq!(call_id.as_deref(), Some("toolu_scripted_1_0"));
    assert!(summary.ends_with("/hello.txt"), "{summary}");
    assert!(matches!(&events[3], AgentEvent::ToolCall { summary, .. }
        if summary == "echo 'progress: 50' >> progress.md"));
    assert!(matches!(&events[5], AgentEvent::ToolResult { summary, .. }
        if summary == "(Bash completed with no output)"));
    assert_eq!(
        events[6],
        AgentEvent::Message {
            text: "Done: hello.txt written.".into()
        }
    );
    let end = result(&events);
    assert_eq!(end.status, "success");
    assert_eq!(end.message.as_deref(), Some("Done: hello.txt written."));
    assert_eq!(end.turns, Some(3));
    assert_eq!(end.duration_ms, Some(1386));
    assert_eq!(
        end.usage,
        Usage {
            input_tokens: 200,
            output_tokens: 40,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cost_usd: Some(0.0016),
        }
    );
    assert_eq!(adapter.failure(Some(&exited(0))), None);
}

#[test]
fn claude_failures_are_classified_from_their_real_result_lines() {
    for (name, exit, expected_kind, events, message) in [
        (
            "claude-401.jsonl",
            1,
            FailureKind::Auth,
            &["S", "E:err"][..],
            "Invalid API key · Fix external API key (exited 1)",
        ),
        (
            "claude-429.jsonl",
            1,
            FailureKind::RateLimit,
            &["S", "E:err"],
            "API Error: Request rejected (429) · Number of request tokens has exceeded your per-minute rate limit (exited 1)",
        ),
        (
            "claude-overloaded.jsonl",
            1,
            FailureKind::Overloaded,
            &["S", "E:err"],
            "API Error: 529 Overloaded.",
        ),
        (
            "claude-max-turns.jsonl",
            1,
            FailureKind::MaxTurns,
            &["S", "M", "C:Bash", "R:Bash:ok", "E:err"],
            "Reached maximum number of turns (1) (exited 1)",
        ),
        (
            "claude-prompt-too-long.jsonl",
            1,
            FailureKind::ContextOverflow,
            &["S", "E:err"],
            "Prompt is too long",
        ),
        (
            "claude-connection-refused.jsonl",
            1,
            FailureKind::Crashed,
            &["S", "E:err"],
            "API Error: Connection refused",
        ),
        (
            // Exit 0 and `is_error: false`, but the agent could not do its work.
            "claude-denied.jsonl",
            0,
            FailureKind::PermissionDenied,
            &["S", "M", "C:Bash", "D:Bash", "R:Bash:err", "M", "E:ok"],
            "1 tool call was denied: Bash (Output redirection to",
        ),
    ] {
        let (adapter, read) = read(AgentKind::ClaudeCode, &fixture(name));
        assert_eq!(shape(&read), events, "{name}");
        let failure = adapter.failure(Some(&exited(exit))).unwrap();
        assert_eq!(failure.kind, expected_kind, "{name}: {failure:?}");
        assert!(
            failure.message.starts_with(message),
            "{name}: {}",
            failure.message
        );
        assert!(!failure.fix.is_empty());
    }

    let (adapter, events) = read(AgentKind::ClaudeCode, &fixture("claude-401.jsonl"));
    assert_eq!(result(&events).status, "api_error");
    assert!(
        adapter
            .failure(Some(&exited(1)))
            .unwrap()
            .fix
            .contains("key source")
    );
    let (adapter, _) = read(AgentKind::ClaudeCode, &fixture("claude-429.jsonl"));
    let failure = adapter.failure(Some(&exited(1))).unwrap();
    assert_eq!(failure.retry_after_ms, Some(2384), "the CLI's retry delay");
    let (adapter, _) = read(AgentKind::ClaudeCode, &fixture("claude-denied.jsonl"));
    assert!(
        adapter
            .failure(Some(&exited(0)))
            .unwrap()
            .fix
            .contains("--permission-mode bypassPermissions")
    );
}

#[test]
fn claude_runs_that_recovered_or_resumed_succeed() {
    for (name, shape_expected) in [
        (
            "claude-overloaded-then-success.jsonl",
            &["S", "M", "E:ok"][..],
        ),
        ("claude-hang-released.jsonl", &["S", "M", "E:ok"]),
        ("claude-resume.jsonl", &["S", "M", "E:ok"]),
    ] {
        let bytes = fixture(name);
        let (adapter, events) = read(AgentKind::ClaudeCode, &bytes);
        assert_eq!(shape(&events), shape_expected, "{name}");
        assert_eq!(adapter.failure(Some(&exited(0))), None, "{name}");
        let session = field_of(&bytes, "system", "session_id");
        assert_eq!(adapter.agent_session_id(), Some(session.as_str()));
    }
}

#[test]
fn a_retry_that_went_through_explains_no_later_failure() {
    let bytes = fixture("claude-overloaded-then-success.jsonl");
    let (_, whole) = read(AgentKind::ClaudeCode, &bytes);
    // Cut before the result line, then the process dies.
    let cut = bytes.len() - bytes.rsplit(|&b| b == b'\n').nth(1).unwrap().len() - 1;
    let (adapter, events) = read(AgentKind::ClaudeCode, &bytes[..cut]);
    assert_eq!(shape(&events), ["S", "M"]);
    assert_eq!(whole.len(), 3);
    let failure = adapter.failure(Some(&exited(139))).unwrap();
    assert_eq!(failure.kind, FailureKind::Crashed);
    // Still retrying when it died: the provider's overload explains it.
    let retrying: Vec<u8> = bytes
        .split_inclusive(|&b| b == b'\n')
        .take(3)
        .flatten()
        .copied()
        .collect();
    let (adapter, events) = read(AgentKind::ClaudeCode, &retrying);
    assert_eq!(shape(&events), ["S"]);
    let failure = adapter.failure(Some(&exited(143))).unwrap();
    assert_eq!(failure.kind, FailureKind::Overloaded);
    assert!(failure.retry_after_ms.is_some());
}

#[test]
fn claude_in_a_pty_and_its_refusals_in_plain_text() {
    // Real PTY bytes: `\r\n` line ends, then `ESC[?25h` with no line end.
    let (adapter, events) = read(AgentKind::ClaudeCode, &fixture("claude-pty.raw"));
    assert_eq!(shape(&events), ["S", "M", "E:ok"]);
    assert_eq!(adapter.failure(Some(&exited(0))), None);

    let (adapter, events) = read(
        AgentKind::ClaudeCode,
        &as_pty(&fixture("claude-root-refused.stderr")),
    );
    assert!(events.is_empty());
    assert_eq!(adapter.agent_session_id(), None);
    let failure = adapter.failure(Some(&exited(1))).unwrap();
    assert_eq!(failure.kind, FailureKind::Config);
    assert!(failure.fix.contains("IS_SANDBOX=1"));

    // Captured from 2.1.332: `--resume` of a session that is not there.
    let gone = b"No conversation found with session ID: 11111111-2222-3333-4444-555555555555\r\n\
{\"type\":\"result\",\"subtype\":\"error_during_execution\",\"duration_ms\":0,\"is_error\":true,\"num_turns\":0,\"session_id\":\"11111111-2222-3333-4444-555555555555\",\"total_cost_usd\":0,\"permission_denials\":[],\"errors\":[\"No conversation found with session ID: 11111111-2222-3333-4444-555555555555\"]}\r\n";
    let (adapter, events) = read(AgentKind::ClaudeCode, gone);
    assert_eq!(shape(&events), ["E:err"]);
    assert_eq!(
        adapter.agent_session_id(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    let failure = adapter.failure(Some(&exited(1))).unwrap();
    assert_eq!(failure.kind, FailureKind::Config);
    assert!(failure.fix.contains("--fresh"));

    let (adapter, _) = read(
        AgentKind::ClaudeCode,
        b"error: unknown option '--bogus'\r\n",
    );
    assert_eq!(
        adapter.failure(Some(&exited(1))).unwrap().kind,
        FailureKind::Config
    );
}

#[test]
fn codex_success_reads_commands_messages_and_usage_without_cost() {
    let bytes = fixture("codex-success.jsonl");
    let (adapter, events) = read(AgentKind::Codex, &as_pty(&bytes));
    assert_eq!(
        shape(&events),
        [
            "S",
            "C:command_execution",
            "R:command_execution:ok",
            "M",
            "E:ok"
        ]
    );
    let thread = field_of(&bytes, "thread.started", "thread_id");
    assert_eq!(adapter.agent_session_id(), Some(thread.as_str()));
    assert!(
        matches!(&events[1], AgentEvent::ToolCall { call_id: Some(id), summary, .. }
        if id == "item_1" && summary.contains("echo hello > out.txt"))
    );
    let end = result(&events);
    assert_eq!(end.message.as_deref(), Some("Done: wrote out.txt."));
    assert_eq!(end.turns, Some(1));
    assert_eq!(
        end.usage,
        Usage {
            input_tokens: 180,
            output_tokens: 40,
            cache_read_tokens: 20,
            cache_write_tokens: 0,
            cost_usd: None,
        }
    );
    assert_eq!(adapter.failure(Some(&exited(0))), None);

    // The same run in a PTY, after codex's plain-text warning.
    let (adapter, pty) = read(
        AgentKind::OpenaiCompatible,
        &fixture("codex-success-pty.raw"),
    );
    assert_eq!(shape(&pty), shape(&events));
    assert_eq!(adapter.failure(Some(&exited(0))), None);
}

#[test]
fn codex_failed_commands_are_failed_results_and_the_run_still_succeeds() {
    let (adapter, events) = read(AgentKind::Codex, &fixture("codex-tool-failed.jsonl"));
    assert_eq!(
        shape(&events),
        [
            "S",
            "C:command_execution",
            "R:command_execution:err",
            "C:command_execution",
            "R:command_execution:err",
            "M",
            "E:ok"
        ]
    );
    assert!(matches!(&events[2], AgentEvent::ToolResult { summary, .. }
        if summary.starts_with("exit 1: /bin/bash: line 1: /") && summary.ends_with(": Read-only file system")));
    assert!(matches!(&events[4], AgentEvent::ToolResult { summary, .. } if summary == "exit 3"));
    assert_eq!(adapter.failure(Some(&exited(0))), None);
}

#[test]
fn codex_failures_are_classified_from_their_real_lines() {
    for (name, expected) in [
        ("codex-auth-401.jsonl", Some(FailureKind::Auth)),
        (
            "codex-auth-401-default-retries.jsonl",
            Some(FailureKind::Auth),
        ),
        ("codex-rate-limit-429.jsonl", Some(FailureKind::RateLimit)),
        ("codex-overloaded-503.jsonl", Some(FailureKind::Overloaded)),
        ("codex-hang-idle-timeout.jsonl", Some(FailureKind::Crashed)),
        ("codex-retry-429-503-then-success.jsonl", None),
    ] {
        let (adapter, events) = read(AgentKind::Codex, &fixture(name));
        let ok = expected.is_none();
        assert_eq!(
            shape(&events).last().map(String::as_str),
            Some(if ok { "E:ok" } else { "E:err" }),
            "{name}"
        );
        let exit = exited(if ok { 0 } else { 1 });
        let failure = adapter.failure(Some(&exit));
        assert_eq!(
            failure.as_ref().map(|f| f.kind),
            expected,
            "{name}: {failure:?}"
        );
    }
    let (adapter, _) = read(AgentKind::Codex, &fixture("codex-auth-401.jsonl"));
    let failure = adapter.failure(Some(&exited(1))).unwrap();
    assert!(
        failure
            .message
            .starts_with("unexpected status 401 Unauthorized")
    );
    assert!(failure.fix.contains("codex login"));
}

#[test]
fn codex_without_its_key_variable_is_an_auth_failure() {
    // Captured from codex-cli 0.171.0, resuming with a provider whose env_key is unset.
    let lines = b"WARNING: proceeding, even though we could not create PATH aliases\r\n\
{\"type\":\"thread.started\",\"thread_id\":\"01a23c43-d1b2-7652-b437-d478988975ad\"}\r\n\
{\"type\":\"item.completed\",\"item\":{\"id\":\"item_0\",\"type\":\"error\",\"message\":\"This session was recorded with model `gpt-6.2-sol` but is resuming with `test-model`.\"}}\r\n\
{\"type\":\"turn.started\"}\r\n\
{\"type\":\"error\",\"message\":\"Missing environment variable: `UNSET_VAR_X`.\"}\r\n\
{\"type\":\"turn.failed\",\"error\":{\"message\":\"Missing environment variable: `UNSET_VAR_X`.\"}}\r\n";
    let (adapter, events) = read(AgentKind::OpenaiCompatible, lines);
    assert_eq!(shape(&events), ["S", "E:err"]);
    let failure = adapter.failure(Some(&exited(1))).unwrap();
    assert_eq!(failure.kind, FailureKind::Auth);
    assert_eq!(
        failure.message,
        "Missing environment variable: `UNSET_VAR_X`. (exited 1)"
    );
}

#[test]
fn a_resumed_codex_thread_keeps_its_id() {
    let first = fixture("codex-resume-first.jsonl");
    let (a, _) = read(AgentKind::Codex, &first);
    let (b, events) = read(AgentKind::Codex, &fixture("codex-resume-second.jsonl"));
    assert_eq!(a.agent_session_id(), b.agent_session_id());
    assert_eq!(
        a.agent_session_id(),
        Some(field_of(&first, "thread.started", "thread_id").as_str())
    );
    assert_eq!(result(&events).message.as_deref(), Some("Resumed answer."));
}

#[test]
fn an_attempt_starts_with_its_prompt_as_the_last_argument() {
    let file = std::path::Path::new("/w/.aifactory/specs/s/build-progress.txt");
    let text = prompt("Fix the build", None, file, Some("it failed: crashed"));
    let argv = headless_command(
        AgentKind::ClaudeCode,
        &HeadlessSettings::default(),
        &text,
        Some("id"),
    )
    .unwrap();
    assert_eq!(argv.last(), Some(&text));
    assert!(text.contains("why it was restarted: it failed: crashed."));
}

#[test]
fn inside_the_cage_codex_gives_its_sandbox_way_and_claude_is_unchanged() {
    let settings = HeadlessSettings::default();
    let mut codex = headless_command(AgentKind::Codex, &settings, "-- hi", Some("id")).unwrap();
    inside_cage(AgentKind::Codex, &mut codex);
    let at = codex.iter().position(|a| a == "--sandbox").unwrap();
    assert_eq!(codex[at + 1], "danger-full-access");
    assert_eq!(codex.last().map(String::as_str), Some("-- hi"));
    let claude = headless_command(AgentKind::ClaudeCode, &settings, "hi", None).unwrap();
    let mut caged = claude.clone();
    inside_cage(AgentKind::ClaudeCode, &mut caged);
    assert_eq!(caged, claude);
}

#[test]
fn an_opaque_agent_fails_by_its_exit_alone() {
    assert_eq!(exit_failure(None), None);
    assert_eq!(exit_failure(Some(&exited(0))), None);
    let crashed = exit_failure(Some(&exited(2))).unwrap();
    assert_eq!(crashed.kind, FailureKind::Crashed);
    assert_eq!(crashed.message, "exited 2");
    let signalled = ExitInfo {
        code: None,
        signal: Some(9),
        ended_at: String::new(),
    };
    let killed = exit_failure(Some(&signalled)).unwrap();
    assert_eq!(killed.kind, FailureKind::Killed);
    assert_eq!(killed.message, "killed by signal 9");
    let lost = lost_failure("its monitor is gone");
    assert_eq!(lost.kind, FailureKind::Crashed);
    assert_eq!(lost.message, "lost: its monitor is gone");
    assert!(lost.fix.contains("tasks logs"));
}

#[test]
fn opaque_kinds_have_no_adapter() {
    assert!(Adapter::for_kind(AgentKind::Custom).is_none());
    assert!(Adapter::for_kind(AgentKind::GeminiCli).is_none());
}

/// Every fixture of one CLI, one after the other, as a PTY shows them.
fn all_of(prefix: &str) -> Vec<u8> {
    let dir = format!("{}/../tests/fixtures/agents", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".jsonl"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    names.iter().flat_map(|n| as_pty(&fixture(n))).collect()
}

fn events_in_chunks(kind: AgentKind, bytes: &[u8], cuts: &[usize]) -> Vec<AgentEvent> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut adapter = Adapter::for_kind(kind).unwrap();
    let mut events = Vec::new();
    let mut from = 0;
    for cut in cuts {
        events.extend(adapter.feed(&bytes[from..cut]));
        from = cut;
    }
    events.extend(adapter.feed(&bytes[from..]));
    events.extend(adapter.finish());
    events
}

/// A line of junk: any bytes but a line end.
fn junk_line() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        any::<u8>().prop_filter("no line end", |b| *b != b'\n'),
        0..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_events_do_not_depend_on_the_chunking(
        cuts in prop::collection::vec(any::<usize>(), 0..40),
        codex in any::<bool>(),
    ) {
        let (kind, bytes) = if codex {
            (AgentKind::Codex, all_of("codex-"))
        } else {
            (AgentKind::ClaudeCode, all_of("claude-"))
        };
        let (_, whole) = read(kind, &bytes);
        prop_assert!(whole.len() > 20);
        prop_assert_eq!(events_in_chunks(kind, &bytes, &cuts), whole);
    }

    #[test]
    fn junk_lines_between_the_json_change_nothing(
        junk in prop::collection::vec(junk_line(), 0..30),
        codex in any::<bool>(),
    ) {
        let (kind, bytes) = if codex {
            (AgentKind::Codex, all_of("codex-"))
        } else {
            (AgentKind::ClaudeCode, all_of("claude-"))
        };
        let (_, clean) = read(kind, &bytes);
        let mut mixed = Vec::new();
        let mut junk = junk.into_iter();
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            if let Some(j) = junk.next() {
                mixed.extend_from_slice(&j);
                mixed.extend_from_slice(b"\r\n");
            }
            mixed.extend_from_slice(line);
        }
        let (_, events) = read(kind, &mixed);
        prop_assert_eq!(events, clean);
    }

    #[test]
    fn garbage_yields_no_events(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        codex in any::<bool>(),
    ) {
        let kind = if codex { AgentKind::Codex } else { AgentKind::ClaudeCode };
        let (adapter, events) = read(kind, &bytes);
        prop_assert!(events.is_empty());
        prop_assert_eq!(adapter.agent_session_id(), None);
        // Exit 1 with nothing understood is a crash, with some message.
        let failure = adapter.failure(Some(&exited(1)));
        prop_assert!(failure.is_some_and(|f| !f.message.is_empty()));
    }

    #[test]
    fn a_truncated_line_yields_nothing(
        line_pick in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        codex in any::<bool>(),
    ) {
        let (kind, bytes) = if codex {
            (AgentKind::Codex, all_of("codex-"))
        } else {
            (AgentKind::ClaudeCode, all_of("claude-"))
        };
        let lines: Vec<&[u8]> = bytes
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| l.len() > 1)
            .collect();
        let line = lines[line_pick.index(lines.len())];
        let truncated = &line[..cut.index(line.len())];
        let (_, events) = read(kind, truncated);
        prop_assert!(events.is_empty(), "{}", String::from_utf8_lossy(truncated));
        // And the line after it still reads.
        let mut then = truncated.to_vec();
        then.extend_from_slice(b"\r\n");
        then.extend_from_slice(line);
        let (_, whole) = read(kind, line);
        let (_, after) = read(kind, &then);
        prop_assert_eq!(after, whole);
    }
}

#[test]
fn ten_megabytes_of_agent_output_read_with_the_expected_counts() {
    let claude = as_pty(&fixture("claude-success.jsonl"));
    let codex = as_pty(&fixture("codex-tool-failed.jsonl"));
    let junk: &[&[u8]] = &[
        b"\x1b[?25h\x1b[2K\rbuilding... 42%\r\n",
        b"warning: unused variable `x` {not json}\r\n",
        b"{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"te\r\n",
        b"\xff\xfe binary \x00 noise\r\n",
        b"{\"unrelated\":\"json\",\"n\":[1,2,3]}\r\n",
    ];
    for (kind, run, per_run) in [
        (AgentKind::ClaudeCode, &claude, 8),
        (AgentKind::Codex, &codex, 7),
    ] {
        let mut output = Vec::with_capacity(11 << 20);
        let mut runs = 0;
        while output.len() < 10 << 20 {
            output.extend_from_slice(run);
            output.extend_from_slice(junk[runs % junk.len()]);
            runs += 1;
        }
        let mut adapter = Adapter::for_kind(kind).unwrap();
        let mut events = 0;
        let mut results = 0;
        for chunk in output.chunks(4093) {
            for event in adapter.feed(chunk) {
                events += 1;
                results += usize::from(matches!(event, AgentEvent::Result(_)));
            }
        }
        events += adapter.finish().len();
        assert_eq!(events, runs * per_run, "{kind:?}");
        assert_eq!(results, runs);
    }
}

#[test]
fn a_refused_key_being_retried_is_seen_at_its_first_retry() {
    let mut claude = Adapter::for_kind(AgentKind::ClaudeCode).unwrap();
    claude.feed(&fixture("claude-overloaded-then-success.jsonl"));
    assert!(
        !claude.retrying_in_vain(),
        "an overload is worth its retries"
    );
    let mut claude = Adapter::for_kind(AgentKind::ClaudeCode).unwrap();
    claude.feed(
        br#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":512,"error_status":401,"error":"authentication_failed","session_id":"s"}
"#,
    );
    assert!(claude.retrying_in_vain());
    let stopped = ExitInfo {
        code: None,
        signal: Some(15),
        ended_at: String::new(),
    };
    assert_eq!(
        claude.failure(Some(&stopped)).unwrap().kind,
        FailureKind::Auth
    );

    let mut codex = Adapter::for_kind(AgentKind::Codex).unwrap();
    codex.feed(&fixture("codex-auth-401-default-retries.jsonl"));
    assert!(codex.retrying_in_vain());
}
