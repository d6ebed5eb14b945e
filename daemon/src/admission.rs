//! The connection budget: who gets a slot, judged from the peer's kernel uid at accept, before
//! it has said a word, so that peers who never authenticate cannot lock out everyone else.
//!
//! - A peer the policy refuses takes no slot at all (`connection` tells it why and closes).
//! - A connection that has not finished the hello is *pending*. Peers other than root and the
//!   daemon's own uid may have at most [`MAX_PENDING`] pending at once, a budget separate from
//!   `max_connections`, and each waits at most `connection::HANDSHAKE_TIMEOUT`.
//! - Each uid other than those two holds at most [`MAX_PER_UID`] connections, pending or served.
//! - After the hello a connection counts against `max_connections`, whose last [`reserved`]
//!   slots are kept for root and the daemon's uid.
//!
//! Root and the daemon's uid are bound only by `max_connections`: they can stop the daemon
//! anyway, and they are who an operator needs when everything else is full. The limits are
//! constants: they exist to stop abuse, not to be tuned, and `max_connections` stays the one
//! knob.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aifactory_common::sync::lock;

/// Connections from peers other than root and the daemon's uid still in the handshake.
pub const MAX_PENDING: u32 = 64;
/// Connections one uid other than root and the daemon's may hold, pending or served.
pub const MAX_PER_UID: u32 = 32;
/// At most this many of `max_connections` are kept for root and the daemon's uid.
const MAX_RESERVED: u32 = 16;
/// Refused peers being told why at once; past this, a refused peer is closed without a word.
pub const MAX_REFUSING: u32 = 64;

/// Slots kept for root and the daemon's uid out of `max_connections`: up to a quarter of them.
pub fn reserved(max_connections: u32) -> u32 {
    MAX_RESERVED.min(max_connections / 4)
}

/// Why a connection gets no slot; each says which limit and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "aifactoryd is already waiting for the hello of {MAX_PENDING} connections from users other than root and its own: retry in a moment; if this goes on, find the process that opens connections to the socket without speaking (`ss -xp`) and stop it"
    )]
    TooManyPending,
    #[error(
        "uid {uid} already holds its limit of {MAX_PER_UID} connections to aifactoryd: close idle clients of this user (root and the daemon's own user are not bound by it)"
    )]
    PerUid { uid: u32 },
    #[error(
        "aifactoryd serves {served} connections, and the last {reserved} of its {max} connections are kept for root and its own uid {daemon_uid}: close idle clients, or raise max_connections in {config}"
    )]
    Reserved {
        served: u32,
        reserved: u32,
        max: u32,
        daemon_uid: u32,
        config: String,
    },
    #[error(
        "aifactoryd already serves its limit of {max} connections: close idle clients, or raise max_connections in {config}"
    )]
    Full { max: u32, config: String },
}

pub struct Budget {
    daemon_uid: u32,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Every connection holding a slot, pending or served.
    open: u32,
    /// Past the hello: what `max_connections` bounds.
    served: u32,
    /// Pending connections of peers other than root and the daemon's uid.
    pending_others: u32,
    /// Slots per uid, for uids other than root and the daemon's.
    per_uid: HashMap<u32, u32>,
    refusing: u32,
}

