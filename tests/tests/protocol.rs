//! The wire protocol against the real daemon: round trips, version mismatches both ways,
//! garbage, oversized frames, many clients, many requests in flight, slow readers.

use std::time::Duration;

use aifactory_common::handshake::PeerHello;
use aifactory_common::protocol::{
    ClientFrame, ErrorCode, PROTOCOL_VERSION, Reply, Request, ServerFrame, SessionSpec, TaskCreate,
};
use aifactory_common::{Client, ClientError};
use aifactory_tests::Sandbox;
use aifactory_tests::raw::{RawConn, next_server_frame, send_client_frame};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn status_round_trip_through_client_and_ctl() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    let status = client.status().await.unwrap();
    assert_eq!(status.pid, daemon.pid());
    assert_eq!(status.protocol, PROTOCOL_VERSION);
    assert_eq!(status.socket, sandbox.socket());
    assert_eq!(status.state_dir, sandbox.state_dir());
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));

    let json = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(json["pid"], daemon.pid());
    assert_eq!(json["protocol"], PROTOCOL_VERSION);
    assert_eq!(json["socket"], sandbox.socket().display().to_string());
    assert_eq!(json["state_dir"], sandbox.state_dir().display().to_string());
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["uptime_s"].is_u64(), "{json}");

    let text = sandbox.ctl(&["status"]);
    text.assert_ok();
    assert!(
        text.stdout.contains(&format!("(pid {})", daemon.pid())),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains(&sandbox.socket().display().to_string())
    );
}

#[tokio::test]
async fn newer_client_is_refused_with_a_clear_message_on_both_sides() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let newer = PROTOCOL_VERSION + 1;

    let mut opts = daemon.client_options();
    opts.protocol_version = newer;
    let err = match Client::connect(&opts).await {
        Err(e) => e,
        Ok(_) => panic!("a client speaking protocol {newer} was accepted"),
    };
    assert!(
        matches!(err, ClientError::ProtocolMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "aifactory-tests speaks protocol {newer}, the daemon speaks {PROTOCOL_VERSION}: upgrade the daemon or use a matching aifactory-tests"
        )
    );
    // The daemon answers its own hello, then closes, and says why in its log.
    let mut raw = RawConn::connect(&sandbox.socket()).await;
    raw.send_hello(newer).await;
    assert_eq!(
        raw.read_hello().await.unwrap(),
        PeerHello::Version(PROTOCOL_VERSION)
    );
    assert!(
        raw.read_to_end().await.is_empty(),
        "daemon must close after a mismatch"
    );
    assert!(daemon.wait_log(
        &format!("it speaks protocol {newer}, aifactoryd speaks {PROTOCOL_VERSION}: upgrade aifactoryd"),
        Duration::from_secs(5)
    ), "{}", daemon.logs());
    // And keeps serving.
    daemon.client().await.status().await.unwrap();
}

#[tokio::test]
async fn older_client_is_refused_with_a_clear_message_on_both_sides() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let older = PROTOCOL_VERSION - 1;
    let mut raw = RawConn::connect(&sandbox.socket()).await;
    raw.send_hello(older).await;
    assert_eq!(
        raw.read_hello().await.unwrap(),
        PeerHello::Version(PROTOCOL_VERSION)
    );
    assert!(raw.read_to_end().await.is_empty());
    assert!(daemon.wait_log(
        &format!("it speaks protocol {older}, aifactoryd speaks {PROTOCOL_VERSION}: upgrade the client"),
        Duration::from_secs(5)
    ), "{}", daemon.logs());
}

/// A fake daemon that answers the handshake with `version`, for testing the real aifactoryctl
/// against daemons it does not match.
async fn fake_daemon(sandbox: &Sandbox, version: u16) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(sandbox.socket()).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = aifactory_common::handshake::send(&mut stream, version).await;
            let _ = aifactory_common::handshake::receive(&mut stream).await;
            let _ = stream.shutdown().await;
        }
    })
}

#[tokio::test]
async fn aifactoryctl_against_a_mismatched_daemon_says_who_must_upgrade() {
    for (daemon_version, advice) in [
        (
            PROTOCOL_VERSION + 1,
            format!(
                "aifactoryctl speaks protocol {PROTOCOL_VERSION}, the daemon speaks {}: upgrade aifactoryctl",
                PROTOCOL_VERSION + 1
            ),
        ),
        (
            PROTOCOL_VERSION - 1,
            format!(
                "aifactoryctl speaks protocol {PROTOCOL_VERSION}, the daemon speaks {}: upgrade the daemon or use a matching aifactoryctl",
                PROTOCOL_VERSION - 1
            ),
        ),
    ] {
        let sandbox = Sandbox::new();
        let fake = fake_daemon(&sandbox, daemon_version).await;
        let out = tokio::task::spawn_blocking(move || {
            let out = sandbox.ctl(&["status"]);
            drop(sandbox);
            out
        })
        .await
        .unwrap();
        fake.abort();
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(
            out.stderr.contains(&advice),
            "expected `{advice}` in {out:?}"
        );
    }
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_closes_only_that_connection() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let mut raw = RawConn::connect(&sandbox.socket()).await;
    raw.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = raw.read_to_end().await;
    // Only the daemon's own hello comes back, then the connection closes.
    assert_eq!(answer, aifactory_common::handshake::hello(PROTOCOL_VERSION));
    assert!(daemon.wait_log("not the aifactory handshake", Duration::from_secs(5)));
    daemon.client().await.status().await.unwrap();
}

