//! A task's transcript as a person reads it: one block per entry, each tool call with its
//! result folded under it, denials, the start and result lines, a separator where the attempt
//! changes. Pure text: the command in [`super`] decides where it goes.

use std::collections::HashMap;
use std::fmt::Write as _;

use aifactory_common::protocol::{AgentEvent, AgentResult, TranscriptEntry, Usage};

/// Renders entries one at a time, remembering what pairing and separators need: the attempt
/// printed last, the tool of each call, and the call the last line was about.
#[derive(Debug, Default)]
pub struct Renderer {
    width: usize,
    attempt: Option<u32>,
    tools: HashMap<String, String>,
    /// The call the previous block was (or was the result of): its result folds right under.
    open_call: Option<String>,
}

impl Renderer {
    pub fn new(width: usize) -> Renderer {
        Renderer {
            width: width.max(20),
            ..Renderer::default()
        }
    }

    /// The note for entries dropped before the first kept one, if any.
    pub fn dropped(dropped: u64) -> Option<String> {
        (dropped > 0).then(|| {
            format!("({dropped} older entries were dropped to keep the transcript bounded)\n")
        })
    }

    /// Every entry, each tool result moved under its call (calls made together are answered
    /// together, after all of them).
    pub fn render_all(&mut self, entries: &[TranscriptEntry]) -> String {
        let mut out = String::new();
        for entry in fold_results(entries) {
            out.push_str(&self.entry(entry));
        }
        out
    }

    /// One entry's block, ending in a newline.
    pub fn entry(&mut self, entry: &TranscriptEntry) -> String {
        let mut out = String::new();
        let changed = self.attempt.is_some_and(|a| a != entry.attempt);
        // A start within the same attempt number: a run started again by hand (which counts
        // attempts from 1 again).
        let started = matches!(entry.event, AgentEvent::Started { .. });
        if changed || (self.attempt.is_none() && entry.attempt > 1) {
            let _ = writeln!(out, "── attempt {} ──", entry.attempt);
            self.open_call = None;
        } else if started && self.attempt.is_some() {
            let _ = writeln!(out, "── new run ──");
            self.open_call = None;
        }
        self.attempt = Some(entry.attempt);
        let mut open_call = None;
        match &entry.event {
            AgentEvent::Started {
                agent_session_id,
                model,
                tools,
            } => {
                let _ = writeln!(
                    out,
                    "● started {} (session {}, {} tools)",
                    model
                        .as_deref()
                        .map(clean)
                        .unwrap_or_else(|| "agent".into()),
                    clean(agent_session_id),
                    tools.len()
                );
            }
            AgentEvent::Message { text } => out.push_str(&wrap(text, self.width)),
            AgentEvent::ToolCall {
                call_id,
                tool,
                summary,
            } => {
                let _ = writeln!(out, "→ {}", one_line(tool, summary));
                if let Some(id) = call_id {
                    self.tools.insert(id.clone(), tool.clone());
                    open_call = Some(id.clone());
                }
            }
            AgentEvent::ToolResult {
                call_id,
                tool,
                ok,
                summary,
            } => {
                let mark = if *ok { "✓ ok" } else { "✗ error" };
                let under_its_call = call_id.is_some() && *call_id == self.open_call;
                let tool = tool
                    .clone()
                    .or_else(|| call_id.as_ref().and_then(|id| self.tools.get(id).cloned()));
                match tool {
                    // Right under its call: the call already names the tool.
                    _ if under_its_call => {
                        let _ = writeln!(out, "  {mark}: {}", clean(summary));
                    }
                    Some(tool) => {
                        let _ = writeln!(out, "  {mark} ({}): {}", clean(&tool), clean(summary));
                    }
                    None => {
                        let _ = writeln!(out, "  {mark}: {}", clean(summary));
                    }
                }
                open_call = call_id.clone().filter(|_| under_its_call);
            }
            AgentEvent::Denied { tool, summary } => {
                let _ = writeln!(out, "✗ denied {}", one_line(tool, summary));
            }
            AgentEvent::Result(result) => out.push_str(&result_text(result)),
        }
        self.open_call = open_call;
        out
    }
}

