//! Terminal escape sequences in an agent's output: skipping them, so that what the supervisor
//! and the adapters read is the text a person sees.

/// Skips the rest of an escape sequence after its `ESC`: CSI (`[ params final`), OSC (`] ...`
/// ended by BEL or `ESC \`), else one character.
pub fn skip_escape(chars: &mut impl Iterator<Item = char>) {
    match chars.next() {
        Some('[') => {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
        Some(']') => {
            while let Some(c) = chars.next() {
                if c == '\x07' || (c == '\x1b' && chars.next() == Some('\\')) {
                    break;
                }
            }
        }
        _ => {}
    }
}

/// A line of output without escape sequences, carriage returns and control characters (tabs
/// stay).
pub fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => skip_escape(&mut chars),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn escapes_and_controls_go_tabs_stay() {
        assert_eq!(
            plain("\x1b[1;32mContinue? (y/n)\x1b[0m \r"),
            "Continue? (y/n) "
        );
        assert_eq!(plain("\x1b]0;title\x07$ "), "$ ");
        assert_eq!(plain("\x1b]8;;http://x\x1b\\link"), "link");
        assert_eq!(plain("a\tb\x07c"), "a\tbc");
    }
}
