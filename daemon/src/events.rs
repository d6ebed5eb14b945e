//! The daemon's event stream: every event is numbered, kept in the store and sent to every live
//! subscriber through a bounded broadcast. A subscriber that reconnects (to this daemon or to
//! a restarted one) passes the last number it saw and gets the rest from the store before the
//! live ones, with no gap and no duplicate; one that falls behind live catches up from the
//! store the same way instead of slowing anyone down.

use aifactory_common::protocol::{Event, EventKind};
use aifactory_common::time::now_ms;
use rusqlite::{Transaction, params};
use tokio::sync::broadcast;

use crate::store::{Store, StoreError};

const BUS_CAPACITY: usize = 1024;
/// How many events the store keeps for reconnecting clients.
const KEEP_EVENTS: i64 = 100_000;
/// Pruning runs once per this many events.
const PRUNE_EVERY: i64 = 1_000;
/// Events read from the store per query while a subscriber catches up.
pub const REPLAY_BATCH: u32 = 512;

pub struct EventBus {
    tx: broadcast::Sender<Event>,
    store: Store,
    /// The last number published. Held across the store's insert and the send, so numbers reach
    /// subscribers in order.
    last_seq: tokio::sync::Mutex<u64>,
}

/// What a subscriber that asks for everything after some number gets from the store.
pub struct Replay {
    pub events: Vec<Event>,
    /// Events that were pruned before this subscriber asked for them.
    pub missed: u64,
}

/// Keeps one event (its JSON) and returns its number; prunes the oldest now and then.
fn insert(tx: &Transaction, at_ms: u64, json: &str) -> rusqlite::Result<u64> {
    tx.prepare_cached("INSERT INTO events (at_ms, kind) VALUES (?1, ?2)")?
        .execute(params![at_ms as i64, json])?;
    let seq = tx.last_insert_rowid();
    if seq % PRUNE_EVERY == 0 {
        tx.execute(
            "DELETE FROM events WHERE seq <= ?1",
            params![seq - KEEP_EVENTS],
        )?;
    }
    Ok(seq as u64)
}

impl EventBus {
    /// Continues the numbering the store holds.
    pub async fn open(store: Store) -> Result<EventBus, StoreError> {
        let last: i64 = store
            .read(|conn| {
                // AUTOINCREMENT remembers the highest number ever used, even after pruning.
                conn.query_row(
                    "SELECT coalesce(max(seq), 0) FROM
                       (SELECT seq FROM sqlite_sequence WHERE name = 'events' UNION ALL
                        SELECT max(seq) FROM events)",
                    [],
                    |r| r.get(0),
                )
            })
            .await?;
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        Ok(EventBus {
            tx,
            store,
            last_seq: tokio::sync::Mutex::new(last.max(0) as u64),
        })
    }

    /// Numbers, keeps and sends an event; returns its number.
    pub async fn publish(&self, kind: EventKind) -> u64 {
        let at_ms = now_ms();
        let mut last = self.last_seq.lock().await;
        let json = serde_json::to_string(&kind).unwrap_or_default();
        let stored = self
            .store
            .write_process_state(move |tx| insert(tx, at_ms, &json))
            .await;
        let seq = match stored {
            Ok(seq) => seq,
            Err(e) => {
                // Live subscribers still hear it; a reconnecting one cannot replay it.
                tracing::error!(event = ?kind, "cannot keep an event for replay: {e}");
                *last + 1
            }
        };
        *last = seq;
        // No subscriber is not an error.
        let _ = self.tx.send(Event { seq, at_ms, kind });
        seq
    }

    /// Runs `work` in a store transaction and numbers, keeps and sends the events it returns,
    /// all in that one transaction: what a change writes and the events that tell of it are
    /// kept together (or neither, on an error), and a burst of events costs one commit.
    /// Returns their numbers.
    pub async fn publish_from(
        &self,
        work: impl FnOnce(&Transaction) -> rusqlite::Result<Vec<EventKind>> + Send + 'static,
    ) -> Result<Vec<u64>, StoreError> {
        let at_ms = now_ms();
        let mut last = self.last_seq.lock().await;
        let (kinds, seqs) = self
            .store
            .write_process_state(move |tx| {
                let kinds = work(tx)?;
                let seqs = kinds
                    .iter()
                    .map(|kind| insert(tx, at_ms, &serde_json::to_string(kind).unwrap_or_default()))
                    .collect::<rusqlite::Result<Vec<u64>>>()?;
                Ok((kinds, seqs))
            })
            .await?;
        for (kind, &seq) in kinds.into_iter().zip(&seqs) {
            *last = seq;
            // No subscriber is not an error.
            let _ = self.tx.send(Event { seq, at_ms, kind });
        }
        Ok(seqs)
    }

    /// A live receiver and the number of the last event it will not get.
    pub async fn subscribe(&self) -> (broadcast::Receiver<Event>, u64) {
        let last = self.last_seq.lock().await;
        (self.tx.subscribe(), *last)
    }

    /// Up to [`REPLAY_BATCH`] kept events numbered above `after`, oldest first.
    pub async fn replay(&self, after: u64) -> Result<Replay, StoreError> {
        let (events, oldest) = self
            .store
            .read(move |conn| {
                let oldest: Option<i64> =
                    conn.query_row("SELECT min(seq) FROM events", [], |r| r.get(0))?;
                let mut query = conn.prepare_cached(
                    "SELECT seq, at_ms, kind FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = query
                    .query_map(params![after as i64, REPLAY_BATCH], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((rows, oldest))
            })
            .await?;
        let missed = match oldest {
            Some(oldest) if (oldest as u64) > after + 1 => oldest as u64 - after - 1,
            _ => 0,
        };
        let events = events
            .into_iter()
            .filter_map(|(seq, at_ms, kind)| match serde_json::from_str(&kind) {
                Ok(kind) => Some(Event {
                    seq: seq as u64,
                    at_ms: at_ms as u64,
                    kind,
                }),
                Err(e) => {
                    tracing::error!(seq, "a kept event cannot be read back ({e}); skipped");
                    None
                }
            })
            .collect();
        Ok(Replay { events, missed })
    }
}
