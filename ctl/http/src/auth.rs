//! Who may call: the bearer token on every `/api` request (WebSocket upgrades may offer it as
//! the subprotocol `aifactory.token.<token>` or a `token` query parameter, EventSource requests
//! as `token`, since browsers cannot set headers there) or the page's login cookie, and the
//! `Origin` allow-list for requests that come from a web page. A request the cookie alone
//! authenticates that changes anything (any method but GET and HEAD, or a WebSocket) must carry
//! an `Origin`, which the allow-list has then passed: the cookie's `SameSite=Strict` keeps other
//! sites' requests from carrying it, and this keeps out whatever else would (CSRF).

use aifactory_common::echo::echo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::login;
use crate::state::AppState;

/// The subprotocol prefix a WebSocket client uses to carry the token.
pub const TOKEN_PROTOCOL_PREFIX: &str = "aifactory.token.";

/// Where a request put its token.
#[derive(Debug, PartialEq, Eq)]
enum Presented {
    Header(String),
    Protocol(String),
    Query(String),
    /// The page's login cookie.
    Cookie(String),
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    None,
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn is_event_stream(uri: &Uri) -> bool {
    uri.path().ends_with("/events")
}

/// The offered subprotocols, as the client listed them.
pub fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn query_token(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "token")
        .map(|(_, value)| value.to_string())
}

fn presented(headers: &HeaderMap, uri: &Uri) -> Presented {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else {
            return Presented::Malformed;
        };
        return match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                Presented::Header(token.trim().to_string())
            }
            _ => Presented::Malformed,
        };
    }
    let websocket = is_websocket_upgrade(headers);
    if websocket
        && let Some(token) =
            offered_protocols(headers).find_map(|p| p.strip_prefix(TOKEN_PROTOCOL_PREFIX))
    {
        return Presented::Protocol(token.to_string());
    }
    if (websocket || is_event_stream(uri))
        && let Some(token) = query_token(uri)
    {
        return Presented::Query(token);
    }
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    match login::cookie(cookies) {
        Some(value) => Presented::Cookie(value.to_string()),
        None => Presented::None,
    }
}

/// Whether the request carries the right token or a valid login, wherever it put it.
pub fn has_token(state: &AppState, headers: &HeaderMap, uri: &Uri) -> bool {
    match presented(headers, uri) {
        Presented::Header(t) | Presented::Protocol(t) | Presented::Query(t) => {
            state.token.matches(&t)
        }
        Presented::Cookie(c) => login::session_is_valid(&state.token, &c),
        Presented::Malformed | Presented::None => false,
    }
}

/// Whether a request changes something, or may: what a cross-site request must not do.
fn is_state_changing(method: &Method, headers: &HeaderMap) -> bool {
    !(method == Method::GET || method == Method::HEAD) || is_websocket_upgrade(headers)
}

/// Refuses a request without the right token with 401 and how to send it.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let verdict = match presented(req.headers(), req.uri()) {
        Presented::None => Err(ApiError::missing_token()),
        Presented::Malformed => Err(ApiError::invalid_token(
            " (the Authorization header is not `Bearer <token>`)",
        )),
        Presented::Header(t) | Presented::Protocol(t) | Presented::Query(t) => {
            if state.token.matches(&t) {
                Ok(())
            } else {
                Err(ApiError::invalid_token(""))
            }
        }
        Presented::Cookie(c) => {
            if !login::session_is_valid(&state.token, &c) {
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_login",
                    "your login expired, or the token was rotated since: log in again (`aifactory-http --print-url` prints a link)",
                ))
            } else if is_state_changing(req.method(), req.headers())
                && !req.headers().contains_key(header::ORIGIN)
            {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "origin_required",
                    "a request the login cookie authenticates that changes anything must come from the page (browsers send `Origin`); other clients send `Authorization: Bearer <token>`",
                ))
            } else {
                Ok(())
            }
        }
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::info!(path = %echo(req.uri().path()), code = e.code, "refused a request");
            e.into_response()
        }
    }
}

/// Refuses a request from a web page whose origin is neither allowed nor the shim's own.
pub async fn check_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        // Not from a browser page (curl, a server-side client): the token decides.
        return next.run(req).await;
    };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
    let origin_lower = origin.to_ascii_lowercase();
    let same_origin = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| {
            origin_lower == format!("http://{}", host.to_ascii_lowercase())
                || origin_lower == format!("https://{}", host.to_ascii_lowercase())
        });
    if same_origin || state.allowed_origins.contains(&origin_lower) {
        return next.run(req).await;
    }
    tracing::info!(
        origin,
        path = req.uri().path(),
        "refused a request from an origin not allowed"
    );
    ApiError::new(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        format!(
            "requests from the web origin `{origin}` are not allowed: add it to allowed_origins in the aifactory-http config, or start it with --allow-origin {origin}"
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn where_the_token_is_found() {
        let plain: Uri = "/api/v1/status?token=q".parse().unwrap();
        assert_eq!(
            presented(&headers(&[("authorization", "Bearer abc")]), &plain),
            Presented::Header("abc".into())
        );
        assert_eq!(
            presented(&headers(&[("authorization", "Basic abc")]), &plain),
            Presented::Malformed
        );
        // The query is only for WebSockets and EventSource.
        assert_eq!(presented(&headers(&[]), &plain), Presented::None);
        let events: Uri = "/api/v1/events?after=3&token=q".parse().unwrap();
        assert_eq!(
            presented(&headers(&[]), &events),
            Presented::Query("q".into())
        );
        let ws = headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "other, aifactory.token.xyz"),
        ]);
        let console: Uri = "/api/v1/sessions/s/console?token=q".parse().unwrap();
        assert_eq!(presented(&ws, &console), Presented::Protocol("xyz".into()));
        assert_eq!(
            presented(&headers(&[("upgrade", "websocket")]), &console),
            Presented::Query("q".into())
        );
    }
}
