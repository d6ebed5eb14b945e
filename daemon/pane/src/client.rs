//! The daemon's side of `monitor.sock`: one connection, one request at a time.
//!
//! A connection either answers requests ([`MonitorClient::info`], [`MonitorClient::input`],
//! ...) or, once [`MonitorClient::subscribe`]d, becomes a [`MonitorStream`] of output; use one
//! connection per purpose.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aifactory_common::codec::{self, CodecError};
use aifactory_common::frame::{
    DEFAULT_MAX_FRAME_BYTES, INITIAL_READ_BUFFER, is_frame_too_large, length_codec, write_frame,
};
use aifactory_common::handshake::{self, PeerHello};
use aifactory_common::pane::{
    ExitInfo, MONITOR_PROTOCOL_VERSION, MONITOR_SOCKET, MonitorFrame, MonitorInfo, MonitorRequest,
    OutputBlocked,
};
use futures::{Stream, StreamExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request the monitor carries out at once (info, resize, signal) may take to be
/// answered: a monitor that cannot answer it is wedged, and the daemon must not wait forever.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Input larger than this goes out as several `Input` requests, well below the frame limit.
const INPUT_PIECE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(
        "cannot reach the pane monitor at {}: {source}: the monitor is not running (its output and exit status stay in the pane directory)",
        socket.display()
    )]
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the pane monitor at {} did not finish the handshake within {seconds} s: it may be stopped or wedged; see monitor.log beside the socket",
        socket.display()
    )]
    HandshakeTimeout { socket: PathBuf, seconds: u64 },
    #[error(
        "{} is not a pane monitor socket (the peer did not answer the aifactory handshake)",
        socket.display()
    )]
    NotAifactory { socket: PathBuf },
    #[error(
        "the pane monitor at {} speaks protocol {theirs}, this aifactoryd speaks {ours}: it was started by another aifactoryd version; its output stays readable in the pane directory",
        socket.display()
    )]
    ProtocolMismatch {
        socket: PathBuf,
        ours: u16,
        theirs: u16,
    },
    #[error("connection to the pane monitor at {} failed: {source}", socket.display())]
    Io {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the pane monitor at {} closed the connection (it may have exited: see exit.json beside the socket)",
        socket.display()
    )]
    Closed { socket: PathBuf },
    #[error(
        "the pane monitor at {} did not answer within {seconds} s: it may be stopped or wedged; see monitor.log beside the socket",
        socket.display()
    )]
    NoAnswer { socket: PathBuf, seconds: u64 },
    #[error("pane monitor at {}: {source}", socket.display())]
    Codec { socket: PathBuf, source: CodecError },
    #[error("the pane monitor at {} refused the request: {message}", socket.display())]
    Refused { socket: PathBuf, message: String },
    #[error(
        "unexpected answer from the pane monitor at {}: expected {expected}, got {got}",
        socket.display()
    )]
    Unexpected {
        socket: PathBuf,
        expected: &'static str,
        got: String,
    },
}

/// One connection to a pane monitor.
pub struct MonitorClient {
    socket: PathBuf,
    frames: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    writer: OwnedWriteHalf,
}

