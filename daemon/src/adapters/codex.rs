//! Codex's `exec --json` lines (JSONL, codex-cli 0.171), read into agent events.
//!
//! `thread.started{thread_id}` starts it (the id `exec resume` takes); `turn.started`, then
//! `item.started`/`item.updated`/`item.completed` for each item (`agent_message`, `reasoning`,
//! `command_execution`, `file_change`, `mcp_tool_call`, `web_search`, `todo_list`, `error`);
//! `turn.completed{usage}` or `turn.failed{error}` ends the turn. A top-level `error` is either
//! a retry notice (`Reconnecting... 1/5 (...)`) or the error that fails the turn. An `error`
//! item is a warning (codex prints one for any model it has no metadata for) and is not kept.
//! Codex reports no cost, and its usage is the thread's running total: after `exec resume`,
//! `turn.completed` counts the earlier runs' requests again ([`reports_thread_total`]).

use std::collections::HashSet;

use aifactory_common::agent::{AgentEvent, AgentResult, Usage};
use serde_json::Value;

use super::failure::{Ended, Evidence, Reported};
use super::{str_at, summary};

/// The status of a completed run's result; its usage is the thread's total so far.
const COMPLETED: &str = "turn.completed";

/// Whether `result`'s usage is its thread's running total (codex's), not the run's own.
pub fn reports_thread_total(result: &AgentResult) -> bool {
    result.ok && result.status == COMPLETED
}

/// Item ids remembered between `item.started` and `item.completed`; more are forgotten in one
/// batch (such an item then reports its call again when it completes).
const MAX_ITEMS: usize = 4096;

#[derive(Debug, Default)]
pub struct Codex {
    /// Tool items whose call was reported at `item.started`.
    started: HashSet<String>,
    turns: u32,
    /// The last thing the agent said, the result's message.
    last_message: Option<String>,
}

impl Codex {
    /// Reads one JSON line; false when it is not one of codex's.
    pub fn read(&mut self, line: &Value, ev: &mut Evidence, out: &mut Vec<AgentEvent>) -> bool {
        match str_at(line, "type") {
            Some("thread.started") => {
                let Some(id) = str_at(line, "thread_id") else {
                    return false;
                };
                out.push(AgentEvent::Started {
                    agent_session_id: id.to_string(),
                    model: None,
                    tools: Vec::new(),
                });
            }
            Some("turn.started") => self.turns = self.turns.saturating_add(1),
            Some("item.started") => {
                if let Some(item) = line.get("item") {
                    self.item_started(item, out);
                }
            }
            Some("item.completed") => {
                if let Some(item) = line.get("item") {
                    self.item_completed(item, out);
                }
            }
            Some("item.updated") => {}
            Some("turn.completed") => {
                let usage = line.get("usage");
                let tokens = |key| {
                    usage
                        .and_then(|u| u.get(key))
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                };
                let cached = tokens("cached_input_tokens");
                ev.result = Some(Ended {
                    ok: true,
                    ..Ended::default()
                });
                out.push(AgentEvent::Result(AgentResult {
                    ok: true,
                    status: COMPLETED.into(),
                    message: self.last_message.clone(),
                    turns: Some(self.turns),
                    duration_ms: None,
                    usage: Usage {
                        // Codex counts cached tokens within its input tokens; Claude Code and
                        // `Usage` count them apart.
                        input_tokens: tokens("input_tokens").saturating_sub(cached),
                        output_tokens: tokens("output_tokens"),
                        cache_read_tokens: cached,
                        cache_write_tokens: tokens("cache_write_input_tokens"),
                        cost_usd: None,
                    },
                }));
            }
            Some("turn.failed") => {
                let message = line
                    .get("error")
                    .and_then(|e| str_at(e, "message"))
                    .unwrap_or("the turn failed");
                ev.result = Some(Ended {
                    ok: false,
                    max_turns: false,
                    report: Reported {
                        code: "turn.failed".into(),
                        text: message.to_string(),
                        ..Reported::default()
                    },
                });
                out.push(AgentEvent::Result(AgentResult {
                    ok: false,
                    status: "turn.failed".into(),
                    message: Some(message.to_string()),
                    turns: Some(self.turns),
                    duration_ms: None,
                    usage: Usage::default(),
                }));
            }
            Some("error") => {
                let message = str_at(line, "message").unwrap_or("").to_string();
                let report = Reported {
                    text: message,
                    ..Reported::default()
                };
                if report.text.starts_with("Reconnecting...") {
                    ev.retry = Some(report);
                } else {
                    ev.error = Some(report);
                }
            }
            _ => return false,
        }
        true
    }

