//! Socket activation as systemd does it: the listening socket arrives as fd 3 with
//! `LISTEN_FDS=1` and `LISTEN_PID` naming the daemon itself; the path is systemd's, so the daemon
//! must serve it and leave it in place when it stops.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use aifactory_common::handshake::{self, PeerHello};
use aifactory_common::protocol::{ClientFrame, Reply, Request, ServerFrame};
use aifactory_common::{Client, ClientOptions, PROTOCOL_VERSION};
use aifactory_tests::raw::{RawConn, next_server_frame, send_client_frame};
use aifactory_tests::{Daemon, Sandbox};
use nix::sys::signal::Signal;

/// Sets `LISTEN_PID` to the pid that then becomes the daemon's (exec keeps it).
const SET_LISTEN_PID: [&str; 3] = ["sh", "-c", r#"export LISTEN_PID=$$; exec "$0" "$@""#];

/// In the child between fork and exec: makes `fd` the child's fd 3, open across exec.
fn pass_as_fd3(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2 and fcntl are async-signal-safe and touch only the child's fd table.
    unsafe {
        if fd == 3 {
            // dup2 onto itself would keep FD_CLOEXEC.
            let flags = libc::fcntl(3, libc::F_GETFD);
            if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        } else if libc::dup2(fd, 3) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts the daemon with `listener` as its fd 3, as systemd would.
fn start_activated(
    sandbox: &Sandbox,
    listener: &UnixListener,
    wrapper: &[&str],
    listen_pid: Option<&str>,
) -> Daemon {
    let fd = listener.as_raw_fd();
    let mut builder = sandbox.daemon().env("LISTEN_FDS", "1").wrapper(wrapper);
    if let Some(pid) = listen_pid {
        builder = builder.env("LISTEN_PID", pid);
    }
    let mut daemon = builder.spawn_with(|cmd| {
        // SAFETY: the hook only calls async-signal-safe functions.
        unsafe {
            cmd.pre_exec(move || pass_as_fd3(fd));
        }
    });
    daemon.wait_ready();
    daemon
}

async fn connect(path: &Path, daemon: &Daemon) -> Client {
    Client::connect(&ClientOptions::new(path, "aifactory-tests"))
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", path.display(), daemon.logs()))
}

#[tokio::test]
async fn serves_the_passed_socket_and_leaves_it_to_systemd() {
    let sandbox = Sandbox::new();
    // Deliberately not the path the daemon is configured with: it must serve the one it got.
    let path = sandbox.path().join("run/activated.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // A client that connects before the daemon runs waits in the backlog, as with systemd.
    let mut early = UnixStream::connect(&path).unwrap();
    early
        .write_all(&handshake::hello(PROTOCOL_VERSION))
        .unwrap();

    let mut daemon = start_activated(&sandbox, &listener, &SET_LISTEN_PID, None);
    assert!(
        daemon
            .logs()
            .contains("serving the socket passed by systemd"),
        "{}",
        daemon.logs()
    );
    let client = connect(&path, &daemon).await;
    let status = client.status().await.unwrap();
    assert_eq!(
        status.pid,
        daemon.pid(),
        "the daemon is the process LISTEN_PID named"
    );
    assert_eq!(status.socket, path);
    // It bound nothing of its own.
    assert!(
        !sandbox.socket().exists(),
        "the daemon bound its configured socket too"
    );
    let lock = format!("{}.lock", sandbox.socket().display());
    assert!(
        !Path::new(&lock).exists(),
        "the daemon took the configured socket's lock"
    );

    // The client queued before the daemon started, hello already sent, is served too.
    early.set_nonblocking(true).unwrap();
    let mut early = RawConn {
        stream: tokio::net::UnixStream::from_std(early).unwrap(),
    };
    assert_eq!(
        early.read_hello().await.unwrap(),
        PeerHello::Version(PROTOCOL_VERSION)
    );
    let mut early = early.framed();
    let request = ClientFrame {
        id: 7,
        request: Request::Status,
    };
    send_client_frame(&mut early, &request).await.unwrap();
    match next_server_frame(&mut early).await {
        Some(ServerFrame::Reply {
            id: 7,
            result: Ok(Reply::Status(info)),
        }) => assert_eq!(info.pid, daemon.pid()),
        other => panic!("expected the status reply, got {other:?}"),
    }
    drop((client, early));

    daemon.signal(Signal::SIGTERM);
    let exit = daemon
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", daemon.logs()));
    assert_eq!(exit.code(), Some(0), "{exit}:\n{}", daemon.logs());
    assert!(
        daemon
            .notify
            .wait_for("STOPPING=1", Duration::from_secs(2))
            .is_some()
    );
    let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|e| {
        panic!(
            "the daemon removed systemd's socket ({e}):\n{}",
            daemon.logs()
        )
    });
    assert!(meta.file_type().is_socket());
    // Still listening (systemd's end): the next client queues for the next daemon.
    UnixStream::connect(&path).expect("the passed socket still listens");
}

#[tokio::test]
async fn fds_meant_for_another_process_are_ignored() {
    let sandbox = Sandbox::new();
    let path = sandbox.path().join("run/activated.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // LISTEN_PID names another process (pid 1): the fds are not ours, so bind our own socket.
    let mut daemon = start_activated(&sandbox, &listener, &[], Some("1"));
    let status = daemon.client().await.status().await.unwrap();
    assert_eq!(status.socket, sandbox.socket());
    assert!(
        !daemon.logs().contains("passed by systemd"),
        "{}",
        daemon.logs()
    );

    daemon.signal(Signal::SIGTERM);
    assert_eq!(
        daemon
            .wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
    // Its own socket is removed as usual.
    assert!(!sandbox.socket().exists());
}