#[tokio::test]
async fn malformed_frame_gets_an_error_reply_and_closes_only_that_connection() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let bystander = daemon.client().await;

    let mut raw = RawConn::connect(&sandbox.socket()).await;
    raw.send_hello(PROTOCOL_VERSION).await;
    raw.read_hello().await.unwrap();
    let mut framed = raw.framed();
    use futures::SinkExt;
    framed
        .send(bytes::Bytes::from_static(&[0xff; 16]))
        .await
        .unwrap();
    match next_server_frame(&mut framed).await {
        Some(ServerFrame::Goodbye(reply)) => {
            assert_eq!(reply.code, ErrorCode::MalformedFrame);
            assert!(
                reply.message.contains("malformed frame"),
                "{}",
                reply.message
            );
        }
        other => panic!("expected a Goodbye, got {other:?}"),
    }
    assert!(
        next_server_frame(&mut framed).await.is_none(),
        "connection must close"
    );
    bystander.status().await.unwrap();
}

#[tokio::test]
async fn frame_over_the_cap_gets_an_error_reply_and_closes_only_that_connection() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let bystander = daemon.client().await;

    let mut raw = RawConn::connect(&sandbox.socket()).await;
    raw.send_hello(PROTOCOL_VERSION).await;
    raw.read_hello().await.unwrap();
    // A length prefix one byte over the default 4 MiB cap; the body never needs to follow.
    let len = (aifactory_common::frame::DEFAULT_MAX_FRAME_BYTES + 1) as u32;
    raw.write(&len.to_be_bytes()).await.unwrap();
    // Part of a body; the daemon may already have hung up, which is fine.
    let _ = raw.write(&[0u8; 1024]).await;
    let mut framed = raw.framed();
    match next_server_frame(&mut framed).await {
        Some(ServerFrame::Goodbye(reply)) => {
            assert_eq!(reply.code, ErrorCode::FrameTooLarge);
            assert!(reply.message.contains("4194304"), "{}", reply.message);
            assert!(
                reply.message.contains("max_frame_bytes"),
                "{}",
                reply.message
            );
        }
        other => panic!("expected a Goodbye, got {other:?}"),
    }
    assert!(next_server_frame(&mut framed).await.is_none());
    bystander.status().await.unwrap();
}

#[tokio::test]
async fn two_hundred_concurrent_clients_are_all_answered() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let opts = daemon.client_options();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let opts = opts.clone();
            tokio::spawn(async move {
                let client = Client::connect(&opts).await?;
                client.status().await
            })
        })
        .collect();
    let mut answered = 0;
    for task in tasks {
        let status = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", daemon.logs()));
        assert_eq!(status.pid, daemon.pid());
        answered += 1;
    }
    assert_eq!(answered, 200);
}

#[tokio::test]
async fn replies_echo_request_ids_with_many_in_flight() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let mut raw = RawConn::connect(&sandbox.socket()).await;
    raw.send_hello(PROTOCOL_VERSION).await;
    raw.read_hello().await.unwrap();
    let mut framed = raw.framed();
    // Send all before reading any: odd ids ask for status, even ids for a subscription that
    // does not exist, so each reply's content must match its id.
    for id in 1..=40u64 {
        let request = if id % 2 == 1 {
            Request::Status
        } else {
            Request::Unsubscribe {
                subscription: 10_000 + id,
            }
        };
        send_client_frame(&mut framed, &ClientFrame { id, request })
            .await
            .unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 1..=40 {
        match next_server_frame(&mut framed).await {
            Some(ServerFrame::Reply { id, result }) => {
                match (id % 2, &result) {
                    (1, Ok(Reply::Status(_))) => {}
                    (0, Err(e)) => {
                        assert_eq!(e.code, ErrorCode::NotFound);
                        assert!(
                            e.message.contains(&(10_000 + id).to_string()),
                            "{}",
                            e.message
                        );
                    }
                    _ => panic!("reply {id} does not match its request: {result:?}"),
                }
                assert!(seen.insert(id), "reply {id} came twice");
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }
    assert_eq!(seen.len(), 40);
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_stall_others() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let mut raw = RawConn::connect(&sandbox.socket()).await;
    raw.send_hello(PROTOCOL_VERSION).await;
    raw.read_hello().await.unwrap();
    let mut framed = raw.framed();
    // Flood requests and never read a reply: the socket buffers and the daemon's queue fill.
    let flood = tokio::spawn(async move {
        for id in 0..100_000u64 {
            if send_client_frame(
                &mut framed,
                &ClientFrame {
                    id,
                    request: Request::Status,
                },
            )
            .await
            .is_err()
            {
                break;
            }
        }
        framed
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = daemon.client().await;
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(5), other.status())
            .await
            .expect("another client was stalled by a client that does not read")
            .unwrap();
    }
    // Another connection made now is served too.
    tokio::time::timeout(Duration::from_secs(5), async {
        daemon.client().await.status().await
    })
    .await
    .expect("new client stalled")
    .unwrap();
    flood.abort();
}

/// A fake daemon that takes the first request of each connection and dies before replying,
/// as a daemon SIGKILLed after it read the request does.
async fn daemon_dying_mid_request(sandbox: &Sandbox) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    let listener = tokio::net::UnixListener::bind(sandbox.socket()).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = aifactory_common::handshake::send(&mut stream, PROTOCOL_VERSION).await;
            let _ = aifactory_common::handshake::receive(&mut stream).await;
            let mut frames = tokio_util::codec::FramedRead::new(
                stream,
                aifactory_common::frame::length_codec(1 << 20),
            );
            let _request = frames.next().await;
        }
    })
}

