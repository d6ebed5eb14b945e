//! `Session*` requests: terminal sessions. A [`SessionError`] becomes the wire's `ErrorReply`
//! here, and only here.

use std::time::Duration;

use aifactory_common::pane::MonitorFrame;
use aifactory_common::protocol::{
    ErrorCode, ErrorReply, Reply, ServerFrame, SessionInfo, SessionSpec, SessionState, StreamItem,
    SubscriptionId,
};
use aifactory_pane::client::MonitorClient;

use crate::context::{Answer, ConnContext};
use crate::panes::DiskOutput;
use crate::sessions::SessionError;

/// Bytes per output frame sent to a client.
const CHUNK: usize = 64 * 1024;

pub(super) fn code(e: &SessionError) -> ErrorCode {
    match e {
        SessionError::Store(store) => super::store::code(store),
        SessionError::NotFound(_) | SessionError::AlreadyEnded { .. } => ErrorCode::NotFound,
        SessionError::NameTaken { .. }
        | SessionError::StillRunning { .. }
        | SessionError::StillHasProcesses { .. } => ErrorCode::Conflict,
        SessionError::Monitor(_)
        | SessionError::InputRefused { .. }
        | SessionError::InputNoAnswer { .. } => ErrorCode::Unavailable,
        SessionError::SurvivedKill { .. } => ErrorCode::Internal,
        SessionError::NoCommand
        | SessionError::BadName(_)
        | SessionError::BadCwd(_)
        | SessionError::CwdUnresolvable { .. }
        | SessionError::CwdThroughSymlink { .. }
        | SessionError::BadEnvName(_)
        | SessionError::NulInEnv(_)
        | SessionError::NulInArg(_)
        | SessionError::PaneDir(_)
        | SessionError::NotStarted(_)
        | SessionError::NotRunning { .. }
        | SessionError::BadSize { .. } => ErrorCode::Invalid,
    }
}

impl From<SessionError> for ErrorReply {
    fn from(e: SessionError) -> ErrorReply {
        ErrorReply::new(code(&e), e.to_string())
    }
}

pub async fn new(ctx: &ConnContext, spec: SessionSpec) -> Result<Reply, ErrorReply> {
    Ok(Reply::Session(ctx.daemon.sessions.create(spec).await?))
}

pub async fn list(ctx: &ConnContext) -> Result<Reply, ErrorReply> {
    Ok(Reply::Sessions(ctx.daemon.sessions.list().await?))
}

pub async fn show(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    Ok(Reply::Session(ctx.daemon.sessions.show(key).await?))
}

pub async fn input(ctx: &ConnContext, key: String, data: Vec<u8>) -> Result<Reply, ErrorReply> {
    ctx.daemon.sessions.input(key, data).await?;
    Ok(Reply::Done)
}

pub async fn resize(
    ctx: &ConnContext,
    key: String,
    cols: u16,
    rows: u16,
) -> Result<Reply, ErrorReply> {
    ctx.daemon.sessions.resize(key, cols, rows).await?;
    Ok(Reply::Done)
}

pub async fn kill(
    ctx: &ConnContext,
    key: String,
    grace_ms: u64,
    ignore_missing: bool,
) -> Result<Reply, ErrorReply> {
    let killed = ctx
        .daemon
        .sessions
        .kill(key, Duration::from_millis(grace_ms), ignore_missing)
        .await?;
    Ok(Reply::SessionKilled(Box::new(killed)))
}

pub async fn strays(ctx: &ConnContext) -> Result<Reply, ErrorReply> {
    Ok(Reply::Strays(ctx.daemon.sessions.strays().await?))
}

pub async fn wait(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    Ok(Reply::Session(ctx.daemon.sessions.wait(key).await?))
}

pub async fn remove(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    Ok(Reply::Session(ctx.daemon.sessions.remove(key).await?))
}

