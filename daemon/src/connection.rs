//! One client connection: handshake, peer check, then frames in and frames out.
//!
//! Reading, handling and writing are decoupled: each request runs in its own task (so several
//! may be in flight), replies and stream items go through one bounded outbound queue to a
//! writer task. A client that reads too slowly fills only its own queue; stream items are never
//! waited for (the client is dropped instead), and at most [`MAX_IN_FLIGHT`] requests per
//! connection wait for queue space, after which the connection simply stops reading. Nothing a
//! client does can stall the daemon or another client.
//!
//! [`serve`] runs the steps in order: the peer policy and a pending slot of the connection
//! budget (`admission`) at accept, [`handshake()`], the served slot, [`read_requests`] and
//! [`drain`]. Each request goes to [`handlers::handle`], the
//! handlers' one entry point; what they see of the connection is [`ConnContext`], which lives
//! in `context` so that the handlers never depend on this module.

use std::sync::Arc;
use std::time::Duration;

use aifactory_common::codec;
use aifactory_common::frame::{INITIAL_READ_BUFFER, is_frame_too_large, length_codec, write_frame};
use aifactory_common::handshake::{self, PeerHello};
use aifactory_common::protocol::{
    ClientFrame, ErrorCode, ErrorReply, PROTOCOL_VERSION, ServerFrame,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Refusal;
use crate::config::Config;
use crate::context::{Answer, ConnContext};
use crate::handlers;
use crate::peer::PeerCred;
use crate::state::DaemonState;

/// How long a connection may take to say its hello: short, since a pending connection holds a
/// slot of a small budget (see `admission`), and a real client says it at once.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests of one connection being handled at once; past this the connection stops reading.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long in-flight requests may take to finish once the connection or the daemon stops.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

type Frames = FramedRead<OwnedReadHalf, LengthDelimitedCodec>;

/// How the read loop ended.
enum Ended {
    /// The client left, the daemon stops, or the connection must close: nothing more to say.
    Quietly,
    /// The client was sent a goodbye saying why; it should get to read it.
    SaidGoodbye,
}

/// Serves one accepted connection from handshake to close.
pub async fn serve(stream: UnixStream, daemon: Arc<DaemonState>, shutdown: CancellationToken) {
    let peer = match stream.peer_cred() {
        Ok(cred) => PeerCred {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the peer's credentials (SO_PEERCRED); closing");
            return;
        }
    };
    // Judged before the hello, so a peer that is refused or over a budget never holds a slot.
    // A caged task's processes are refused too (Landlock cannot refuse a pathname socket).
    let allowed = daemon
        .policy()
        .check(&peer)
        .and_then(|()| daemon.tasks.check_peer(&peer));
    let admitted = match allowed {
        Ok(()) => daemon.budget.admit(peer.uid).map_err(too_many),
        Err(reply) => Err(reply),
    };
    let mut slot = match admitted {
        Ok(slot) => slot,
        Err(reply) => return refuse_at_once(stream, &daemon, &peer, reply).await,
    };
    let config = daemon.config();
    let (mut rd, mut wr) = stream.into_split();
    if !handshake(&mut rd, &mut wr, &peer, &shutdown).await {
        return;
    }

    let (ctx, queue) = ConnContext::new(daemon.clone(), peer, shutdown);
    let writer = tokio::spawn(write_loop(wr, queue));
    if let Err(refusal) = slot.serve(config.max_connections, &config_name(&config)) {
        drop(slot);
        refuse(ctx, too_many(refusal), writer, rd).await;
        return;
    }
    tracing::debug!(
        peer_uid = peer.uid,
        peer_pid = pid(&peer),
        "client connected"
    );

    let mut frames = FramedRead::with_capacity(
        rd,
        length_codec(config.max_frame_bytes),
        INITIAL_READ_BUFFER,
    );
    let requests = TaskTracker::new();
    let ended = read_requests(&mut frames, &ctx, &config, &requests).await;
    drain(ctx, requests, writer).await;
    drop(slot);
    if let Ended::SaidGoodbye = ended {
        linger(frames.into_inner()).await;
    }
}

fn too_many(refusal: Refusal) -> ErrorReply {
    ErrorReply::new(ErrorCode::TooManyConnections, refusal.to_string())
}

/// Tells a peer refused at accept why, without waiting for its hello and without a slot: our
/// hello, the goodbye, then close. At most `admission::MAX_REFUSING` at once; past that the
/// connection is closed without a word.
async fn refuse_at_once(
    stream: UnixStream,
    daemon: &Arc<DaemonState>,
    peer: &PeerCred,
    reply: ErrorReply,
) {
    let Some(_permit) = daemon.budget.refusing() else {
        tracing::debug!(peer_uid = peer.uid, peer_pid = pid(peer), reason = %reply.message, "closed a refused connection without a word: too many refusals under way");
        return;
    };
    tracing::warn!(peer_uid = peer.uid, peer_pid = pid(peer), reason = %reply.message, "refused a connection");
    let (rd, mut wr) = stream.into_split();
    let tell = async {
        handshake::send(&mut wr, PROTOCOL_VERSION).await?;
        let bytes = codec::encode(&ServerFrame::Goodbye(reply)).map_err(std::io::Error::other)?;
        write_frame(&mut wr, &bytes).await?;
        wr.shutdown().await
    };
    if !matches!(
        tokio::time::timeout(GOODBYE_TIMEOUT, tell).await,
        Ok(Ok(()))
    ) {
        return;
    }
    // The client sends its hello and maybe a request before it reads ours: keep reading (and
    // discarding) so it meets the goodbye rather than a broken pipe.
    linger(rd).await;
}

/// The peer's pid for log fields (0 when the kernel did not say).
fn pid(peer: &PeerCred) -> i32 {
    peer.pid.unwrap_or(0)
}

/// Exchanges the protocol hello (at most [`HANDSHAKE_TIMEOUT`]); returns whether the peer is an
/// aifactory client of our protocol version. Every other outcome is logged, and the connection
/// is closed without a word: a peer that does not speak the protocol could not read one.
async fn handshake(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    peer: &PeerCred,
    shutdown: &CancellationToken,
) -> bool {
    let exchange = async {
        handshake::send(wr, PROTOCOL_VERSION).await?;
        handshake::receive(rd).await
    };
    let peer_pid = pid(peer);
    let outcome = tokio::select! {
        result = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange) => result,
        _ = shutdown.cancelled() => return false,
    };
    match outcome {
        Err(_) => {
            tracing::info!(
                peer_uid = peer.uid,
                peer_pid,
                "closing a connection that sent no handshake within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            );
            false
        }
        Ok(Err(e)) => {
            tracing::debug!(peer_uid = peer.uid, peer_pid, error = %e, "peer left during the handshake");
            false
        }
        Ok(Ok(PeerHello::NotAifactory)) => {
            tracing::warn!(
                peer_uid = peer.uid,
                peer_pid,
                "closing a connection whose first bytes are not the aifactory handshake: only aifactory clients (aifactoryctl, aifactory-http) speak on this socket"
            );
            false
        }
        Ok(Ok(PeerHello::Version(theirs))) if theirs != PROTOCOL_VERSION => {
            let advice = if theirs > PROTOCOL_VERSION {
                format!(
                    "upgrade aifactoryd or use a client that speaks protocol {PROTOCOL_VERSION}"
                )
            } else {
                format!("upgrade the client or use an aifactoryd that speaks protocol {theirs}")
            };
            tracing::warn!(
                peer_uid = peer.uid,
                peer_pid,
                "refused a client: it speaks protocol {theirs}, aifactoryd speaks {PROTOCOL_VERSION}: {advice}"
            );
            false
        }
        Ok(Ok(PeerHello::Version(_))) => true,
    }
}

/// Tells a refused peer why, then closes.
async fn refuse(
    ctx: ConnContext,
    reply: ErrorReply,
    mut writer: JoinHandle<()>,
    rd: OwnedReadHalf,
) {
    tracing::warn!(peer_uid = ctx.peer.uid, peer_pid = pid(&ctx.peer), reason = %reply.message, "refused a connection");
    goodbye(&ctx, reply).await;
    drop(ctx);
    finish_writer(&mut writer).await;
    linger(rd).await;
}

/// Reads requests and runs each in a task of its own (tracked by `requests`, at most
/// [`MAX_IN_FLIGHT`] at once) until the client leaves, the daemon stops, the connection must
/// close, or the client sends a frame it is told off for.
async fn read_requests(
    frames: &mut Frames,
    ctx: &ConnContext,
    config: &Config,
    requests: &TaskTracker,
) -> Ended {
    let peer_uid = ctx.peer.uid;
    let peer_pid = pid(&ctx.peer);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let next = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return Ended::Quietly,
            _ = ctx.closing() => return Ended::Quietly,
            next = frames.next() => next,
        };
        let bytes = match next {
            None => return Ended::Quietly,
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) if is_frame_too_large(&e) => {
                let reply = ErrorReply::new(
                    ErrorCode::FrameTooLarge,
                    format!(
                        "frame larger than the daemon's limit of {} bytes: send smaller requests, or raise max_frame_bytes in {}",
                        config.max_frame_bytes,
                        config_name(config)
                    ),
                );
                tracing::warn!(
                    peer_uid,
                    peer_pid,
                    "closing a connection that sent a frame over max_frame_bytes"
                );
                goodbye(ctx, reply).await;
                return Ended::SaidGoodbye;
            }
            Some(Err(e)) => {
                tracing::debug!(peer_uid, peer_pid, error = %e, "read error; closing");
                return Ended::Quietly;
            }
        };
        let ClientFrame { id, request } = match codec::decode::<ClientFrame>(&bytes) {
            Ok(frame) => frame,
            Err(e) => {
                let reply = ErrorReply::new(
                    ErrorCode::MalformedFrame,
                    format!(
                        "malformed frame ({e}): this socket speaks aifactory protocol {PROTOCOL_VERSION}; use a matching aifactoryctl or the aifactory-common client"
                    ),
                );
                tracing::warn!(peer_uid, peer_pid, error = %e, "closing a connection that sent a malformed frame");
                goodbye(ctx, reply).await;
                return Ended::SaidGoodbye;
            }
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return Ended::Quietly;
        };
        let ctx = ctx.clone();
        requests.spawn(async move {
            if let Answer::Reply(result) = handlers::handle(id, request, &ctx).await {
                ctx.send(ServerFrame::Reply { id, result }).await;
            }
            drop(permit);
        });
    }
}

