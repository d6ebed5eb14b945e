//! The shim's settings: the optional TOML file, then the command line on top.
//!
//! ```toml
//! listen = "127.0.0.1:7878"
//! allow_remote = false
//! allowed_origins = ["http://localhost:3000"]
//! socket = "/run/aifactory/aifactoryd.sock"
//! state_dir = "/var/lib/aifactory"
//! log_level = "info"
//!
//! # Several hosts (instead of `socket`): one board for all of them.
//! [[hosts]]
//! name = "build1"
//! url = "ssh://agent@build1.example"   # or unix:///run/aifactory/aifactoryd.sock
//! ssh_config = "/etc/aifactory/ssh_config"   # optional: `ssh -F FILE`
//! ```
//!
//! Without `[[hosts]]` the shim serves this machine's daemon as one host named after the
//! machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aifactory_common::host::HostUrl;
use aifactory_common::paths;
use serde::Deserialize;

use crate::cli::Cli;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
pub const CONFIG_FILE_NAME: &str = "http.toml";
pub const TOKEN_FILE: &str = "http-token";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(
        "refusing to listen on {addr}: it is not a loopback address, so anyone who can reach it could try the API; pass --allow-remote (or set allow_remote = true) if you mean it, and put TLS in front"
    )]
    Remote { addr: SocketAddr },
    #[error(
        "invalid origin `{origin}`: write it as the browser sends it, scheme://host[:port] with no path (e.g. http://localhost:3000)"
    )]
    Origin { origin: String },
    #[error(
        "invalid host name `{name}` in {}: use letters, digits, `.`, `-` and `_` (at most 63, starting with a letter or digit); it appears in URLs and event ids",
        path.display()
    )]
    HostName { name: String, path: PathBuf },
    #[error("host `{name}` is listed twice in {}: give each [[hosts]] entry its own name", path.display())]
    DuplicateHost { name: String, path: PathBuf },
    #[error("invalid url for host `{name}` in {}: {message}", path.display())]
    HostUrl {
        name: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "{} has both `socket` (or --socket) and [[hosts]]: name this machine's daemon as a host instead (url = \"unix:///path/to.sock\")",
        path.display()
    )]
    SocketAndHosts { path: PathBuf },
    #[error(transparent)]
    Path(#[from] paths::PathError),
}

/// One `[[hosts]]` entry, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostFile {
    name: String,
    url: String,
    ssh_config: Option<PathBuf>,
}

/// A host the shim serves.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub name: String,
    pub url: HostUrl,
    /// `ssh -F FILE` for this host (else `$AIFACTORY_SSH_CONFIG`).
    pub ssh_config: Option<PathBuf>,
}

/// The file, as written. Every key is optional; an unknown key is an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    allow_remote: Option<bool>,
    allowed_origins: Option<Vec<String>>,
    socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    log_level: Option<String>,
    hosts: Option<Vec<HostFile>>,
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Exact `scheme://host[:port]` strings, compared as the browser sends them.
    pub allowed_origins: Vec<String>,
    /// The hosts served, in the order the board lists them; never empty.
    pub hosts: Vec<HostConfig>,
    pub token_file: PathBuf,
    pub log_level: String,
    pub config_file: Option<PathBuf>,
}

/// `$CONFIGURATION_DIRECTORY/http.toml` under systemd (the packaged unit, which runs as user
/// aifactory, reads /etc/aifactory/http.toml), that file as root, else the user's.
fn default_config_file() -> Option<PathBuf> {
    paths::config_file_named(CONFIG_FILE_NAME, &paths::process_env, paths::is_root())
}

fn read_file(path: &Path, explicit: bool) -> Result<Option<File>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // Only a file named on the command line must exist.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

fn check_origin(origin: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::Origin {
        origin: origin.to_string(),
    };
    let trimmed = origin.trim_end_matches('/');
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
        return Err(bad());
    }
    Ok(trimmed.to_ascii_lowercase())
}

