//! One handler per request. Each takes the request and the connection's context and answers;
//! [`handle`] is the one entry point the connection calls.

mod agents;
mod doctor;
mod events;
mod projects;
mod sessions;
mod status;
mod store;
mod tasks;

use aifactory_common::protocol::{ErrorReply, Request};

use crate::context::{Answer, ConnContext};

pub async fn handle(id: u64, request: Request, ctx: &ConnContext) -> Answer {
    match request {
        Request::Status => Answer::Reply(Ok(status::handle(ctx).await)),
        Request::SubscribeEvents { after } => events::subscribe(id, ctx, after).await,
        Request::Unsubscribe { subscription } => {
            Answer::Reply(events::unsubscribe(subscription, ctx))
        }
        Request::ProjectAdd(add) => Answer::Reply(projects::add(ctx, add).await),
        Request::ProjectList => Answer::Reply(projects::list(ctx).await),
        Request::ProjectShow { key } => Answer::Reply(projects::show(ctx, key).await),
        Request::ProjectClone { url, path, name } => {
            Answer::Reply(projects::clone(ctx, url, path, name).await)
        }
        Request::ProjectRemove { key } => Answer::Reply(projects::remove(ctx, key).await),
        Request::ProjectImportLegacy { source, entries } => {
            Answer::Reply(projects::import_legacy(ctx, source, entries).await)
        }
        Request::SessionNew(spec) => Answer::Reply(sessions::new(ctx, spec).await),
        Request::SessionList => Answer::Reply(sessions::list(ctx).await),
        Request::SessionShow { key } => Answer::Reply(sessions::show(ctx, key).await),
        Request::SessionInput { key, data } => Answer::Reply(sessions::input(ctx, key, data).await),
        Request::SessionResize { key, cols, rows } => {
            Answer::Reply(sessions::resize(ctx, key, cols, rows).await)
        }
        Request::SessionKill {
            key,
            grace_ms,
            ignore_missing,
        } => Answer::Reply(sessions::kill(ctx, key, grace_ms, ignore_missing).await),
        Request::SessionWait { key } => Answer::Reply(sessions::wait(ctx, key).await),
        Request::SessionRemove { key } => Answer::Reply(sessions::remove(ctx, key).await),
        Request::SessionStrays => Answer::Reply(sessions::strays(ctx).await),
        Request::SessionTail { key, from, follow } => {
            if ctx.has_subscription(id) {
                return Answer::Reply(Err(ErrorReply::new(
                    aifactory_common::protocol::ErrorCode::Invalid,
                    format!("stream {id} is already open on this connection: use a new request id"),
                )));
            }
            sessions::tail(id, ctx, key, from, follow).await
        }
        Request::TaskCreate(create) => Answer::Reply(tasks::create(ctx, create).await),
        Request::TaskList { project } => Answer::Reply(tasks::list(ctx, project).await),
        Request::TaskShow { key } => Answer::Reply(tasks::show(ctx, key).await),
        Request::TaskStart { key } => Answer::Reply(tasks::start(ctx, key).await),
        Request::TaskStop { key, grace_ms } => Answer::Reply(tasks::stop(ctx, key, grace_ms).await),
        Request::TaskRestart {
            key,
            grace_ms,
            fresh,
        } => Answer::Reply(tasks::restart(ctx, key, grace_ms, fresh).await),
        Request::TaskRemove { key, prune, force } => {
            Answer::Reply(tasks::remove(ctx, key, prune, force).await)
        }
        Request::AgentList => Answer::Reply(Ok(agents::list(ctx))),
        Request::AgentShow { name } => Answer::Reply(agents::show(ctx, &name)),
        Request::TaskTranscript { key, after } => {
            Answer::Reply(tasks::transcript(ctx, key, after).await)
        }
        Request::TaskAttempts { key } => Answer::Reply(tasks::attempts(ctx, key).await),
        Request::DoctorFacts => Answer::Reply(doctor::facts(ctx).await),
    }
}
