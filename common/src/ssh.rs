//! The ssh transport to a remote daemon, shared by `aifactoryctl --host ssh://…` and the HTTP
//! shim's `[[hosts]]`: the system `ssh` runs `aifactoryctl dial-stdio` on the remote host and
//! the protocol flows over its stdin and stdout. Connections are multiplexed through one master
//! per destination (`ControlMaster=auto`, `ControlPersist`), whose control sockets live in a
//! private 0700 directory of this user. When the transport fails before the handshake, ssh's
//! exit status and stderr say which layer failed, and [`diagnose`] turns them into an
//! [`SshError`] naming it and the fix.

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::host::SshTarget;
use crate::{Client, ClientError, ClientOptions};

/// Which layer failed, so a CLI can pick its exit code and a server its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshErrorKind {
    /// ssh could not reach or log in to the host, or the remote daemon is not there.
    Unreachable,
    /// The remote user may not use the remote daemon's socket.
    PermissionDenied,
    /// Anything else (a protocol mismatch, a bad local setup).
    Failed,
}

/// A failure of the ssh transport, in words that name the layer and the fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SshError {
    pub kind: SshErrorKind,
    pub message: String,
}

impl SshError {
    fn new(kind: SshErrorKind, message: impl Into<String>) -> SshError {
        SshError {
            kind,
            message: message.into(),
        }
    }
}

/// How long an idle master stays up after its last command: long enough for a burst of
/// commands, short enough not to linger.
const CONTROL_PERSIST: &str = "ControlPersist=300";

/// A host that does not answer is reported before the handshake's own timeout.
const CONNECT_TIMEOUT: &str = "ConnectTimeout=20";

/// A host that vanishes without closing the connection (a cable, a frozen machine) is noticed
/// within about six seconds, and every channel of its master ends with it.
const SERVER_ALIVE: [&str; 4] = ["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"];

/// An extra ssh_config file for every `ssh` aifactoryctl and the shim run (`ssh -F FILE`):
/// identities, known hosts, jump hosts. A host context's (or `[[hosts]]` entry's) `ssh_config`
/// takes precedence.
pub const SSH_CONFIG_ENV: &str = "AIFACTORY_SSH_CONFIG";

/// What `--host` resolved to, ready to dial.
#[derive(Debug, Clone)]
pub struct SshHost {
    pub target: SshTarget,
    /// Passed as `ssh -F FILE` when set.
    pub ssh_config: Option<PathBuf>,
}

impl SshHost {
    /// `target` with its own `ssh_config` (a context's or a `[[hosts]]` entry's), else the one
    /// `$AIFACTORY_SSH_CONFIG` names, if any (an empty value names none).
    pub fn new(target: SshTarget, ssh_config: Option<PathBuf>) -> SshHost {
        let ssh_config = ssh_config
            .or_else(|| std::env::var_os(SSH_CONFIG_ENV).map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty());
        SshHost { target, ssh_config }
    }

    /// The host as the user named it, for messages.
    pub fn name(&self) -> &str {
        &self.target.host
    }

    /// The `ssh` command running `remote` (e.g. `aifactoryctl dial-stdio`) on the host.
    pub fn command(&self, remote: &[&str]) -> Result<Command, SshError> {
        let control_dir = control_dir()?;
        let mut cmd = Command::new("ssh");
        if let Some(config) = &self.ssh_config {
            cmd.arg("-F").arg(config);
        }
        cmd.args(["-o", "BatchMode=yes", "-o", "ControlMaster=auto"])
            .arg("-o")
            .arg({
                let mut opt = OsString::from("ControlPath=");
                opt.push(control_dir.join("%C"));
                opt
            })
            .args(["-o", CONTROL_PERSIST, "-o", CONNECT_TIMEOUT])
            .args(SERVER_ALIVE);
        if let Some(port) = self.target.port {
            cmd.arg("-p").arg(port.to_string());
        }
        cmd.arg("--").arg(self.target.destination()).args(remote);
        Ok(cmd)
    }

    /// A client of the remote daemon: `ssh HOST aifactoryctl dial-stdio` and the protocol's
    /// handshake over its pipes. `client` names the program in the daemon's logs. A transport
    /// that fails before the handshake is reported in ssh's words ([`diagnose`]).
    pub async fn connect(&self, client: &str) -> Result<Connection, SshError> {
        let mut relay = self.dial()?;
        let Some((rd, wr)) = relay.pipes() else {
            return Err(SshError::new(
                SshErrorKind::Failed,
                "the ssh relay's pipes were already taken",
            ));
        };
        let mut opts = ClientOptions::new(
            PathBuf::from(format!("ssh://{}", self.target.destination())),
            client,
        );
        // ssh's own handshake (and a master's first connection) comes before ours.
        opts.handshake_timeout = std::time::Duration::from_secs(30);
        match Client::handshake_over(rd, wr, &opts).await {
            Ok(client) => Ok(Connection {
                client,
                _relay: Some(relay),
            }),
            Err(ClientError::ProtocolMismatch {
                client,
                ours,
                theirs,
            }) => {
                let host = self.name();
                let who = if ours > theirs {
                    format!("upgrade the aifactory package on {host} or use a matching {client}")
                } else {
                    format!("upgrade {client} here or use a daemon that speaks protocol {ours}")
                };
                Err(SshError::new(
                    SshErrorKind::Failed,
                    format!(
                        "{client} speaks protocol {ours}, the daemon on {host} speaks {theirs}: {who}"
                    ),
                ))
            }
            // The relay ended before the handshake: ssh's status and stderr say why.
            Err(err @ ClientError::HandshakeInterrupted { .. }) => {
                Err(relay.failure().await.unwrap_or_else(|| from_client(err)))
            }
            Err(err) => Err(from_client(err)),
        }
    }