impl Config {
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let (file, config_file) = match &cli.config {
            Some(path) => (read_file(path, true)?, Some(path.clone())),
            None => match default_config_file() {
                Some(path) => match read_file(&path, false)? {
                    Some(file) => (Some(file), Some(path)),
                    None => (None, None),
                },
                None => (None, None),
            },
        };
        let file = file.unwrap_or_default();
        let parse_error = |message: String| ConfigError::Parse {
            path: config_file.clone().unwrap_or_default(),
            message,
        };
        let listen = match (cli.listen, &file.listen) {
            (Some(addr), _) => addr,
            (None, Some(text)) => text.parse().map_err(|e| {
                parse_error(format!(
                    "listen = {text:?} is not ADDR:PORT ({e}), e.g. \"127.0.0.1:7878\""
                ))
            })?,
            (None, None) => DEFAULT_LISTEN
                .parse()
                .map_err(|e| parse_error(format!("{e}")))?,
        };
        let allow_remote = cli.allow_remote || file.allow_remote.unwrap_or(false);
        if !listen.ip().is_loopback() && !allow_remote {
            return Err(ConfigError::Remote { addr: listen });
        }
        let mut allowed_origins = Vec::new();
        for origin in file
            .allowed_origins
            .unwrap_or_default()
            .iter()
            .chain(&cli.allow_origins)
        {
            allowed_origins.push(check_origin(origin)?);
        }
        let file_path = config_file.clone().unwrap_or_default();
        let hosts = match file.hosts {
            Some(entries) if !entries.is_empty() => {
                if cli.socket.is_some() || file.socket.is_some() {
                    return Err(ConfigError::SocketAndHosts { path: file_path });
                }
                hosts_from(entries, &file_path)?
            }
            _ => {
                // A client of the daemon: a member of its group finds the system socket as
                // aifactoryctl does.
                let socket = paths::client_socket_path(
                    cli.socket.as_deref().or(file.socket.as_deref()),
                    &paths::process_env,
                    paths::is_root(),
                    &paths::is_socket,
                )?;
                vec![HostConfig {
                    name: machine_name(),
                    url: HostUrl::Unix(socket),
                    ssh_config: None,
                }]
            }
        };
        let state_dir = paths::state_dir(
            cli.state_dir.as_deref().or(file.state_dir.as_deref()),
            &paths::process_env,
            paths::is_root(),
        )?;
        Ok(Config {
            listen,
            allowed_origins,
            hosts,
            token_file: state_dir.join(TOKEN_FILE),
            log_level: file.log_level.unwrap_or_else(|| "info".into()),
            config_file,
        })
    }
}

/// Whether `name` can name a host: it goes into URLs and into `name:seq,…` event ids.
pub fn valid_host_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn hosts_from(entries: Vec<HostFile>, path: &Path) -> Result<Vec<HostConfig>, ConfigError> {
    let mut hosts: Vec<HostConfig> = Vec::new();
    for entry in entries {
        if !valid_host_name(&entry.name) {
            return Err(ConfigError::HostName {
                name: entry.name,
                path: path.to_path_buf(),
            });
        }
        if hosts.iter().any(|h| h.name == entry.name) {
            return Err(ConfigError::DuplicateHost {
                name: entry.name,
                path: path.to_path_buf(),
            });
        }
        let url = entry
            .url
            .parse()
            .map_err(
                |e: aifactory_common::host::HostUrlError| ConfigError::HostUrl {
                    name: entry.name.clone(),
                    path: path.to_path_buf(),
                    message: e.to_string(),
                },
            )?;
        hosts.push(HostConfig {
            name: entry.name,
            url,
            ssh_config: entry.ssh_config,
        });
    }
    Ok(hosts)
}

/// This machine's name, as the one host of a shim without `[[hosts]]`.
fn machine_name() -> String {
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|n| n.into_string().ok())
        .map(|n| n.split('.').next().unwrap_or_default().to_ascii_lowercase())
        .unwrap_or_default();
    if valid_host_name(&name) {
        name
    } else {
        "local".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_checked() {
        assert_eq!(
            check_origin("http://LocalHost:3000/").unwrap(),
            "http://localhost:3000"
        );
        assert!(check_origin("localhost:3000").is_err());
        assert!(check_origin("http://x/path").is_err());
        assert!(check_origin("ftp://x").is_err());
    }

    #[test]
    fn hosts_are_named_and_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http.toml");
        std::fs::write(
            &path,
            "[[hosts]]\nname = \"b1\"\nurl = \"ssh://root@10.0.0.2:2222\"\n[[hosts]]\nname = \"here\"\nurl = \"unix:///run/a.sock\"\n",
        )
        .unwrap();
        let file = read_file(&path, true).unwrap().unwrap();
        let hosts = hosts_from(file.hosts.unwrap(), &path).unwrap();
        assert_eq!(hosts.len(), 2);
        assert!(matches!(hosts[0].url, HostUrl::Ssh(_)));
        assert!(matches!(hosts[1].url, HostUrl::Unix(_)));
        for bad in ["", "a:b", "a,b", "-a", "a b"] {
            assert!(!valid_host_name(bad), "{bad}");
        }
        let dup = vec![
            HostFile {
                name: "a".into(),
                url: "unix:///x".into(),
                ssh_config: None,
            },
            HostFile {
                name: "a".into(),
                url: "unix:///y".into(),
                ssh_config: None,
            },
        ];
        assert!(matches!(
            hosts_from(dup, &path),
            Err(ConfigError::DuplicateHost { .. })
        ));
        let bad_url = vec![HostFile {
            name: "a".into(),
            url: "http://x".into(),
            ssh_config: None,
        }];
        let err = hosts_from(bad_url, &path).unwrap_err().to_string();
        assert!(err.contains("host `a`"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap();
        let err = read_file(&path, true).unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
    }
}
