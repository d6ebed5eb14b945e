//! One handler per request. Each takes the request and the connection's context and answers.

mod events;
mod projects;
mod status;

use aifactory_common::protocol::{ErrorReply, Reply, Request};

use crate::connection::ConnContext;

/// What a handler did with its request.
pub enum Answer {
    /// The connection sends this reply.
    Reply(Result<Reply, ErrorReply>),
    /// The handler already queued its reply itself (streams do, so their reply precedes their
    /// first item).
    Sent,
}

pub async fn handle(id: u64, request: Request, ctx: &ConnContext) -> Answer {
    match request {
        Request::Status => Answer::Reply(Ok(status::handle(ctx))),
        Request::SubscribeEvents => events::subscribe(id, ctx).await,
        Request::Unsubscribe { subscription } => {
            Answer::Reply(events::unsubscribe(subscription, ctx))
        }
        Request::ProjectAdd(add) => Answer::Reply(projects::add(ctx, add).await),
        Request::ProjectList => Answer::Reply(projects::list(ctx).await),
        Request::ProjectShow { key } => Answer::Reply(projects::show(ctx, key).await),
        Request::ProjectRemove { key } => Answer::Reply(projects::remove(ctx, key).await),
        Request::ProjectImportLegacy { source, entries } => {
            Answer::Reply(projects::import_legacy(ctx, source, entries).await)
        }
    }
}
