//! What the OpenAPI document says once for every route: the bearer requirement and the
//! refusals of the auth layers (added to each operation by [`Guarded`]), the answers a route
//! that asks the daemon may give besides its own ([`DaemonErrors`]), and the schemas of bounds
//! the derive cannot state (a whole-range `u64`, printable names).

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, Modify, PartialSchema, ToSchema};

use crate::error::ErrorBody;

/// The answers of a route that asks aifactoryd, besides its own.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "only documents the answers")]
pub enum DaemonErrors {
    /// The request is larger than the daemon's `max_frame_bytes`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// aifactoryd failed, or answered something this shim does not know (different releases).
    #[response(status = 500)]
    Internal(ErrorBody),
    /// aifactoryd does not answer, refuses the shim, is stopping, or cannot write its store;
    /// the message names the socket or the cause and what to do.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// A position in a `u64` sequence (an event's sequence number, a byte offset): every value
/// from 0 to 18446744073709551615. Written by hand because the derive states `maximum` as a
/// float, which cannot hold `u64::MAX` exactly.
pub struct Position;

impl PartialSchema for Position {
    fn schema() -> RefOr<Schema> {
        // aifactory-http runs on 64-bit targets only, where usize holds every u64.
        let max = usize::try_from(u64::MAX).unwrap_or(usize::MAX);
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0usize))
            .maximum(Some(max))
            .into()
    }
}

impl ToSchema for Position {}

/// The daemon's test for a name or title: no control character (`char::is_control`), not
/// only white space (`str::trim`'s White_Space, spelled out because ECMA-262's `\s` is wider).
const PRINTABLE: &str = r"[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*";

/// Optional printable text of at most `max` characters; `pattern` anchors [`PRINTABLE`].
fn printable(max: usize, pattern: String) -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .build()
}

/// A project's name: printable, at most 100 characters, and not shaped like a project id
/// (`p-` and 8 hex digits), which would make lookups ambiguous.
pub fn project_name() -> Object {
    printable(100, format!("^(?!p-[0-9a-fA-F]{{8}}$){PRINTABLE}$"))
}

/// A task's title: printable, at most 200 characters.
pub fn task_title() -> Object {
    printable(200, format!("^{PRINTABLE}$"))
}

/// Adds the bearer scheme, and to every operation the refusals of the layers in front of the
/// handlers: 403 for a page origin not allowed (every route), 401 and the bearer requirement
/// for every `/api` route.
pub struct Guarded;

const UNAUTHORIZED: &str = "Unauthorized";
const FORBIDDEN: &str = "OriginNotAllowed";

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
}

fn reference(name: &str) -> RefOr<Response> {
    RefOr::Ref(Ref::from_response_name(name))
}

impl Modify for Guarded {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.responses.insert(
            UNAUTHORIZED.into(),
            RefOr::T(error_response(
                "The token is missing or wrong (`missing_token`, `invalid_token`); `WWW-Authenticate: Bearer` says how to send it",
            )),
        );
        components.responses.insert(
            FORBIDDEN.into(),
            RefOr::T(error_response(
                "The request comes from a web page whose origin is neither allowed (allowed_origins) nor the shim's own (`origin_not_allowed`)",
            )),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let guarded = needs_token(path);
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                guard(operation, guarded);
            }
        }
    }
}

/// Whether a documented route sits behind the token: every `/api` route but the login's.
pub fn needs_token(path: &str) -> bool {
    path.starts_with("/api/") && !matches!(path, "/api/v1/login" | "/api/v1/logout")
}

fn guard(operation: &mut Operation, needs_token: bool) {
    let responses = &mut operation.responses.responses;
    responses.insert("403".into(), reference(FORBIDDEN));
    if needs_token {
        responses.insert("401".into(), reference(UNAUTHORIZED));
        operation.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}
