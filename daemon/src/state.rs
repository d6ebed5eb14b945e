//! The state every connection and handler can reach: identity, the config in force, the peer
//! policy, the connection budget and the event bus. Config and policy are swapped together on
//! reload; the std lock around them is only ever held to clone or replace an `Arc`, never
//! across an await.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aifactory_common::sync::lock;

use crate::admission::Budget;
use crate::config::Config;
use crate::doctor::Doctor;
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
    /// The connection slots (see `admission`).
    pub budget: Arc<Budget>,
    pub events: Arc<EventBus>,
    pub store: Store,
    /// The schema version reached at startup.
    pub schema_version: u32,
    pub sessions: Arc<Sessions>,
    pub tasks: Arc<Supervisor>,
    /// The doctor's facts are gathered one at a time.
    pub doctor: Doctor,
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
            budget: Arc::new(Budget::new(nix::unistd::Uid::effective().as_raw())),
            events,
            store,
            schema_version,
            sessions,
            tasks,
            doctor: Doctor::new(),
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

    /// Connections holding a slot, whether or not they finished the hello.
    pub fn connections(&self) -> u32 {
        self.budget.open()
    }
}
