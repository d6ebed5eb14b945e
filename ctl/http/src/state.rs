//! What every handler shares: the hosts and the way to each one's daemon, the token (and the file it came from), the
//! allowed origins, the signal that the shim is stopping, and the doctor's one turn.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hosts::Hosts;
use crate::login::SpentCodes;
use crate::token::Token;

#[derive(Clone)]
pub struct AppState {
    pub hosts: Hosts,
    pub token: Token,
    /// Where the token was read (`<state dir>/http-token`): the doctor checks that file.
    pub token_file: PathBuf,
    /// The one-time login codes taken so far (the only thing here that changes).
    pub spent_codes: SpentCodes,
    pub allowed_origins: Arc<Vec<String>>,
    pub listen: SocketAddr,
    /// Cancelled on SIGTERM/SIGINT: streams end and consoles close with 1001.
    pub shutdown: CancellationToken,
    /// Open consoles, which the server does not track once upgraded: waited for at shutdown so
    /// each can send its close frame.
    pub consoles: TaskTracker,
    /// One doctor run at a time: each runs `aifactoryd check` and a git per project.
    pub doctor_turn: Arc<tokio::sync::Semaphore>,
}
