//! What `/proc/<pid>/stat` says about a process: the one parser of that file in the workspace.

use std::io;

/// The fields of `/proc/<pid>/stat` that the daemon and the pane monitor use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// The state letter (`R`, `S`, `D`, `Z`, ...); [`describe_state`] spells it out.
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
    /// The session id (field 6): a process that called setsid leads the one of its own pid.
    pub session: u32,
    /// The controlling terminal's device number (field 7); 0 for none.
    pub tty_nr: i32,
    /// The terminal's foreground process group (field 8); -1 for none.
    pub tpgid: i32,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks since boot (field 22): with the pid, it names one process.
    pub start_time: u64,
}

/// Reads and parses `/proc/<pid>/stat`.
pub fn stat(pid: u32) -> io::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(pid, &text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat is not in the kernel's format: {text:?}"),
        )
    })
}

/// The process's start time (field 22), the half of its identity that a reused pid changes.
pub fn start_time(pid: u32) -> io::Result<u64> {
    stat(pid).map(|s| s.start_time)
}

/// Whether `pid` is still the process that started at `start_time` (not a reuse of its pid).
pub fn is_same_process(pid: u32, start_time: u64) -> bool {
    self::start_time(pid).is_ok_and(|t| t == start_time)
}

/// Parses the text of a stat file. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`: what follows starts at field 3.
pub fn parse_stat(pid: u32, text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: u32::try_from(number(1)?).ok()?,
        pgid: u32::try_from(number(2)?).ok()?,
        session: u32::try_from(number(3)?).ok()?,
        tty_nr: fields.get(4)?.parse().ok()?,
        tpgid: fields.get(5)?.parse().ok()?,
        cpu_ticks: number(11)?.checked_add(number(12)?)?,
        start_time: number(19)?,
    })
}

/// The state letter spelled out, as `ps` would: "S (sleeping)".
pub fn describe_state(state: char) -> String {
    let word = match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep",
        'T' => "stopped",
        't' => "tracing stop",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        _ => "unknown",
    };
    format!("{state} ({word})")
}

/// Clock ticks as milliseconds, at the kernel's tick rate.
pub fn ticks_to_ms(ticks: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    ticks.saturating_mul(1000) / hz
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let text =
            "1234 (a b) (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 22 1000 10";
        let stat = parse_stat(1234, text).unwrap();
        assert_eq!(
            stat,
            Stat {
                pid: 1234,
                state: 'S',
                ppid: 1,
                pgid: 1234,
                session: 1234,
                tty_nr: 0,
                tpgid: -1,
                cpu_ticks: 10,
                start_time: 22
            }
        );
    }

    #[test]
    fn refuses_what_is_not_a_stat_line() {
        assert_eq!(parse_stat(1, "1234 (x) S 1"), None);
        assert_eq!(parse_stat(1, "no parens"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = stat(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start_time > 0);
        assert!(is_same_process(me.pid, me.start_time));
        assert!(!is_same_process(me.pid, me.start_time + 1));
        assert_eq!(describe_state('Z'), "Z (zombie)");
    }

    #[test]
    fn a_missing_process_is_an_error() {
        assert_eq!(stat(u32::MAX).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
