//! aifactory-doctor: every failure of the troubleshooting guide looked for, each reported OK,
//! WARN or FAIL with what was found and, when it is not OK, the exact fix, or SKIP when it could
//! not run (never counted as OK). `aifactoryctl doctor` prints the report; aifactory-http serves
//! it as `GET /api/v1/doctor` for its web page.
//!
//! # Why a crate of its own
//!
//! The checks are written once, here, as functions of the [`Facts`] they look at; each program
//! only gathers those facts its own way and presents the report:
//!
//! - what only the daemon knows (tasks, sessions, the panes root it uses, its agents' effective
//!   commands and cages) comes from the daemon's answers, [`online::ask`], through whichever
//!   socket the caller talks to (both run on the daemon's host);
//! - what the daemon sees of its own paths and processes (each project's work tree, each
//!   working task's spec directory and progress file, each running session's process, the
//!   monitors answering under its panes root) comes from the daemon too, as facts
//!   ([`aifactory_common::protocol::DoctorFacts`], asked by [`online::ask`]): the caller may
//!   see less than the daemon (another uid that cannot enter a project's directory; the
//!   packaged shim's `ProtectHome=yes`, `PrivateUsers=` and `ProtectProc=`, where the daemon
//!   has `ProtectHome=read-only`), and what matters is what the daemon sees. When the daemon
//!   does not say, those checks SKIP with why; they never look with the caller's eyes instead;
//! - what the machine says without the daemon comes from the installed `aifactoryd check --json`
//!   ([`local::facts`]): config, profiles, migrations, lock, state directory;
//! - the HTTP shim is asked the same three questions either way ([`shim::probe`]): its health,
//!   and whether its console refuses a WebSocket without the token and takes one with the token
//!   from the token file. aifactoryctl asks over TCP ([`shim::Tcp`]); the shim asks its own
//!   router in-process, with its own listen address and token file, rather than calling itself
//!   over the network. So the shim's checks are the same code with the same verdicts, and the
//!   two reports differ only where a check is about its caller (see [`CALLER_DEPENDENT`]).
//!
//! # Why the daemon gathers facts and the verdicts stay here
//!
//! The daemon answers `DoctorFacts` with typed facts (a path missing, not a directory, closed
//! to it, git's refusal, a process gone), not with checks: the verdicts, their wording and
//! their fixes stay in this crate, written once, as pure functions of [`Facts`] that a test
//! can feed by hand, and the daemon does not depend on the doctor. The daemon bounds its part
//! (one gathering at a time, a few gits at once, everything within
//! [`aifactory_common::diagnose::DOCTOR_FACTS_WITHIN`], in a task of its own like every
//! request); what it did not find out in time it says so, and the check SKIPs rather than
//! guesses. The one check that still runs programs itself is `systemd` (systemctl, journalctl:
//! about the unit, which any local user may ask about).
//!
//! Every step that talks to something else is bounded in time ([`bounds`]); a step that does
//! not finish in time makes its checks SKIP (or the `daemon` check FAIL: a daemon that does not
//! answer is a finding), never OK.

mod checks;
mod http;
pub mod legacy;
pub mod local;
pub mod online;
pub mod shim;

use std::path::PathBuf;

use aifactory_common::diagnose::{Check, CheckStatus, LocalFacts};

pub use checks::CALLER_DEPENDENT;
pub use http::{HttpError, Response, timed_out};
use local::LocalFactsError;
use online::{Online, OnlineError};

/// How long each step that talks to something else may take.
pub mod bounds {
    use std::time::Duration;

    /// All the daemon's answers the checks need (connect included) but the next.
    pub const DAEMON: Duration = Duration::from_secs(10);
    /// What the daemon sees of its own paths and processes: the daemon answers within
    /// `DOCTOR_FACTS_WITHIN`, and the answer has a moment more to arrive.
    pub const DAEMON_VIEW: Duration =
        Duration::from_secs(aifactory_common::diagnose::DOCTOR_FACTS_WITHIN.as_secs() + 2);
    /// The installed `aifactoryd check --json`.
    pub const LOCAL_CHECK: Duration = Duration::from_secs(20);
    /// One request to the shim (connect, then the answer).
    pub const SHIM_REQUEST: Duration = Duration::from_secs(3);
    /// A check that runs programs of its own (systemctl).
    pub const CHECK: Duration = Duration::from_secs(10);
    /// A whole run with every step at its bound (the daemon's answers and its view,
    /// `aifactoryd check`, the shim's three answers, the check that runs programs), and a
    /// margin.
    pub const RUN: Duration = Duration::from_secs(
        DAEMON.as_secs()
            + DAEMON_VIEW.as_secs()
            + LOCAL_CHECK.as_secs()
            + 3 * SHIM_REQUEST.as_secs()
            + CHECK.as_secs()
            + 5,
    );
}

/// Everything the checks look at.
pub struct Facts {
    pub online: Result<Online, OnlineError>,
    pub local: Result<LocalFacts, LocalFactsError>,
    pub shim: shim::Shim,
}

impl Facts {
    pub fn online(&self) -> Option<&Online> {
        self.online.as_ref().ok()
    }

    /// The daemon's state directory: what it says, else what `aifactoryd check` found.
    pub fn state_dir(&self) -> Option<PathBuf> {
        state_dir(&self.online, &self.local)
    }
}

/// The daemon's state directory from the facts gathered so far: what the daemon says, else
/// what `aifactoryd check` found.
pub fn state_dir(
    online: &Result<Online, OnlineError>,
    local: &Result<LocalFacts, LocalFactsError>,
) -> Option<PathBuf> {
    online
        .as_ref()
        .ok()
        .map(|o| o.status.state_dir.clone())
        .or_else(|| local.as_ref().ok().map(|l| l.state_dir.clone()))
}

/// Every check, in the order of the troubleshooting guide (the order of the report).
pub async fn run(facts: &Facts) -> Vec<Check> {
    checks::all(facts).await
}

pub(crate) fn check(
    name: &str,
    status: CheckStatus,
    message: String,
    fix: Option<String>,
) -> Check {
    Check {
        check: name.into(),
        status,
        message,
        fix,
    }
}

pub(crate) fn ok(name: &str, message: String) -> Check {
    check(name, CheckStatus::Ok, message, None)
}

pub(crate) fn warn(name: &str, message: String, fix: String) -> Check {
    check(name, CheckStatus::Warn, message, Some(fix))
}

pub(crate) fn fail(name: &str, message: String, fix: String) -> Check {
    check(name, CheckStatus::Fail, message, Some(fix))
}

/// A check that could not run, with why (`not checked: <why>`) and what would let it run.
pub(crate) fn skip(name: &str, why: &str, fix: Option<String>) -> Check {
    check(name, CheckStatus::Skip, format!("not checked: {why}"), fix)
}
