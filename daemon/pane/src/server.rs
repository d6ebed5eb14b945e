//! `monitor.sock`: the handshake, then one [`MonitorRequest`] per frame in and
//! [`MonitorFrame`]s out, one request at a time per connection.
//!
//! A `Subscribe` turns its connection into a stream for good: the connection then only carries
//! `Output`/`Lagged` frames and the final `Exited`; any further request on it is refused with
//! an `Error` frame (open another connection for those). A `WatchOutput` does the same with
//! `OutputHealth` frames (whether output is blocked), until all output is in the files. A
//! frame that cannot be decoded or is over the size limit gets an `Error` frame and closes
//! that connection only.

use std::sync::Arc;
use std::time::Duration;

use aifactory_common::codec;
use aifactory_common::frame::{
    DEFAULT_MAX_FRAME_BYTES, INITIAL_READ_BUFFER, is_frame_too_large, length_codec, write_frame,
};
use aifactory_common::handshake::{self, PeerHello};
use aifactory_common::pane::{MONITOR_PROTOCOL_VERSION, MonitorFrame, MonitorRequest};
use futures::StreamExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::log::SegmentReader;
use super::session::RequestError;
use super::{Session, diag};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long accepting pauses after a failed accept (e.g. out of descriptors), which would
/// otherwise fail again at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

type Frames = FramedRead<OwnedReadHalf, LengthDelimitedCodec>;

/// Serves every connection for as long as the monitor lives.
pub async fn accept(session: Arc<Session>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(session.clone(), stream));
            }
            Err(e) => {
                diag(&format!("cannot accept a connection: {e}"));
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn send(wr: &mut OwnedWriteHalf, frame: &MonitorFrame) -> std::io::Result<()> {
    let bytes = codec::encode(frame).map_err(std::io::Error::other)?;
    write_frame(wr, &bytes).await
}

/// Only our own user (or root) may talk to the monitor; the 0600 socket in a 0700 directory
/// already says so, this holds even if those modes were changed.
fn peer_allowed(stream: &UnixStream) -> bool {
    let ours = nix::unistd::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(cred) => cred.uid() == ours || cred.uid() == 0,
        Err(_) => false,
    }
}

async fn serve(session: Arc<Session>, stream: UnixStream) {
    if !peer_allowed(&stream) {
        diag("refused a connection from another user");
        return;
    }
    let (mut rd, mut wr) = stream.into_split();
    let exchange = async {
        handshake::send(&mut wr, MONITOR_PROTOCOL_VERSION).await?;
        handshake::receive(&mut rd).await
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange).await {
        Ok(Ok(PeerHello::Version(v))) if v == MONITOR_PROTOCOL_VERSION => {}
        // The peer has our hello and so knows why; nothing to add.
        Ok(Ok(PeerHello::Version(v))) => {
            diag(&format!(
                "refused a client speaking protocol {v}; this monitor speaks {MONITOR_PROTOCOL_VERSION}"
            ));
            return;
        }
        Ok(Ok(PeerHello::NotAifactory)) | Ok(Err(_)) | Err(_) => return,
    }
    let mut frames = FramedRead::with_capacity(
        rd,
        length_codec(DEFAULT_MAX_FRAME_BYTES),
        INITIAL_READ_BUFFER,
    );
    loop {
        let request = match next_request(&mut frames).await {
            Next::Request(request) => request,
            Next::Gone => return,
            Next::Bad(message) => {
                let _ = send(&mut wr, &MonitorFrame::Error(message)).await;
                return;
            }
        };
        let reply = match request {
            MonitorRequest::Info => MonitorFrame::Info(session.info()),
            MonitorRequest::Input(bytes) => {
                // A requester that gives up (the daemon's own deadline) hangs up: stop writing
                // then, so nothing it was told was refused still reaches the program later.
                tokio::select! {
                    written = session.input(&bytes) => done_or_error(written),
                    next = next_request(&mut frames) => {
                        if let Next::Request(_) | Next::Bad(_) = next {
                            let _ = send(&mut wr, &MonitorFrame::Error(
                                "another request arrived while input was still being written, so the rest of the input was not sent: send one request at a time per connection".into(),
                            )).await;
                        }
                        return;
                    }
                }
            }
            MonitorRequest::Resize { cols, rows } => done_or_error(session.resize(cols, rows)),
            MonitorRequest::Signal { signal } => done_or_error(session.signal(signal)),
            MonitorRequest::Subscribe { from } => {
                return subscribe(&session, frames, wr, from).await;
            }
            MonitorRequest::WatchOutput => return watch_output(&session, frames, wr).await,
            MonitorRequest::WaitExit => {
                let mut log = session.log.subscribe();
                if log.wait_for(|state| state.exited).await.is_err() {
                    return;
                }
                match session.exit() {
                    Some(exit) => MonitorFrame::Exited(exit),
                    None => MonitorFrame::Error("the program ended without an exit record".into()),
                }
            }
        };
        if send(&mut wr, &reply).await.is_err() {
            return;
        }
    }
}

