//! Splitting an agent's terminal output into lines, whatever the chunks it arrives in: a line
//! may be split across reads, ends in `\n` (a `\r` before it is dropped, as a PTY adds one), and
//! a line longer than [`MAX_LINE`] is skipped whole so that a runaway line cannot grow memory.

/// The longest line kept; the CLIs' JSON lines are far shorter (a large tool result is a few
/// hundred KiB).
pub const MAX_LINE: usize = 4 << 20;

/// Above this, the buffer of a partial line is given back after use.
const KEEP_CAPACITY: usize = 64 << 10;

#[derive(Debug, Default)]
pub struct LineBuffer {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The current line is already longer than [`MAX_LINE`]: drop it up to its end.
    skipping: bool,
}

impl LineBuffer {
    /// Calls `line` with every line `bytes` completes, without its line end.
    pub fn push(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let head = &bytes[..end];
            bytes = &bytes[end + 1..];
            if self.skipping || self.partial.len() + head.len() > MAX_LINE {
                self.skipping = false;
                self.clear();
            } else if self.partial.is_empty() {
                line(without_cr(head));
            } else {
                self.partial.extend_from_slice(head);
                line(without_cr(&self.partial));
                self.clear();
            }
        }
        if self.skipping {
            return;
        }
        if self.partial.len() + bytes.len() > MAX_LINE {
            self.skipping = true;
            self.clear();
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// The last line when the output ended without a line end.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let skipped = std::mem::take(&mut self.skipping);
        let rest = std::mem::take(&mut self.partial);
        (!skipped && !rest.is_empty()).then(|| without_cr(&rest).to_vec())
    }

    fn clear(&mut self) {
        if self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
        }
    }
}

fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
        let mut buffer = LineBuffer::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            buffer.push(chunk, |l| lines.push(l.to_vec()));
        }
        (lines, buffer.finish())
    }

    #[test]
    fn lines_end_in_newlines_and_lose_a_carriage_return() {
        let (lines, rest) = split(&[b"one\r\ntw", b"o\n\r\nthr", b"ee\r"]);
        assert_eq!(lines, [b"one".to_vec(), b"two".to_vec(), Vec::new()]);
        assert_eq!(rest, Some(b"three".to_vec()));
        assert_eq!(split(&[b"a\n"]).1, None);
    }

    #[test]
    fn a_line_past_the_bound_is_skipped_whole_and_the_next_one_kept() {
        let long = vec![b'x'; MAX_LINE + 1];
        for chunks in [
            vec![&long[..], b"\nnext\n"],
            vec![&long[..10], &long[10..], b"\nnext\n"],
            vec![b"x", &long[1..MAX_LINE], b"x", b"\nnext\n"],
        ] {
            let (lines, rest) = split(&chunks);
            assert_eq!(lines, [b"next".to_vec()]);
            assert_eq!(rest, None);
        }
        let exact = vec![b'y'; MAX_LINE];
        let (lines, _) = split(&[&exact[..1], &exact[1..], b"\n"]);
        assert_eq!(lines, [exact]);
        let (_, rest) = split(&[&long[..]]);
        assert_eq!(rest, None, "an unended line past the bound is skipped too");
    }
}
