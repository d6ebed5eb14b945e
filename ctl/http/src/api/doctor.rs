//! `GET /api/v1/doctor`: the checks of `aifactoryctl doctor`, in the same order, as the shim on
//! the daemon's host sees them. The checks themselves are `aifactory-doctor`'s, so they are
//! never written twice; this gathers their facts the shim's way:
//!
//! - the daemon's answers through the shim's own socket, and the installed `aifactoryd check`
//!   (found beside aifactory-http, else on PATH) with the state directory and config file the
//!   daemon says it uses (its own state directory when the daemon does not answer);
//! - the shim's own checks from its own state: the token file it read at start (`http-token`),
//!   its listen address, and its answers to `/healthz` and to a console handshake without and
//!   with the token taken from that file (`http-shim`, `console-auth`), asked of its own router
//!   in-process, through every layer a request from outside goes through but the TCP listener,
//!   rather than over the network to itself. A console with the right token passes the auth
//!   layer and is then refused by the handler with 426, as aifactoryctl's is (an in-process
//!   request cannot be upgraded; aifactoryctl's asks for `Connection: close` too): the same
//!   "let through (HTTP 426)".
//!
//! The checks about the daemon's own paths and processes (`project-paths`, `tasks-stuck`'s
//! spec directories, `stale-sessions`' processes and monitors) judge what the daemon says it
//! sees (`DoctorFacts`), never what the shim sees: under the packaged unit the shim's view is
//! narrower (`ProtectHome=yes`, `PrivateUsers=yes`), and the page shows the daemon's.
//!
//! A failing check is data: the answer is 200 with the array whatever the checks say. Each step
//! is bounded (`aifactory_doctor::bounds`); one that does not finish makes its checks `skip`
//! with why, never `ok`. One run at a time (each starts `aifactoryd check` and has the daemon
//! run a git per project): a request waits for the one before it. 503 only when the checks
//! cannot run at all: the shim is stopping, the run before did not end in time, or the run
//! itself broke down.

use std::time::Duration;

use aifactory_common::ClientOptions;
use aifactory_common::diagnose::Check;
use aifactory_doctor::shim::Transport;
use aifactory_doctor::{Facts, HttpError, Response, bounds, local, online, shim};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The most of an in-process answer's body that is read (a `/healthz` is far smaller).
const MAX_BODY: usize = 64 * 1024;

/// Every check of `aifactoryctl doctor`, run by the shim.
#[utoipa::path(
    get,
    path = "/api/v1/doctor",
    tag = "daemon",
    responses(
        (status = 200, description = "Every check in the order of `aifactoryctl doctor --json`, whatever each found: `status` is `ok`, `warn`, `fail` or `skip` (could not run; `message` says why), `fix` says what to do for a `warn` or `fail` (and for a `skip` when something would let it run)", body = Vec<Check>),
        (status = 503, description = "The checks cannot run: the shim is stopping, or a run did not end in time (`doctor_unavailable`)", body = ErrorBody),
    )
)]
pub async fn doctor(State(state): State<AppState>) -> Result<Json<Vec<Check>>, ApiError> {
    // The checks look at this machine's files and processes: they judge a daemon here.
    let Some(socket) = state
        .hosts
        .local()
        .and_then(|h| h.daemon.socket())
        .map(std::path::Path::to_path_buf)
    else {
        return Err(unavailable(
            "no host of this shim has its daemon on this machine; run `aifactoryctl doctor --host HOST` for a remote one".into(),
        ));
    };
    let waited = tokio::time::timeout(bounds::RUN, state.doctor_turn.clone().acquire_owned());
    let turn = match waited.await {
        Ok(Ok(turn)) => turn,
        Ok(Err(_)) => return Err(unavailable("the shim is stopping".into())),
        Err(_) => {
            return Err(unavailable(format!(
                "the doctor run before this one has not ended within {} s",
                bounds::RUN.as_secs()
            )));
        }
    };
    // In a task of its own, holding the turn: a client that goes away does not cut a run
    // short (its programs would be killed half-way), nor let another start beside it.
    let run = tokio::spawn({
        let state = state.clone();
        async move {
            let report = report(&state, &socket).await;
            drop(turn);
            report
        }
    });
    tokio::select! {
        () = state.shutdown.cancelled() => Err(unavailable("the shim is stopping".into())),
        done = tokio::time::timeout(bounds::RUN, run) => match done {
            Ok(Ok(report)) => Ok(Json(report)),
            Ok(Err(e)) => Err(unavailable(format!("the checks broke down: {e}"))),
            Err(_) => Err(unavailable(format!(
                "the checks did not end within {} s",
                bounds::RUN.as_secs()
            ))),
        },
    }
}

fn unavailable(why: String) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "doctor_unavailable",
        format!(
            "the doctor cannot run: {why}; try again, or run `aifactoryctl doctor` on the daemon's host"
        ),
    )
}

/// Gathers the facts the shim's way and runs the checks.
async fn report(state: &AppState, socket: &std::path::Path) -> Vec<Check> {
    let online = online::ask(&ClientOptions::new(socket, "aifactory-http doctor")).await;
    let answered = online.as_ref().ok();
    let local = local::facts(&local::Args {
        program: "aifactory-http",
        state_dir: answered
            .map(|o| o.status.state_dir.clone())
            .or_else(|| state.token_file.parent().map(Into::into)),
        config: answered.and_then(|o| o.status.config_file.clone()),
        socket: Some(socket.to_path_buf()),
    })
    .await;
    let shim = shim::probe(
        &InProcess {
            router: super::router(state.clone()),
        },
        state.listen.to_string(),
        Some(state.token_file.clone()),
    )
    .await;
    aifactory_doctor::run(&Facts {
        online,
        local,
        shim,
    })
    .await
}

/// The shim's own router, called in-process.
struct InProcess {
    router: Router,
}

impl Transport for InProcess {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
        let broken = |e: String| HttpError::Answer(std::io::Error::other(e));
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Body::empty())
            .map_err(|e| broken(e.to_string()))?;
        let answer = self.router.clone().oneshot(request);
        let answer = tokio::time::timeout(bounds::SHIM_REQUEST, answer)
            .await
            .map_err(|_| HttpError::Answer(aifactory_doctor::timed_out()))?;
        let Ok(response) = answer;
        let status = response.status().as_u16();
        let body = tokio::time::timeout(
            Duration::from_secs(1),
            axum::body::to_bytes(response.into_body(), MAX_BODY),
        )
        .await
        .map_err(|_| HttpError::Answer(aifactory_doctor::timed_out()))?
        .map_err(|e| broken(format!("cannot read the answer: {e}")))?;
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
