//! The mark every process of a session carries: two environment variables set for each
//! session's program, inherited by everything it starts, including what escapes its group and
//! session with `setsid` and what is re-parented to PID 1 when its monitor dies. Finding a
//! session's processes by their mark works when its process tree no longer leads to them.
//!
//! The mark names the daemon's state database as well as the session, so several daemons on one
//! machine (other users', tests') never claim each other's processes. `/proc/PID/environ` is
//! readable only for the daemon's own uid (or by root): the processes found are those the
//! daemon may signal anyway. A program that execs with a cleared environment drops the mark;
//! only a cgroup would hold it then.

use std::path::Path;

/// The session's id, e.g. `s-0123abcd`; also useful to the program itself.
pub const SESSION_VAR: &str = "AIFACTORY_SESSION_ID";
/// The state database of the daemon that started the session.
pub const DAEMON_VAR: &str = "AIFACTORY_SESSION_DB";

/// The variables that mark session `id` of the daemon whose database is `db`.
pub fn env(id: &str, db: &Path) -> [(String, String); 2] {
    [
        (SESSION_VAR.into(), id.into()),
        (DAEMON_VAR.into(), db.to_string_lossy().into_owned()),
    ]
}

/// A process that carries a session's mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub pid: u32,
    pub session_id: String,
}

/// Every live process that carries the mark of one of the sessions of the daemon whose
/// database is `db`.
pub fn find(db: &Path) -> Vec<Marked> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let db = db.as_os_str().as_encoded_bytes();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            // Gone meanwhile, another uid's, or a kernel thread: not ours to find.
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let session_id = session_of(&environ, db)?;
            Some(Marked { pid, session_id })
        })
        .collect()
}

/// The session id in `environ` (NUL-separated `KEY=value`s) when it carries the mark of `db`.
fn session_of(environ: &[u8], db: &[u8]) -> Option<String> {
    marked_value(environ, db, SESSION_VAR)
}

/// The variable `name` of `environ` (NUL-separated `KEY=value`s) when it carries the mark of
/// `db`, i.e. when the process belongs to a session of that daemon.
pub fn marked_value(environ: &[u8], db: &[u8], name: &str) -> Option<String> {
    let value = |name: &str| {
        environ.split(|b| *b == 0).find_map(|entry| {
            entry
                .strip_prefix(name.as_bytes())?
                .strip_prefix(b"=")
                .map(<[u8]>::to_vec)
        })
    };
    if value(DAEMON_VAR)? != db {
        return None;
    }
    String::from_utf8(value(name)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_counts_only_for_its_own_daemon() {
        let environ = b"PATH=/bin\0AIFACTORY_SESSION_ID=s-0123abcd\0AIFACTORY_SESSION_DB=/var/lib/a/state.db\0";
        assert_eq!(
            session_of(environ, b"/var/lib/a/state.db").as_deref(),
            Some("s-0123abcd")
        );
        assert_eq!(session_of(environ, b"/var/lib/b/state.db"), None);
        assert_eq!(session_of(b"PATH=/bin\0", b"/var/lib/a/state.db"), None);
        // A longer name that starts with the variable's is another variable.
        let other = b"AIFACTORY_SESSION_ID_X=s-1\0AIFACTORY_SESSION_DB=/d\0";
        assert_eq!(session_of(other, b"/d"), None);
    }

    #[test]
    fn finds_a_child_that_carries_the_mark() {
        let db = std::env::temp_dir().join(format!("marker-test-{}.db", std::process::id()));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .envs(env("s-feedf00d", &db))
            .spawn()
            .unwrap();
        let found = find(&db);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            found,
            vec![Marked {
                pid: child.id(),
                session_id: "s-feedf00d".into()
            }]
        );
    }
}