/// Streams a session's output to the client: from its monitor while the program runs (replay
/// then live), from the pane directory once it ended. Output is never dropped for a slow
/// client: each frame waits for room in that client's queue, which slows only this stream.
pub async fn tail(
    id: SubscriptionId,
    ctx: &ConnContext,
    key: String,
    from: Option<u64>,
    follow: bool,
) -> Answer {
    let session = match ctx.daemon.sessions.show(key).await {
        Ok(session) => session,
        Err(e) => return Answer::Reply(Err(e.into())),
    };
    ctx.send(ServerFrame::Reply {
        id,
        result: Ok(Reply::Subscribed),
    })
    .await;
    let stream_ctx = ctx.clone();
    let task = tokio::spawn(async move {
        let from = from.unwrap_or(0);
        let next = match live_output(&stream_ctx, id, &session, from, follow).await {
            Ok(done) => done,
            // Whatever the monitor already sent is not sent again.
            Err(resume) => disk_output(&stream_ctx, id, &session, resume).await,
        };
        if let Some(end) = next {
            stream_ctx
                .send(ServerFrame::Stream {
                    subscription: id,
                    item: end,
                })
                .await;
        }
    });
    ctx.add_subscription(id, task.abort_handle());
    Answer::Sent
}

async fn send(ctx: &ConnContext, id: SubscriptionId, item: StreamItem) {
    ctx.send(ServerFrame::Stream {
        subscription: id,
        item,
    })
    .await;
}

/// Output through the running session's monitor. `Err(offset)` when the monitor is not there
/// (the session ended) or went away mid-stream: the caller reads the disk from `offset`, the
/// first byte not sent yet. `Ok(end)` otherwise, with the final item to send.
async fn live_output(
    ctx: &ConnContext,
    id: SubscriptionId,
    session: &SessionInfo,
    from: u64,
    follow: bool,
) -> Result<Option<StreamItem>, u64> {
    if session.state != SessionState::Running {
        return Err(from);
    }
    let end = if follow {
        u64::MAX
    } else {
        MonitorClient::connect(&session.pane_dir)
            .await
            .map_err(|_| from)?
            .info()
            .await
            .map_err(|_| from)?
            .output_end
    };
    let client = MonitorClient::connect(&session.pane_dir)
        .await
        .map_err(|_| from)?;
    let mut stream = client.subscribe(from).await.map_err(|_| from)?;
    let mut next = from;
    // A follow runs until the program's end, also from beyond the current end (`attach` asks
    // for u64::MAX: only what comes from now on), where `next < end` would hold from the start.
    while follow || next < end {
        let frame = match stream.next_frame().await {
            Some(Ok(frame)) => frame,
            // The monitor went away mid-stream: finish from the disk.
            Some(Err(_)) | None => return Err(next),
        };
        match frame {
            MonitorFrame::Output { offset, mut data } => {
                let len = (end - offset).min(data.len() as u64) as usize;
                data.truncate(len);
                next = offset + len as u64;
                send(ctx, id, StreamItem::Output { offset, data }).await;
            }
            MonitorFrame::Lagged {
                requested,
                resume_from,
            } => {
                next = resume_from;
                send(
                    ctx,
                    id,
                    StreamItem::OutputLagged {
                        requested,
                        resume_from,
                    },
                )
                .await;
            }
            MonitorFrame::Exited(exit) => {
                return Ok(Some(StreamItem::OutputEnd {
                    next,
                    exit: Some(exit),
                }));
            }
            MonitorFrame::Error(message) => {
                tracing::warn!(session_id = %session.id, "monitor refused a tail: {message}");
                return Err(next);
            }
            MonitorFrame::Info(_) | MonitorFrame::Done | MonitorFrame::OutputHealth(_) => {}
        }
    }
    Ok(Some(StreamItem::OutputEnd { next, exit: None }))
}

/// Output of an ended session, from its pane directory.
async fn disk_output(
    ctx: &ConnContext,
    id: SubscriptionId,
    session: &SessionInfo,
    from: u64,
) -> Option<StreamItem> {
    let latest = ctx.daemon.sessions.show(session.id.clone()).await.ok();
    let exit = latest.and_then(|s| s.exit);
    let mut disk = match DiskOutput::open(&session.pane_dir, from) {
        Ok(disk) => disk,
        Err(e) => {
            tracing::warn!(session_id = %session.id, error = %e, "cannot read the session's output");
            return Some(StreamItem::OutputEnd { next: from, exit });
        }
    };
    if disk.position() > from {
        send(
            ctx,
            id,
            StreamItem::OutputLagged {
                requested: from,
                resume_from: disk.position(),
            },
        )
        .await;
    }
    loop {
        let offset = disk.position();
        match disk.next_chunk(CHUNK) {
            Ok(Some(data)) => send(ctx, id, StreamItem::Output { offset, data }).await,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(session_id = %session.id, error = %e, "reading the session's output failed");
                break;
            }
        }
    }
    Some(StreamItem::OutputEnd {
        next: disk.position(),
        exit,
    })
}
