//! `SubscribeEvents` / `Unsubscribe`: the daemon's event stream on this connection.

use aifactory_common::protocol::{
    ErrorCode, ErrorReply, Reply, ServerFrame, StreamItem, SubscriptionId,
};
use tokio::sync::broadcast::error::RecvError;

use super::Answer;
use crate::connection::ConnContext;

pub async fn subscribe(id: SubscriptionId, ctx: &ConnContext) -> Answer {
    if ctx.has_subscription(id) {
        return Answer::Reply(Err(ErrorReply::new(
            ErrorCode::Invalid,
            format!("subscription {id} is already open on this connection: use a new request id"),
        )));
    }
    // Subscribe before replying, so nothing published after the reply can be missed; the reply
    // is queued before the first item, so the client sees them in that order.
    let mut events = ctx.daemon.events.subscribe();
    ctx.send(ServerFrame::Reply {
        id,
        result: Ok(Reply::Subscribed),
    })
    .await;
    let stream_ctx = ctx.clone();
    let forward = tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                biased;
                received = events.recv() => received,
                // The daemon is stopping and nothing more is queued for us: done.
                _ = stream_ctx.shutdown.cancelled() => break,
            };
            let item = match received {
                Ok(event) => StreamItem::Event(event),
                Err(RecvError::Lagged(missed)) => StreamItem::Lagged { missed },
                Err(RecvError::Closed) => break,
            };
            if !stream_ctx.push(ServerFrame::Stream {
                subscription: id,
                item,
            }) {
                break;
            }
        }
    });
    ctx.add_subscription(id, forward.abort_handle());
    Answer::Sent
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