    /// Starts `ssh HOST aifactoryctl dial-stdio` with its stdin and stdout ours and its
    /// stderr collected for [`Relay::failure`].
    pub fn dial(&self) -> Result<Relay, SshError> {
        let mut cmd = self.command(&["aifactoryctl", "dial-stdio"])?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| SshError {
            kind: SshErrorKind::Unreachable,
            message: format!(
                "cannot run ssh to reach {}: {e}; install the OpenSSH client (`apt install openssh-client`)",
                self.name()
            ),
        })?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(SshError {
                kind: SshErrorKind::Failed,
                message: "ssh started without the pipes asked for".into(),
            });
        };
        // Drained all along, so a chatty ssh never blocks on a full pipe; read on failure.
        let stderr_text = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr_text.clone();
        let stderr_task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                match stderr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().await.extend_from_slice(&buf[..n]),
                }
            }
        });
        Ok(Relay {
            host: self.clone(),
            stdin: Some(stdin),
            stdout: Some(stdout),
            child,
            stderr: stderr_text,
            stderr_task: Some(stderr_task),
        })
    }
}

/// A protocol error met on the ssh transport, kept in its own words and class.
fn from_client(err: ClientError) -> SshError {
    let kind = if err.is_permission_denied() {
        SshErrorKind::PermissionDenied
    } else if err.is_unreachable() {
        SshErrorKind::Unreachable
    } else {
        SshErrorKind::Failed
    };
    SshError::new(kind, err.to_string())
}

/// A connected client of a daemon and, for a remote one, the ssh that carries it: dropping it
/// closes the connection (and ends the ssh relay; its master stays for the next one).
pub struct Connection {
    client: Client,
    /// Kept as long as the client: dropping it ends the ssh.
    _relay: Option<Relay>,
}

impl Connection {
    /// A client of a daemon on this machine (no ssh under it).
    pub fn local(client: Client) -> Connection {
        Connection {
            client,
            _relay: None,
        }
    }
}

impl std::ops::Deref for Connection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// A running `ssh … dial-stdio`: its pipes (taken once by the client) and how it ended.
pub struct Relay {
    host: SshHost,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_task: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn pipes(&mut self) -> Option<(ChildStdout, ChildStdin)> {
        Some((self.stdout.take()?, self.stdin.take()?))
    }

    /// Why the transport failed: waits for ssh to end and reads its status and stderr.
    pub async fn failure(&mut self) -> Option<SshError> {
        let status = self.child.wait().await.ok()?;
        if let Some(task) = self.stderr_task.take() {
            let _ = task.await;
        }
        let stderr = String::from_utf8_lossy(&self.stderr.lock().await).into_owned();
        diagnose(self.host.name(), status, &stderr)
    }
}

