//! The state every connection and handler can reach: identity, the config in force, the peer
//! policy, live counters and the event bus. Config and policy are swapped together on reload; the
//! std lock around them is only ever held to clone or replace an `Arc`, never across an await.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aifactory_common::sync::lock;

use crate::config::Config;
use crate::events::EventBus;
use crate::peer::PeerPolicy;
use crate::sessions::Sessions;
use crate::store::Store;
use crate::supervisor::Supervisor;

pub struct DaemonState {
    pub started: Instant,
    pub pid: u32,
    /// The socket actually served (activation may differ from the config).
    pub socket: PathBuf,
    in_force: Mutex<InForce>,
    connections: AtomicU32,
    pub events: Arc<EventBus>,
    pub store: Store,
    /// The schema version reached at startup.
    pub schema_version: u32,
    pub sessions: Arc<Sessions>,
    pub tasks: Arc<Supervisor>,
}

/// The config and the peer policy derived from it, replaced as one so that no connection sees
/// one without the other.
struct InForce {
    config: Arc<Config>,
    policy: Arc<PeerPolicy>,
}

/// The parts that own the daemon's records, built before anyone can connect.
pub struct Parts {
    pub store: Store,
    /// The schema version reached at startup.
    pub schema_version: u32,
    pub events: Arc<EventBus>,
    pub sessions: Arc<Sessions>,
    pub tasks: Arc<Supervisor>,
}

impl DaemonState {
    pub fn new(config: Config, policy: PeerPolicy, socket: PathBuf, parts: Parts) -> DaemonState {
        let Parts {
            store,
            schema_version,
            events,
            sessions,
            tasks,
        } = parts;
        DaemonState {
            started: Instant::now(),
            pid: std::process::id(),
            socket,
            in_force: Mutex::new(InForce {
                config: Arc::new(config),
                policy: Arc::new(policy),
            }),
            connections: AtomicU32::new(0),
            events,
            store,
            schema_version,
            sessions,
            tasks,
        }
    }

    pub fn config(&self) -> Arc<Config> {
        lock(&self.in_force).config.clone()
    }

    pub fn policy(&self) -> Arc<PeerPolicy> {
        lock(&self.in_force).policy.clone()
    }

    pub fn replace_config(&self, config: Config, policy: PeerPolicy) {
        let config = Arc::new(config);
        self.tasks.set_config(config.clone());
        self.tasks.log_problems();
        *lock(&self.in_force) = InForce {
            config,
            policy: Arc::new(policy),
        };
    }

    pub fn connections(&self) -> u32 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Counts a connection for as long as the guard lives; returns the count including it.
    pub fn open_connection(self: &Arc<Self>) -> (ConnectionGuard, u32) {
        let now = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        (ConnectionGuard(self.clone()), now)
    }
}

pub struct ConnectionGuard(Arc<DaemonState>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}
