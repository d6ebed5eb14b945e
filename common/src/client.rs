//! The async client every front end uses: one connection, many requests in flight.
//!
//! A reader task owns the socket's read half and routes each reply to the request that waits
//! for it (by id) and each stream frame to its subscription. No lock is held across an await:
//! the routing table sits behind a std mutex touched only between awaits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nix::unistd::{Gid, Group};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::error::ClientError;
use crate::frame::{DEFAULT_MAX_FRAME_BYTES, length_codec};
use crate::handshake::{self, PeerHello};
use crate::protocol::{
    ClientFrame, ErrorReply, PROTOCOL_VERSION, Reply, Request, ServerFrame, StatusInfo, StreamItem,
    SubscriptionId,
};
use crate::{codec, frame};

/// How long a failed send waits for the daemon's stated reason for closing.
const CLOSE_REASON_WAIT: Duration = Duration::from_secs(1);

/// Items a subscriber may have queued before the reader waits for it.
const SUBSCRIPTION_BUFFER: usize = 1024;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub socket: PathBuf,
    /// Who we are, for messages such as "aifactoryctl speaks protocol 2, ...".
    pub client_name: String,
    pub max_frame_bytes: usize,
    pub handshake_timeout: Duration,
    /// The protocol version we announce; only tests set anything but [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
}

