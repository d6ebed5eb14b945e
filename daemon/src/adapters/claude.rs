//! Claude Code's `-p --output-format stream-json --verbose` lines, read into agent events.
//!
//! One JSON object a line (Claude Code 2.1.x): `system/init` (session id, model, tools), one
//! `assistant` line per content block (text, `tool_use`, thinking), one `user` line per
//! `tool_result`, `system/permission_denied` when a tool call is refused, `system/api_retry`
//! while a request is retried, and last a `result` (its `subtype` is `success` even for an API
//! error: `is_error`, `terminal_reason` and `api_error_status` say what happened).

use std::collections::{HashMap, HashSet};

use aifactory_common::agent::{AgentEvent, AgentResult, Usage};
use serde_json::Value;

use super::failure::{Ended, Evidence, Reported};
use super::{str_at, summary};

/// Tool call ids remembered to name the tool of a result; a run with more forgets the oldest
/// batch (its results then name no tool).
const MAX_CALLS: usize = 4096;

#[derive(Debug, Default)]
pub struct Claude {
    /// Tool call id → tool name, to name the tool of a result.
    calls: HashMap<String, String>,
    /// Tool call ids already reported denied (a `permission_denied` line comes before the
    /// result's list of the same denials).
    denied: HashSet<String>,
}