impl Budget {
    pub fn new(daemon_uid: u32) -> Budget {
        Budget {
            daemon_uid,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Connections holding a slot, pending or served.
    pub fn open(&self) -> u32 {
        lock(&self.counts).open
    }

    fn privileged(&self, uid: u32) -> bool {
        uid == 0 || uid == self.daemon_uid
    }

    /// A pending slot for a connection of `uid` (whom the policy admits), held until the
    /// returned [`Slot`] drops.
    pub fn admit(self: &Arc<Self>, uid: u32) -> Result<Slot, Refusal> {
        let privileged = self.privileged(uid);
        let mut counts = lock(&self.counts);
        if !privileged {
            let of_uid = counts.per_uid.get(&uid).copied().unwrap_or(0);
            if of_uid >= MAX_PER_UID {
                return Err(Refusal::PerUid { uid });
            }
            if counts.pending_others >= MAX_PENDING {
                return Err(Refusal::TooManyPending);
            }
            counts.pending_others += 1;
            *counts.per_uid.entry(uid).or_insert(0) += 1;
        }
        counts.open += 1;
        Ok(Slot {
            budget: self.clone(),
            uid,
            privileged,
            served: false,
        })
    }

    /// Leave to tell one refused peer why; `None` when [`MAX_REFUSING`] are being told already.
    pub fn refusing(self: &Arc<Self>) -> Option<RefusingPermit> {
        let mut counts = lock(&self.counts);
        if counts.refusing >= MAX_REFUSING {
            return None;
        }
        counts.refusing += 1;
        Some(RefusingPermit(self.clone()))
    }
}

/// A connection's slot; dropping it frees the slot.
pub struct Slot {
    budget: Arc<Budget>,
    uid: u32,
    privileged: bool,
    served: bool,
}

impl Slot {
    /// After the hello: moves the slot from pending to served, within `max_connections`
    /// (`config` names the file to raise it in). On refusal the slot is still held; drop it.
    pub fn serve(&mut self, max_connections: u32, config: &str) -> Result<(), Refusal> {
        let budget = &self.budget;
        let mut counts = lock(&budget.counts);
        let reserved = reserved(max_connections);
        if self.privileged {
            if counts.served >= max_connections {
                return Err(Refusal::Full {
                    max: max_connections,
                    config: config.to_string(),
                });
            }
        } else if counts.served >= max_connections - reserved {
            return Err(if reserved == 0 {
                Refusal::Full {
                    max: max_connections,
                    config: config.to_string(),
                }
            } else {
                Refusal::Reserved {
                    served: counts.served,
                    reserved,
                    max: max_connections,
                    daemon_uid: budget.daemon_uid,
                    config: config.to_string(),
                }
            });
        }
        counts.served += 1;
        if !self.privileged {
            counts.pending_others -= 1;
        }
        self.served = true;
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.budget.counts);
        counts.open -= 1;
        if self.served {
            counts.served -= 1;
        } else if !self.privileged {
            counts.pending_others -= 1;
        }
        if !self.privileged
            && let Some(n) = counts.per_uid.get_mut(&self.uid)
        {
            *n -= 1;
            if *n == 0 {
                counts.per_uid.remove(&self.uid);
            }
        }
    }
}

/// Held while a refused peer is told why.
pub struct RefusingPermit(Arc<Budget>);

impl Drop for RefusingPermit {
    fn drop(&mut self) {
        lock(&self.0.counts).refusing -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMON: u32 = 999;

    fn budget() -> Arc<Budget> {
        Arc::new(Budget::new(DAEMON))
    }

    #[test]
    fn pending_peers_have_their_own_budget_and_privileged_ones_are_not_in_it() {
        let budget = budget();
        let held: Vec<Slot> = (0..MAX_PENDING)
            .map(|i| budget.admit(10_000 + i).unwrap())
            .collect();
        assert!(matches!(budget.admit(20_000), Err(Refusal::TooManyPending)));
        let root = budget.admit(0).unwrap();
        let own = budget.admit(DAEMON).unwrap();
        assert_eq!(budget.open(), MAX_PENDING + 2);
        drop(held);
        drop((root, own));
        assert_eq!(budget.open(), 0);
        budget.admit(20_000).unwrap();
    }

    #[test]
    fn one_uid_holds_at_most_its_share() {
        let budget = budget();
        let mut held = Vec::new();
        for _ in 0..MAX_PER_UID {
            let mut slot = budget.admit(1000).unwrap();
            slot.serve(1024, "the config file").unwrap();
            held.push(slot);
        }
        let err = budget.admit(1000).err().unwrap();
        assert!(
            err.to_string()
                .contains("uid 1000 already holds its limit of 32"),
            "{err}"
        );
        budget.admit(1001).unwrap();
        held.pop();
        budget.admit(1000).unwrap();
    }

    #[test]
    fn the_last_slots_are_kept_for_root_and_the_daemons_uid() {
        let budget = budget();
        assert_eq!(reserved(8), 2);
        assert_eq!(reserved(1024), 16);
        assert_eq!(reserved(3), 0);
        let mut held = Vec::new();
        for uid in 0..6 {
            let mut slot = budget.admit(2000 + uid).unwrap();
            slot.serve(8, "f.toml").unwrap();
            held.push(slot);
        }
        let mut other = budget.admit(3000).unwrap();
        let err = other.serve(8, "f.toml").unwrap_err();
        assert!(
            err.to_string()
                .contains("the last 2 of its 8 connections are kept for root and its own uid 999"),
            "{err}"
        );
        drop(other);
        for uid in [0, DAEMON] {
            let mut slot = budget.admit(uid).unwrap();
            slot.serve(8, "f.toml").unwrap();
            held.push(slot);
        }
        let mut root = budget.admit(0).unwrap();
        let err = root.serve(8, "f.toml").unwrap_err();
        assert!(err.to_string().contains("limit of 8 connections"), "{err}");
        drop(root);
        assert_eq!(budget.open(), 8);
    }

    #[test]
    fn refusals_in_progress_are_bounded() {
        let budget = budget();
        let permits: Vec<RefusingPermit> = (0..MAX_REFUSING)
            .map(|_| budget.refusing().unwrap())
            .collect();
        assert!(budget.refusing().is_none());
        drop(permits);
        assert!(budget.refusing().is_some());
    }
}
