//! The escape attempts of a caged agent (issue 16), shared by the test agent's run
//! (`tests/cage.rs`) and the real claude CLI's (`tests/agent_tasks_claude.rs`): one shell
//! script that tries each escape and each piece of the agent's own work and writes one line
//! per try to `./cage-report` in its worktree, and the checks on that report.

use std::path::{Path, PathBuf};

/// What this kernel's Landlock answers: its ABI, 0 without it.
pub fn landlock_abi() -> i64 {
    // SAFETY: a null attribute, size 0 and LANDLOCK_CREATE_RULESET_VERSION create nothing.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    abi.max(0)
}

/// Whether this kernel's Landlock has ABI `min` or newer; otherwise reports `test` as skipped
/// (`needs`: what the test needs it for) and returns false.
pub fn landlock_at_least(test: &str, min: i64, needs: &str) -> bool {
    let abi = landlock_abi();
    if abi < min {
        crate::skip(
            test,
            &format!("this kernel's Landlock ABI is {abi} ({needs} need {min} or newer)"),
        );
        return false;
    }
    true
}

/// The report's preamble: `try NAME COMMAND...` runs the command in a subshell and writes
/// `NAME ok` or `NAME refused: ERROR` to `./cage-report`.
pub const TRIES: &str = r#"
out="$PWD/cage-report"
: > "$out"
err="${TMPDIR:-/tmp}/cage-err.$$"
try() { name=$1; shift; if ( "$@" ) >/dev/null 2>"$err"; then echo "$name ok" >> "$out"; else echo "$name refused: $(tr '\n' ' ' < "$err")" >> "$out"; fi; }
"#;

/// Where the escapes aim.
pub struct Targets {
    /// The daemon's state directory (an `http-token` in it).
    pub state: PathBuf,
    /// Another task's worktree.
    pub other_worktree: PathBuf,
    /// The real home, whose `.ssh` the agent tries to write.
    pub real_home: PathBuf,
    /// `aifactoryctl` and the daemon's socket.
    pub ctl: PathBuf,
    pub socket: PathBuf,
}

/// The escapes that must be refused by the kernel (the socket is refused by the daemon).
pub const ESCAPES: [&str; 6] = [
    "read-token",
    "list-state",
    "write-db",
    "write-other",
    "write-ssh",
    "tmp",
];

/// The agent's own work, which must succeed.
pub const OWN_WORK: [&str; 4] = ["own-file", "commit", "own-home", "own-tmp"];

/// The whole script: every escape, then the agent's own work (a file and a commit in its
/// worktree, its home and tmp).
pub fn script(t: &Targets) -> String {
    format!(
        r#"{TRIES}
try read-token cat {state}/http-token
try list-state ls {state}
try write-db sh -c ': >> {state}/aifactory.db'
try write-other sh -c 'echo pwned > {other}/pwned'
try write-ssh sh -c 'mkdir -p {home}/.ssh && echo key >> {home}/.ssh/authorized_keys'
try socket {ctl} --socket {socket} status
try own-file sh -c 'echo mine > own-file'
try commit sh -c 'git add own-file && git -c user.name=t -c user.email=t@example.org commit -q -m caged'
try own-home sh -c 'echo state > "$HOME/cli-state" && test "$HOME" != {home}'
try own-tmp sh -c 'echo scratch > "$TMPDIR/scratch"'
try tmp sh -c 'echo x > /tmp/aifactory-cage-test-$$'
"#,
        state = t.state.display(),
        other = t.other_worktree.display(),
        home = t.real_home.display(),
        ctl = t.ctl.display(),
        socket = t.socket.display(),
    )
}

/// The report the script left in `worktree`.
pub fn report(worktree: &Path) -> String {
    std::fs::read_to_string(worktree.join("cage-report"))
        .unwrap_or_else(|e| panic!("no cage-report in {}: {e}", worktree.display()))
}

/// The report's line for the try `name`.
pub fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in the report:\n{report}"))
}

pub fn assert_refused(report: &str, name: &str) {
    let line = line(report, name);
    assert!(
        line.contains(" refused: ")
            && (line.contains("Permission denied") || line.contains("Operation not permitted")),
        "{name} must be refused with EACCES/EPERM: {line}\n{report}"
    );
}

pub fn assert_ok(report: &str, name: &str) {
    let line = line(report, name);
    assert!(
        line.ends_with(" ok"),
        "{name} must succeed: {line}\n{report}"
    );
}

/// Every escape refused (the socket by the daemon), all the agent's own work done, and
/// nothing changed where it was refused.
pub fn assert_caged(report: &str, t: &Targets) {
    for escape in ESCAPES {
        assert_refused(report, escape);
    }
    let socket = line(report, "socket");
    assert!(
        socket.contains(" refused: ") && socket.contains("task session"),
        "the daemon must refuse the agent on its socket: {socket}\n{report}"
    );
    for work in OWN_WORK {
        assert_ok(report, work);
    }
    assert!(!t.other_worktree.join("pwned").exists());
    assert!(!t.real_home.join(".ssh").exists());
}
