//! The one harness every end-to-end test and benchmark uses: it starts the real, shipped
//! `aifactoryd` (or, for a test that needs a test hook, the test-only `aifactoryd-hooked`)
//! in a private temporary directory (its own socket, state, runtime and config dirs, and a
//! `NOTIFY_SOCKET` owned by the test), waits for `READY=1`, and drives it through the
//! `aifactory-common` client and the real `aifactoryctl` binary.
//!
//! Tests that need more than the toolchain call [`skip`], which prints why and returns, or
//! fails the test when `AIFACTORY_REQUIRE_ALL=1`. [`systemd`] boots a real systemd in private
//! namespaces and builds the Debian package, for the systemd suite.
//!
//! One module per thing a test needs, so a helper is written once and found by its name:
//! [`sandbox`] (the private tree and `aifactoryctl` runs), [`daemon`] and [`http`] (the
//! programs under test), [`bins`] (where they are built), [`session`] (sessions through the
//! client), [`git`] (repositories for projects), [`migrate_lock`] (holding the migration lock),
//! [`wait`] (polling a condition instead of sleeping), [`escapes`] (a caged agent's escape tries), [`process`] (deadlines and `/proc`),
//! [`tmux`] (a private tmux server), [`idle_peers`] (connections held open by another uid),
//! [`nobody`] (clients run as another user than the daemon's),
//! [`tmpfs`] (a tiny disk that fills up), [`hosts`] (remote hosts in network namespaces, with
//! sshd and their own daemons, for `--host ssh://`), [`browser`] (Debian's headless Chromium
//! over the DevTools protocol, and a page served on loopback for it), [`web_page`] (the shim's
//! own web page in that browser: logging in, the Live Console's buffer, the CSP),
//! [`notify`] and [`raw`] (the sd_notify socket and raw protocol frames), [`bench`] (what
//! only the benchmarks share), [`agent_clis`] (the real claude and codex CLIs, installed by
//! `tests/agents/install`), [`anthropic_api`] and [`openai_api`] (scripted model APIs for
//! them), [`codex_cli`] (codex's offline argv), [`egress`] (a proxy that catches traffic to any
//! other host) and [`offline`] (a private network namespace with only loopback).

pub mod agent_clis;
pub mod anthropic_api;
pub mod bench;
pub mod bins;
pub mod browser;
pub mod codex_cli;
pub mod console_ws;
pub mod daemon;
pub mod egress;
pub mod escapes;
pub mod git;
pub mod hosts;
pub mod http;
pub mod idle_peers;
pub mod limit_profiles;
pub mod migrate_lock;
pub mod nobody;
pub mod notify;
pub mod offline;
pub mod openai_api;
pub mod process;
pub mod raw;
pub mod rest;
pub mod sandbox;
pub mod session;
pub mod sse;
pub mod systemd;
pub mod tmpfs;
pub mod tmux;
pub mod wait;
pub mod web_page;

pub use bins::{HOOKED_DAEMON, bin, bin_dir, companions, shared_bin};
pub use daemon::{Daemon, DaemonBuilder, READY_TIMEOUT};
pub use http::{Http, HttpBuilder};
pub use notify::NotifyListener;
pub use process::output_within;
pub use sandbox::{CTL_TIMEOUT, CtlOutput, Sandbox, chown_tree};

/// Whether tests that need root, tmux, chromium or systemd must run instead of skipping.
pub fn require_all() -> bool {
    std::env::var("AIFACTORY_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Reports a skipped test. Returns normally (the caller returns) unless
/// `AIFACTORY_REQUIRE_ALL=1`, where a skip is a failure.
pub fn skip(test: &str, reason: &str) {
    assert!(
        !require_all(),
        "{test}: cannot be skipped under AIFACTORY_REQUIRE_ALL=1: {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
