//! What a request handler gets from its connection ([`ConnContext`]: the daemon, the peer, the
//! outbound queue, the connection's open streams) and what it gives back ([`Answer`]).
//!
//! A module of its own so that `connection` (which builds the context and sends answers) and
//! `handlers` (which use it) both depend on it and not on each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aifactory_common::codec;
use aifactory_common::protocol::{ErrorCode, ErrorReply, Reply, ServerFrame, SubscriptionId};
use aifactory_common::sync::lock;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::peer::PeerCred;
use crate::state::DaemonState;

/// Frames queued for one client before it counts as slow.
pub const OUTBOUND_QUEUE: usize = 256;

/// What a handler did with its request.
// Returned once per request and moved straight into a frame: boxing would only add an allocation.
#[expect(clippy::large_enum_variant)]
pub enum Answer {
    /// The connection sends this reply.
    Reply(Result<Reply, ErrorReply>),
    /// The handler already queued its reply itself (streams do, so their reply precedes their
    /// first item).
    Sent,
}

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
    /// A context for a new connection, and the receiving end of its outbound queue (for the
    /// connection's writer).
    pub fn new(
        daemon: Arc<DaemonState>,
        peer: PeerCred,
        shutdown: CancellationToken,
    ) -> (ConnContext, mpsc::Receiver<Bytes>) {
        let (out, queue) = mpsc::channel(OUTBOUND_QUEUE);
        let ctx = ConnContext {
            daemon,
            peer,
            out,
            subscriptions: Arc::default(),
            closing: CancellationToken::new(),
            shutdown,
        };
        (ctx, queue)
    }

    /// Queues a reply, waiting for room: only this connection's request waits.
    pub async fn send(&self, frame: ServerFrame) {
        // A closed queue means the client left; there is no one to tell.
        let _ = self.out.send(encode(frame)).await;
    }

    /// Queues a stream item, waiting up to `patience` for room: a burst passes, a client that
    /// stopped reading is dropped (and told nothing more). Only the stream's own forwarder
    /// waits, never its producer (the event bus, which a lagging subscriber catches up from
    /// the store). Returns whether the stream may go on.
    pub async fn push_within(&self, frame: ServerFrame, patience: Duration) -> bool {
        match self.out.send_timeout(encode(frame), patience).await {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::warn!(
                    peer_uid = self.peer.uid,
                    peer_pid = self.peer.pid.unwrap_or(0),
                    queue = OUTBOUND_QUEUE,
                    "dropping a slow client: its outbound queue stayed full; it can reconnect and resubscribe"
                );
                self.closing.cancel();
                false
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
        }
    }

    /// Resolves once this connection must end because its client stopped reading.
    pub async fn closing(&self) {
        self.closing.cancelled().await;
    }

    fn subscriptions(&self) -> MutexGuard<'_, HashMap<SubscriptionId, AbortHandle>> {
        lock(&self.subscriptions)
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
    pub fn close_subscriptions(&self) {
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
