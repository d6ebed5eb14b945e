//! What can go wrong talking to the daemon, each with the fix in its message.

use std::path::PathBuf;

use crate::codec::CodecError;
use crate::in_doubt::InDoubt;
use crate::protocol::{ErrorCode, ErrorReply, Reply};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach aifactoryd at {}: {source}. Start it with `systemctl start aifactoryd` (system mode) or run `aifactoryd` (user mode), or point --socket at the right path",
        socket.display()
    )]
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "permission denied opening {} as uid {uid}: join the daemon's group (`sudo usermod -aG {group} $USER`, then log in again) or use your own user-mode daemon (`aifactoryd`)",
        socket.display()
    )]
    SocketPermission {
        socket: PathBuf,
        uid: u32,
        /// The socket file's group, the one to join.
        group: String,
    },
    #[error("{client} speaks protocol {ours}, the daemon speaks {theirs}: {}", mismatch_advice(client, *ours, *theirs))]
    ProtocolMismatch {
        client: String,
        ours: u16,
        theirs: u16,
    },
    #[error(
        "{} is not an aifactoryd socket (the peer did not answer the aifactory handshake): check --socket",
        socket.display()
    )]
    NotAifactory { socket: PathBuf },
    /// The connection closed before the handshake finished, so no request was sent: typically
    /// the daemon stopping or restarting at that moment.
    #[error(
        "aifactoryd at {} closed the connection during the handshake ({source}), before any request was sent, so nothing was done: it is probably restarting; try again, and if it persists check `journalctl -u aifactoryd` or its stderr",
        socket.display()
    )]
    HandshakeInterrupted {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "aifactoryd at {} did not finish the handshake within {seconds} s: it may be wedged; check `journalctl -u aifactoryd` or its stderr",
        socket.display()
    )]
    HandshakeTimeout { socket: PathBuf, seconds: u64 },
    /// The daemon answered with a refusal or an error.
    #[error("{0}")]
    Daemon(ErrorReply),
    #[error("connection to aifactoryd closed: {reason}")]
    Disconnected { reason: String },
    /// The connection closed after a state-changing request was sent and before its reply:
    /// the daemon may have acted on it (then died, or restarted).
    #[error(
        "connection to aifactoryd closed after the `{}` request was sent ({reason}): it may have completed; check with `{}` before repeating it",
        doubt.request,
        doubt.check
    )]
    ClosedAfterRequest { doubt: InDoubt, reason: String },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("unexpected reply from aifactoryd: expected {expected}, got {got}")]
    UnexpectedReply { expected: &'static str, got: String },
}

fn mismatch_advice(client: &str, ours: u16, theirs: u16) -> String {
    if ours > theirs {
        format!("upgrade the daemon or use a matching {client}")
    } else {
        format!("upgrade {client} or use a daemon that speaks protocol {ours}")
    }
}

impl ClientError {
    /// The daemon answered with `got` where the request calls for `Reply::<expected>`.
    pub(crate) fn unexpected(expected: &'static str, got: &Reply) -> ClientError {
        ClientError::UnexpectedReply {
            expected,
            got: format!("{got:?}"),
        }
    }

    /// The daemon's error code, when the daemon itself refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Daemon(reply) => Some(reply.code),
            _ => None,
        }
    }

    /// Whether this means "no daemon answers there" (or it went away before a request was sent).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::HandshakeInterrupted { .. }
        )
    }

    /// Whether the peer was refused for lack of permission (socket mode or peer credentials).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, ClientError::SocketPermission { .. })
            || self.code() == Some(ErrorCode::PermissionDenied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_message_says_who_upgrades() {
        let newer_client = ClientError::ProtocolMismatch {
            client: "aifactoryctl".into(),
            ours: 2,
            theirs: 1,
        };
        assert_eq!(
            newer_client.to_string(),
            "aifactoryctl speaks protocol 2, the daemon speaks 1: upgrade the daemon or use a matching aifactoryctl"
        );
        let older_client = ClientError::ProtocolMismatch {
            client: "aifactoryctl".into(),
            ours: 1,
            theirs: 2,
        };
        assert_eq!(
            older_client.to_string(),
            "aifactoryctl speaks protocol 1, the daemon speaks 2: upgrade aifactoryctl or use a daemon that speaks protocol 1"
        );
    }
}
