//! `nobody` (uid 65534) as another user than the daemon's, for tests that run a client which
//! must see less than the daemon: whether this host lets a test do it, and who it is.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::unistd::{Group, Uid, User};

use crate::bins::shared_bin;
use crate::{is_root, skip};

pub const NOBODY: u32 = 65534;

/// `nobody` and what a test needs to know about it.
pub struct Nobody {
    pub uid: u32,
    pub gid: u32,
    /// The name of its primary group (a daemon's `socket_group` that lets it in).
    pub primary_group: String,
}

/// `nobody`, when this test can run programs as it (root, the user and its group exist, and it
/// can run the shared copies of the binaries); otherwise skips with why and returns `None`.
pub fn nobody(test: &str) -> Option<Nobody> {
    if !is_root() {
        skip(test, "needs root to run a client as another uid");
        return None;
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(NOBODY)) else {
        skip(test, "this host has no user with uid 65534 (nobody)");
        return None;
    };
    let Ok(Some(group)) = Group::from_gid(user.gid) else {
        skip(
            test,
            &format!("nobody's primary gid {} has no group entry", user.gid),
        );
        return None;
    };
    let ctl = shared_bin("aifactoryctl");
    let ran = Command::new(&ctl)
        .arg("--version")
        .uid(NOBODY)
        .gid(user.gid.as_raw())
        .output();
    match ran {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            skip(
                test,
                &format!("nobody cannot run {}: {out:?}", ctl.display()),
            );
            return None;
        }
        Err(e) => {
            skip(test, &format!("nobody cannot run {} ({e})", ctl.display()));
            return None;
        }
    }
    Some(Nobody {
        uid: NOBODY,
        gid: user.gid.as_raw(),
        primary_group: group.name,
    })
}