    fn item_started(&mut self, item: &Value, out: &mut Vec<AgentEvent>) {
        if let Some(call) = tool_call(item) {
            if let Some(id) = str_at(item, "id") {
                if self.started.len() >= MAX_ITEMS {
                    self.started.clear();
                }
                self.started.insert(id.to_string());
            }
            out.push(call);
        }
    }

    fn item_completed(&mut self, item: &Value, out: &mut Vec<AgentEvent>) {
        if str_at(item, "type") == Some("agent_message") {
            if let Some(text) = str_at(item, "text").filter(|t| !t.trim().is_empty()) {
                self.last_message = Some(text.to_string());
                out.push(AgentEvent::Message {
                    text: text.to_string(),
                });
            }
            return;
        }
        let Some(call) = tool_call(item) else {
            return;
        };
        let id = str_at(item, "id");
        if !id.is_some_and(|id| self.started.remove(id)) {
            out.push(call.clone());
        }
        let AgentEvent::ToolCall { call_id, tool, .. } = call else {
            return;
        };
        let status = str_at(item, "status");
        let exit_code = item.get("exit_code").and_then(Value::as_i64);
        let ok = !matches!(status, Some("failed" | "declined")) && exit_code.unwrap_or(0) == 0;
        let output = str_at(item, "aggregated_output").unwrap_or("");
        let summary = match (ok, exit_code) {
            (true, _) if !output.trim().is_empty() => summary::first_line(output),
            (true, _) => status.unwrap_or("completed").to_string(),
            (false, Some(code)) => {
                let last = summary::last_line(output);
                if last.is_empty() {
                    format!("exit {code}")
                } else {
                    format!("exit {code}: {last}")
                }
            }
            (false, None) => item
                .get("error")
                .map(|e| summary::compact(e.get("message").unwrap_or(e)))
                .unwrap_or_else(|| status.unwrap_or("failed").to_string()),
        };
        out.push(AgentEvent::ToolResult {
            call_id,
            tool: Some(tool),
            ok,
            summary,
        });
    }
}

/// The tool call an item is, if it is one: its type names the tool (an MCP call names its
/// server and tool).
fn tool_call(item: &Value) -> Option<AgentEvent> {
    let kind = str_at(item, "type")?;
    let (tool, summary) = match kind {
        "command_execution" => (
            kind.to_string(),
            summary::short(str_at(item, "command").unwrap_or("")),
        ),
        "file_change" => (kind.to_string(), file_changes(item)),
        "mcp_tool_call" => (
            format!(
                "mcp:{}/{}",
                str_at(item, "server").unwrap_or("?"),
                str_at(item, "tool").unwrap_or("?")
            ),
            summary::compact(item.get("arguments").unwrap_or(&Value::Null)),
        ),
        "web_search" => (
            kind.to_string(),
            summary::short(str_at(item, "query").unwrap_or("")),
        ),
        _ => return None,
    };
    Some(AgentEvent::ToolCall {
        call_id: str_at(item, "id").map(str::to_string),
        tool,
        summary,
    })
}

/// `update src/lib.rs, add src/new.rs`.
fn file_changes(item: &Value) -> String {
    let changes = item
        .get("changes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {}",
                str_at(c, "kind").unwrap_or("change"),
                str_at(c, "path").unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    summary::short(&changes)
}
