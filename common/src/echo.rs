//! How client input (ids, names, paths, commands) is echoed back in error messages and log
//! lines: in full when short, otherwise its start and its length, so a hostile 100 KB id
//! cannot turn every refusal and log line into 100 KB.

use std::ffi::OsStr;
use std::fmt;

/// Bytes of an input shown before it is cut.
pub const ECHO_MAX_BYTES: usize = 120;

/// Displays `input` (a `str`, `String`, `Path` or `OsStr`) in full up to [`ECHO_MAX_BYTES`],
/// otherwise cut there and followed by `…(N bytes)`, N being its whole length.
pub fn echo<S: AsRef<OsStr> + ?Sized>(input: &S) -> Echo<'_> {
    Echo(input.as_ref())
}

/// See [`echo`].
pub struct Echo<'a>(&'a OsStr);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0.as_encoded_bytes();
        if bytes.len() <= ECHO_MAX_BYTES {
            return write!(f, "{}", self.0.to_string_lossy());
        }
        let head = String::from_utf8_lossy(&bytes[..ECHO_MAX_BYTES]);
        // A character cut in two shows as U+FFFD at the end; drop it.
        let head = head.trim_end_matches('\u{FFFD}');
        write!(f, "{head}…({} bytes)", bytes.len())
    }
}

impl fmt::Debug for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn short_input_is_echoed_whole() {
        assert_eq!(echo("s1").to_string(), "s1");
        assert_eq!(echo(Path::new("/srv/repo")).to_string(), "/srv/repo");
        let exact = "x".repeat(ECHO_MAX_BYTES);
        assert_eq!(echo(&exact).to_string(), exact);
    }

    #[test]
    fn long_input_is_cut_and_says_its_length() {
        let id = "a".repeat(102_400);
        let shown = echo(&id).to_string();
        assert_eq!(
            shown,
            format!("{}…(102400 bytes)", "a".repeat(ECHO_MAX_BYTES))
        );
        // A multi-byte character at the cut is not split.
        let wide = "é".repeat(100);
        let shown = echo(&wide).to_string();
        assert!(shown.ends_with("…(200 bytes)"), "{shown}");
        assert!(!shown.contains('\u{FFFD}'), "{shown}");
    }
}
