//! The hosts the shim serves and what it knows of each: how to reach its daemon, and whether
//! it is reachable now. One supervisor task per host holds a live event subscription to its
//! daemon (through the host's ssh master for a remote one); the subscription's end or a failed
//! connection marks the host down with the reason, and the supervisor reconnects with backoff,
//! so a host that comes back rejoins by itself. Streams and pages follow the state through a
//! `watch` channel; nothing polls. The supervisors start with the first request that needs a
//! host, not with the shim: a shim started at boot must not start a socket-activated daemon
//! nobody asked for (the first client does, as with `aifactoryctl`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aifactory_common::host::HostUrl;
use aifactory_common::protocol::Request;
use aifactory_common::ssh::SshHost;
use aifactory_common::sync::lock;
use aifactory_common::time::now_ms;
use aifactory_common::{Client, ClientError};
use axum::http::StatusCode;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::api::reconnect::Backoff;
use crate::config::HostConfig;
use crate::daemon::Daemon;
use crate::error::ApiError;

/// A link that lasted this long was healthy: the next loss retries at once.
const HEALTHY_LINK: Duration = Duration::from_secs(5);

/// Whether a host's daemon can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Not tried yet (the shim just started).
    Connecting,
    Up,
    Down,
}

#[derive(Debug, Clone)]
pub struct HostState {
    pub phase: Phase,
    /// Why it is down, in the words of ssh or of the socket.
    pub reason: Option<String>,
    /// When this phase began (unix ms).
    pub since_ms: u64,
    /// Counts the supervisor's connections, so a stream can tell a new link from the old.
    pub generation: u64,
}

#[derive(Clone)]
pub struct Host {
    pub name: Arc<str>,
    /// As configured: `ssh://…` or `unix:///…`.
    pub url: Arc<str>,
    pub daemon: Daemon,
    state: watch::Receiver<HostState>,
}

