//! The pane monitor (the `aifactory-pane` binary, [`main`]): one small process per session that
//! holds the PTY, records every output byte and outlives the daemon.
//!
//! The crate holds both sides of it and nothing of the daemon (it depends on
//! `aifactory-common` only). The daemon uses its public part: [`launch`] starts a monitor and
//! [`client`] talks to a running one; [`zygote`] is public only for its request encoding. The
//! monitor's own modules are private: [`lifecycle`] takes it from start to exit, [`session`]
//! holds what its tasks share and carries out the requests on the program's terminal, and the
//! modules named below do one job each.
//!
//! The daemon creates a fresh pane directory (0700) and has a monitor started ([`launch`])
//! with the program's exact environment and the arguments of [`MonitorArgs`]: usually one the
//! daemon's [`zygote`] forked and prepared ahead of time, otherwise one exec'd for it; the same
//! code runs either way. Preparing ([`prepare`]), the monitor leaves the daemon's session,
//! becomes a child subreaper, opens a PTY and forks the program's process, which waits on it
//! for its command ([`stub`]); given its session ([`run_prepared`]), it sizes the terminal,
//! has the program exec'd and then owns it until the end:
//!
//! - every byte the PTY produces is appended to `output.log` before anyone hears about it
//!   ([`log`]), with one older segment kept at rotation and offsets that stay absolute;
//! - `meta.json` and `exit.json` describe the session ([`files`]);
//! - `monitor.sock` serves [`aifactory_common::pane`]'s protocol ([`server`]); [`client`] is
//!   the daemon's side of it.
//!
//! **Exit versus end of output.** The program's exit and the end of its output are different
//! events: a background job or an escaped descendant may keep the terminal open after the
//! program ended. `exit.json` (and `Info.exit`) is written as soon as the program is reaped;
//! output keeps being captured until the PTY master reports EIO (nothing holds the terminal
//! any more). A session is *finished* when both happened, and only then do subscribers get
//! [`MonitorFrame::Exited`](aifactory_common::pane::MonitorFrame::Exited). A daemon that wants
//! to end lingering descendants sends a `Signal` to the process group.
//!
//! **Lifetime.** Once finished, the monitor rewrites `meta.json` with the final state, waits
//! until every subscriber got its `Exited` frame or went away (at most
//! [`SUBSCRIBER_FINISH_TIMEOUT`]; everything stays on disk anyway), lingers [`LINGER`] for late
//! `Info` requests, removes `monitor.sock` and exits 0. SIGTERM and SIGHUP are ignored: only
//! the program's end ends a monitor (see [`process::detach`]).
//!
//! Everything runs on one thread (a tokio current-thread runtime) and file I/O is plain
//! synchronous page-cache I/O on it: that keeps the process small and makes a log rotation
//! atomic with respect to every reader.

mod args;
pub mod cage;
pub mod client;
mod files;
pub mod launch;
mod lifecycle;
mod log;
mod process;
mod pty;
mod server;
mod session;
mod stub;
pub mod zygote;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

pub use self::args::MonitorArgs;
pub use self::cage::{Cage, CageMode};
use self::lifecycle::{StartError, failed, prepare, run_prepared};
use self::session::Session;

/// Once finished, how long the monitor waits for subscribers still taking their last bytes.
const SUBSCRIBER_FINISH_TIMEOUT: Duration = Duration::from_secs(60);
/// Once the last subscriber is served, how long the socket still answers (late `Info`s).
const LINGER: Duration = Duration::from_secs(2);
/// How long input may wait for the program to take a byte of it before it is refused.
pub const INPUT_TIMEOUT: Duration = Duration::from_secs(10);
/// The monitor's own diagnostics, written once it reported readiness.
const MONITOR_LOG: &str = "monitor.log";

/// One line on stderr: before readiness the daemon reads it, afterwards it goes to
/// `monitor.log`. Never panics (eprintln! would, on a closed stderr).
pub(crate) fn diag(message: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "{} aifactory-pane[{}]: {message}",
        aifactory_common::time::now_rfc3339(),
        std::process::id()
    );
}

/// The `aifactory-pane` binary: parses its arguments and runs the monitor (or, with
/// `--zygote`, the [`zygote`] that forks monitors for the daemon). Exits 2 for bad arguments,
/// 1 for a failed start (the reason on stderr, which the daemon reports), 0 once the session
/// finished.
pub fn main() -> ExitCode {
    // Started through /proc/self/fd/N, the kernel named the process `N`: `ps`, `top` and the
    // journal should say what it is.
    let _ = nix::sys::prctl::set_name(c"aifactory-pane");
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == zygote::FLAG) {
        return zygote::serve(args.skip(1));
    }
    match MonitorArgs::parse(args) {
        Ok(args) => run(args),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "aifactory-pane: {}", e.explain());
            ExitCode::from(2)
        }
    }
}

/// The whole monitor: returns its exit status (1 only for a failed start). The program gets
/// the monitor's own environment.
fn run(args: MonitorArgs) -> ExitCode {
    let env = std::env::vars_os().collect();
    match prepare(3) {
        Ok(prepared) => ExitCode::from(run_prepared(args, env, prepared)),
        Err(e) => ExitCode::from(failed(&e)),
    }
}