/// Lets the requests in flight finish (at most [`DRAIN_TIMEOUT`]), ends the connection's
/// streams and gives the writer its last frames.
async fn drain(ctx: ConnContext, requests: TaskTracker, mut writer: JoinHandle<()>) {
    let peer_uid = ctx.peer.uid;
    let peer_pid = pid(&ctx.peer);
    requests.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, requests.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            peer_uid,
            peer_pid,
            "in-flight requests did not finish within 5 s; closing anyway"
        );
    }
    ctx.close_subscriptions();
    // The writer ends once every sender of its queue is gone; this one goes now.
    drop(ctx);
    if !finish_writer(&mut writer).await {
        tracing::debug!(peer_uid, peer_pid, "client did not take its last frames");
    }
}

fn config_name(config: &Config) -> String {
    match &config.config_file {
        Some(path) => path.display().to_string(),
        None => "the config file".into(),
    }
}

/// Gives the writer [`GOODBYE_TIMEOUT`] to flush, then stops it: a client that never reads
/// must not keep a task and its socket alive. Returns whether everything was written.
async fn finish_writer(writer: &mut JoinHandle<()>) -> bool {
    let flushed = tokio::time::timeout(GOODBYE_TIMEOUT, &mut *writer)
        .await
        .is_ok();
    writer.abort();
    flushed
}

async fn goodbye(ctx: &ConnContext, reply: ErrorReply) {
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, ctx.send(ServerFrame::Goodbye(reply))).await;
}

/// After a goodbye the write side is shut, so the client reads the goodbye and then EOF. The read
/// side stays open until the client hangs up (at most [`GOODBYE_TIMEOUT`]), discarding what it
/// sends: closing it at once makes a request the client is still writing fail with EPIPE, and the
/// client then reports "broken pipe" instead of the reason it was just given.
async fn linger(mut rd: OwnedReadHalf) {
    let mut discard = [0u8; 4096];
    let drain = async { while matches!(rd.read(&mut discard).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, drain).await;
}

/// Writes queued frames straight to the socket: no framing buffer per connection, so an idle
/// connection costs little memory.
async fn write_loop(mut socket: OwnedWriteHalf, mut queue: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = queue.recv().await {
        if write_frame(&mut socket, &bytes).await.is_err() {
            // The client left; whatever is queued has no reader.
            return;
        }
    }
}
