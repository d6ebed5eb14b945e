//! Request extractors whose rejections are the API's JSON errors, not axum's plain text.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

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

/// The `{id}` of a route: a resource's id or name, percent-decoded.
pub struct Key(pub String);

impl<S> FromRequestParts<S> for Key
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(key)) => Ok(Key(key)),
            Err(e @ PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::invalid(format!(
                    "invalid id in the path ({}): percent-encode it as UTF-8",
                    e.body_text()
                )))
            }
            Err(e) => Err(ApiError::internal(e.body_text())),
        }
    }
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
