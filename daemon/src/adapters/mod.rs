//! Agent adapters: what the daemon understands of each known agent CLI — the headless command
//! that runs it (and resumes its conversation), the prompt built from the task, and the reading
//! of its structured output, line by line, into typed [`AgentEvent`]s and, at the end, a
//! [`Failure`] by kind.
//!
//! Beside the supervisor, not inside it: the runner feeds an adapter the agent's raw terminal
//! output and carries out what it reads; the profiles use the commands.

use std::path::Path;

use aifactory_common::pane::ExitInfo;
use aifactory_common::protocol::{AgentEvent, AgentKind, AgentResult, Failure, FailureKind, Usage};
use serde_json::Value;

/// A line longer than this is not an event: it is skipped whole.
const MAX_LINE: usize = 4 << 20;

/// Reads one attempt's output.
pub struct Adapter {
    partial: Vec<u8>,
    skipping: bool,
    result: Option<AgentResult>,
}

impl Adapter {
    /// `None` for kinds whose output is opaque (custom, gemini-cli).
    pub fn for_kind(kind: AgentKind) -> Option<Adapter> {
        (kind == AgentKind::ClaudeCode).then(|| Adapter {
            partial: Vec::new(),
            skipping: false,
            result: None,
        })
    }

    /// The events of every complete line in `bytes`.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<AgentEvent> {
        let mut events = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = chunk.ends_with(b"\n");
            if !self.skipping {
                self.partial.extend_from_slice(chunk);
            }
            if self.partial.len() > MAX_LINE {
                self.partial.clear();
                self.skipping = true;
            }
            if complete {
                let line = std::mem::take(&mut self.partial);
                if !std::mem::replace(&mut self.skipping, false) {
                    events.extend(self.line(&line));
                }
            }
        }
        events
    }

    /// The events of a last line without a newline.
    pub fn finish(&mut self) -> Vec<AgentEvent> {
        let line = std::mem::take(&mut self.partial);
        if std::mem::replace(&mut self.skipping, false) {
            return Vec::new();
        }
        self.line(&line)
    }

    /// Why the run failed, or `None` when it succeeded.
    pub fn failure(&self, exit: Option<&ExitInfo>) -> Option<Failure> {
        let failed_result = self.result.as_ref().filter(|r| !r.ok);
        match (exit_failure(exit), failed_result) {
            (None, None) => None,
            (Some(f), _) if f.kind == FailureKind::Killed => Some(f),
            (by_exit, Some(result)) => Some(Failure {
                message: result
                    .message
                    .clone()
                    .unwrap_or_else(|| result.status.clone()),
                ..by_exit.unwrap_or_else(|| crashed(String::new()))
            }),
            (by_exit, None) => by_exit,
        }
    }

    fn line(&mut self, line: &[u8]) -> Vec<AgentEvent> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_matches(|c: char| c.is_whitespace());
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return Vec::new();
        };
        let str_at = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        match value.get("type").and_then(Value::as_str) {
            Some("system") if value.get("subtype").and_then(Value::as_str) == Some("init") => {
                let Some(id) = str_at(&value, "session_id") else {
                    return Vec::new();
                };
                vec![AgentEvent::Started {
                    agent_session_id: id,
                    model: str_at(&value, "model"),
                    tools: value
                        .get("tools")
                        .and_then(Value::as_array)
                        .map(|t| {
                            t.iter()
                                .filter_map(|t| t.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                }]
            }
            Some("assistant") => content(&value)
                .filter_map(|block| match block.get("type").and_then(Value::as_str) {
                    Some("text") => str_at(block, "text").map(|text| AgentEvent::Message { text }),
                    Some("tool_use") => Some(AgentEvent::ToolCall {
                        call_id: str_at(block, "id"),
                        tool: str_at(block, "name").unwrap_or_default(),
                        summary: block.get("input").map(Value::to_string).unwrap_or_default(),
                    }),
                    _ => None,
                })
                .collect(),
            Some("user") => content(&value)
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .map(|block| AgentEvent::ToolResult {
                    call_id: str_at(block, "tool_use_id"),
                    tool: None,
                    ok: block.get("is_error").and_then(Value::as_bool) != Some(true),
                    summary: str_at(block, "content").unwrap_or_default(),
                })
                .collect(),
            Some("result") => {
                let usage = value.get("usage");
                let count = |key: &str| {
                    usage
                        .and_then(|u| u.get(key))
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                };
                let result = AgentResult {
                    ok: value.get("is_error").and_then(Value::as_bool) == Some(false),
                    status: str_at(&value, "subtype").unwrap_or_default(),
                    message: str_at(&value, "result"),
                    turns: value
                        .get("num_turns")
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok()),
                    duration_ms: value.get("duration_ms").and_then(Value::as_u64),
                    usage: Usage {
                        input_tokens: count("input_tokens"),
                        output_tokens: count("output_tokens"),
                        cache_read_tokens: count("cache_read_input_tokens"),
                        cache_write_tokens: count("cache_creation_input_tokens"),
                        cost_usd: value.get("total_cost_usd").and_then(Value::as_f64),
                    },
                };
                self.result = Some(result.clone());
                vec![AgentEvent::Result(result)]
            }
            _ => Vec::new(),
        }
    }
}

