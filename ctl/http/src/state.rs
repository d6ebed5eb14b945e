//! What every handler shares: the way to the daemon, the token, the allowed origins, and the
//! signal that the shim is stopping. Nothing here changes while the shim runs.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::daemon::Daemon;
use crate::token::Token;

#[derive(Clone)]
pub struct AppState {
    pub daemon: Daemon,
    pub token: Token,
    pub allowed_origins: Arc<Vec<String>>,
    pub listen: SocketAddr,
    /// Cancelled on SIGTERM/SIGINT: streams end and consoles close with 1001.
    pub shutdown: CancellationToken,
    /// Open consoles, which the server does not track once upgraded: waited for at shutdown so
    /// each can send its close frame.
    pub consoles: TaskTracker,
}
