//! The Live Console WebSocket as a client opens and reads it: the token offered as the
//! subprotocol, and a finished session's output read to the close frame with a fingerprint of
//! its bytes (FNV-1a), so a bench can check every byte without keeping them.

use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Http;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A liveness bound on the handshake for a loaded machine and ssh, not a speed target.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens the console WebSocket at `path` (e.g. `/api/v1/hosts/{host}/sessions/{id}/console`)
/// on `shim`, offering its token as the `aifactory.token.<token>` subprotocol.
pub async fn open(shim: &Http, path: &str) -> Ws {
    let mut request = shim
        .ws_url(path)
        .into_client_request()
        .unwrap_or_else(|e| panic!("{path}: not a WebSocket request: {e}"));
    let protocol = format!("aifactory.token.{}", shim.token);
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&protocol).expect("the token is a header value"),
    );
    let (ws, _) =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .unwrap_or_else(|_| panic!("{path}: no console handshake within {HANDSHAKE_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{path}: console handshake: {e}\n{}", shim.logs()));
    ws
}

/// FNV-1a's start, for [`fnv`].
pub const FNV_START: u64 = 0xcbf29ce484222325;

/// FNV-1a, fed piece by piece: `fnv(fnv(FNV_START, a), b) == fnv(FNV_START, a ++ b)`.
pub fn fnv(hash: u64, data: &[u8]) -> u64 {
    data.iter()
        .fold(hash, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

/// Reads a console to its close: (bytes, their fingerprint, close reason).
pub async fn drain(ws: &mut Ws) -> (u64, u64, String) {
    let mut bytes = 0u64;
    let mut print = FNV_START;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(data))) => {
                bytes += data.len() as u64;
                print = fnv(print, &data);
            }
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                return (bytes, print, reason);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("console failed after {bytes} bytes: {e}"),
            None => panic!("console ended without a close after {bytes} bytes"),
        }
    }
}
