//! Finding and connecting to the daemon. Every command gets its [`Connection`] from
//! [`connect`], which picks the transport: `--host`/`$AIFACTORY_HOST` (an `ssh://` or `unix://`
//! URL, or the name of a host context) or, without one, this machine's socket with the same
//! path rules the daemon uses plus the client's own (a user's own daemon, else the system one).

use std::path::PathBuf;

use aifactory_common::host::HostUrl;
use aifactory_common::ssh::{self, Connection, SshHost};
use aifactory_common::{Client, ClientOptions, paths};

use crate::cli::Cli;
use crate::contexts;
use crate::exit::{FAILED, Failure, UNREACHABLE};

/// The environment's `--host`.
pub const HOST_ENV: &str = "AIFACTORY_HOST";

/// Where this invocation's daemon is.
#[derive(Debug, Clone)]
pub enum Target {
    Local(PathBuf),
    Ssh(SshHost),
}

/// The socket of this machine's daemon (`paths::client_socket_path`), ignoring `--host`.
pub fn local_socket(cli: &Cli) -> Result<PathBuf, Failure> {
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

/// `--host`, else `$AIFACTORY_HOST`, when either is set and not empty.
pub fn host_arg(cli: &Cli) -> Option<String> {
    cli.host
        .clone()
        .or_else(|| std::env::var(HOST_ENV).ok())
        .filter(|h| !h.is_empty())
}

/// The remote host's name when `--host` names one over ssh: paths given on the command line
/// are then paths on that host, so they must be absolute there (this machine's working
/// directory means nothing to it).
pub fn remote_host(cli: &Cli) -> Result<Option<String>, Failure> {
    if host_arg(cli).is_none() {
        return Ok(None);
    }
    Ok(match target(cli)? {
        Target::Ssh(host) => Some(host.name().to_string()),
        Target::Local(_) => None,
    })
}

/// `path` made absolute here, or as given when it is on a remote host (refused if relative).
pub fn absolute_on_target(cli: &Cli, path: &std::path::Path) -> Result<PathBuf, Failure> {
    match remote_host(cli)? {
        Some(host) if path.is_relative() => Err(Failure {
            code: FAILED,
            message: format!(
                "`{}` is relative, but it names a path on {host}: give it absolute",
                path.display()
            ),
        }),
        Some(_) => Ok(path.to_path_buf()),
        None => std::path::absolute(path).map_err(|e| Failure {
            code: FAILED,
            message: format!("cannot resolve {}: {e}", path.display()),
        }),
    }
}

/// Resolves `--host` (a URL or a context name) or the local socket.
pub fn target(cli: &Cli) -> Result<Target, Failure> {
    let Some(host) = host_arg(cli) else {
        return Ok(Target::Local(local_socket(cli)?));
    };
    if cli.socket.is_some() {
        return Err(Failure {
            code: FAILED,
            message: "--socket and --host both name a daemon: give one (a local socket is --host unix:///path)".into(),
        });
    }
    target_for_host(&host)
}

/// A `--host` value (a URL or a host NAME) as a target.
pub fn target_for_host(host: &str) -> Result<Target, Failure> {
    let (url, ssh_config) = if host.contains("://") {
        (host.to_string(), None)
    } else {
        contexts::check_name(host)?;
        let entry = contexts::lookup(host)?;
        (entry.url, entry.ssh_config)
    };
    resolve(&url, ssh_config)
}

/// A URL (from `--host` or a context) and the context's ssh_config, as a target.
pub fn resolve(url: &str, ssh_config: Option<PathBuf>) -> Result<Target, Failure> {
    let parsed: HostUrl = url
        .parse()
        .map_err(|e: aifactory_common::host::HostUrlError| Failure {
            code: FAILED,
            message: e.to_string(),
        })?;
    Ok(match parsed {
        HostUrl::Unix(path) => Target::Local(path),
        HostUrl::Ssh(target) => {
            let host = SshHost::new(target, ssh_config);
            if let Some(config) = &host.ssh_config {
                ssh::check_config(config)?;
            }
            Target::Ssh(host)
        }
    })
}

pub async fn connect(cli: &Cli) -> Result<Connection, Failure> {
    connect_to(&target(cli)?).await
}

pub async fn connect_to(target: &Target) -> Result<Connection, Failure> {
    Ok(match target {
        Target::Local(socket) => {
            Connection::local(Client::connect(&ClientOptions::new(socket, "aifactoryctl")).await?)
        }
        Target::Ssh(host) => host.connect("aifactoryctl").await?,
    })
}
