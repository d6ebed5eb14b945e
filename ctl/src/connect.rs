//! Finding and connecting to the daemon, with the same path rules the daemon uses.

use aifactory_common::{Client, ClientOptions, paths};

use crate::cli::Cli;
use crate::exit::{Failure, UNREACHABLE};

pub async fn connect(cli: &Cli) -> Result<Client, Failure> {
    let socket = paths::socket_path(cli.socket.as_deref(), &paths::process_env, paths::is_root())
        .map_err(|e| Failure {
        code: UNREACHABLE,
        message: e.to_string(),
    })?;
    Ok(Client::connect(&ClientOptions::new(socket, "aifactoryctl")).await?)
}
