//! `SubscribeEvents` / `Unsubscribe`: the daemon's event stream on this connection.

use aifactory_common::protocol::{
    ErrorCode, ErrorReply, Event, Reply, ServerFrame, StreamItem, SubscriptionId,
};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::context::{Answer, ConnContext};

pub async fn subscribe(id: SubscriptionId, ctx: &ConnContext, after: Option<u64>) -> Answer {
    if ctx.has_subscription(id) {
        return Answer::Reply(Err(ErrorReply::new(
            ErrorCode::Invalid,
            format!("subscription {id} is already open on this connection: use a new request id"),
        )));
    }
    // Subscribe before replying, so nothing published after the reply can be missed; the reply
    // is queued before the first item, so the client sees them in that order.
    let (mut live, now) = ctx.daemon.events.subscribe().await;
    ctx.send(ServerFrame::Reply {
        id,
        result: Ok(Reply::EventsSubscribed { head: now }),
    })
    .await;
    let stream_ctx = ctx.clone();
    let forward = tokio::spawn(async move {
        // The last number this subscriber got; live events at or below it were replayed.
        let mut last = match after {
            Some(after) => catch_up(&stream_ctx, id, after).await,
            None => now,
        };
        loop {
            let received = tokio::select! {
                biased;
                received = live.recv() => received,
                // The daemon is stopping and nothing more is queued for us: done.
                _ = stream_ctx.shutdown.cancelled() => break,
            };
            match received {
                Ok(event) if event.seq <= last => {}
                Ok(event) => {
                    last = event.seq;
                    if !push(&stream_ctx, id, StreamItem::Event(event)).await {
                        break;
                    }
                }
                // Fell behind the live stream: the store still has what was missed.
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        "event subscriber lagged; catching up from the store"
                    );
                    last = catch_up(&stream_ctx, id, last).await;
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    ctx.add_subscription(id, forward.abort_handle());
    Answer::Sent
}

/// How long a burst of events (an agent's output arrives many lines at a time) may wait for
/// room in a subscriber's queue before the subscriber counts as stopped.
const BURST_PATIENCE: Duration = Duration::from_secs(5);

async fn push(ctx: &ConnContext, id: SubscriptionId, item: StreamItem) -> bool {
    let frame = ServerFrame::Stream {
        subscription: id,
        item,
    };
    ctx.push_within(frame, BURST_PATIENCE).await
}

/// Sends every kept event numbered above `after`; returns the last number sent.
async fn catch_up(ctx: &ConnContext, id: SubscriptionId, mut after: u64) -> u64 {
    loop {
        let replay = match ctx.daemon.events.replay(after).await {
            Ok(replay) => replay,
            Err(e) => {
                // Reads fail only with a broken database; live events still flow.
                tracing::error!("cannot replay events after {after}: {e}");
                return after;
            }
        };
        if replay.missed > 0 {
            send(
                ctx,
                id,
                StreamItem::Lagged {
                    missed: replay.missed,
                },
            )
            .await;
        }
        let Some(Event { seq: newest, .. }) = replay.events.last().cloned() else {
            return after;
        };
        for event in replay.events {
            send(ctx, id, StreamItem::Event(event)).await;
        }
        after = newest;
    }
}

async fn send(ctx: &ConnContext, id: SubscriptionId, item: StreamItem) {
    ctx.send(ServerFrame::Stream {
        subscription: id,
        item,
    })
    .await;
}

pub fn unsubscribe(subscription: SubscriptionId, ctx: &ConnContext) -> Result<Reply, ErrorReply> {
    if ctx.remove_subscription(subscription) {
        Ok(Reply::Unsubscribed)
    } else {
        Err(ErrorReply::new(
            ErrorCode::NotFound,
            format!("no subscription {subscription} is open on this connection"),
        ))
    }
}
