//! The HTTP surface: the routes, each documented where it is written (utoipa), so the OpenAPI
//! document is generated from the same registrations that serve requests.

mod console;
mod doc;
mod doctor;
mod events;
mod extract;
mod hosted;
mod hosts;
mod login;
mod projects;
pub(crate) mod reconnect;
mod sessions;
mod status;
mod tasks;

use std::sync::OnceLock;

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth;
use crate::error::{ApiError, ErrorBody};
use crate::page;
use crate::state::AppState;
use doc::{Guarded, Position};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "aifactory-http",
        description = "REST, server-sent events and the Live Console WebSocket in front of aifactoryd. Every /api request needs `Authorization: Bearer <token>` (the token is in `<state dir>/http-token`; `aifactory-http --print-token`). Errors are `{\"error\": {\"code\", \"message\"}}`. The shim serves one or more hosts (`GET /api/v1/hosts`): lists gather every reachable host's objects, each object carries `host`, and an object is addressed as `/api/v1/hosts/{host}/…`; while the shim serves one host, the same routes without `/hosts/{host}` (e.g. `/api/v1/tasks/{id}/start`) answer too. Response bodies are the aifactory-common protocol types as JSON. Every status a route can answer is listed with it, and every bound the shim or the daemon enforces on a request is in its schema. A route that takes query parameters refuses unknown ones (400); the others ignore the query."
    ),
    // `Event` is what each server-sent event's `data:` holds (GET /api/v1/events).
    components(schemas(ErrorBody, Position, aifactory_common::protocol::Event))
)]
struct ApiDoc;

/// The routes that need the token.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(status::status))
        .routes(routes!(doctor::doctor))
        .routes(routes!(hosts::list))
        .routes(routes!(hosts::get))
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::get, projects::delete))
        .routes(routes!(tasks::list, tasks::create))
        .routes(routes!(tasks::get, tasks::remove))
        .routes(routes!(tasks::start))
        .routes(routes!(tasks::stop))
        .routes(routes!(tasks::restart))
        .routes(routes!(tasks::transcript))
        .routes(routes!(tasks::attempts))
        .routes(routes!(sessions::list))
        .routes(routes!(sessions::get, sessions::delete))
        .routes(routes!(console::console))
        .routes(routes!(events::events))
        .routes(routes!(openapi_json))
        .merge(one_host_routes())
}

/// The object routes without `/hosts/{host}`, as they were before the shim served several
/// hosts: they act on the only host, and refuse (`host_required`) when there are several.
/// Not in the document, which lists each route once.
fn one_host_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route(
            "/api/v1/projects/{id}",
            get(projects::get).delete(projects::delete),
        )
        .route("/api/v1/tasks/{id}", get(tasks::get).delete(tasks::remove))
        .route("/api/v1/tasks/{id}/start", post(tasks::start))
        .route("/api/v1/tasks/{id}/stop", post(tasks::stop))
        .route("/api/v1/tasks/{id}/restart", post(tasks::restart))
        .route("/api/v1/tasks/{id}/transcript", get(tasks::transcript))
        .route("/api/v1/tasks/{id}/attempts", get(tasks::attempts))
        .route(
            "/api/v1/sessions/{id}",
            get(sessions::get).delete(sessions::delete),
        )
        .route("/api/v1/sessions/{id}/console", get(console::console))
}

/// `/api/v1/hosts/{host}/{kind}/{id}`, the URL of an object.
fn object_url(host: &crate::hosts::Host, kind: &str, id: &str) -> String {
    format!("/api/v1/hosts/{}/{kind}/{id}", host.name)
}

/// The routes anyone may call: health, and the page's way in.
fn open_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status::healthz))
        .routes(routes!(login::login))
        .routes(routes!(login::logout))
}

/// The OpenAPI document, generated once from the routes.
fn openapi() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, mut doc) = api_routes().split_for_parts();
        let (_, open) = open_routes().split_for_parts();
        doc.merge(open);
        // After the merge, so /healthz gets its 403 too.
        utoipa::Modify::modify(&Guarded, &mut doc);
        doc.to_pretty_json().unwrap_or_else(|e| {
            format!("{{\"error\":\"cannot render the OpenAPI document: {e}\"}}")
        })
    })
}

