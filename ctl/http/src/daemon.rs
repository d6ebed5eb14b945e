//! The way to one host's aifactoryd: its socket on this machine, or `ssh … aifactoryctl
//! dial-stdio` through the host's multiplexed ssh master. Every REST request opens its own
//! short connection through the `aifactory-common` client, and every stream (events, console)
//! holds one for its lifetime. So a daemon restart never leaves the shim holding a dead
//! connection, and a stream whose web client stalls can only slow its own connection.

use std::path::Path;
use std::sync::Arc;

use aifactory_common::protocol::Request;
use aifactory_common::ssh::{Connection, SshErrorKind, SshHost};
use aifactory_common::{Client, ClientError, ClientOptions, Subscription};
use axum::http::StatusCode;

use crate::error::ApiError;

/// How a host's daemon is reached.
enum Link {
    Unix(ClientOptions),
    Ssh(SshHost),
}

#[derive(Clone)]
pub struct Daemon {
    link: Arc<Link>,
    /// Where, for messages: the socket's path or the ssh URL.
    place: Arc<str>,
}

impl Daemon {
    pub fn unix(socket: &Path) -> Daemon {
        Daemon {
            place: socket.display().to_string().into(),
            link: Arc::new(Link::Unix(ClientOptions::new(socket, "aifactory-http"))),
        }
    }

    pub fn ssh(host: SshHost, url: &str) -> Daemon {
        Daemon {
            place: url.into(),
            link: Arc::new(Link::Ssh(host)),
        }
    }

    /// Where the daemon is: its socket's path, or its host's ssh URL.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// The daemon's socket, when it is on this machine.
    pub fn socket(&self) -> Option<&Path> {
        match &*self.link {
            Link::Unix(opts) => Some(&opts.socket),
            Link::Ssh(_) => None,
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(&*self.link, Link::Ssh(_))
    }

    pub async fn connect(&self) -> Result<Connection, ApiError> {
        match &*self.link {
            Link::Unix(opts) => Ok(Connection::local(
                Client::connect(opts).await.map_err(|e| self.error(e))?,
            )),
            Link::Ssh(host) => host.connect("aifactory-http").await.map_err(|e| {
                let status = match e.kind {
                    SshErrorKind::Failed => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                let under_systemd = std::env::var_os("INVOCATION_ID").is_some();
                let message = with_unit_hint(e.message, under_systemd);
                ApiError::new(status, "host_unavailable", message)
            }),
        }
    }

    /// A client error as the API's, naming where the daemon is.
    pub fn error(&self, err: ClientError) -> ApiError {
        ApiError::from_client(err, &self.place)
    }

    /// One request on a connection of its own: `ask` calls one typed method of the client,
    /// and whatever fails becomes the API's error here, once.
    pub async fn call<T>(
        &self,
        ask: impl AsyncFnOnce(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ApiError> {
        let conn = self.connect().await?;
        ask(&conn).await.map_err(|e| self.error(e))
    }

    /// Opens a stream on a connection of its own; the connection must live as long as the
    /// stream.
    pub async fn subscribe(
        &self,
        request: Request,
    ) -> Result<(Connection, Subscription), ApiError> {
        let conn = self.connect().await?;
        let subscription = conn.subscribe(request).await.map_err(|e| self.error(e))?;
        Ok((conn, subscription))
    }
}

/// A connection ssh could not open, from a shim under systemd (`$INVOCATION_ID`), is most
/// often the packaged unit's `IPAddressAllow=localhost`, which drops it without a word: say so
/// and name the drop-in. A refused connection reached the host, so it gets no hint.
fn with_unit_hint(message: String, under_systemd: bool) -> String {
    if !under_systemd
        || !message.contains("connect to host")
        || message.contains("Connection refused")
    {
        return message;
    }
    format!(
        "{message}. If aifactory-http runs as the packaged unit, it may reach only localhost: \
         install /usr/share/doc/aifactory/examples/http-hosts.conf as a drop-in \
         (/etc/systemd/system/aifactory-http.service.d/hosts.conf), then \
         `systemctl daemon-reload && systemctl restart aifactory-http`"
    )
}

#[cfg(test)]
mod tests {
    use super::with_unit_hint;

    #[test]
    fn a_connect_that_fails_under_systemd_names_the_drop_in() {
        let timed_out = "host 10.1.2.3 is unreachable over ssh: ssh: connect to host 10.1.2.3 port 22: Connection timed out".to_string();
        assert!(with_unit_hint(timed_out.clone(), true).contains("http-hosts.conf"));
        assert_eq!(with_unit_hint(timed_out.clone(), false), timed_out);
        let refused = timed_out.replace("Connection timed out", "Connection refused");
        assert_eq!(with_unit_hint(refused.clone(), true), refused);
        let auth = "ssh refused the login: Permission denied (publickey)".to_string();
        assert_eq!(with_unit_hint(auth.clone(), true), auth);
    }
}
