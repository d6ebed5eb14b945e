//! Wire compatibility: one value of every message, encoded, must match the golden bytes stored
//! for the current protocol version under `tests/golden/protocol-<N>/`. Changing any message's
//! bytes without bumping `PROTOCOL_VERSION` fails here. After a deliberate bump, write the new
//! version's files with `AIFACTORY_BLESS=1 cargo test -p aifactory-tests --test golden`; the old
//! versions' files stay as history.

use std::path::PathBuf;

use aifactory_common::codec;
use aifactory_common::protocol::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Every variant of every message. The matches below have no wildcard arm, so adding a
/// variant does not compile until it gets a sample here.
fn client_frames() -> Vec<(&'static str, ClientFrame)> {
    let requests = vec![
        ("request-status", Request::Status),
        ("request-subscribe-events", Request::SubscribeEvents),
        (
            "request-unsubscribe",
            Request::Unsubscribe { subscription: 77 },
        ),
        (
            "request-project-add",
            Request::ProjectAdd(ProjectAdd {
                path: "/srv/repo".into(),
                name: Some("repo".into()),
                provider: Some(Provider::Gitlab),
            }),
        ),
        ("request-project-list", Request::ProjectList),
        (
            "request-project-show",
            Request::ProjectShow { key: "repo".into() },
        ),
        (
            "request-project-remove",
            Request::ProjectRemove {
                key: "p-0123abcd".into(),
            },
        ),
        (
            "request-project-import-legacy",
            Request::ProjectImportLegacy {
                source: "/home/u/.aifactory/projects.json".into(),
                entries: vec![LegacyProject {
                    path: "/srv/old".into(),
                    name: None,
                }],
            },
        ),
    ];
    for (_, r) in &requests {
        match r {
            Request::Status
            | Request::SubscribeEvents
            | Request::Unsubscribe { .. }
            | Request::ProjectAdd(_)
            | Request::ProjectList
            | Request::ProjectShow { .. }
            | Request::ProjectRemove { .. }
            | Request::ProjectImportLegacy { .. } => {}
        }
    }
    requests
        .into_iter()
        .map(|(name, request)| (name, ClientFrame { id: 42, request }))
        .collect()
}

fn status() -> StatusInfo {
    StatusInfo {
        version: "0.1.0".into(),
        pid: 4242,
        uptime_ms: 90_061,
        protocol: 1,
        mode: RunMode::System,
        socket: "/run/aifactory/aifactoryd.sock".into(),
        state_dir: "/var/lib/aifactory".into(),
        config_file: Some("/etc/aifactory/aifactoryd.toml".into()),
        connections: 3,
        max_connections: 1024,
        schema_version: 2,
        store: StoreHealth::Writable,
    }
}

fn project(provider: Provider) -> ProjectInfo {
    ProjectInfo {
        id: "p-0123abcd".into(),
        name: "repo".into(),
        path: "/srv/repo".into(),
        origin_url: Some("git@github.com:org/repo.git".into()),
        provider,
        detected_provider: Provider::Github,
        provider_manual: provider != Provider::Github,
        default_branch: "main".into(),
        created_at: "2026-11-26T10:00:00Z".into(),
    }
}

fn event(kind: EventKind) -> StreamItem {
    StreamItem::Event(Event {
        seq: 9,
        at_ms: 1_790_000_000_000,
        kind,
    })
}

