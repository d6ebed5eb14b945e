//! `AgentList`: the agent profiles and what is wrong with each; `AgentShow`: one of them and
//! the cage its tasks run in.

use aifactory_common::echo::echo;
use aifactory_common::protocol::{ErrorCode, ErrorReply, Reply};

use crate::context::ConnContext;

pub fn list(ctx: &ConnContext) -> Reply {
    Reply::Agents(ctx.daemon.tasks.agents())
}

pub fn show(ctx: &ConnContext, name: &str) -> Result<Reply, ErrorReply> {
    match ctx.daemon.tasks.agent_detail(name) {
        Some(detail) => Ok(Reply::Agent(Box::new(detail))),
        None => Err(ErrorReply::new(
            ErrorCode::NotFound,
            format!(
                "no agent profile is named `{}`: see `aifactoryctl agents list`",
                echo(name)
            ),
        )),
    }
}
