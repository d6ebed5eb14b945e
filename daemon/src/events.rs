//! The daemon's event bus: every event gets the next sequence number and goes to every
//! subscriber through a bounded broadcast; a subscriber that falls behind is told how many it
//! missed instead of slowing anyone down.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use aifactory_common::protocol::{Event, EventKind};
use tokio::sync::broadcast;

const BUS_CAPACITY: usize = 1024;

pub struct EventBus {
    tx: broadcast::Sender<Event>,
    /// Guards numbering and sending together, so sequence numbers reach subscribers in order.
    next_seq: Mutex<u64>,
}

impl Default for EventBus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        EventBus {
            tx,
            next_seq: Mutex::new(1),
        }
    }
}

impl EventBus {
    pub fn publish(&self, kind: EventKind) -> u64 {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let seq = *next;
        *next += 1;
        // No subscriber is not an error.
        let _ = self.tx.send(Event { seq, at_ms, kind });
        seq
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