fn server_frames() -> Vec<(&'static str, ServerFrame)> {
    let reply = |result| ServerFrame::Reply { id: 42, result };
    let stream = |item| ServerFrame::Stream {
        subscription: 42,
        item,
    };
    let mut frames = vec![
        ("reply-status", reply(Ok(Reply::Status(status())))),
        (
            "reply-status-user-mode",
            reply(Ok(Reply::Status(StatusInfo {
                mode: RunMode::User,
                config_file: None,
                ..status()
            }))),
        ),
        (
            "reply-status-store-read-only",
            reply(Ok(Reply::Status(StatusInfo {
                store: StoreHealth::ReadOnly {
                    reason: "read-only".into(),
                },
                ..status()
            }))),
        ),
        (
            "reply-status-store-write-failed",
            reply(Ok(Reply::Status(StatusInfo {
                store: StoreHealth::WriteFailed {
                    reason: "disk full".into(),
                },
                ..status()
            }))),
        ),
        ("reply-subscribed", reply(Ok(Reply::Subscribed))),
        (
            "reply-project-github",
            reply(Ok(Reply::Project(project(Provider::Github)))),
        ),
        (
            "reply-project-gitlab",
            reply(Ok(Reply::Project(project(Provider::Gitlab)))),
        ),
        (
            "reply-project-azure-devops",
            reply(Ok(Reply::Project(project(Provider::AzureDevops)))),
        ),
        (
            "reply-project-bitbucket",
            reply(Ok(Reply::Project(project(Provider::Bitbucket)))),
        ),
        (
            "reply-project-unknown",
            reply(Ok(Reply::Project(project(Provider::Unknown)))),
        ),
        (
            "reply-projects",
            reply(Ok(Reply::Projects(vec![project(Provider::Github)]))),
        ),
        (
            "reply-project-removed",
            reply(Ok(Reply::ProjectRemoved(project(Provider::Github)))),
        ),
        (
            "reply-imported",
            reply(Ok(Reply::Imported(ImportReport {
                imported: vec![project(Provider::Github)],
                skipped: vec![SkippedImport {
                    path: "/srv/gone".into(),
                    name: Some("gone".into()),
                    reason: "does not exist".into(),
                }],
            }))),
        ),
        ("reply-unsubscribed", reply(Ok(Reply::Unsubscribed))),
        (
            "stream-config-reloaded",
            stream(event(EventKind::ConfigReloaded)),
        ),
        (
            "stream-config-rejected",
            stream(event(EventKind::ConfigRejected {
                reason: "unknown field `x`".into(),
            })),
        ),
        ("stream-stopping", stream(event(EventKind::Stopping))),
        ("stream-lagged", stream(StreamItem::Lagged { missed: 5 })),
    ];
    let codes = [
        ErrorCode::Invalid,
        ErrorCode::NotFound,
        ErrorCode::PermissionDenied,
        ErrorCode::Conflict,
        ErrorCode::TooManyConnections,
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::Unavailable,
        ErrorCode::ShuttingDown,
        ErrorCode::SlowClient,
        ErrorCode::Internal,
    ];
    for code in codes {
        let name: &'static str = match code {
            ErrorCode::Invalid => "reply-error-invalid",
            ErrorCode::NotFound => "reply-error-not-found",
            ErrorCode::PermissionDenied => "reply-error-permission-denied",
            ErrorCode::Conflict => "reply-error-conflict",
            ErrorCode::TooManyConnections => "reply-error-too-many-connections",
            ErrorCode::MalformedFrame => "reply-error-malformed-frame",
            ErrorCode::FrameTooLarge => "reply-error-frame-too-large",
            ErrorCode::Unavailable => "reply-error-unavailable",
            ErrorCode::ShuttingDown => "reply-error-shutting-down",
            ErrorCode::SlowClient => "reply-error-slow-client",
            ErrorCode::Internal => "reply-error-internal",
        };
        frames.push((name, reply(Err(ErrorReply::new(code, "message")))));
    }
    frames.push((
        "goodbye",
        ServerFrame::Goodbye(ErrorReply::new(ErrorCode::PermissionDenied, "go away")),
    ));
    for (_, f) in &frames {
        match f {
            ServerFrame::Reply { result, .. } => match result {
                Ok(
                    Reply::Status(_)
                    | Reply::Subscribed
                    | Reply::Unsubscribed
                    | Reply::Project(_)
                    | Reply::Projects(_)
                    | Reply::ProjectRemoved(_)
                    | Reply::Imported(_),
                )
                | Err(_) => {}
            },
            ServerFrame::Stream { item, .. } => match item {
                StreamItem::Lagged { .. } => {}
                StreamItem::Event(e) => match e.kind {
                    EventKind::ConfigReloaded
                    | EventKind::ConfigRejected { .. }
                    | EventKind::Stopping => {}
                },
            },
            ServerFrame::Goodbye(_) => {}
        }
    }
    frames
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(format!("protocol-{PROTOCOL_VERSION}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n"
}

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    name: &str,
    value: &T,
    failures: &mut Vec<String>,
) {
    let bytes = codec::encode(value).unwrap();
    let decoded: T = codec::decode(&bytes).unwrap();
    assert_eq!(&decoded, value, "{name} does not survive a round trip");
    let path = golden_dir().join(format!("{name}.hex"));
    if std::env::var("AIFACTORY_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        if path.exists() {
            let old = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                old,
                hex(&bytes),
                "{name}: blessing would rewrite protocol {PROTOCOL_VERSION}'s golden bytes; bump PROTOCOL_VERSION instead"
            );
        }
        std::fs::write(&path, hex(&bytes)).unwrap();
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(stored) if stored == hex(&bytes) => {}
        Ok(_) => failures.push(format!(
            "{name}: its bytes changed under protocol {PROTOCOL_VERSION}: bump PROTOCOL_VERSION in common/src/protocol.rs, then bless (AIFACTORY_BLESS=1)"
        )),
        Err(_) => failures.push(format!(
            "{name}: no golden file {}: a new message needs one (AIFACTORY_BLESS=1 writes it; existing files are never rewritten)",
            path.display()
        )),
    }
}

#[test]
fn every_message_matches_its_golden_bytes() {
    let mut failures = Vec::new();
    let mut names = Vec::new();
    for (name, frame) in client_frames() {
        check(name, &frame, &mut failures);
        names.push(name);
    }
    for (name, frame) in server_frames() {
        check(name, &frame, &mut failures);
        names.push(name);
    }
    // Stored files that no sample produces mean a message was removed or renamed.
    if let Ok(dir) = std::fs::read_dir(golden_dir()) {
        for entry in dir.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = file.strip_suffix(".hex")
                && !names.contains(&stem)
            {
                failures.push(format!(
                    "{file}: stored but no longer produced: messages are append-only"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn handshake_layout_never_changes() {
    assert_eq!(
        aifactory_common::handshake::hello(1),
        *b"AIFCTRL\0\x00\x01",
        "the handshake's raw layout is fixed forever"
    );
}

#[test]
fn every_provider_and_store_health_has_a_sample() {
    for p in Provider::ALL {
        match p {
            Provider::Github
            | Provider::Gitlab
            | Provider::AzureDevops
            | Provider::Bitbucket
            | Provider::Unknown => {}
        }
    }
    match StoreHealth::Writable {
        StoreHealth::Writable | StoreHealth::ReadOnly { .. } | StoreHealth::WriteFailed { .. } => {}
    }
}
