//! Objects with their host: every answer's object carries `host`, and a list gathers the
//! objects of every reachable host, in the configured order.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use crate::daemon::Daemon;
use crate::error::ApiError;
use crate::hosts::{Host, Hosts};

/// How long a list waits for one host: a machine that vanished without a word is noticed by
/// ssh only after its keep-alives (about 6 s), and the other hosts' objects should not wait
/// for that.
const ANSWER_WITHIN: Duration = Duration::from_secs(8);

/// An object of one host: its own fields and `host`, the name of the host it lives on.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hosted<T> {
    /// The host (as `GET /api/v1/hosts` names it) the object lives on; address it as
    /// `/api/v1/hosts/{host}/…`.
    pub host: String,
    #[serde(flatten)]
    pub item: T,
}

impl<T> Hosted<T> {
    pub fn on(host: &Host, item: T) -> Hosted<T> {
        Hosted {
            host: host.name.to_string(),
            item,
        }
    }
}

/// The answer for a host that did not answer in time.
pub fn slow(host: &Host, within: Duration) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::GATEWAY_TIMEOUT,
        "host_slow",
        format!(
            "the daemon on {} did not answer within {} s; GET /api/v1/hosts shows whether it is reachable",
            host.name,
            within.as_secs()
        ),
    )
}

/// `ask` on every host (or only `only`), at once: the objects of those that answer, in host
/// order. A remote host known to be down is left out (its state is in `GET /api/v1/hosts` and
/// on the event stream); when no host answers, the first refusal is the answer.
pub async fn gather<T, F, Fut>(
    hosts: &Hosts,
    only: Option<&str>,
    ask: F,
) -> Result<Vec<Hosted<T>>, ApiError>
where
    F: Fn(Daemon) -> Fut,
    Fut: Future<Output = Result<Vec<T>, ApiError>>,
{
    let chosen: Vec<&Host> = match only {
        Some(name) => vec![hosts.get(name)?],
        None => hosts.all().iter().collect(),
    };
    let asked = chosen.iter().map(|host| {
        let answer = host.check_reachable().map(|()| ask(host.daemon.clone()));
        async move {
            match answer {
                Ok(pending) => tokio::time::timeout(ANSWER_WITHIN, pending)
                    .await
                    .unwrap_or_else(|_| Err(slow(host, ANSWER_WITHIN))),
                Err(e) => Err(e),
            }
        }
    });
    let answers = futures::future::join_all(asked).await;
    let mut items = Vec::new();
    let mut first_error = None;
    let mut answered = false;
    for (host, answer) in chosen.iter().zip(answers) {
        match answer {
            Ok(list) => {
                answered = true;
                items.extend(list.into_iter().map(|item| Hosted::on(host, item)));
            }
            Err(e) => {
                tracing::debug!(host = %host.name, error = %e.message, "left out of a list");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if !answered => Err(e),
        _ => Ok(items),
    }
}
