//! [`Hooks`]: the extension points a test build plugs into the daemon, passed in as a value.
//! The shipped `aifactoryd` passes [`Hooks::default`], where every one is absent and the
//! daemon behaves as released; only the test suite's `aifactoryd-hooked` (`tests/hooked`)
//! fills them in. No switch, variable name or test behaviour lives in this crate, so no build
//! of it (`cargo build --release --workspace` or `cargo test` alike) gives a shipped binary any.

use std::io;

/// What runs on the daemon's runtime before it opens its store, e.g. a signal handler.
pub type OnStart = Box<dyn FnOnce() -> io::Result<()> + Send>;

/// Everything a test build may change; [`Hooks::default`] changes nothing.
#[derive(Default)]
pub struct Hooks {
    /// Behave as a binary that knows the migrations up to this version only.
    pub migration_limit: Option<u32>,
    /// Called inside each migration's open transaction, after its SQL ran, with its version.
    pub inside_migration: Option<fn(u32)>,
    /// Poll progress files even where inotify works (the fallback's code path).
    pub poll_progress: bool,
    /// Run on the runtime first thing in [`crate::run`]; its error stops the daemon.
    pub on_start: Option<OnStart>,
    /// Believe this kernel's Landlock ABI is this (0: no Landlock) instead of asking it, so
    /// the cage's refusals where Landlock is missing can be tried on a kernel that has it.
    pub landlock_abi: Option<u32>,
}
