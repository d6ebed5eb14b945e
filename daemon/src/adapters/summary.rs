//! Short, one-line accounts of what an agent passed to a tool or got back: what a transcript
//! shows of a tool call (a command, a path) instead of its whole input.

use serde_json::Value;

use crate::ansi;

/// The most characters a summary keeps.
pub const MAX_SUMMARY: usize = 200;

/// `text` on one line (line ends and other control characters become spaces, runs of spaces
/// one), cut at [`MAX_SUMMARY`] characters with `…`.
pub fn short(text: &str) -> String {
    cut(text, MAX_SUMMARY)
}

/// [`short`] with another bound; terminal escape sequences (colours, cursor moves) are left
/// out.
pub fn cut(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut count = 0;
    let mut space = true;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            ansi::skip_escape(&mut chars);
            continue;
        }
        if c.is_control() || c.is_whitespace() {
            // Runs of blanks become one space, none at the start.
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            if count == max_chars {
                out.push('…');
                return out;
            }
            out.push(' ');
            count += 1;
        }
        space = false;
        if count == max_chars {
            out.push('…');
            return out;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// The first line of `text` that is not blank, [`short`]ened.
pub fn first_line(text: &str) -> String {
    short(text.lines().find(|l| !l.trim().is_empty()).unwrap_or(""))
}

/// The last line of `text` that is not blank, [`short`]ened.
pub fn last_line(text: &str) -> String {
    short(text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(""))
}

/// What a Claude Code tool call is about: the command of `Bash`, the path of a file tool, the
/// pattern of a search, else the input as compact JSON.
pub fn claude_tool_input(tool: &str, input: &Value) -> String {
    let key = match tool {
        "Bash" => "command",
        "Read" | "Write" | "Edit" | "MultiEdit" => "file_path",
        "NotebookEdit" => "notebook_path",
        "Glob" | "Grep" => "pattern",
        "WebFetch" => "url",
        "WebSearch" => "query",
        "Task" => "description",
        _ => "",
    };
    match input.get(key).and_then(Value::as_str) {
        Some(text) => short(text),
        None => compact(input),
    }
}

/// `value` as compact JSON, [`short`]ened.
pub fn compact(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => short(text),
        other => short(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_summary_is_one_line_cut_on_a_char_boundary() {
        assert_eq!(short("  echo a\n\necho b\t "), "echo a echo b");
        assert_eq!(short("\x1b[1;31mred\x1b[0m text\x1b[?25h\r"), "red text");
        assert_eq!(short("\x1b]0;title\x07$ ls"), "$ ls");
        assert_eq!(cut("ab cd", 3), "ab …");
        assert_eq!(cut("ab cd", 2), "ab…");
        let long = "é".repeat(MAX_SUMMARY + 5);
        let cut = short(&long);
        assert_eq!(cut.chars().count(), MAX_SUMMARY + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(short(&"é".repeat(MAX_SUMMARY)), "é".repeat(MAX_SUMMARY));
        assert_eq!(first_line("\n  \nfirst\nsecond\n"), "first");
        assert_eq!(last_line("first\nlast\n\n"), "last");
    }

    #[test]
    fn tool_inputs_are_summarised_by_what_matters_for_each_tool() {
        let bash = json!({"command": "cargo test", "description": "Run the tests"});
        assert_eq!(claude_tool_input("Bash", &bash), "cargo test");
        let write = json!({"file_path": "/w/src/lib.rs", "content": "fn main() {}"});
        assert_eq!(claude_tool_input("Write", &write), "/w/src/lib.rs");
        assert_eq!(claude_tool_input("Read", &write), "/w/src/lib.rs");
        let other = json!({"todos": [{"content": "x".repeat(500)}]});
        let summary = claude_tool_input("TodoWrite", &other);
        assert!(summary.starts_with("{\"todos\":[{\"content\":\"xxx"));
        assert_eq!(summary.chars().count(), MAX_SUMMARY + 1);
        assert_eq!(claude_tool_input("Bash", &json!({})), "{}");
    }
}
