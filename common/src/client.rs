//! The async client every front end uses: one connection, many requests in flight.
//!
//! A reader task owns the socket's read half and routes each reply to the request that waits
//! for it (by id) and each stream frame to its subscription. No lock is held across an await:
//! the routing table sits behind a std mutex touched only between awaits.
//!
//! One file past 600 lines on purpose: the connection, its reader task, the routing table and
//! the typed methods (one short function per request) are one client; the methods are most of
//! it, and split off they would only re-export the rest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nix::unistd::{Gid, Group};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::error::ClientError;
use crate::frame::{DEFAULT_MAX_FRAME_BYTES, length_codec};
use crate::handshake::{self, PeerHello};
use crate::in_doubt::in_doubt;
use crate::protocol::{
    AgentDetail, AgentInfo, AttemptInfo, ClientFrame, DoctorFacts, ErrorReply, ImportReport,
    LegacyProject, PROTOCOL_VERSION, ProjectAdd, ProjectInfo, Reply, Request, ServerFrame,
    SessionInfo, SessionKillReport, SessionSpec, StatusInfo, StopReport, StrayProcess, StreamItem,
    SubscriptionId, TaskCreate, TaskInfo, Transcript,
};
use crate::sync::lock;
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

/// What a failed connect to `socket` means for the user: permission (naming the group to
/// join) or unreachable. Shared with `aifactoryctl dial-stdio`, whose relay reports the same.
pub fn connect_error(socket: &Path, source: std::io::Error) -> ClientError {
    match source.kind() {
        std::io::ErrorKind::PermissionDenied => ClientError::SocketPermission {
            socket: socket.to_path_buf(),
            uid: nix::unistd::geteuid().as_raw(),
            group: socket_group(socket),
        },
        _ => ClientError::Unreachable {
            socket: socket.to_path_buf(),
            source,
        },
    }
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

/// The halves of whatever carries the protocol: the daemon's Unix socket, or a pipe to a
/// relay such as `ssh HOST aifactoryctl dial-stdio`.
type BoxedRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxedWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// One connection to the daemon.
pub struct Client {
    writer: tokio::sync::Mutex<FramedWrite<BoxedWrite, LengthDelimitedCodec>>,
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
    head: Option<u64>,
}

impl Subscription {
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// For an event stream: the newest event's number when it opened (see
    /// [`Reply::EventsSubscribed`]).
    pub fn head(&self) -> Option<u64> {
        self.head
    }

    pub async fn next(&mut self) -> Option<StreamItem> {
        self.items.recv().await
    }
}

/// Sends `$request` on `$client` and accepts only `Reply::$variant` (unwrapping its value with
/// `=> expr`); any other reply is [`ClientError::UnexpectedReply`]. Each typed method names its
/// reply once through this.
macro_rules! expect {
    ($client:ident, $request:expr, $variant:ident) => {
        match $client.request($request).await? {
            Reply::$variant => Ok(()),
            other => Err(ClientError::unexpected(stringify!($variant), &other)),
        }
    };
    ($client:ident, $request:expr, $variant:ident($value:ident) => $out:expr) => {
        match $client.request($request).await? {
            Reply::$variant($value) => Ok($out),
            other => Err(ClientError::unexpected(stringify!($variant), &other)),
        }
    };
}

impl Client {
    /// Connects and completes the handshake.
    pub async fn connect(opts: &ClientOptions) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(&opts.socket)
            .await
            .map_err(|source| connect_error(&opts.socket, source))?;
        Self::handshake(stream, opts).await
    }

    /// Completes the handshake on an already connected stream.
    pub async fn handshake(
        stream: UnixStream,
        opts: &ClientOptions,
    ) -> Result<Client, ClientError> {
        let (rd, wr) = stream.into_split();
        Self::handshake_over(rd, wr, opts).await
    }

    /// Completes the handshake over any byte pipe to the daemon (a socket's halves, or a
    /// relay process's stdout and stdin): the protocol is the same on every transport.
    pub async fn handshake_over(
        rd: impl AsyncRead + Send + Unpin + 'static,
        wr: impl AsyncWrite + Send + Unpin + 'static,
        opts: &ClientOptions,
    ) -> Result<Client, ClientError> {
        let mut rd: BoxedRead = Box::new(rd);
        let mut wr: BoxedWrite = Box::new(wr);
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
            Ok(Err(source)) => {
                return Err(ClientError::HandshakeInterrupted {
                    socket: opts.socket.clone(),
                    source,
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
        let doubt = in_doubt(&request);
        if let Err(send_error) = self.send_frame(ClientFrame { id, request }).await {
            // A daemon that refused us closes its side; its reader then records why. That
            // reason beats "broken pipe", so give it a moment to arrive.
            return match tokio::time::timeout(CLOSE_REASON_WAIT, &mut rx).await {
                Ok(Ok(Err(closed))) => Err(closed.to_error()),
                _ => Err(send_error),
            };
        }
        // The request left whole: from here on, a close without a reply leaves a
        // state-changing request in doubt (a goodbye says the daemon refused it instead).
        let reason = match rx.await {
            Ok(Ok(result)) => return result.map_err(ClientError::Daemon),
            Ok(Err(Closed::Goodbye(reply))) => return Err(ClientError::Daemon(reply)),
            Ok(Err(Closed::Reason(reason))) => reason,
            Err(_) => "the connection's reader stopped".into(),
        };
        Err(match doubt {
            Some(doubt) => ClientError::ClosedAfterRequest { doubt, reason },
            None => ClientError::Disconnected { reason },
        })
    }

    /// Opens a stream: sends `request` and, once the daemon accepted it, yields its items.
    pub async fn subscribe(&self, request: Request) -> Result<Subscription, ClientError> {
        let id = self.take_id();
        let (items_tx, items) = mpsc::channel(SUBSCRIPTION_BUFFER);
        // The stream is routed before the request leaves, so no early item can be missed.
        lock(&self.routes).streams.insert(id, items_tx);
        match self.call(id, request).await {
            Ok(Reply::Subscribed) => Ok(Subscription {
                id,
                items,
                head: None,
            }),
            Ok(Reply::EventsSubscribed { head }) => Ok(Subscription {
                id,
                items,
                head: Some(head),
            }),
            Ok(other) => {
                lock(&self.routes).streams.remove(&id);
                Err(ClientError::unexpected("Subscribed", &other))
            }
            Err(e) => {
                lock(&self.routes).streams.remove(&id);
                Err(e)
            }
        }
    }

    /// Closes a stream opened with [`Client::subscribe`].
    pub async fn unsubscribe(&self, subscription: &Subscription) -> Result<(), ClientError> {
        let request = Request::Unsubscribe {
            subscription: subscription.id,
        };
        expect!(self, request, Unsubscribed)?;
        lock(&self.routes).streams.remove(&subscription.id);
        Ok(())
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

/// One typed method per request that has a single reply (streams go through
/// [`Client::subscribe`]). A refusal is [`ClientError::Daemon`]; `key` is an id or a name, as
/// the request's documentation in [`Request`] says.
impl Client {
    pub async fn status(&self) -> Result<StatusInfo, ClientError> {
        expect!(self, Request::Status, Status(info) => info)
    }

    pub async fn project_add(&self, add: ProjectAdd) -> Result<ProjectInfo, ClientError> {
        expect!(self, Request::ProjectAdd(add), Project(p) => p)
    }

    pub async fn project_list(&self) -> Result<Vec<ProjectInfo>, ClientError> {
        expect!(self, Request::ProjectList, Projects(list) => list)
    }

    /// Clone `url` into `path` on the daemon's host and register it.
    pub async fn project_clone(
        &self,
        url: String,
        path: PathBuf,
        name: Option<String>,
    ) -> Result<ProjectInfo, ClientError> {
        expect!(self, Request::ProjectClone { url, path, name }, Project(p) => p)
    }

    pub async fn project_show(&self, key: impl Into<String>) -> Result<ProjectInfo, ClientError> {
        expect!(self, Request::ProjectShow { key: key.into() }, Project(p) => p)
    }

    /// The project as it was before it was forgotten.
    pub async fn project_remove(&self, key: impl Into<String>) -> Result<ProjectInfo, ClientError> {
        expect!(self, Request::ProjectRemove { key: key.into() }, ProjectRemoved(p) => p)
    }

    pub async fn project_import_legacy(
        &self,
        source: impl Into<PathBuf>,
        entries: Vec<LegacyProject>,
    ) -> Result<ImportReport, ClientError> {
        let request = Request::ProjectImportLegacy {
            source: source.into(),
            entries,
        };
        expect!(self, request, Imported(report) => report)
    }

    pub async fn session_new(&self, spec: SessionSpec) -> Result<SessionInfo, ClientError> {
        expect!(self, Request::SessionNew(spec), Session(s) => s)
    }

    pub async fn session_list(&self) -> Result<Vec<SessionInfo>, ClientError> {
        expect!(self, Request::SessionList, Sessions(list) => list)
    }

    pub async fn session_show(&self, key: impl Into<String>) -> Result<SessionInfo, ClientError> {
        expect!(self, Request::SessionShow { key: key.into() }, Session(s) => s)
    }

    pub async fn session_input(
        &self,
        key: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        let request = Request::SessionInput {
            key: key.into(),
            data: data.into(),
        };
        expect!(self, request, Done)
    }

    pub async fn session_resize(
        &self,
        key: impl Into<String>,
        cols: u16,
        rows: u16,
    ) -> Result<(), ClientError> {
        let request = Request::SessionResize {
            key: key.into(),
            cols,
            rows,
        };
        expect!(self, request, Done)
    }

    /// The session as it ended (`None` when it was already gone and `ignore_missing` is set),
    /// with every process the kill stopped and any that survived it.
    pub async fn session_kill(
        &self,
        key: impl Into<String>,
        grace_ms: u64,
        ignore_missing: bool,
    ) -> Result<SessionKillReport, ClientError> {
        let request = Request::SessionKill {
            key: key.into(),
            grace_ms,
            ignore_missing,
        };
        expect!(self, request, SessionKilled(r) => *r)
    }

    /// Processes that carry a session's mark but belong to no live session.
    pub async fn session_strays(&self) -> Result<Vec<StrayProcess>, ClientError> {
        expect!(self, Request::SessionStrays, Strays(s) => s)
    }

    /// Waits until the session's program ends and returns the session as it ended.
    pub async fn session_wait(&self, key: impl Into<String>) -> Result<SessionInfo, ClientError> {
        expect!(self, Request::SessionWait { key: key.into() }, Session(s) => s)
    }

    /// The session as it was before it was forgotten.
    pub async fn session_remove(&self, key: impl Into<String>) -> Result<SessionInfo, ClientError> {
        expect!(self, Request::SessionRemove { key: key.into() }, Session(s) => s)
    }

    pub async fn task_create(&self, create: TaskCreate) -> Result<TaskInfo, ClientError> {
        expect!(self, Request::TaskCreate(create), Task(t) => *t)
    }

    /// Every task, or those of `project` (an id or a name).
    pub async fn task_list(&self, project: Option<String>) -> Result<Vec<TaskInfo>, ClientError> {
        expect!(self, Request::TaskList { project }, Tasks(list) => list)
    }

    pub async fn task_show(&self, key: impl Into<String>) -> Result<TaskInfo, ClientError> {
        expect!(self, Request::TaskShow { key: key.into() }, Task(t) => *t)
    }

    pub async fn task_start(&self, key: impl Into<String>) -> Result<TaskInfo, ClientError> {
        expect!(self, Request::TaskStart { key: key.into() }, Task(t) => *t)
    }

    pub async fn task_stop(
        &self,
        key: impl Into<String>,
        grace_ms: u64,
    ) -> Result<StopReport, ClientError> {
        let request = Request::TaskStop {
            key: key.into(),
            grace_ms,
        };
        expect!(self, request, TaskStopped(report) => *report)
    }

    /// Stops the task if it runs and starts it again, resuming its agent's conversation
    /// unless `fresh`.
    pub async fn task_restart(
        &self,
        key: impl Into<String>,
        grace_ms: u64,
        fresh: bool,
    ) -> Result<TaskInfo, ClientError> {
        let request = Request::TaskRestart {
            key: key.into(),
            grace_ms,
            fresh,
        };
        expect!(self, request, Task(t) => *t)
    }

    /// The task as it was before it was forgotten.
    pub async fn task_remove(
        &self,
        key: impl Into<String>,
        prune: bool,
        force: bool,
    ) -> Result<TaskInfo, ClientError> {
        let request = Request::TaskRemove {
            key: key.into(),
            prune,
            force,
        };
        expect!(self, request, TaskRemoved(t) => *t)
    }

    pub async fn agent_list(&self) -> Result<Vec<AgentInfo>, ClientError> {
        expect!(self, Request::AgentList, Agents(list) => list)
    }

    /// One profile and its cage.
    pub async fn agent_show(&self, name: impl Into<String>) -> Result<AgentDetail, ClientError> {
        let request = Request::AgentShow { name: name.into() };
        expect!(self, request, Agent(detail) => *detail)
    }

    /// What the daemon sees of its own paths and processes, for the doctor's checks.
    pub async fn doctor_facts(&self) -> Result<DoctorFacts, ClientError> {
        expect!(self, Request::DoctorFacts, DoctorFacts(facts) => *facts)
    }

    /// The task's transcript entries after `after` (`None`: from the first kept).
    pub async fn task_attempts(
        &self,
        key: impl Into<String>,
    ) -> Result<Vec<AttemptInfo>, ClientError> {
        let request = Request::TaskAttempts { key: key.into() };
        expect!(self, request, Attempts(a) => a)
    }

    pub async fn task_transcript(
        &self,
        key: impl Into<String>,
        after: Option<u64>,
    ) -> Result<Transcript, ClientError> {
        let request = Request::TaskTranscript {
            key: key.into(),
            after,
        };
        expect!(self, request, Transcript(t) => t)
    }
}

async fn read_loop(
    mut frames: FramedRead<BoxedRead, LengthDelimitedCodec>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    /// A daemon on the other end of a socket pair that answers its requests, in order, with
    /// `replies`, then reads one more and dies before it replies (as a SIGKILL after the
    /// request arrived does).
    async fn client_answered_with(replies: Vec<Result<Reply, ErrorReply>>) -> Client {
        let (ours, theirs) = UnixStream::pair().unwrap();
        tokio::spawn(async move {
            let (mut rd, mut wr) = theirs.into_split();
            handshake::receive(&mut rd).await.unwrap();
            handshake::send(&mut wr, PROTOCOL_VERSION).await.unwrap();
            let mut frames = FramedRead::new(rd, length_codec(DEFAULT_MAX_FRAME_BYTES));
            let mut out = FramedWrite::new(wr, length_codec(DEFAULT_MAX_FRAME_BYTES));
            for result in replies {
                let Some(Ok(bytes)) = frames.next().await else {
                    return;
                };
                let frame: ClientFrame = codec::decode(&bytes).unwrap();
                let reply = ServerFrame::Reply {
                    id: frame.id,
                    result,
                };
                let bytes = codec::encode(&reply).unwrap();
                out.send(bytes::Bytes::from(bytes)).await.unwrap();
            }
            let _unanswered = frames.next().await;
        });
        Client::handshake(ours, &ClientOptions::new("/fake.sock", "test"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_typed_method_returns_the_value_of_its_reply() {
        let client = client_answered_with(vec![Ok(Reply::Agents(vec![])), Ok(Reply::Done)]).await;
        assert_eq!(client.agent_list().await.unwrap(), vec![]);
        client.session_input("s1", b"x".as_slice()).await.unwrap();
    }

    #[tokio::test]
    async fn a_typed_method_names_the_reply_it_expected() {
        let client = client_answered_with(vec![Ok(Reply::Unsubscribed)]).await;
        match client.session_resize("s1", 80, 24).await {
            Err(ClientError::UnexpectedReply { expected, got }) => {
                assert_eq!(expected, "Done");
                assert_eq!(got, "Unsubscribed");
            }
            other => panic!("expected UnexpectedReply, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_refusal_is_the_daemons_error() {
        let refusal = ErrorReply::new(ErrorCode::NotFound, "no task t9");
        let client = client_answered_with(vec![Err(refusal.clone())]).await;
        match client.task_show("t9").await {
            Err(ClientError::Daemon(reply)) => assert_eq!(reply, refusal),
            other => panic!("expected the daemon's refusal, got {other:?}"),
        }
    }

    /// A daemon that reads one request and dies before it replies.
    async fn client_whose_daemon_dies_mid_request() -> Client {
        client_answered_with(vec![]).await
    }

    #[tokio::test]
    async fn a_lost_reply_to_a_state_changing_request_says_it_may_have_completed() {
        let client = client_whose_daemon_dies_mid_request().await;
        let spec = SessionSpec {
            name: None,
            command: vec!["sleep".into(), "900".into()],
            cwd: "/".into(),
            env: vec![],
            cols: None,
            rows: None,
        };
        let err = client.session_new(spec).await.unwrap_err().to_string();
        assert!(
            err.contains("after the `sessions new` request was sent"),
            "{err}"
        );
        assert!(err.contains("may have completed"), "{err}");
        assert!(
            err.contains("check with `aifactoryctl sessions list`"),
            "{err}"
        );

        // A request that only reads can simply be repeated: nothing is in doubt.
        let client = client_whose_daemon_dies_mid_request().await;
        let err = client.status().await.unwrap_err().to_string();
        assert!(err.contains("closed the connection"), "{err}");
        assert!(!err.contains("may have completed"), "{err}");
    }

    #[tokio::test]
    async fn a_daemon_gone_during_the_handshake_is_unreachable_with_nothing_sent() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        // A daemon killed between accept and its hello: the client's hello meets a closed peer.
        drop(theirs);
        let err = match Client::handshake(ours, &ClientOptions::new("/fake.sock", "test")).await {
            Err(err) => err,
            Ok(_) => panic!("a handshake with a closed peer succeeded"),
        };
        assert!(err.is_unreachable(), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("/fake.sock"), "{text}");
        assert!(text.contains("before any request was sent"), "{text}");
        assert!(text.contains("try again"), "{text}");
    }
}
