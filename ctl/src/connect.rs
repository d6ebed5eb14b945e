//! Finding and connecting to the daemon, with the same path rules the daemon uses, plus the
//! client's own: without a named socket, a user's own daemon, else the system daemon.

use std::path::PathBuf;

use aifactory_common::{Client, ClientOptions, paths};

use crate::cli::Cli;
use crate::exit::{Failure, UNREACHABLE};

/// The socket this invocation talks to (`paths::client_socket_path`).
pub fn socket(cli: &Cli) -> Result<PathBuf, Failure> {
    paths::client_socket_path(
        cli.socket.as_deref(),
        &paths::process_env,
        paths::is_root(),
        &paths::is_socket,
    )
    .map_err(|e| Failure {
        code: UNREACHABLE,
        message: e.to_string(),
    })
}

pub async fn connect(cli: &Cli) -> Result<Client, Failure> {
    Ok(Client::connect(&ClientOptions::new(socket(cli)?, "aifactoryctl")).await?)
}
