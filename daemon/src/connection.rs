//! One client connection: handshake, peer check, then frames in and frames out.
//!
//! Reading, handling and writing are decoupled: each request runs in its own task (so several
//! may be in flight), replies and stream items go through one bounded outbound queue to a
//! writer task. A client that reads too slowly fills only its own queue; stream items are never
//! waited for (the client is dropped instead), and at most [`MAX_IN_FLIGHT`] requests per
//! connection wait for queue space, after which the connection simply stops reading. Nothing a
//! client does can stall the daemon or another client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aifactory_common::codec;
use aifactory_common::frame::{INITIAL_READ_BUFFER, is_frame_too_large, length_codec, write_frame};
use aifactory_common::handshake::{self, PeerHello};
use aifactory_common::protocol::{
    ClientFrame, ErrorCode, ErrorReply, PROTOCOL_VERSION, ServerFrame, SubscriptionId,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handlers::{self, Answer};
use crate::peer::PeerCred;
use crate::state::DaemonState;

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames queued for one client before it counts as slow.
pub const OUTBOUND_QUEUE: usize = 256;
/// Requests of one connection being handled at once; past this the connection stops reading.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long in-flight requests may take to finish once the connection or the daemon stops.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a handler may use of its connection. Cheap to clone.
#[derive(Clone)]
pub struct ConnContext {
    pub daemon: Arc<DaemonState>,
    pub peer: PeerCred,
    out: mpsc::Sender<Bytes>,
    subscriptions: Arc<Mutex<HashMap<SubscriptionId, AbortHandle>>>,
    /// Cancelled when this connection must end (slow client).
    closing: CancellationToken,
    /// Cancelled when the daemon stops: streams pass on what they already hold, then end.
    pub shutdown: CancellationToken,
}

impl ConnContext {
    /// Queues a reply, waiting for room: only this connection's request waits.
    pub async fn send(&self, frame: ServerFrame) {
        // A closed queue means the client left; there is no one to tell.
        let _ = self.out.send(encode(frame)).await;
    }

    /// Queues a stream item without waiting. A full queue means the client stopped reading:
    /// it is dropped (and told nothing more), so the producer is never slowed. Returns whether
    /// the stream may go on.
    pub fn push(&self, frame: ServerFrame) -> bool {
        match self.out.try_send(encode(frame)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    peer_uid = self.peer.uid,
                    peer_pid = self.peer.pid.unwrap_or(0),
                    queue = OUTBOUND_QUEUE,
                    "dropping a slow client: its outbound queue is full; it can reconnect and resubscribe"
                );
                self.closing.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn subscriptions(&self) -> std::sync::MutexGuard<'_, HashMap<SubscriptionId, AbortHandle>> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn has_subscription(&self, id: SubscriptionId) -> bool {
        self.subscriptions().contains_key(&id)
    }

    pub fn add_subscription(&self, id: SubscriptionId, task: AbortHandle) {
        if let Some(old) = self.subscriptions().insert(id, task) {
            old.abort();
        }
    }

    pub fn remove_subscription(&self, id: SubscriptionId) -> bool {
        match self.subscriptions().remove(&id) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Ends this connection's streams. When the daemon is stopping they end by themselves
    /// once they passed on what was already published (e.g. the `Stopping` event), so only a
    /// connection that ends for another reason aborts them.
    fn close_subscriptions(&self) {
        let stopping = self.shutdown.is_cancelled();
        for (_, task) in self.subscriptions().drain() {
            if !stopping {
                task.abort();
            }
        }
    }
}

/// Encodes a frame; a reply that cannot be encoded becomes an error reply with the same id, so
/// the client is never left waiting.
fn encode(frame: ServerFrame) -> Bytes {
    match codec::encode(&frame) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a frame for a client");
            let fallback = match frame {
                ServerFrame::Reply { id, .. } => ServerFrame::Reply {
                    id,
                    result: Err(ErrorReply::new(
                        ErrorCode::Internal,
                        format!(
                            "the daemon could not encode its reply ({e}); please report this bug"
                        ),
                    )),
                },
                _ => ServerFrame::Goodbye(ErrorReply::new(
                    ErrorCode::Internal,
                    format!(
                        "the daemon could not encode a stream item ({e}); please report this bug"
                    ),
                )),
            };
            codec::encode(&fallback)
                .map(Bytes::from)
                .unwrap_or_default()
        }
    }
}

