//! Who may use the daemon, judged by the kernel: the socket's mode and group, and the peer's
//! credentials (SO_PEERCRED). The client runs as `nobody` (uid 65534), so these tests need root.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use aifactory_tests::{CtlOutput, Sandbox, is_root, shared_bin, skip};
use nix::unistd::{Gid, Group, Uid, User};

const NOBODY: u32 = 65534;

/// `nobody` and what the tests need to know about it.
struct Nobody {
    gid: u32,
    primary_group: String,
}

/// Whether this test can run a client as `nobody`; skips (with the reason) when not.
fn nobody(test: &str) -> Option<Nobody> {
    if !is_root() {
        skip(test, "needs root to run the client as another uid");
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
    // The client runs from a copy every user can run (the build tree may not be searchable by
    // nobody); check that it really starts as nobody.
    let tried = sandbox_free_ctl_as_nobody(user.gid.as_raw());
    if let Err(reason) = tried {
        skip(test, &reason);
        return None;
    }
    Some(Nobody {
        gid: user.gid.as_raw(),
        primary_group: group.name,
    })
}

fn sandbox_free_ctl_as_nobody(gid: u32) -> Result<(), String> {
    let ctl = shared_bin("aifactoryctl");
    match Command::new(&ctl)
        .arg("--version")
        .uid(NOBODY)
        .gid(gid)
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("nobody cannot run {}: {out:?}", ctl.display())),
        Err(e) => Err(format!("nobody cannot run {} ({e})", ctl.display())),
    }
}

/// An existing group that nobody is not a member of.
fn foreign_group(test: &str, nobody: &Nobody) -> Option<Group> {
    let name = c"nobody";
    let member_of = nix::unistd::getgrouplist(name, Gid::from_raw(nobody.gid)).unwrap_or_default();
    let found = ["daemon", "bin", "sys", "adm"]
        .into_iter()
        .filter_map(|name| Group::from_name(name).ok().flatten())
        .find(|g| !member_of.contains(&g.gid));
    if found.is_none() {
        skip(
            test,
            "no group (daemon, bin, sys, adm) exists that nobody is not in",
        );
    }
    found
}

/// Runs `aifactoryctl status` as nobody; returns its output and pid.
fn status_as_nobody(sandbox: &Sandbox, nobody: &Nobody) -> (CtlOutput, u32) {
    let mut cmd = sandbox.ctl_command_as(NOBODY, nobody.gid, &["status"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("run aifactoryctl as nobody");
    let pid = child.id();
    let out = CtlOutput::from(child.wait_with_output().expect("wait for aifactoryctl"));
    (out, pid)
}

fn socket_mode_and_gid(sandbox: &Sandbox) -> (u32, u32) {
    let meta = fs::metadata(sandbox.socket()).expect("the socket exists");
    (meta.permissions().mode() & 0o777, meta.gid())
}

#[test]
fn peer_outside_the_socket_group_is_refused_by_its_credentials() {
    let test = "peer_outside_the_socket_group_is_refused_by_its_credentials";
    let Some(nobody) = nobody(test) else { return };
    let Some(group) = foreign_group(test, &nobody) else {
        return;
    };
    let sandbox = Sandbox::new();
    sandbox.open_to_others();
    sandbox.write_config(&format!(
        "socket_mode = \"0666\"\nsocket_group = \"{}\"\n",
        group.name
    ));
    let daemon = sandbox.daemon().start();
    // Anyone may connect, so only the peer check stands between nobody and the daemon.
    assert_eq!(socket_mode_and_gid(&sandbox), (0o666, group.gid.as_raw()));

    // Several times: the refusal must reach the client every time, not sometimes lose to a
    // "broken pipe" as its request meets the closing socket.
    for _ in 0..5 {
        let (out, pid) = status_as_nobody(&sandbox, &nobody);
        assert_eq!(out.code, Some(5), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        assert!(
            out.stderr.contains("uid 65534 may not use aifactoryd"),
            "{out:?}"
        );
        assert!(
            out.stderr.contains(&format!("join group `{}`", group.name)),
            "{out:?}"
        );

        // The daemon logs the refusal with the peer's kernel credentials.
        let log = daemon.logs();
        let refusal = log
            .lines()
            .find(|l| l.contains("refused a connection") && l.contains(&format!("peer_pid={pid}")))
            .unwrap_or_else(|| panic!("no refusal of pid {pid} in the daemon's log:\n{log}"));
        assert!(refusal.contains(&format!("peer_uid={NOBODY}")), "{refusal}");
    }

    // Root is still served.
    sandbox.ctl(&["status"]).assert_ok();
}

#[test]
fn peer_whose_primary_group_is_the_socket_group_is_served() {
    let test = "peer_whose_primary_group_is_the_socket_group_is_served";
    let Some(nobody) = nobody(test) else { return };
    let sandbox = Sandbox::new();
    sandbox.open_to_others();
    // The system-mode default socket mode (0660): the group owns the socket, so both the kernel
    // and the peer check must let nobody in through its primary group.
    sandbox.write_config(&format!("socket_group = \"{}\"\n", nobody.primary_group));
    let daemon = sandbox.daemon().start();
    assert_eq!(socket_mode_and_gid(&sandbox), (0o660, nobody.gid));

    let (out, _) = status_as_nobody(&sandbox, &nobody);
    assert_eq!(out.code, Some(0), "{out:?}\n{}", daemon.logs());
    assert!(
        out.stdout.contains(&format!("(pid {})", daemon.pid())),
        "{out:?}"
    );
    assert!(
        !daemon.logs().contains("refused a connection"),
        "{}",
        daemon.logs()
    );
}

/// The kernel refuses the connect itself (EACCES): aifactoryctl says so, and the daemon never
/// sees the peer.
fn assert_refused_by_socket_mode(sandbox: &Sandbox, nobody: &Nobody, daemon_log: &str) {
    let (out, _) = status_as_nobody(sandbox, nobody);
    assert_eq!(out.code, Some(5), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "permission denied opening {} as uid {NOBODY}",
            sandbox.socket().display()
        )),
        "{out:?}"
    );
    assert!(out.stderr.contains("join the daemon's group"), "{out:?}");
    assert!(!daemon_log.contains("refused a connection"), "{daemon_log}");
}

#[test]
fn user_mode_socket_is_private_to_the_daemons_user() {
    let test = "user_mode_socket_is_private_to_the_daemons_user";
    let Some(nobody) = nobody(test) else { return };
    let sandbox = Sandbox::new();
    sandbox.open_to_others();
    sandbox.write_config("mode = \"user\"\n");
    let daemon = sandbox.daemon().start();
    assert_eq!(socket_mode_and_gid(&sandbox).0, 0o600);
    assert_refused_by_socket_mode(&sandbox, &nobody, &daemon.logs());
    sandbox.ctl(&["status"]).assert_ok();
}

#[test]
fn system_mode_socket_admits_only_its_group() {
    let test = "system_mode_socket_admits_only_its_group";
    let Some(nobody) = nobody(test) else { return };
    let Some(group) = foreign_group(test, &nobody) else {
        return;
    };
    let sandbox = Sandbox::new();
    sandbox.open_to_others();
    sandbox.write_config(&format!("socket_group = \"{}\"\n", group.name));
    let daemon = sandbox.daemon().start();
    assert_eq!(
        sandbox.ctl(&["status", "--json"]).assert_ok().json()["mode"],
        "system"
    );
    assert_eq!(socket_mode_and_gid(&sandbox), (0o660, group.gid.as_raw()));
    assert_refused_by_socket_mode(&sandbox, &nobody, &daemon.logs());
}
