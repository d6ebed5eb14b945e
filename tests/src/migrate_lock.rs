//! Holding the daemon's migration lock as another process would, for tests of what waits for
//! it and what reports its holder.

use std::fs::{File, OpenOptions};
use std::io::Write;

use nix::fcntl::{Flock, FlockArg};

use crate::sandbox::Sandbox;

/// Takes the sandbox's `migrate.lock` and writes this process in it as the holder (host
/// `test-host`); the lock is released when the returned value is dropped.
pub fn hold(sandbox: &Sandbox) -> Flock<File> {
    std::fs::create_dir_all(sandbox.state_dir()).expect("create the state directory");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(sandbox.state_dir().join("migrate.lock"))
        .expect("open migrate.lock");
    write!(
        file,
        "{{\"pid\":{},\"host\":\"test-host\",\"started\":\"2026-11-26T00:00:00Z\"}}",
        std::process::id()
    )
    .expect("write the lock's holder");
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("lock migrate.lock")
}