pub async fn serve(stream: UnixStream, daemon: Arc<DaemonState>, shutdown: CancellationToken) {
    let (_guard, open) = daemon.open_connection();
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
    let config = daemon.config();
    let (mut rd, mut wr) = stream.into_split();
    let exchange = async {
        handshake::send(&mut wr, PROTOCOL_VERSION).await?;
        handshake::receive(&mut rd).await
    };
    let peer_pid = peer.pid.unwrap_or(0);
    let exchange = async {
        tokio::select! {
            result = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange) => Some(result),
            _ = shutdown.cancelled() => None,
        }
    };
    let Some(handshake) = exchange.await else {
        return;
    };
    match handshake {
        Err(_) => {
            tracing::info!(
                peer_uid = peer.uid,
                peer_pid,
                "closing a connection that sent no handshake within 5 s"
            );
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(peer_uid = peer.uid, peer_pid, error = %e, "peer left during the handshake");
            return;
        }
        Ok(Ok(PeerHello::NotAifactory)) => {
            tracing::warn!(
                peer_uid = peer.uid,
                peer_pid,
                "closing a connection whose first bytes are not the aifactory handshake: only aifactory clients (aifactoryctl, aifactory-http) speak on this socket"
            );
            return;
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
            return;
        }
        Ok(Ok(PeerHello::Version(_))) => {}
    }

    let (out, queue) = mpsc::channel(OUTBOUND_QUEUE);
    let mut writer = tokio::spawn(write_loop(wr, queue));
    let ctx = ConnContext {
        daemon: daemon.clone(),
        peer,
        out,
        subscriptions: Arc::default(),
        closing: CancellationToken::new(),
        shutdown: shutdown.clone(),
    };

    let refusal = if open > config.max_connections {
        Some(ErrorReply::new(
            ErrorCode::TooManyConnections,
            format!(
                "aifactoryd already serves its limit of {} connections: close idle clients, or raise max_connections in {}",
                config.max_connections,
                config_name(&config)
            ),
        ))
    } else {
        daemon.policy().check(&peer).err()
    };
    if let Some(reply) = refusal {
        tracing::warn!(peer_uid = peer.uid, peer_pid, reason = %reply.message, "refused a connection");
        goodbye(&ctx, reply).await;
        drop(ctx);
        finish_writer(&mut writer).await;
        linger(rd).await;
        return;
    }
    tracing::debug!(peer_uid = peer.uid, peer_pid, "client connected");

    let mut frames = FramedRead::with_capacity(
        rd,
        length_codec(config.max_frame_bytes),
        INITIAL_READ_BUFFER,
    );
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let requests = TaskTracker::new();
    let mut said_goodbye = false;
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = ctx.closing.cancelled() => break,
            next = frames.next() => next,
        };
        let bytes = match next {
            None => break,
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) if is_frame_too_large(&e) => {
                let reply = ErrorReply::new(
                    ErrorCode::FrameTooLarge,
                    format!(
                        "frame larger than the daemon's limit of {} bytes: send smaller requests, or raise max_frame_bytes in {}",
                        config.max_frame_bytes,
                        config_name(&config)
                    ),
                );
                tracing::warn!(
                    peer_uid = peer.uid,
                    peer_pid,
                    "closing a connection that sent a frame over max_frame_bytes"
                );
                goodbye(&ctx, reply).await;
                said_goodbye = true;
                break;
            }
            Some(Err(e)) => {
                tracing::debug!(peer_uid = peer.uid, peer_pid, error = %e, "read error; closing");
                break;
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
                tracing::warn!(peer_uid = peer.uid, peer_pid, error = %e, "closing a connection that sent a malformed frame");
                goodbye(&ctx, reply).await;
                said_goodbye = true;
                break;
            }
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let ctx = ctx.clone();
        requests.spawn(async move {
            if let Answer::Reply(result) = handlers::handle(id, request, &ctx).await {
                ctx.send(ServerFrame::Reply { id, result }).await;
            }
            drop(permit);
        });
    }
    requests.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, requests.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            peer_uid = peer.uid,
            peer_pid,
            "in-flight requests did not finish within 5 s; closing anyway"
        );
    }
    ctx.close_subscriptions();
    drop(ctx);
    if !finish_writer(&mut writer).await {
        tracing::debug!(
            peer_uid = peer.uid,
            peer_pid,
            "client did not take its last frames"
        );
    }
    if said_goodbye {
        linger(frames.into_inner()).await;
    }
}

fn config_name(config: &crate::config::Config) -> String {
    match &config.config_file {
        Some(path) => path.display().to_string(),
        None => "the config file".into(),
    }
}

/// Gives the writer [`GOODBYE_TIMEOUT`] to flush, then stops it: a client that never reads
/// must not keep a task and its socket alive. Returns whether everything was written.
async fn finish_writer(writer: &mut tokio::task::JoinHandle<()>) -> bool {
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