fn done_or_error(result: Result<(), RequestError>) -> MonitorFrame {
    match result {
        Ok(()) => MonitorFrame::Done,
        Err(e) => MonitorFrame::Error(e.to_string()),
    }
}

enum Next {
    Request(MonitorRequest),
    /// The client hung up (or the connection broke).
    Gone,
    /// Answer with this error and close.
    Bad(String),
}

async fn next_request(frames: &mut Frames) -> Next {
    match frames.next().await {
        None => Next::Gone,
        Some(Err(e)) if is_frame_too_large(&e) => Next::Bad(format!(
            "frame larger than the monitor's limit of {DEFAULT_MAX_FRAME_BYTES} bytes: send input in smaller pieces"
        )),
        Some(Err(_)) => Next::Gone,
        Some(Ok(bytes)) => match codec::decode::<MonitorRequest>(&bytes) {
            Ok(request) => Next::Request(request),
            Err(e) => Next::Bad(format!(
                "malformed frame ({e}): this socket speaks pane monitor protocol {MONITOR_PROTOCOL_VERSION}"
            )),
        },
    }
}

/// Streams whether output is blocked: the state now, then every change, until all output is
/// in the files (then nothing can block any more, and the connection closes).
async fn watch_output(session: &Session, mut frames: Frames, mut wr: OwnedWriteHalf) {
    let mut blocked = session.output_blocked.subscribe();
    let mut log = session.log.subscribe();
    loop {
        let now = blocked.borrow_and_update().clone();
        if send(&mut wr, &MonitorFrame::OutputHealth(now))
            .await
            .is_err()
        {
            return;
        }
        tokio::select! {
            changed = blocked.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            // The `Ref` wait_for returns is not Send: drop it inside.
            () = async { let _ = log.wait_for(|state| state.drained).await; } => return,
            next = next_request(&mut frames) => {
                if let Next::Request(_) | Next::Bad(_) = next {
                    let _ = send(&mut wr, &MonitorFrame::Error(
                        "this connection watches the output's health: send other requests on another connection".into(),
                    )).await;
                }
                return;
            }
        }
    }
}

/// Streams output from `from`: from the files up to the current end, then whatever comes, each
/// chunk read from disk at this subscriber's own pace; `Exited` once everything was sent.
async fn subscribe(session: &Session, mut frames: Frames, mut wr: OwnedWriteHalf, from: u64) {
    let _counted = session.subscriber();
    let mut state = session.log.subscribe();
    let mut reader = SegmentReader::default();
    // Beyond the end means "only what comes from now on".
    let mut pos = from.min(state.borrow().end);
    loop {
        let now = *state.borrow_and_update();
        if pos < now.oldest() {
            let lagged = MonitorFrame::Lagged {
                requested: pos,
                resume_from: now.oldest(),
            };
            if send(&mut wr, &lagged).await.is_err() {
                return;
            }
            pos = now.oldest();
        }
        if pos < now.end {
            let frame = match reader.read(&session.dir, &now, pos) {
                Ok(data) => {
                    let offset = pos;
                    pos += data.len() as u64;
                    MonitorFrame::Output { offset, data }
                }
                Err(e) => {
                    let message = format!(
                        "cannot read the output at offset {pos} from {}: {e}",
                        session.dir.display()
                    );
                    diag(&message);
                    let _ = send(&mut wr, &MonitorFrame::Error(message)).await;
                    return;
                }
            };
            if send(&mut wr, &frame).await.is_err() {
                return;
            }
            continue;
        }
        if now.finished() {
            if let Some(exit) = session.exit() {
                let _ = send(&mut wr, &MonitorFrame::Exited(exit)).await;
            }
            return;
        }
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            next = next_request(&mut frames) => match next {
                Next::Gone => return,
                Next::Bad(message) => {
                    let _ = send(&mut wr, &MonitorFrame::Error(message)).await;
                    return;
                }
                Next::Request(_) => {
                    let refusal = MonitorFrame::Error(
                        "this connection carries a subscription: send other requests on another connection".into(),
                    );
                    if send(&mut wr, &refusal).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}
