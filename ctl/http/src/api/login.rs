//! `POST /api/v1/login` and `/api/v1/logout`: the page trades a one-time code (from
//! `aifactory-http --print-url`) or the token, typed once, for the session cookie
//! (crate::login). Neither needs the token in a header: they are how a browser gets in.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::Body;
use crate::error::{ApiError, ErrorBody};
use crate::login;
use crate::state::AppState;

/// How the browser proves it may log in: a one-time code or the token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "documents the body; Given reads it")]
pub enum Login {
    Code(ByCode),
    Token(ByToken),
}

/// The body as read, so that neither or both get a message that says what to send.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Given {
    code: Option<String>,
    token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "documents the body; Given reads it")]
pub struct ByCode {
    /// The fragment of the URL `aifactory-http --print-url` printed (`#code=...`): works once,
    /// for ten minutes.
    #[schema(min_length = 1, max_length = 200)]
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "documents the body; Given reads it")]
pub struct ByToken {
    /// The API token (`aifactory-http --print-token`).
    #[schema(min_length = 1, max_length = 200)]
    pub token: String,
}

/// Logs the browser in: sets the session cookie (`HttpOnly`, `SameSite=Strict`, 24 hours).
#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "login",
    request_body = Login,
    responses(
        (status = 204, description = "Logged in; `Set-Cookie` holds the session",
            headers(("Set-Cookie" = String, description = "aifactory_session=...; HttpOnly; SameSite=Strict"))),
        (status = 400, description = "Neither or both of `code` and `token`, or not JSON", body = ErrorBody),
        (status = 401, description = "The code is forged, expired or spent (`invalid_code`), or the token is wrong (`invalid_token`)", body = ErrorBody),
    ),
    security(())
)]
pub async fn login(
    State(state): State<AppState>,
    Body(body): Body<Given>,
) -> Result<Response, ApiError> {
    match (body.code, body.token) {
        (Some(code), None) => state
            .spent_codes
            .redeem(&state.token, &code)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_code", e.to_string()))?,
        (None, Some(token)) => {
            if !state.token.matches(token.trim()) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "that is not this shim's token: copy it from `aifactory-http --print-token` on the server (it is in <state dir>/http-token), or log in with the link `aifactory-http --print-url` prints",
                ));
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "send exactly one of `code` (from the link `aifactory-http --print-url` prints) and `token`",
            ));
        }
    }
    let session =
        login::new_session(&state.token).map_err(|e| ApiError::internal(e.to_string()))?;
    tracing::info!("a browser logged in");
    Ok(with_cookie(&login::set_cookie(&session)))
}

/// Logs the browser out: clears the session cookie.
#[utoipa::path(
    post,
    path = "/api/v1/logout",
    tag = "login",
    responses((status = 204, description = "The cookie is cleared")),
    security(())
)]
pub async fn logout() -> Response {
    with_cookie(&login::clear_cookie())
}

fn with_cookie(cookie: &str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
