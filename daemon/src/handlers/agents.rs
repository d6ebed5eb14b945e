//! `AgentList`: the agent profiles and what is wrong with each.

use aifactory_common::protocol::Reply;

use crate::context::ConnContext;

pub fn list(ctx: &ConnContext) -> Reply {
    Reply::Agents(ctx.daemon.tasks.agents())
}
