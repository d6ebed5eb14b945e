//! Request extractors whose rejections are the API's JSON errors, not axum's plain text.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::hosts::Host;
use crate::state::AppState;

/// A JSON body.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::invalid(
                "the body must be JSON: send `Content-Type: application/json`",
            )),
            Err(e) => Err(ApiError::invalid(format!(
                "invalid JSON body: {}",
                e.body_text()
            ))),
        }
    }
}

/// Query parameters.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => Err(ApiError::invalid(
                format!("invalid query parameters: {}", e.body_text()),
            )),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// The object a route names: its host (`/api/v1/hosts/{host}/…`, or the only host for the
/// same route without it) and its `{id}`, percent-decoded.
pub struct On {
    pub host: Host,
    pub id: String,
}

impl FromRequestParts<AppState> for On {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if has_bad_escape(parts.uri.path()) {
            return Err(bad_escape());
        }
        let mut params = match axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(params)) => params,
            Err(e @ PathRejection::FailedToDeserializePathParams(_)) => {
                return Err(ApiError::invalid(format!(
                    "invalid id in the path ({}): percent-encode it as UTF-8",
                    e.body_text()
                )));
            }
            Err(e) => return Err(ApiError::internal(e.body_text())),
        };
        let host = state
            .hosts
            .resolve(params.get("host").map(String::as_str))?
            .clone();
        let id = params
            .remove("id")
            .ok_or_else(|| ApiError::internal("the route has no {id}"))?;
        Ok(On { host, id })
    }
}

fn bad_escape() -> ApiError {
    ApiError::invalid(
        "invalid percent-escape in the path: `%` must be followed by two hex digits; percent-encode the id as UTF-8 (`%25` for a literal %)",
    )
}

/// Whether `path` holds a `%` that is not followed by two hex digits.
fn has_bad_escape(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// `?host=NAME` on a list: only that host's objects.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HostFilter {
    /// Only this host's (`GET /api/v1/hosts` names them); default: every reachable host.
    pub host: Option<String>,
}

/// `?grace=SECONDS` for stop and kill (default 5).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Grace {
    /// Seconds between SIGTERM and SIGKILL (default 5, at most 3600).
    #[param(minimum = 0, maximum = 3600)]
    pub grace: Option<u64>,
}

pub const DEFAULT_GRACE_S: u64 = 5;
const MAX_GRACE_S: u64 = 3600;

impl Grace {
    pub fn millis(&self) -> Result<u64, ApiError> {
        let grace = self.grace.unwrap_or(DEFAULT_GRACE_S);
        if grace > MAX_GRACE_S {
            return Err(ApiError::invalid(format!(
                "grace={grace} is more than {MAX_GRACE_S} seconds: pass a shorter grace period"
            )));
        }
        Ok(grace * 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::has_bad_escape;

    #[test]
    fn a_percent_needs_two_hex_digits() {
        for bad in ["/a/%", "/a/%Z", "/a/%ZZ", "/a/b%4"] {
            assert!(has_bad_escape(bad), "{bad}");
        }
        for good in ["/a/b", "/a/%25ZZ", "/a/%C3%A9", "/a/%ff"] {
            assert!(!has_bad_escape(good), "{good}");
        }
    }
}
