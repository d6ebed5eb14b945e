//! The HTTP shim as the checks see it: where it listens, its token file, and its answers to
//! three questions, asked the same way whoever asks: `/healthz` (with the token when the token
//! file can be read), the console's WebSocket handshake without a token, and, when that was
//! refused with 401, the same handshake with the token from the token file.
//!
//! How the questions travel is the caller's [`Transport`]: aifactoryctl sends them over TCP to
//! where the shim listens ([`Tcp`]); the shim hands them to its own router in-process.

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::http::{self, HttpError, Response};

/// The shim's health route.
pub const HEALTH_PATH: &str = "/healthz";
/// A console of a session that does not exist: the auth layer answers before the session is
/// looked up.
pub const CONSOLE_PATH: &str = "/api/v1/sessions/doctor-check/console";
/// The token file's name in the state directory.
pub const TOKEN_FILE: &str = "http-token";

/// How a question reaches the shim.
pub trait Transport {
    /// `GET path` with `headers`: the answer, or why there was none.
    fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> impl Future<Output = Result<Response, HttpError>> + Send;
}

/// Over TCP to `addr` (host:port), one connection per request, each within
/// [`crate::bounds::SHIM_REQUEST`].
pub struct Tcp {
    pub addr: String,
}

impl Transport for Tcp {
    fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> impl Future<Output = Result<Response, HttpError>> + Send {
        http::get(&self.addr, path, headers)
    }
}

/// What the shim answered.
pub struct Shim {
    /// Where it listens, as the report names it.
    pub addr: String,
    /// Its token file (`None`: the state directory is unknown).
    pub token_file: Option<PathBuf>,
    /// `/healthz`, with the token when the token file can be read.
    pub health: Result<Response, HttpError>,
    /// The console's WebSocket handshake without a token.
    pub tokenless_console: Result<Response, HttpError>,
    /// The same with the token from the token file: asked only when the first was refused
    /// with 401 and the file could be read.
    pub console_with_token: Option<Result<Response, HttpError>>,
}

/// The token in `file`, if it can be read and holds one.
pub(crate) fn read_token(file: Option<&Path>) -> Option<String> {
    let text = std::fs::read_to_string(file?).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// Asks the shim at `addr` through `transport`, with the token from `token_file`.
pub async fn probe<T: Transport>(transport: &T, addr: String, token_file: Option<PathBuf>) -> Shim {
    let token = read_token(token_file.as_deref());
    // Without the token /healthz says only ok or unavailable; with it, the daemon's details.
    let bearer = token.as_ref().map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("Authorization", b)])
        .unwrap_or_default();
    let health = transport.get(HEALTH_PATH, &headers).await;
    let tokenless_console = transport.get(CONSOLE_PATH, &http::upgrade_headers()).await;
    let refused = matches!(&tokenless_console, Ok(r) if r.status == 401);
    let console_with_token = match (&token, refused) {
        (Some(token), true) => {
            let protocol = format!("aifactory.token.{token}");
            let mut headers = http::upgrade_headers();
            headers.push(("Sec-WebSocket-Protocol", &protocol));
            Some(transport.get(CONSOLE_PATH, &headers).await)
        }
        _ => None,
    };
    Shim {
        addr,
        token_file,
        health,
        tokenless_console,
        console_with_token,
    }
}