/// An entry on one line, for the event printer: messages cut at `width` characters.
pub fn one_line_summary(event: &AgentEvent, width: usize) -> String {
    match event {
        AgentEvent::Started {
            agent_session_id,
            model,
            ..
        } => format!(
            "● started {} (session {})",
            model
                .as_deref()
                .map(clean)
                .unwrap_or_else(|| "agent".into()),
            clean(agent_session_id)
        ),
        AgentEvent::Message { text } => {
            let text = clean(text);
            if text.chars().count() > width {
                let cut: String = text.chars().take(width.saturating_sub(1)).collect();
                format!("says: {cut}…")
            } else {
                format!("says: {text}")
            }
        }
        AgentEvent::ToolCall { tool, summary, .. } => format!("→ {}", one_line(tool, summary)),
        AgentEvent::ToolResult {
            tool, ok, summary, ..
        } => {
            let mark = if *ok { "✓ ok" } else { "✗ error" };
            match tool {
                Some(tool) => format!("{mark} ({}): {}", clean(tool), clean(summary)),
                None => format!("{mark}: {}", clean(summary)),
            }
        }
        AgentEvent::Denied { tool, summary } => format!("✗ denied {}", one_line(tool, summary)),
        AgentEvent::Result(result) => result_text(result)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// The entries in reading order: each tool result right after its call (and the results of
/// that call before it), everything else where it was.
fn fold_results(entries: &[TranscriptEntry]) -> Vec<&TranscriptEntry> {
    let calls: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.event {
            AgentEvent::ToolCall {
                call_id: Some(id), ..
            } => Some((id.as_str(), i)),
            _ => None,
        })
        .collect();
    let mut results: HashMap<usize, Vec<&TranscriptEntry>> = HashMap::new();
    let mut order: Vec<(usize, &TranscriptEntry)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let call = match &entry.event {
            AgentEvent::ToolResult {
                call_id: Some(id), ..
            } => calls.get(id.as_str()).copied().filter(|&c| c < i),
            _ => None,
        };
        match call {
            Some(c) => results.entry(c).or_default().push(entry),
            None => order.push((i, entry)),
        }
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in order {
        out.push(entry);
        out.extend(results.remove(&i).unwrap_or_default());
    }
    out
}

/// `Tool: summary`, or just the tool when the summary is empty.
fn one_line(tool: &str, summary: &str) -> String {
    let summary = clean(summary);
    if summary.is_empty() {
        clean(tool)
    } else {
        format!("{}: {summary}", clean(tool))
    }
}

/// The text on one line with no control characters: an agent's output must not drive the
/// reader's terminal.
fn clean(text: &str) -> String {
    text.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Text wrapped at `width` columns on word boundaries; its own line breaks stay.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    for line in text.trim_end().lines() {
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut current = String::new();
        for word in line.split(' ') {
            let fits = current.chars().count() + 1 + word.chars().count() <= width;
            if !current.is_empty() && !fits {
                out.push_str(current.trim_end());
                out.push('\n');
                current.clear();
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push_str(current.trim_end());
        out.push('\n');
    }
    out
}

/// `■ success: 3 turns, 1.4s, tokens in 200, out 40, cache read 0, cache write 0, $0.0016`,
/// and the error text under it when the run failed.
fn result_text(result: &AgentResult) -> String {
    let mut parts = Vec::new();
    if let Some(turns) = result.turns {
        parts.push(format!("{turns} turn{}", if turns == 1 { "" } else { "s" }));
    }
    if let Some(ms) = result.duration_ms {
        parts.push(duration(ms));
    }
    parts.push(usage_text(&result.usage));
    let mut out = format!("■ {}: {}\n", clean(&result.status), parts.join(", "));
    if !result.ok
        && let Some(message) = &result.message
    {
        let _ = writeln!(out, "  ✗ {}", clean(message));
    }
    out
}

/// Tokens in, out and from the cache, and the cost when known.
pub fn usage_text(usage: &Usage) -> String {
    let mut text = format!(
        "tokens in {}, out {}, cache read {}, cache write {}",
        usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens
    );
    if let Some(cost) = usage.cost_usd {
        let _ = write!(text, ", {}", cost_text(cost));
    }
    text
}

/// Dollars: four decimals below a dollar (agent runs cost cents), two above.
pub fn cost_text(cost: f64) -> String {
    if cost.abs() < 1.0 {
        format!("${cost:.4}")
    } else {
        format!("${cost:.2}")
    }
}

fn duration(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        let s = ms / 1000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, attempt: u32, event: AgentEvent) -> TranscriptEntry {
        TranscriptEntry {
            seq,
            attempt,
            at: "2026-12-03T14:05:17.000Z".into(),
            event,
        }
    }

    fn call(id: &str, tool: &str, summary: &str) -> AgentEvent {
        AgentEvent::ToolCall {
            call_id: Some(id.into()),
            tool: tool.into(),
            summary: summary.into(),
        }
    }

    fn result(id: &str, ok: bool, summary: &str) -> AgentEvent {
        AgentEvent::ToolResult {
            call_id: Some(id.into()),
            tool: None,
            ok,
            summary: summary.into(),
        }
    }

    fn done(cost: Option<f64>) -> AgentEvent {
        AgentEvent::Result(AgentResult {
            ok: true,
            status: "success".into(),
            message: Some("Done.".into()),
            turns: Some(3),
            duration_ms: Some(1386),
            usage: Usage {
                input_tokens: 200,
                output_tokens: 40,
                cache_read_tokens: 7,
                cache_write_tokens: 0,
                cost_usd: cost,
            },
        })
    }

    #[test]
    fn a_run_reads_as_a_conversation_with_each_result_under_its_call() {
        let entries = vec![
            entry(
                1,
                1,
                AgentEvent::Started {
                    agent_session_id: "c32ea3c1".into(),
                    model: Some("claude-opus-5-5".into()),
                    tools: vec!["Bash".into(), "Write".into()],
                },
            ),
            entry(
                2,
                1,
                AgentEvent::Message {
                    text: "Writing the file.".into(),
                },
            ),
            // Two calls made together, answered together after both.
            entry(3, 1, call("t0", "Write", "/w/hello.txt")),
            entry(4, 1, call("t1", "Bash", "cargo test")),
            entry(5, 1, result("t0", true, "File created")),
            entry(6, 1, result("t1", false, "exit code 101")),
            entry(
                7,
                1,
                AgentEvent::Denied {
                    tool: "Bash".into(),
                    summary: "rm -rf /".into(),
                },
            ),
            entry(8, 1, done(Some(0.0016))),
        ];
        let text = Renderer::new(80).render_all(&entries);
        assert_eq!(
            text,
            "● started claude-opus-5-5 (session c32ea3c1, 2 tools)\n\
             Writing the file.\n\
             → Write: /w/hello.txt\n\
             \x20 ✓ ok: File created\n\
             → Bash: cargo test\n\
             \x20 ✗ error: exit code 101\n\
             ✗ denied Bash: rm -rf /\n\
             ■ success: 3 turns, 1.4s, tokens in 200, out 40, cache read 7, cache write 0, $0.0016\n"
        );
    }

    #[test]
    fn a_live_result_away_from_its_call_names_the_tool() {
        // Entry by entry, as `--follow` prints them: no reordering is possible.
        let mut r = Renderer::new(80);
        let mut text = String::new();
        for e in [
            entry(1, 1, call("t0", "Write", "a.txt")),
            entry(2, 1, call("t1", "Bash", "ls")),
            entry(3, 1, result("t0", true, "written")),
            entry(4, 1, result("t1", true, "a.txt")),
            entry(5, 1, result("unknown", true, "orphan")),
        ] {
            text.push_str(&r.entry(&e));
        }
        assert_eq!(
            text,
            "→ Write: a.txt\n→ Bash: ls\n  ✓ ok (Write): written\n  ✓ ok (Bash): a.txt\n  ✓ ok: orphan\n"
        );
    }

    #[test]
    fn attempts_are_separated_and_dropped_entries_noted() {
        let entries = vec![
            entry(
                41,
                2,
                AgentEvent::Message {
                    text: "still on attempt two".into(),
                },
            ),
            entry(
                42,
                3,
                AgentEvent::Message {
                    text: "resumed".into(),
                },
            ),
        ];
        let text = Renderer::new(80).render_all(&entries);
        assert_eq!(
            text,
            "── attempt 2 ──\nstill on attempt two\n── attempt 3 ──\nresumed\n"
        );
        assert_eq!(
            Renderer::dropped(40).as_deref(),
            Some("(40 older entries were dropped to keep the transcript bounded)\n")
        );
        assert_eq!(Renderer::dropped(0), None);
        // Restarted by hand: attempt 1 again, set apart by its new start.
        let start = AgentEvent::Started {
            agent_session_id: "s".into(),
            model: None,
            tools: Vec::new(),
        };
        let again = Renderer::new(80).render_all(&[
            entry(1, 1, start.clone()),
            entry(2, 1, AgentEvent::Message { text: "hi".into() }),
            entry(3, 1, start),
        ]);
        assert_eq!(
            again,
            "● started agent (session s, 0 tools)\nhi\n── new run ──\n● started agent (session s, 0 tools)\n"
        );
        // The first attempt needs no separator of its own.
        let first =
            Renderer::new(80).render_all(&[entry(1, 1, AgentEvent::Message { text: "hi".into() })]);
        assert_eq!(first, "hi\n");
    }

    #[test]
    fn messages_wrap_at_the_width_and_lose_control_characters() {
        let text = Renderer::new(20).entry(&entry(
            1,
            1,
            AgentEvent::Message {
                text: "one two three four five six seven\nnext \x1b[31mred".into(),
            },
        ));
        assert_eq!(text, "one two three four\nfive six seven\nnext  [31mred\n");
    }

    #[test]
    fn the_event_printer_gets_one_line_per_entry() {
        let long = AgentEvent::Message {
            text: "a\nvery long message".into(),
        };
        assert_eq!(one_line_summary(&long, 10), "says: a very lo…");
        assert_eq!(
            one_line_summary(&call("t", "Bash", "cargo test"), 80),
            "→ Bash: cargo test"
        );
        assert_eq!(
            one_line_summary(&done(Some(0.5)), 80),
            "■ success: 3 turns, 1.4s, tokens in 200, out 40, cache read 7, cache write 0, $0.5000"
        );
    }

    #[test]
    fn costs_and_failed_results_read_plainly() {
        assert_eq!(cost_text(0.0123), "$0.0123");
        assert_eq!(cost_text(0.00004), "$0.0000");
        assert_eq!(cost_text(12.345), "$12.35");
        let failed = AgentEvent::Result(AgentResult {
            ok: false,
            status: "error_max_turns".into(),
            message: Some("Reached the maximum number of turns (3)".into()),
            turns: Some(1),
            duration_ms: Some(125_000),
            usage: Usage::default(),
        });
        assert_eq!(
            Renderer::new(80).entry(&entry(9, 1, failed)),
            "■ error_max_turns: 1 turn, 2m05s, tokens in 0, out 0, cache read 0, cache write 0\n  ✗ Reached the maximum number of turns (3)\n"
        );
        // No cost known (codex): none shown.
        assert!(
            !Renderer::new(80)
                .entry(&entry(9, 1, done(None)))
                .contains('$')
        );
    }
}