impl Claude {
    /// Reads one JSON line; false when it is not one of Claude Code's.
    pub fn read(&mut self, line: &Value, ev: &mut Evidence, out: &mut Vec<AgentEvent>) -> bool {
        match (str_at(line, "type"), str_at(line, "subtype")) {
            (Some("system"), Some("init")) => {
                let Some(id) = str_at(line, "session_id") else {
                    return false;
                };
                out.push(AgentEvent::Started {
                    agent_session_id: id.to_string(),
                    model: str_at(line, "model").map(str::to_string),
                    tools: line
                        .get("tools")
                        .and_then(Value::as_array)
                        .map(|tools| {
                            tools
                                .iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            (Some("system"), Some("permission_denied")) => {
                let tool = str_at(line, "tool_name").unwrap_or("tool");
                let summary = summary::short(str_at(line, "message").unwrap_or(""));
                if let Some(id) = str_at(line, "tool_use_id") {
                    self.remember_denied(id);
                }
                ev.denied(tool, &summary);
                out.push(AgentEvent::Denied {
                    tool: tool.to_string(),
                    summary,
                });
            }
            (Some("system"), Some("api_retry")) => {
                ev.retry = Some(Reported {
                    status: u16_at(line, "error_status"),
                    code: str_at(line, "error").unwrap_or("").to_string(),
                    text: String::new(),
                    delay_ms: line.get("retry_delay_ms").and_then(Value::as_u64),
                });
            }
            // Other notices (compact boundaries, hooks, status) say nothing of the work.
            (Some("system"), _) => {}
            (Some("assistant"), _) => self.assistant(line, ev, out),
            (Some("user"), _) => self.user(line, out),
            (Some("result"), _) => self.result(line, ev, out),
            _ => return false,
        }
        true
    }

    fn assistant(&mut self, line: &Value, ev: &mut Evidence, out: &mut Vec<AgentEvent>) {
        if line.get("is_api_error_message").and_then(Value::as_bool) == Some(true) {
            // The CLI's own account of an API error, repeated by the result line: evidence,
            // not something the agent said.
            ev.error = Some(Reported {
                status: u16_at(line, "api_error_status"),
                code: str_at(line, "error").unwrap_or("").to_string(),
                text: blocks(line).filter_map(|b| str_at(b, "text")).collect(),
                delay_ms: None,
            });
            return;
        }
        for block in blocks(line) {
            match str_at(block, "type") {
                Some("text") => {
                    if let Some(text) = str_at(block, "text").filter(|t| !t.trim().is_empty()) {
                        out.push(AgentEvent::Message {
                            text: text.to_string(),
                        });
                    }
                }
                Some("tool_use") => {
                    let tool = str_at(block, "name").unwrap_or("tool");
                    let call_id = str_at(block, "id").map(str::to_string);
                    if let Some(id) = &call_id {
                        if self.calls.len() >= MAX_CALLS {
                            self.calls.clear();
                        }
                        self.calls.insert(id.clone(), tool.to_string());
                    }
                    out.push(AgentEvent::ToolCall {
                        call_id,
                        tool: tool.to_string(),
                        summary: summary::claude_tool_input(
                            tool,
                            block.get("input").unwrap_or(&Value::Null),
                        ),
                    });
                }
                // Thinking stays the model's own.
                _ => {}
            }
        }
    }

    fn user(&mut self, line: &Value, out: &mut Vec<AgentEvent>) {
        for block in blocks(line).filter(|b| str_at(b, "type") == Some("tool_result")) {
            let call_id = str_at(block, "tool_use_id").map(str::to_string);
            out.push(AgentEvent::ToolResult {
                tool: call_id.as_ref().and_then(|id| self.calls.get(id)).cloned(),
                call_id,
                ok: block.get("is_error").and_then(Value::as_bool) != Some(true),
                summary: summary::first_line(&result_text(block.get("content"))),
            });
        }
    }

    fn result(&mut self, line: &Value, ev: &mut Evidence, out: &mut Vec<AgentEvent>) {
        // Denials the permission_denied lines did not report already.
        for denial in line
            .get("permission_denials")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = str_at(denial, "tool_use_id") {
                if self.denied.contains(id) {
                    continue;
                }
                self.remember_denied(id);
            }
            let tool = str_at(denial, "tool_name").unwrap_or("tool");
            let summary =
                summary::claude_tool_input(tool, denial.get("tool_input").unwrap_or(&Value::Null));
            ev.denied(tool, &summary);
            out.push(AgentEvent::Denied {
                tool: tool.to_string(),
                summary,
            });
        }

        let subtype = str_at(line, "subtype").unwrap_or("result");
        let terminal_reason = str_at(line, "terminal_reason");
        let is_error = line.get("is_error").and_then(Value::as_bool) == Some(true);
        let ok = !is_error && subtype == "success";
        // An API error comes as `success` with `is_error`: its terminal reason says more.
        let status = match (ok, subtype, terminal_reason) {
            (false, "success", Some(reason)) => reason,
            _ => subtype,
        };
        let errors: Vec<&str> = line
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let message = str_at(line, "result")
            .map(str::to_string)
            .or_else(|| (!errors.is_empty()).then(|| errors.join("; ")));
        let usage = line.get("usage");
        let tokens = |key| usage.and_then(|u| u.get(key)).and_then(Value::as_u64);
        let result = AgentResult {
            ok,
            status: status.to_string(),
            message: message.clone(),
            turns: line
                .get("num_turns")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            duration_ms: line.get("duration_ms").and_then(Value::as_u64),
            usage: Usage {
                input_tokens: tokens("input_tokens").unwrap_or(0),
                output_tokens: tokens("output_tokens").unwrap_or(0),
                cache_read_tokens: tokens("cache_read_input_tokens").unwrap_or(0),
                cache_write_tokens: tokens("cache_creation_input_tokens").unwrap_or(0),
                cost_usd: line.get("total_cost_usd").and_then(Value::as_f64),
            },
        };
        let code = [
            Some(subtype),
            terminal_reason,
            str_at(line, "api_error_type"),
            str_at(line, "api_error"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        ev.result = Some(Ended {
            ok,
            max_turns: subtype == "error_max_turns" || terminal_reason == Some("max_turns"),
            report: Reported {
                status: u16_at(line, "api_error_status"),
                code,
                text: message.unwrap_or_default(),
                delay_ms: None,
            },
        });
        out.push(AgentEvent::Result(result));
    }

    fn remember_denied(&mut self, id: &str) {
        if self.denied.len() >= MAX_CALLS {
            self.denied.clear();
        }
        self.denied.insert(id.to_string());
    }

    /// The session id a result line names (for a run whose init line was lost).
    pub fn result_session_id(line: &Value) -> Option<&str> {
        (str_at(line, "type") == Some("result"))
            .then(|| str_at(line, "session_id"))
            .flatten()
    }
}

fn u16_at(value: &Value, key: &str) -> Option<u16> {
    value
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
}

/// The content blocks of an `assistant` or `user` line.
fn blocks(line: &Value) -> impl Iterator<Item = &Value> {
    line.get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A tool result's content: a string, or blocks whose text is joined.
fn result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| str_at(p, "text"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
