//! Reading an agent's terminal output: its plain text (escape sequences and carriage returns
//! removed), the `__EXEC_PHASE__:` markers in its complete lines, and the prompt its partial
//! last line shows when it waits for a person. Pure functions, no I/O.

use aifactory_common::protocol::TaskPhase;
use regex::Regex;

use crate::ansi::plain;
use crate::progress;

/// A partial output line longer than this is not a prompt.
const MAX_LINE: usize = 4096;

/// The line being printed: output is added as it comes, complete lines are looked at for
/// phase markers and dropped, the partial last one is kept (its last [`MAX_LINE`] bytes)
/// for [`LineBuffer::prompt`].
#[derive(Debug, Default)]
pub struct LineBuffer {
    line: Vec<u8>,
}

impl LineBuffer {
    /// Adds output; returns the phases named by markers in the lines it completed, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<TaskPhase> {
        let mut phases = Vec::new();
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            self.line.extend_from_slice(chunk);
            if self.line.len() > MAX_LINE {
                let cut = self.line.len() - MAX_LINE;
                self.line.drain(..cut);
            }
            if self.line.ends_with(b"\n") {
                let text = String::from_utf8_lossy(&self.line);
                if let Some(phase) = progress::marker_phase(&plain(&text)) {
                    phases.push(phase);
                }
                self.line.clear();
            }
        }
        phases
    }

    /// The partial last line, trimmed, when it matches one of `prompts`: the agent waits at it.
    pub fn prompt(&self, prompts: &[Regex]) -> Option<String> {
        let last = plain(&String::from_utf8_lossy(&self.line));
        let last = last.trim_end_matches(['\n']);
        (!last.trim().is_empty() && prompts.iter().any(|p| p.is_match(last)))
            .then(|| last.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_count_in_complete_lines_only() {
        let mut buffer = LineBuffer::default();
        assert_eq!(buffer.push(b"working\n__EXEC_PHASE__:co"), []);
        assert_eq!(
            buffer.push(b"ding\nx \x1b[1m__EXEC_PHASE__: qa\x1b[0m\r\n"),
            [TaskPhase::Coding, TaskPhase::Qa]
        );
        // The daemon's own phases cannot be reported.
        assert_eq!(buffer.push(b"__EXEC_PHASE__:stalled\n"), []);
    }

    #[test]
    fn a_prompt_is_the_partial_last_line() {
        let prompts = [Regex::new(r"\(y/n\)\s*$").unwrap()];
        let mut buffer = LineBuffer::default();
        buffer.push(b"Continue? (y/n)\n");
        // A complete line is not waiting for anything.
        assert_eq!(buffer.prompt(&prompts), None);
        buffer.push(b"\x1b[1mOverwrite? (y/n)\x1b[0m ");
        assert_eq!(buffer.prompt(&prompts).as_deref(), Some("Overwrite? (y/n)"));
        buffer.push(b"y\n   ");
        assert_eq!(buffer.prompt(&prompts), None);
    }

    #[test]
    fn a_long_partial_line_keeps_its_end() {
        let prompts = [Regex::new(r"\?\s*$").unwrap()];
        let mut buffer = LineBuffer::default();
        buffer.push(&vec![b'x'; 3 * MAX_LINE]);
        buffer.push(b" go on?");
        assert_eq!(buffer.line.len(), MAX_LINE);
        assert!(
            buffer
                .prompt(&prompts)
                .is_some_and(|p| p.ends_with("go on?"))
        );
    }
}
