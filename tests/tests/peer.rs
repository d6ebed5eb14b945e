//! Who may use the daemon, judged by the kernel: the socket's mode and group, and the peer's
//! credentials (SO_PEERCRED). The client runs as `nobody` (uid 65534), so these tests need root.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Stdio;

use aifactory_tests::idle_peers::{Hello, IdlePeers};
use aifactory_tests::nobody::{NOBODY, Nobody, nobody};
use aifactory_tests::wait::wait_until;
use aifactory_tests::{CtlOutput, Daemon, Sandbox, skip};
use nix::unistd::{Gid, Group};

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

/// Serves nobody through its primary group, on a socket anyone may connect to, with `extra`
/// config lines.
fn daemon_serving_nobody(nobody: &Nobody, extra: &str) -> (Sandbox, Daemon) {
    daemon_serving_group(&nobody.primary_group, extra)
}

/// Serves the members of `group` on a socket anyone may connect to, with `extra` config lines.
fn daemon_serving_group(group: &str, extra: &str) -> (Sandbox, Daemon) {
    let sandbox = Sandbox::new();
    sandbox.open_to_others();
    sandbox.write_config(&format!(
        "socket_mode = \"0666\"\nsocket_group = \"{group}\"\n{extra}"
    ));
    let daemon = sandbox.daemon().start();
    (sandbox, daemon)
}

fn connections(sandbox: &Sandbox) -> u64 {
    let out = sandbox.ctl(&["status", "--json"]);
    out.assert_ok().json()["connections"]
        .as_u64()
        .unwrap_or_else(|| panic!("no connection count in {out:?}"))
}

#[test]
fn idle_connections_without_a_hello_do_not_lock_out_root() {
    let test = "idle_connections_without_a_hello_do_not_lock_out_root";
    let Some(nobody) = nobody(test) else { return };
    let (sandbox, daemon) = daemon_serving_nobody(&nobody, "");
    // More than max_connections (1024) from a member that never says hello.
    let peers = IdlePeers::hold(&sandbox.socket(), NOBODY, nobody.gid, 1030, Hello::Never);
    assert_eq!(peers.opened, 1030);

    // While they are open (the child holds them until `peers` drops), root is served, and the
    // idle member holds no more than its per-uid limit of the daemon's connections.
    let held = connections(&sandbox);
    assert!(held <= 33, "{held} connections held:\n{}", daemon.logs());
    sandbox.ctl(&["status"]).assert_ok();
    drop(peers);
}

#[test]
fn a_refused_uid_holds_no_connection_slot() {
    let test = "a_refused_uid_holds_no_connection_slot";
    let Some(nobody) = nobody(test) else { return };
    let Some(group) = foreign_group(test, &nobody) else {
        return;
    };
    let (sandbox, daemon) = daemon_serving_group(&group.name, "");
    let peers = IdlePeers::hold(&sandbox.socket(), NOBODY, nobody.gid, 1030, Hello::Never);
    assert_eq!(peers.opened, 1030);

    // The daemon accepts in order, so every connection of nobody was accepted before root's;
    // none of them counts: root's own is the only one.
    assert_eq!(connections(&sandbox), 1, "{}", daemon.logs());
    drop(peers);
    // A refused uid still learns why, at once.
    let (out, _) = status_as_nobody(&sandbox, &nobody);
    assert_eq!(out.code, Some(5), "{out:?}");
    assert!(
        out.stderr.contains("uid 65534 may not use aifactoryd"),
        "{out:?}"
    );
}

#[test]
fn one_uid_cannot_hold_more_than_its_share_of_connections() {
    let test = "one_uid_cannot_hold_more_than_its_share_of_connections";
    let Some(nobody) = nobody(test) else { return };
    let (sandbox, daemon) = daemon_serving_nobody(&nobody, "");
    let peers = IdlePeers::hold(&sandbox.socket(), NOBODY, nobody.gid, 32, Hello::Said);
    assert_eq!(peers.opened, 32);

    let (out, _) = status_as_nobody(&sandbox, &nobody);
    assert_eq!(out.code, Some(1), "{out:?}\n{}", daemon.logs());
    assert!(
        out.stderr
            .contains("uid 65534 already holds its limit of 32 connections"),
        "{out:?}"
    );
    assert!(out.stderr.contains("close idle clients"), "{out:?}");
    // Root is not bound by it.
    sandbox.ctl(&["status"]).assert_ok();

    // Once they are closed, nobody is served again.
    drop(peers);
    wait_until(
        "nobody served again",
        std::time::Duration::from_secs(10),
        || status_as_nobody(&sandbox, &nobody).0.code == Some(0),
    );
}

#[test]
fn the_last_connections_are_kept_for_root_and_the_daemons_uid() {
    let test = "the_last_connections_are_kept_for_root_and_the_daemons_uid";
    let Some(nobody) = nobody(test) else { return };
    // 8 connections, of which 2 are kept for root and the daemon's own uid.
    let (sandbox, daemon) = daemon_serving_nobody(&nobody, "max_connections = 8\n");
    let peers = IdlePeers::hold(&sandbox.socket(), NOBODY, nobody.gid, 8, Hello::Said);
    assert_eq!(peers.opened, 8);

    let (out, _) = status_as_nobody(&sandbox, &nobody);
    assert_eq!(out.code, Some(1), "{out:?}\n{}", daemon.logs());
    assert!(
        out.stderr
            .contains("the last 2 of its 8 connections are kept for root"),
        "{out:?}"
    );
    assert!(out.stderr.contains("max_connections"), "{out:?}");
    // Root gets one of the kept ones: 6 of nobody's and its own.
    wait_until(
        "6 connections of nobody's and root's own",
        std::time::Duration::from_secs(10),
        || connections(&sandbox) == 7,
    );
    drop(peers);
}