impl Host {
    pub fn state(&self) -> HostState {
        self.state.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<HostState> {
        self.state.clone()
    }

    /// Refuses at once a remote host known to be down, rather than wait on ssh; a local
    /// socket is always tried (that costs nothing, and it may be back already).
    pub fn check_reachable(&self) -> Result<(), ApiError> {
        if !self.daemon.is_remote() {
            return Ok(());
        }
        let state = self.state.borrow();
        match state.phase {
            Phase::Down => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "host_unavailable",
                format!(
                    "host {} is down: {}; the shim reconnects by itself (GET /api/v1/hosts shows when it is back)",
                    self.name,
                    state.reason.as_deref().unwrap_or("unreachable")
                ),
            )),
            Phase::Up | Phase::Connecting => Ok(()),
        }
    }

    /// One request to the host's daemon ([`Daemon::call`]), refused at once when the host is
    /// known to be down ([`Host::check_reachable`]).
    pub async fn call<T>(
        &self,
        ask: impl AsyncFnOnce(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ApiError> {
        self.check_reachable()?;
        self.daemon.call(ask).await
    }
}

/// The supervisors not started yet, and the shim's stop signal they will follow.
type Dormant = (
    Vec<(Arc<str>, Daemon, watch::Sender<HostState>)>,
    CancellationToken,
);

/// Every host, in the configured order (the board's order).
#[derive(Clone)]
pub struct Hosts {
    list: Arc<Vec<Host>>,
    dormant: Arc<std::sync::Mutex<Option<Dormant>>>,
}

impl Hosts {
    /// The hosts of `configs`, each with its supervisor (started by the first request that
    /// needs a host) running until `shutdown`.
    pub fn new(configs: &[HostConfig], shutdown: &CancellationToken) -> Hosts {
        let mut supervisors = Vec::new();
        let list = configs
            .iter()
            .map(|config| {
                let daemon = match &config.url {
                    HostUrl::Unix(socket) => Daemon::unix(socket),
                    HostUrl::Ssh(target) => Daemon::ssh(
                        SshHost::new(target.clone(), config.ssh_config.clone()),
                        &config.url.to_string(),
                    ),
                };
                let (tx, rx) = watch::channel(HostState {
                    phase: Phase::Connecting,
                    reason: None,
                    since_ms: now_ms(),
                    generation: 0,
                });
                let name: Arc<str> = config.name.as_str().into();
                supervisors.push((name.clone(), daemon.clone(), tx));
                Host {
                    name,
                    url: config.url.to_string().into(),
                    daemon,
                    state: rx,
                }
            })
            .collect();
        Hosts {
            list: Arc::new(list),
            dormant: Arc::new(std::sync::Mutex::new(Some((supervisors, shutdown.clone())))),
        }
    }

    /// Starts the supervisors, once: every way to a host passes here.
    fn wake(&self) {
        let Some((supervisors, shutdown)) = lock(&self.dormant).take() else {
            return;
        };
        for (name, daemon, state) in supervisors {
            tokio::spawn(supervise(name, daemon, state, shutdown.clone()));
        }
    }

    pub fn all(&self) -> &[Host] {
        self.wake();
        &self.list
    }

    /// The first host: the one `/api/v1/status`, `/healthz` and the doctor describe.
    pub fn primary(&self) -> &Host {
        self.wake();
        // `Config` never has an empty host list; a shim without `[[hosts]]` serves its own.
        &self.list[0]
    }

    /// The first host whose daemon is on this machine: the one the doctor checks.
    pub fn local(&self) -> Option<&Host> {
        self.all().iter().find(|h| h.daemon.socket().is_some())
    }

    pub fn get(&self, name: &str) -> Result<&Host, ApiError> {
        self.all().iter().find(|h| &*h.name == name).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_host",
                format!(
                    "no host {} here: this shim serves {} (GET /api/v1/hosts)",
                    aifactory_common::echo::echo(name),
                    self.names()
                ),
            )
        })
    }

    /// The host a route names, or the only one for a route without `/hosts/{host}`.
    pub fn resolve(&self, name: Option<&str>) -> Result<&Host, ApiError> {
        match name {
            Some(name) => self.get(name),
            None if self.all().len() == 1 => Ok(self.primary()),
            None => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "host_required",
                format!(
                    "this shim serves several hosts ({}): name one, as /api/v1/hosts/{{host}}/… or `host` in the body",
                    self.names()
                ),
            )),
        }
    }

    fn names(&self) -> String {
        self.list
            .iter()
            .map(|h| &*h.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Keeps one event subscription to the host's daemon open and says, in `state`, whether it is.
async fn supervise(
    name: Arc<str>,
    daemon: Daemon,
    state: watch::Sender<HostState>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let linked = tokio::select! {
            linked = daemon.subscribe(Request::SubscribeEvents { after: None }) => linked,
            _ = shutdown.cancelled() => return,
        };
        match linked {
            Ok((_conn, mut subscription)) => {
                state.send_modify(|s| {
                    if s.phase != Phase::Up {
                        tracing::info!(host = %name, "host up");
                        s.phase = Phase::Up;
                        s.since_ms = now_ms();
                    }
                    s.reason = None;
                    s.generation += 1;
                });
                let linked_at = Instant::now();
                loop {
                    tokio::select! {
                        item = subscription.next() => if item.is_none() { break },
                        _ = shutdown.cancelled() => return,
                    }
                }
                tracing::info!(host = %name, "lost the host's daemon; reconnecting");
                if linked_at.elapsed() >= HEALTHY_LINK {
                    backoff.reset();
                    continue;
                }
            }
            Err(e) => {
                state.send_if_modified(|s| {
                    if s.phase == Phase::Down && s.reason.as_deref() == Some(&e.message) {
                        return false;
                    }
                    tracing::warn!(host = %name, reason = %e.message, "host down");
                    if s.phase != Phase::Down {
                        s.since_ms = now_ms();
                    }
                    s.phase = Phase::Down;
                    s.reason = Some(e.message.clone());
                    true
                });
            }
        }
        tokio::select! {
            _ = backoff.wait() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