/// This document: every route the shim serves.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "daemon",
    responses((status = 200, description = "This OpenAPI 3.1 document", body = Object))
)]
async fn openapi_json() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        openapi(),
    )
}

pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let api = api.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    let (open, _) = open_routes().split_for_parts();
    let origins: Vec<HeaderValue> = state
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::LOCATION]);
    api.merge(open)
        .fallback(page::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::check_origin,
        ))
        .layer(cors)
        .with_state(state)
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not served on {}: see /api/v1/openapi.json for the methods each route takes",
            req.method(),
            req.uri().path()
        ),
    )
}

/// 201 with `Location`.
fn created<T>(location: &str, body: T) -> (StatusCode, HeaderMap, Json<T>) {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    (StatusCode::CREATED, headers, Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_with_its_methods() {
        let doc: serde_json::Value = serde_json::from_str(openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut listed: Vec<String> = Vec::new();
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "delete", "put", "patch"].contains(&method.as_str()) {
                    listed.push(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        listed.sort();
        let mut want = vec![
            "GET /healthz",
            "POST /api/v1/login",
            "POST /api/v1/logout",
            "GET /api/v1/status",
            "GET /api/v1/doctor",
            "GET /api/v1/openapi.json",
            "GET /api/v1/events",
            "GET /api/v1/hosts",
            "GET /api/v1/hosts/{host}",
            "GET /api/v1/projects",
            "POST /api/v1/projects",
            "GET /api/v1/hosts/{host}/projects/{id}",
            "DELETE /api/v1/hosts/{host}/projects/{id}",
            "GET /api/v1/tasks",
            "POST /api/v1/tasks",
            "GET /api/v1/hosts/{host}/tasks/{id}",
            "DELETE /api/v1/hosts/{host}/tasks/{id}",
            "POST /api/v1/hosts/{host}/tasks/{id}/start",
            "POST /api/v1/hosts/{host}/tasks/{id}/stop",
            "POST /api/v1/hosts/{host}/tasks/{id}/restart",
            "GET /api/v1/hosts/{host}/tasks/{id}/transcript",
            "GET /api/v1/hosts/{host}/tasks/{id}/attempts",
            "GET /api/v1/sessions",
            "GET /api/v1/hosts/{host}/sessions/{id}",
            "DELETE /api/v1/hosts/{host}/sessions/{id}",
            "GET /api/v1/hosts/{host}/sessions/{id}/console",
        ];
        want.sort();
        assert_eq!(listed, want);
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    }

    #[test]
    fn every_route_states_its_guards_and_typed_bodies() {
        let doc: serde_json::Value = serde_json::from_str(openapi()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("403"), "{method} {path}");
                let guarded = doc::needs_token(path);
                // The login routes answer 401 of their own (a bad code), not the token's.
                assert!(!guarded || responses.contains_key("401"), "{method} {path}");
                assert_eq!(
                    op["security"] == serde_json::json!([{"bearer": []}]),
                    guarded,
                    "{method} {path}"
                );
                for (status, response) in responses {
                    let schema = &response["content"]["application/json"]["schema"];
                    if status.starts_with('2') && status != "204" && path != "/api/v1/openapi.json"
                    {
                        // A typed body: a reference or an array of them, never a bare object.
                        assert!(
                            schema.get("$ref").is_some()
                                || schema["items"].get("$ref").is_some()
                                || response["content"]["text/event-stream"].is_object(),
                            "{method} {path} {status}: {schema}"
                        );
                    }
                }
            }
        }
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["Position"]["maximum"], serde_json::json!(u64::MAX));
        assert_eq!(
            schemas["CreateTask"]["properties"]["spec_id"]["pattern"],
            "^[a-z0-9][a-z0-9-]{0,63}$"
        );
        assert_eq!(
            schemas["Provider"]["enum"],
            serde_json::json!(["github", "gitlab", "azure-devops", "bitbucket", "unknown"])
        );
        let stop = &doc["paths"]["/api/v1/hosts/{host}/tasks/{id}/stop"]["post"]["parameters"][2]["schema"];
        assert_eq!(
            (&stop["minimum"], &stop["maximum"]),
            (&serde_json::json!(0), &serde_json::json!(3600))
        );
    }
}