/// The failure a finished `ssh … aifactoryctl dial-stdio` reports, or `None` when it ended
/// well (then the protocol layer's own error stands).
pub fn diagnose(host: &str, status: ExitStatus, stderr: &str) -> Option<SshError> {
    let code = status.code()?;
    let said = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .collect::<Vec<_>>()
        .join("; ");
    // ssh's sentences end with a period; ours follow after one.
    let said = said.trim_end_matches('.').to_string();
    let remote_said = || {
        said.strip_prefix("aifactoryctl: error: ")
            .unwrap_or(&said)
            .to_string()
    };
    match code {
        0 => None,
        // ssh's own failures: it exits 255 and says why in its own words.
        255 => {
            let lower = said.to_lowercase();
            let message = if lower.contains("permission denied")
                || lower.contains("too many authentication failures")
            {
                format!(
                    "ssh to {host} was refused: {said}. Check the key ssh offers (ssh-add -l, IdentityFile) and that it is in the remote user's authorized_keys"
                )
            } else if lower.contains("host key verification failed")
                || lower.contains("remote host identification has changed")
            {
                format!(
                    "ssh to {host} failed: {said}. Add the host's key to known_hosts (connect once with `ssh {host}` and check its fingerprint)"
                )
            } else if [
                "connection refused",
                "timed out",
                "no route to host",
                "could not resolve hostname",
                "name or service not known",
                "network is unreachable",
                "connection closed",
                "connection reset",
            ]
            .iter()
            .any(|s| lower.contains(s))
            {
                format!(
                    "host {host} is unreachable over ssh: {said}. Check the host name and port, that the machine is up and that sshd runs on it"
                )
            } else {
                format!("ssh to {host} failed: {said}")
            };
            Some(SshError {
                kind: SshErrorKind::Unreachable,
                message,
            })
        }
        127 => Some(SshError {
            kind: SshErrorKind::Unreachable,
            message: format!(
                "aifactoryctl is not installed on {host} ({said}): install the aifactory package on {host}"
            ),
        }),
        // The remote `dial-stdio` reporting its own socket's refusal: exit 5 names the group.
        5 => Some(SshError {
            kind: SshErrorKind::PermissionDenied,
            message: format!("on {host}: {}", remote_said()),
        }),
        3 => Some(SshError {
            kind: SshErrorKind::Unreachable,
            message: format!("on {host}: {}", remote_said()),
        }),
        // An aifactoryctl from before dial-stdio: clap refuses the subcommand (exit 2).
        2 if said.contains("dial-stdio") => Some(SshError {
            kind: SshErrorKind::Unreachable,
            message: format!(
                "the aifactoryctl on {host} has no dial-stdio ({said}): upgrade the aifactory package on {host}"
            ),
        }),
        _ if said.contains("command not found") || said.contains("No such file") => {
            Some(SshError {
                kind: SshErrorKind::Unreachable,
                message: format!(
                    "aifactoryctl could not run on {host} ({said}): install the aifactory package on {host}"
                ),
            })
        }
        _ if said.is_empty() => None,
        other => Some(SshError {
            kind: SshErrorKind::Failed,
            message: format!("on {host}: {} (remote exit status {other})", remote_said()),
        }),
    }
}

/// The private directory of this user's ssh control sockets:
/// `$XDG_RUNTIME_DIR/aifactory/ssh`, else `/tmp/aifactory-ssh-UID`. Created 0700; one owned
/// by someone else, or open to others, is refused (another user could hijack the masters).
pub fn control_dir() -> Result<PathBuf, SshError> {
    let uid = nix::unistd::geteuid().as_raw();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("aifactory/ssh"),
        None => std::env::temp_dir().join(format!("aifactory-ssh-{uid}")),
    };
    let refuse = |why: String| SshError {
        kind: SshErrorKind::Failed,
        message: format!(
            "the ssh control directory {} {why}: remove it or set XDG_RUNTIME_DIR to a private directory",
            dir.display()
        ),
    };
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        return Err(refuse(format!("cannot be created ({e})")));
    }
    let meta =
        std::fs::symlink_metadata(&dir).map_err(|e| refuse(format!("cannot be read ({e})")))?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(refuse(format!("is not a directory of uid {uid}")));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "is open to other users (mode {:o})",
            meta.permissions().mode() & 0o777
        )));
    }
    Ok(dir)
}

/// Whether `path` names an ssh_config file that exists, for a clear error before ssh's own.
pub fn check_config(path: &Path) -> Result<(), SshError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(SshError {
            kind: SshErrorKind::Failed,
            message: format!(
                "the ssh config file {} (from {SSH_CONFIG_ENV} or the host context) does not exist: fix the path",
                path.display()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn each_layer_is_named() {
        let auth = diagnose(
            "b1",
            exited(255),
            "root@10.77.0.2: Permission denied (publickey).\n",
        )
        .unwrap();
        assert_eq!(auth.kind, SshErrorKind::Unreachable);
        assert!(
            auth.message
                .contains("root@10.77.0.2: Permission denied (publickey). Check"),
            "{}",
            auth.message
        );
        let down = diagnose(
            "b1",
            exited(255),
            "ssh: connect to host b1 port 22: Connection refused\n",
        )
        .unwrap();
        assert!(
            down.message.starts_with("host b1 is unreachable"),
            "{}",
            down.message
        );
        let missing =
            diagnose("b1", exited(127), "bash: aifactoryctl: command not found\n").unwrap();
        assert!(
            missing
                .message
                .contains("install the aifactory package on b1")
        );
        let group = diagnose(
            "b1",
            exited(5),
            "aifactoryctl: error: permission denied opening /run/aifactory/aifactoryd.sock as uid 1000: join the daemon's group (`sudo usermod -aG aifactory $USER`, then log in again)\n",
        )
        .unwrap();
        assert_eq!(group.kind, SshErrorKind::PermissionDenied);
        assert!(
            group.message.starts_with("on b1: permission denied"),
            "{}",
            group.message
        );
        let old = diagnose(
            "b1",
            exited(2),
            "error: unrecognized subcommand 'dial-stdio'\n",
        )
        .unwrap();
        assert!(
            old.message.contains("upgrade the aifactory package on b1"),
            "{}",
            old.message
        );
        assert!(diagnose("b1", exited(0), "").is_none());
    }
}