/// Why a run failed, from its exit alone (for agents whose output says nothing).
pub fn exit_failure(exit: Option<&ExitInfo>) -> Option<Failure> {
    let exit = exit?;
    match (exit.code, exit.signal) {
        (Some(0), _) => None,
        (None, Some(_)) => Some(Failure {
            kind: FailureKind::Killed,
            message: exit.describe(),
            fix: "a signal ended the agent (an OOM kill, a person, a shutdown): see `journalctl` and the task's log, then restart it".into(),
            retry_after_ms: None,
        }),
        _ => Some(crashed(exit.describe())),
    }
}

/// A session lost with its monitor: the agent's end is unknown.
pub fn lost_failure(reason: &str) -> Failure {
    crashed(format!("lost: {reason}"))
}

fn crashed(message: String) -> Failure {
    Failure {
        kind: FailureKind::Crashed,
        message,
        fix: "the agent ended with an error: read its own words with `aifactoryctl tasks logs ID`"
            .into(),
        retry_after_ms: None,
    }
}

fn content(value: &Value) -> impl Iterator<Item = &Value> {
    value
        .pointer("/message/content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// What a built-in headless command is made of, from the profile.
pub struct HeadlessSettings<'a> {
    pub program: Option<&'a str>,
    pub model: Option<&'a str>,
    #[expect(dead_code, reason = "codex's provider, with the codex adapter")]
    pub base_url: Option<&'a str>,
    #[expect(dead_code, reason = "codex's provider, with the codex adapter")]
    pub api_key_env: Option<&'a str>,
}

/// The built-in headless argv of a known kind, resuming `resume` when given.
pub fn headless_command(
    kind: AgentKind,
    settings: &HeadlessSettings<'_>,
    prompt: &str,
    resume: Option<&str>,
) -> Option<Vec<String>> {
    if kind != AgentKind::ClaudeCode {
        return None;
    }
    let mut argv: Vec<String> = [
        settings.program.unwrap_or("claude"),
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "bypassPermissions",
    ]
    .map(str::to_string)
    .to_vec();
    if let Some(model) = settings.model {
        argv.extend(["--model".into(), model.to_string()]);
    }
    if let Some(id) = resume {
        argv.extend(["--resume".into(), id.to_string()]);
    }
    argv.push(prompt.to_string());
    Some(argv)
}

/// The prompt of an attempt.
pub fn prompt(
    title: &str,
    spec: Option<&str>,
    progress_file: &Path,
    why_restarted: Option<&str>,
) -> String {
    let mut text = format!("Task: {title}\n");
    if let Some(spec) = spec {
        text.push_str(&format!("\nThe spec:\n{spec}\n"));
    }
    text.push_str(&format!(
        "\nReport progress in {} with lines such as `phase: coding`, `progress: 40` and `subtask: 3/7`.\n",
        progress_file.display()
    ));
    if let Some(why) = why_restarted {
        text.push_str(&format!("\nThis run continues an earlier one: {why}.\n"));
    }
    text
}
