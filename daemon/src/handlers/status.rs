//! `Status`: who the daemon is, where it lives, and what it holds.

use aifactory_common::protocol::{PROTOCOL_VERSION, Reply, StatusInfo};

use crate::context::ConnContext;

pub async fn handle(ctx: &ConnContext) -> Reply {
    let daemon = &ctx.daemon;
    let config = daemon.config();
    Reply::Status(StatusInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: daemon.pid,
        uptime_ms: daemon.started.elapsed().as_millis() as u64,
        protocol: PROTOCOL_VERSION,
        mode: config.mode,
        socket: daemon.socket.clone(),
        state_dir: config.state_dir.clone(),
        config_file: config.config_file.clone(),
        connections: daemon.connections(),
        max_connections: config.max_connections,
        schema_version: daemon.schema_version,
        store: daemon.store.health(),
        panes_dir: daemon.sessions.panes().path.clone(),
        panes_skipped: daemon.sessions.panes().skipped.clone(),
        sessions_running: daemon.sessions.running_count().await,
        sessions_output_blocked: daemon.sessions.output_blocked_count(),
        landlock_abi: daemon.tasks.landlock().abi,
        sandbox: daemon.tasks.landlock().describe(),
        limits_available: daemon.tasks.cgroups().available().is_ok(),
        limits: daemon.tasks.cgroups().describe(),
        load: crate::host_load::read(
            u32::try_from(daemon.tasks.running_count()).unwrap_or(u32::MAX),
        ),
    })
}
