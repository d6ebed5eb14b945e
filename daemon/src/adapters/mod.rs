//! Agent adapters: what the daemon understands of each known agent CLI. Reading what it prints
//! into typed agent events, the conversation id that resumes it, and why its run failed; and
//! the built-in headless command and prompt it starts with. Beside the supervisor, not inside
//! it: the runner feeds an attempt's raw terminal output to its [`Adapter`] and acts on what
//! comes back. Pure code, no I/O.
//!
//! Parts: [`lines`] splits the output into lines, [`claude`] and [`codex`] read their CLI's
//! JSON lines, [`failure`] classifies a failed run, [`summary`] shortens tool inputs, results
//! and terminal text, [`command`] builds the headless argv and the prompt. A line that is not
//! the CLI's JSON stays plain output: it yields no event and is kept (its tail) for classifying.

mod claude;
mod codex;
mod command;
mod failure;
mod lines;
mod summary;
#[cfg(test)]
mod tests;

use aifactory_common::agent::{AgentEvent, Failure};
use aifactory_common::pane::ExitInfo;
use aifactory_common::protocol::AgentKind;
use serde_json::Value;

pub use self::codex::reports_thread_total;
pub use self::command::{HeadlessSettings, headless_command, inside_cage, prompt};
use self::failure::Evidence;
use self::lines::LineBuffer;

/// The CLI whose output an adapter reads (openai-compatible agents run codex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cli {
    Claude,
    Codex,
}

#[derive(Debug)]
enum Parser {
    Claude(claude::Claude),
    Codex(codex::Codex),
}

/// Reads one attempt's output.
#[derive(Debug)]
pub struct Adapter {
    lines: LineBuffer,
    reader: Reader,
}

/// What reads complete lines (apart from the line buffer, which lends them).
#[derive(Debug)]
struct Reader {
    cli: Cli,
    parser: Parser,
    evidence: Evidence,
    session_id: Option<String>,
}

impl Adapter {
    /// `None` for kinds whose output is opaque (custom, gemini-cli).
    pub fn for_kind(kind: AgentKind) -> Option<Adapter> {
        let (cli, parser) = match kind {
            AgentKind::ClaudeCode => (Cli::Claude, Parser::Claude(claude::Claude::default())),
            AgentKind::Codex | AgentKind::OpenaiCompatible => {
                (Cli::Codex, Parser::Codex(codex::Codex::default()))
            }
            AgentKind::GeminiCli | AgentKind::Custom => return None,
        };
        Some(Adapter {
            lines: LineBuffer::default(),
            reader: Reader {
                cli,
                parser,
                evidence: Evidence::default(),
                session_id: None,
            },
        })
    }

    /// Raw terminal bytes, in any chunks, to the events of every line they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<AgentEvent> {
        let mut events = Vec::new();
        let reader = &mut self.reader;
        self.lines
            .push(bytes, |line| reader.line(line, &mut events));
        events
    }

    /// At the end of the run: the events of a last line without a line end.
    pub fn finish(&mut self) -> Vec<AgentEvent> {
        let mut events = Vec::new();
        if let Some(line) = self.lines.finish() {
            self.reader.line(&line, &mut events);
        }
        events
    }

    /// The conversation id seen so far (the runner reads it back from the task's record).
    #[cfg(test)]
    pub fn agent_session_id(&self) -> Option<&str> {
        self.reader.session_id.as_deref()
    }

    /// The CLI is retrying a request that cannot succeed: a refused key (Claude Code retries a
    /// 401 like an overload, ten times over minutes; Codex five times). Its run is better
    /// stopped at once: it fails as `auth` all the same.
    pub fn retrying_in_vain(&self) -> bool {
        self.reader.evidence.retry.as_ref().is_some_and(|r| {
            matches!(r.status, Some(401 | 403))
                || r.text.contains("401 Unauthorized")
                || r.text.contains("403 Forbidden")
        })
    }

    /// Why the run failed, from what was read and the exit; `None` when it succeeded.
    pub fn failure(&self, exit: Option<&ExitInfo>) -> Option<Failure> {
        failure::classify(Some(self.reader.cli), &self.reader.evidence, exit)
    }
}

/// Why a run failed from its exit alone (an agent whose output says nothing); `None` when it
/// exited 0 or its exit is unknown.
pub fn exit_failure(exit: Option<&ExitInfo>) -> Option<Failure> {
    failure::classify(None, &Evidence::default(), Some(exit?))
}

/// A session lost with its monitor: the agent's end is unknown.
pub fn lost_failure(reason: &str) -> Failure {
    failure::lost(reason)
}

impl Reader {
    fn line(&mut self, line: &[u8], out: &mut Vec<AgentEvent>) {
        let before = out.len();
        let known = json_object(line).is_some_and(|value| {
            let known = match &mut self.parser {
                Parser::Claude(parser) => parser.read(&value, &mut self.evidence, out),
                Parser::Codex(parser) => parser.read(&value, &mut self.evidence, out),
            };
            if self.session_id.is_none() {
                self.session_id = claude::Claude::result_session_id(&value).map(str::to_string);
            }
            known
        });
        if !known {
            self.evidence.plain_line(line);
        }
        for event in &out[before..] {
            match event {
                AgentEvent::Started {
                    agent_session_id, ..
                } => self.session_id = Some(agent_session_id.clone()),
                // The agent got on with its work: the request it retried went through.
                AgentEvent::Message { .. }
                | AgentEvent::ToolCall { .. }
                | AgentEvent::ToolResult { .. }
                | AgentEvent::Denied { .. } => self.evidence.retry = None,
                AgentEvent::Result(_) => {}
            }
        }
    }
}

/// The JSON object a line holds, if any. It is read from its first `{` to its last `}`, so
/// that terminal escape sequences the PTY put around it do not hide it.
fn json_object(line: &[u8]) -> Option<Value> {
    let start = line.iter().position(|&b| b == b'{')?;
    let end = line.iter().rposition(|&b| b == b'}')?;
    if end < start {
        return None;
    }
    serde_json::from_slice::<Value>(&line[start..=end])
        .ok()
        .filter(Value::is_object)
}

fn str_at<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}