#[tokio::test]
async fn a_daemon_dying_mid_request_leaves_the_user_told_to_check() {
    let sandbox = Sandbox::new();
    let fake = daemon_dying_mid_request(&sandbox).await;
    let out = tokio::task::spawn_blocking(move || {
        let created = sandbox.ctl(&["sessions", "new", "--", "sleep", "900"]);
        let listed = sandbox.ctl(&["sessions", "list"]);
        drop(sandbox);
        (created, listed)
    })
    .await
    .unwrap();
    fake.abort();
    let (created, listed) = out;
    assert_eq!(created.code, Some(1), "{created:?}");
    assert!(
        created
            .stderr
            .contains("after the `sessions new` request was sent"),
        "{created:?}"
    );
    assert!(created.stderr.contains("may have completed"), "{created:?}");
    assert!(
        created
            .stderr
            .contains("check with `aifactoryctl sessions list`"),
        "{created:?}"
    );
    // Reading is safe to repeat: nothing is in doubt.
    assert_eq!(listed.code, Some(1), "{listed:?}");
    assert!(!listed.stderr.contains("may have completed"), "{listed:?}");
}

#[tokio::test]
async fn a_huge_id_is_echoed_cut_with_its_length() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    let id = "a".repeat(102_400);
    let refusals = [
        client.session_show(id.clone()).await.unwrap_err(),
        client.task_show(id.clone()).await.unwrap_err(),
        client.project_show(id.clone()).await.unwrap_err(),
        client.session_kill(id.clone(), 0, false).await.unwrap_err(),
    ];
    for err in refusals {
        let ClientError::Daemon(reply) = err else {
            panic!("expected the daemon's refusal, got {err:?}");
        };
        assert_eq!(reply.code, ErrorCode::NotFound, "{reply:?}");
        assert!(
            reply.message.contains("…(102400 bytes)"),
            "{}",
            &reply.message[..300.min(reply.message.len())]
        );
        assert!(
            reply.message.len() < 1000,
            "a reply of {} bytes",
            reply.message.len()
        );
    }
    // A command is logged when its session starts.
    let spec = aifactory_common::protocol::SessionSpec {
        name: None,
        command: vec!["true".into(), id.clone()],
        cwd: sandbox.path().to_path_buf(),
        env: vec![],
        cols: None,
        rows: None,
    };
    let session = client.session_new(spec).await.unwrap();
    client.session_wait(session.id.clone()).await.unwrap();
    let long_run = "a".repeat(1000);
    assert!(
        !daemon.logs().contains(&long_run),
        "the daemon's log echoes the 100 KB id"
    );
}

/// Found by tests/adversarial/run: a 100 KB session name, working directory or agent profile
/// name came back in full in the refusal (100 KB of error, where ids were already cut).
#[tokio::test]
async fn a_huge_name_cwd_or_agent_is_echoed_cut_with_its_length() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    sandbox.add_project("p");
    let client = daemon.client().await;
    let huge = "b".repeat(102_400);
    let session = |name: Option<String>, cwd: std::path::PathBuf| SessionSpec {
        name,
        command: vec!["true".into()],
        cwd,
        env: vec![],
        cols: None,
        rows: None,
    };
    let refusals = [
        client
            .session_new(session(Some(huge.clone()), sandbox.path().to_path_buf()))
            .await
            .unwrap_err(),
        client
            .session_new(session(None, format!("/{huge}").into()))
            .await
            .unwrap_err(),
        client
            .task_create(TaskCreate {
                project: "p".into(),
                spec_id: "001-x".into(),
                title: None,
                agent: Some(huge.clone()),
            })
            .await
            .unwrap_err(),
    ];
    for err in refusals {
        let ClientError::Daemon(reply) = err else {
            panic!("expected the daemon's refusal, got {err:?}");
        };
        let shown = &reply.message[..300.min(reply.message.len())];
        assert!(reply.message.contains("bytes)"), "{shown}");
        assert!(
            reply.message.len() < 1000,
            "a reply of {} bytes: {shown}",
            reply.message.len()
        );
    }
}
