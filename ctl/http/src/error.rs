//! The API's errors: one JSON shape, `{"error": {"code": "...", "message": "..."}}`, with the
//! HTTP status that fits, and the daemon's refusals mapped onto it.

use aifactory_common::ClientError;
use aifactory_common::protocol::ErrorCode;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid`, `missing_token`, `invalid_token`,
    /// `origin_not_allowed`, `not_found`, `no_route`, `method_not_allowed`, `conflict`,
    /// `websocket_required`, `daemon_unavailable`, `doctor_unavailable`, `internal`, `uri_too_long`,
    /// `headers_too_large`, or the daemon's own code in
    /// snake case (e.g. `shutting_down`).
    pub code: String,
    /// For people: what went wrong and what to do about it.
    pub message: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// How to pass the token, for every 401.
const HOW_TO_SEND: &str = "send `Authorization: Bearer <token>`; WebSockets may instead offer the subprotocol `aifactory.token.<token>` or add `?token=<token>`, and EventSource clients `?token=<token>`. The token is in `<state dir>/http-token` on the server: `aifactory-http --print-token` prints it";

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Nothing is served at this method and path.
    pub fn no_route(method: &axum::http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!(
                "no route {method} {}: the API is under /api/v1 (see /api/v1/openapi.json)",
                aifactory_common::echo::echo(path)
            ),
        )
    }

    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            format!("missing token: {HOW_TO_SEND}"),
        )
    }

    pub fn invalid_token(detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            format!("invalid token{detail}: {HOW_TO_SEND}"),
        )
    }

    /// A failure talking to the daemon at `place` (its socket, or its host's URL).
    pub fn from_client(err: ClientError, place: &str) -> Self {
        let unavailable = |message: String| {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "daemon_unavailable",
                message,
            )
        };
        match err {
            ClientError::Daemon(reply) => {
                let (status, code) = match reply.code {
                    ErrorCode::Invalid => (StatusCode::BAD_REQUEST, "invalid"),
                    ErrorCode::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                    ErrorCode::Conflict => (StatusCode::CONFLICT, "conflict"),
                    // The shim's own uid is refused: to the web client the daemon is unavailable.
                    ErrorCode::PermissionDenied => {
                        (StatusCode::SERVICE_UNAVAILABLE, "permission_denied")
                    }
                    ErrorCode::TooManyConnections => {
                        (StatusCode::SERVICE_UNAVAILABLE, "too_many_connections")
                    }
                    ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                    ErrorCode::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
                    ErrorCode::SlowClient => (StatusCode::SERVICE_UNAVAILABLE, "slow_client"),
                    ErrorCode::FrameTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "frame_too_large"),
                    ErrorCode::MalformedFrame => {
                        (StatusCode::INTERNAL_SERVER_ERROR, "malformed_frame")
                    }
                    ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                };
                Self::new(status, code, reply.message)
            }
            // Its message names the socket and how to start the daemon.
            ClientError::Unreachable { .. } | ClientError::SocketPermission { .. } => {
                unavailable(err.to_string())
            }
            ClientError::Disconnected { reason } => unavailable(format!(
                "aifactoryd at {place} closed the connection ({reason}); if it is restarting, try again; otherwise start it with `systemctl start aifactoryd` (system mode) or `aifactoryd` (user mode)"
            )),
            ClientError::HandshakeTimeout { .. }
            | ClientError::HandshakeInterrupted { .. }
            | ClientError::ClosedAfterRequest { .. }
            | ClientError::ProtocolMismatch { .. }
            | ClientError::NotAifactory { .. } => unavailable(err.to_string()),
            ClientError::Codec(_) | ClientError::UnexpectedReply { .. } => {
                Self::internal(err.to_string())
            }
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(
                status = self.status.as_u16(),
                code = self.code,
                "{}",
                self.message
            );
        }
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"aifactory\""),
            );
        }
        response
    }
}
