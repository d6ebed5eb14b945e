//! A raw protocol peer for tests that must misbehave (wrong versions, garbage, huge frames) or
//! play the daemon's side.

use std::path::Path;

use aifactory_common::codec;
use aifactory_common::frame::length_codec;
use aifactory_common::handshake::{self, PeerHello};
use aifactory_common::protocol::{ClientFrame, ServerFrame};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

pub struct RawConn {
    pub stream: UnixStream,
}

impl RawConn {
    pub async fn connect(socket: &Path) -> RawConn {
        RawConn {
            stream: UnixStream::connect(socket).await.expect("connect raw"),
        }
    }

    pub async fn send_hello(&mut self, version: u16) {
        handshake::send(&mut self.stream, version)
            .await
            .expect("send hello");
    }

    pub async fn read_hello(&mut self) -> std::io::Result<PeerHello> {
        handshake::receive(&mut self.stream).await
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads until EOF (or an error), returning what came.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.stream.read_to_end(&mut out).await;
        out
    }

    /// Switches to frames after the handshake.
    pub fn framed(self) -> Framed<UnixStream, tokio_util::codec::LengthDelimitedCodec> {
        Framed::new(self.stream, length_codec(64 << 20))
    }
}

pub async fn send_client_frame(
    framed: &mut Framed<UnixStream, tokio_util::codec::LengthDelimitedCodec>,
    frame: &ClientFrame,
) -> std::io::Result<()> {
    framed
        .send(Bytes::from(codec::encode(frame).expect("encode")))
        .await
}

/// The next server frame, or `None` at EOF.
pub async fn next_server_frame(
    framed: &mut Framed<UnixStream, tokio_util::codec::LengthDelimitedCodec>,
) -> Option<ServerFrame> {
    let bytes = framed.next().await?.ok()?;
    Some(codec::decode(&bytes).expect("decode server frame"))
}