impl MonitorClient {
    /// Connects to `<pane_dir>/monitor.sock` and completes the handshake.
    pub async fn connect(pane_dir: impl AsRef<Path>) -> Result<MonitorClient, MonitorError> {
        let socket = pane_dir.as_ref().join(MONITOR_SOCKET);
        let stream =
            UnixStream::connect(&socket)
                .await
                .map_err(|source| MonitorError::Unreachable {
                    socket: socket.clone(),
                    source,
                })?;
        let (mut rd, mut wr) = stream.into_split();
        let exchange = async {
            handshake::send(&mut wr, MONITOR_PROTOCOL_VERSION).await?;
            handshake::receive(&mut rd).await
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange).await {
            Err(_) => {
                return Err(MonitorError::HandshakeTimeout {
                    socket,
                    seconds: HANDSHAKE_TIMEOUT.as_secs(),
                });
            }
            Ok(Err(source)) => return Err(MonitorError::Io { socket, source }),
            Ok(Ok(PeerHello::NotAifactory)) => return Err(MonitorError::NotAifactory { socket }),
            Ok(Ok(PeerHello::Version(theirs))) if theirs != MONITOR_PROTOCOL_VERSION => {
                return Err(MonitorError::ProtocolMismatch {
                    socket,
                    ours: MONITOR_PROTOCOL_VERSION,
                    theirs,
                });
            }
            Ok(Ok(PeerHello::Version(_))) => {}
        }
        Ok(MonitorClient {
            socket,
            frames: FramedRead::with_capacity(
                rd,
                length_codec(DEFAULT_MAX_FRAME_BYTES),
                INITIAL_READ_BUFFER,
            ),
            writer: wr,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn send(&mut self, request: &MonitorRequest) -> Result<(), MonitorError> {
        let bytes = codec::encode(request).map_err(|source| MonitorError::Codec {
            socket: self.socket.clone(),
            source,
        })?;
        write_frame(&mut self.writer, &bytes)
            .await
            .map_err(|source| MonitorError::Io {
                socket: self.socket.clone(),
                source,
            })
    }

    /// The next frame; `None` when the monitor closed the connection.
    async fn receive(&mut self) -> Option<Result<MonitorFrame, MonitorError>> {
        let bytes = match self.frames.next().await? {
            Ok(bytes) => bytes,
            Err(source) => {
                let source = if is_frame_too_large(&source) {
                    std::io::Error::other(format!(
                        "the monitor sent a frame over {DEFAULT_MAX_FRAME_BYTES} bytes: {source}"
                    ))
                } else {
                    source
                };
                return Some(Err(MonitorError::Io {
                    socket: self.socket.clone(),
                    source,
                }));
            }
        };
        Some(
            codec::decode::<MonitorFrame>(&bytes).map_err(|source| MonitorError::Codec {
                socket: self.socket.clone(),
                source,
            }),
        )
    }

    /// One request, one answer; an `Error` frame becomes [`MonitorError::Refused`].
    async fn call(&mut self, request: &MonitorRequest) -> Result<MonitorFrame, MonitorError> {
        self.send(request).await?;
        match self.receive().await {
            None => Err(MonitorError::Closed {
                socket: self.socket.clone(),
            }),
            Some(Err(e)) => Err(e),
            Some(Ok(MonitorFrame::Error(message))) => Err(MonitorError::Refused {
                socket: self.socket.clone(),
                message,
            }),
            Some(Ok(frame)) => Ok(frame),
        }
    }

    async fn call_done(
        &mut self,
        request: &MonitorRequest,
        within: Duration,
    ) -> Result<(), MonitorError> {
        match self.call_within(request, within).await? {
            MonitorFrame::Done => Ok(()),
            other => Err(self.unexpected("Done", &other)),
        }
    }

    fn unexpected(&self, expected: &'static str, got: &MonitorFrame) -> MonitorError {
        MonitorError::Unexpected {
            socket: self.socket.clone(),
            expected,
            got: format!("{got:?}"),
        }
    }

    /// [`call`](Self::call) bounded by `within`.
    async fn call_within(
        &mut self,
        request: &MonitorRequest,
        within: Duration,
    ) -> Result<MonitorFrame, MonitorError> {
        tokio::time::timeout(within, self.call(request))
            .await
            .unwrap_or_else(|_| {
                Err(MonitorError::NoAnswer {
                    socket: self.socket.clone(),
                    seconds: within.as_secs(),
                })
            })
    }

    /// The session as the monitor sees it now (output end, exit).
    pub async fn info(&mut self) -> Result<MonitorInfo, MonitorError> {
        match self
            .call_within(&MonitorRequest::Info, REPLY_TIMEOUT)
            .await?
        {
            MonitorFrame::Info(info) => Ok(info),
            other => Err(self.unexpected("Info", &other)),
        }
    }

    /// Types `bytes` into the terminal. The monitor refuses input the program takes no byte
    /// of for [`INPUT_TIMEOUT`](super::INPUT_TIMEOUT); `answer_within` bounds each piece's
    /// wait for that answer, for a monitor that cannot give it (wedged, or older than that
    /// rule). Returns how many bytes went through when it fails.
    pub async fn input(
        &mut self,
        bytes: &[u8],
        answer_within: Duration,
    ) -> Result<(), (usize, MonitorError)> {
        let mut sent = 0;
        for piece in bytes.chunks(INPUT_PIECE) {
            let request = MonitorRequest::Input(piece.to_vec());
            self.call_done(&request, answer_within)
                .await
                .map_err(|e| (sent, e))?;
            sent += piece.len();
        }
        Ok(())
    }

    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), MonitorError> {
        self.call_done(&MonitorRequest::Resize { cols, rows }, REPLY_TIMEOUT)
            .await
    }

    /// Sends `signal` to the program's process group (a group that is gone is not an error).
    pub async fn signal(&mut self, signal: i32) -> Result<(), MonitorError> {
        self.call_done(&MonitorRequest::Signal { signal }, REPLY_TIMEOUT)
            .await
    }

    /// Waits until the program ended and returns how.
    pub async fn wait_exit(&mut self) -> Result<ExitInfo, MonitorError> {
        match self.call(&MonitorRequest::WaitExit).await? {
            MonitorFrame::Exited(exit) => Ok(exit),
            other => Err(self.unexpected("Exited", &other)),
        }
    }

    /// Turns this connection into a stream of the output's health (blocked or not).
    pub async fn watch_output(mut self) -> Result<OutputWatch, MonitorError> {
        self.send(&MonitorRequest::WatchOutput).await?;
        Ok(OutputWatch { client: self })
    }

    /// Turns this connection into a stream of output from absolute offset `from`.
    pub async fn subscribe(mut self, from: u64) -> Result<MonitorStream, MonitorError> {
        self.send(&MonitorRequest::Subscribe { from }).await?;
        Ok(MonitorStream {
            client: self,
            ended: false,
        })
    }
}

/// The output's health as the monitor reports it, one change at a time.
pub struct OutputWatch {
    client: MonitorClient,
}

impl OutputWatch {
    /// The next state: `Some` while output is blocked, `None` while it is written. `Err` once
    /// the stream ended: [`MonitorError::Closed`] when all output is in the files or the
    /// monitor is gone, [`MonitorError::Refused`] from a monitor older than the request.
    pub async fn next(&mut self) -> Result<Option<OutputBlocked>, MonitorError> {
        match self.client.receive().await {
            None => Err(MonitorError::Closed {
                socket: self.client.socket.clone(),
            }),
            Some(Err(e)) => Err(e),
            Some(Ok(MonitorFrame::OutputHealth(health))) => Ok(health),
            Some(Ok(MonitorFrame::Error(message))) => Err(MonitorError::Refused {
                socket: self.client.socket.clone(),
                message,
            }),
            Some(Ok(other)) => Err(self.client.unexpected("OutputHealth", &other)),
        }
    }
}

/// The frames of one subscription: `Output` and `Lagged`, then `Exited`.
pub struct MonitorStream {
    client: MonitorClient,
    ended: bool,
}

impl MonitorStream {
    /// The next frame; `None` after `Exited` (or an error) was returned. An `Error` frame
    /// comes as [`MonitorError::Refused`]; a connection closed before `Exited` as
    /// [`MonitorError::Closed`].
    pub async fn next_frame(&mut self) -> Option<Result<MonitorFrame, MonitorError>> {
        if self.ended {
            return None;
        }
        let next = match self.client.receive().await {
            None => Err(MonitorError::Closed {
                socket: self.client.socket.clone(),
            }),
            Some(Ok(MonitorFrame::Error(message))) => Err(MonitorError::Refused {
                socket: self.client.socket.clone(),
                message,
            }),
            Some(other) => other,
        };
        self.ended = matches!(next, Err(_) | Ok(MonitorFrame::Exited(_)));
        Some(next)
    }

    pub fn socket(&self) -> &Path {
        self.client.socket()
    }

    /// The same frames as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = Result<MonitorFrame, MonitorError>> {
        futures::stream::unfold(self, |mut stream| async move {
            stream.next_frame().await.map(|frame| (frame, stream))
        })
    }
}