impl ClientOptions {
    pub fn new(socket: impl Into<PathBuf>, client_name: impl Into<String>) -> Self {
        Self {
            socket: socket.into(),
            client_name: client_name.into(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            handshake_timeout: Duration::from_secs(5),
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// The group owning the socket file: the one a refused user should join.
fn socket_group(socket: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(socket)
        .ok()
        .and_then(|m| Group::from_gid(Gid::from_raw(m.gid())).ok().flatten())
        .map(|g| g.name)
        .unwrap_or_else(|| "aifactory".into())
}

/// Why the connection ended, kept so every waiter learns the same reason.
#[derive(Debug, Clone)]
enum Closed {
    Goodbye(ErrorReply),
    Reason(String),
}

impl Closed {
    fn to_error(&self) -> ClientError {
        match self {
            Closed::Goodbye(reply) => ClientError::Daemon(reply.clone()),
            Closed::Reason(reason) => ClientError::Disconnected {
                reason: reason.clone(),
            },
        }
    }
}

type ReplySender = oneshot::Sender<Result<Result<Reply, ErrorReply>, Closed>>;

#[derive(Default)]
struct Routes {
    replies: HashMap<u64, ReplySender>,
    streams: HashMap<SubscriptionId, mpsc::Sender<StreamItem>>,
    closed: Option<Closed>,
}

fn lock(routes: &Mutex<Routes>) -> MutexGuard<'_, Routes> {
    // A panic while holding this lock cannot leave the table inconsistent (each operation is a
    // single insert or remove), so a poisoned lock is still usable.
    routes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One connection to the daemon.
pub struct Client {
    writer: tokio::sync::Mutex<FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
    socket: PathBuf,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The items of one open stream, in order. `None` once the stream or the connection ended.
pub struct Subscription {
    id: SubscriptionId,
    items: mpsc::Receiver<StreamItem>,
}

impl Subscription {
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    pub async fn next(&mut self) -> Option<StreamItem> {
        self.items.recv().await
    }
}

impl Client {
    /// Connects and completes the handshake.
    pub async fn connect(opts: &ClientOptions) -> Result<Client, ClientError> {
        let stream =
            UnixStream::connect(&opts.socket)
                .await
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::PermissionDenied => ClientError::SocketPermission {
                        socket: opts.socket.clone(),
                        uid: nix::unistd::geteuid().as_raw(),
                        group: socket_group(&opts.socket),
                    },
                    _ => ClientError::Unreachable {
                        socket: opts.socket.clone(),
                        source,
                    },
                })?;
        Self::handshake(stream, opts).await
    }

    /// Completes the handshake on an already connected stream.
    pub async fn handshake(
        stream: UnixStream,
        opts: &ClientOptions,
    ) -> Result<Client, ClientError> {
        let (mut rd, mut wr) = stream.into_split();
        let exchange = async {
            handshake::send(&mut wr, opts.protocol_version).await?;
            handshake::receive(&mut rd).await
        };
        let peer = match tokio::time::timeout(opts.handshake_timeout, exchange).await {
            Err(_) => {
                return Err(ClientError::HandshakeTimeout {
                    socket: opts.socket.clone(),
                    seconds: opts.handshake_timeout.as_secs(),
                });
            }
            Ok(Err(e)) => {
                return Err(ClientError::Disconnected {
                    reason: format!("the daemon closed the connection during the handshake ({e})"),
                });
            }
            Ok(Ok(peer)) => peer,
        };
        match peer {
            PeerHello::NotAifactory => {
                return Err(ClientError::NotAifactory {
                    socket: opts.socket.clone(),
                });
            }
            PeerHello::Version(theirs) if theirs != opts.protocol_version => {
                return Err(ClientError::ProtocolMismatch {
                    client: opts.client_name.clone(),
                    ours: opts.protocol_version,
                    theirs,
                });
            }
            PeerHello::Version(_) => {}
        }
        let routes = Arc::new(Mutex::new(Routes::default()));
        let reader = tokio::spawn(read_loop(
            FramedRead::new(rd, length_codec(opts.max_frame_bytes)),
            routes.clone(),
        ));
        Ok(Client {
            writer: tokio::sync::Mutex::new(FramedWrite::new(
                wr,
                length_codec(opts.max_frame_bytes),
            )),
            routes,
            next_id: AtomicU64::new(1),
            reader,
            socket: opts.socket.clone(),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and waits for its reply; a refusal comes back as
    /// [`ClientError::Daemon`].
    pub async fn request(&self, request: Request) -> Result<Reply, ClientError> {
        self.call(self.take_id(), request).await
    }

    fn take_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn call(&self, id: u64, request: Request) -> Result<Reply, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut routes = lock(&self.routes);
            if let Some(closed) = &routes.closed {
                return Err(closed.to_error());
            }
            routes.replies.insert(id, tx);
        }
        let mut rx = rx;
        if let Err(send_error) = self.send_frame(ClientFrame { id, request }).await {
            // A daemon that refused us closes its side; its reader then records why. That
            // reason beats "broken pipe", so give it a moment to arrive.
            return match tokio::time::timeout(CLOSE_REASON_WAIT, &mut rx).await {
                Ok(Ok(Err(closed))) => Err(closed.to_error()),
                _ => Err(send_error),
            };
        }
        match rx.await {
            Ok(Ok(result)) => result.map_err(ClientError::Daemon),
            Ok(Err(closed)) => Err(closed.to_error()),
            Err(_) => Err(ClientError::Disconnected {
                reason: "the connection's reader stopped".into(),
            }),
        }
    }

    /// Opens a stream: sends `request` and, once the daemon accepted it, yields its items.
    pub async fn subscribe(&self, request: Request) -> Result<Subscription, ClientError> {
        let id = self.take_id();
        let (items_tx, items) = mpsc::channel(SUBSCRIPTION_BUFFER);
        // The stream is routed before the request leaves, so no early item can be missed.
        lock(&self.routes).streams.insert(id, items_tx);
        match self.call(id, request).await {
            Ok(Reply::Subscribed) => Ok(Subscription { id, items }),
            Ok(other) => {
                lock(&self.routes).streams.remove(&id);
                Err(ClientError::UnexpectedReply {
                    expected: "Subscribed",
                    got: format!("{other:?}"),
                })
            }
            Err(e) => {
                lock(&self.routes).streams.remove(&id);
                Err(e)
            }
        }
    }

    /// Closes a stream opened with [`Client::subscribe`].
    pub async fn unsubscribe(&self, subscription: &Subscription) -> Result<(), ClientError> {
        self.request(Request::Unsubscribe {
            subscription: subscription.id,
        })
        .await?;
        lock(&self.routes).streams.remove(&subscription.id);
        Ok(())
    }

    pub async fn status(&self) -> Result<StatusInfo, ClientError> {
        match self.request(Request::Status).await? {
            Reply::Status(info) => Ok(info),
            other => Err(ClientError::UnexpectedReply {
                expected: "Status",
                got: format!("{other:?}"),
            }),
        }
    }

    async fn send_frame(&self, frame: ClientFrame) -> Result<(), ClientError> {
        let bytes = codec::encode(&frame)?;
        let sent = self
            .writer
            .lock()
            .await
            .send(bytes::Bytes::from(bytes))
            .await;
        if let Err(e) = sent {
            // The daemon may have said why it closed; the reader records that.
            let routes = lock(&self.routes);
            return Err(match &routes.closed {
                Some(closed) => closed.to_error(),
                None => ClientError::Disconnected {
                    reason: format!("cannot send to the daemon: {e}"),
                },
            });
        }
        Ok(())
    }
}

async fn read_loop(
    mut frames: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    routes: Arc<Mutex<Routes>>,
) {
    let closed = loop {
        let bytes = match frames.next().await {
            None => break Closed::Reason("the daemon closed the connection".into()),
            Some(Err(e)) if frame::is_frame_too_large(&e) => {
                break Closed::Reason(format!(
                    "the daemon sent a frame over the client's limit: {e}"
                ));
            }
            Some(Err(e)) => break Closed::Reason(format!("read error: {e}")),
            Some(Ok(bytes)) => bytes,
        };
        let frame: ServerFrame = match codec::decode(&bytes) {
            Ok(frame) => frame,
            Err(e) => break Closed::Reason(format!("undecodable frame from the daemon: {e}")),
        };
        match frame {
            ServerFrame::Reply { id, result } => {
                if let Some(tx) = lock(&routes).replies.remove(&id) {
                    let _ = tx.send(Ok(result));
                }
            }
            ServerFrame::Stream { subscription, item } => {
                let tx = lock(&routes).streams.get(&subscription).cloned();
                if let Some(tx) = tx
                    && tx.send(item).await.is_err()
                {
                    lock(&routes).streams.remove(&subscription);
                }
            }
            ServerFrame::Goodbye(reply) => break Closed::Goodbye(reply),
        }
    };
    let mut routes = lock(&routes);
    for (_, tx) in routes.replies.drain() {
        let _ = tx.send(Err(closed.clone()));
    }
    routes.streams.clear();
    routes.closed = Some(closed);
}
