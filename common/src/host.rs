//! Where a daemon is: `unix:///path/to.sock` on this machine, or `ssh://[user@]host[:port]`
//! reached through OpenSSH. Parsed once here for `aifactoryctl --host`, its host contexts and
//! the shim's `[[hosts]]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A daemon's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostUrl {
    /// The daemon's socket on this machine.
    Unix(PathBuf),
    /// A machine whose own `aifactoryctl dial-stdio` relays to its daemon.
    Ssh(SshTarget),
}

/// The part of an `ssh://` URL the ssh client needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl SshTarget {
    /// `[user@]host`, the destination argument of `ssh`.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(user) => format!("{user}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

/// Why a host URL was refused; each message says what a good one looks like.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostUrlError {
    #[error(
        "`{0}` is not a host URL: use ssh://[user@]host[:port] or unix:///path/to/aifactoryd.sock"
    )]
    Scheme(String),
    #[error("`{0}` names no host: use ssh://[user@]host[:port]")]
    NoHost(String),
    #[error("`{url}` has a bad port `{port}`: use a number from 1 to 65535")]
    Port { url: String, port: String },
    #[error(
        "`{0}` has a path, user or query ssh cannot use: the remote daemon is found by the remote `aifactoryctl dial-stdio`, so give only ssh://[user@]host[:port]"
    )]
    Extra(String),
    #[error("`{0}` needs an absolute socket path: unix:///path/to/aifactoryd.sock")]
    UnixPath(String),
    #[error(
        "`{0}` has characters ssh would read as options or a second destination: use a plain user and host name"
    )]
    Unsafe(String),
}

impl FromStr for HostUrl {
    type Err = HostUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(HostUrlError::UnixPath(url.into()));
            }
            return Ok(HostUrl::Unix(PathBuf::from(path)));
        }
        let Some(rest) = url.strip_prefix("ssh://") else {
            return Err(HostUrlError::Scheme(url.into()));
        };
        if rest.contains(['/', '?', '#']) {
            return Err(HostUrlError::Extra(url.into()));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, rest),
        };
        let (host, port) = split_port(url, hostport)?;
        if host.is_empty() {
            return Err(HostUrlError::NoHost(url.into()));
        }
        // ssh takes a leading '-' as an option, and whitespace or '@' as something else.
        let plain = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && !s.contains(|c: char| c.is_whitespace() || c == '@')
        };
        if !plain(host) || user.is_some_and(|u| !plain(u)) {
            return Err(HostUrlError::Unsafe(url.into()));
        }
        Ok(HostUrl::Ssh(SshTarget {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
        }))
    }
}

/// Splits `host[:port]`, `[v6]` and `[v6]:port`.
fn split_port<'a>(url: &str, hostport: &'a str) -> Result<(&'a str, Option<u16>), HostUrlError> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, tail)) => match tail.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(HostUrlError::NoHost(url.into())),
            },
            None => return Err(HostUrlError::NoHost(url.into())),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(HostUrlError::Port {
                    url: url.into(),
                    port: text.into(),
                });
            }
        },
    };
    Ok((host, port))
}

impl fmt::Display for HostUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostUrl::Unix(path) => write!(f, "unix://{}", path.display()),
            HostUrl::Ssh(target) => {
                f.write_str("ssh://")?;
                if let Some(user) = &target.user {
                    write!(f, "{user}@")?;
                }
                // An IPv6 literal is bracketed so that its port stays apart.
                if target.host.contains(':') {
                    write!(f, "[{}]", target.host)?;
                } else {
                    f.write_str(&target.host)?;
                }
                match target.port {
                    Some(port) => write!(f, ":{port}"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(user: Option<&str>, host: &str, port: Option<u16>) -> HostUrl {
        HostUrl::Ssh(SshTarget {
            user: user.map(Into::into),
            host: host.into(),
            port,
        })
    }

    #[test]
    fn good_urls_parse_and_print_back() {
        for (text, want) in [
            ("ssh://build1", ssh(None, "build1", None)),
            ("ssh://ann@build1", ssh(Some("ann"), "build1", None)),
            (
                "ssh://ann@10.0.0.2:2222",
                ssh(Some("ann"), "10.0.0.2", Some(2222)),
            ),
            (
                "unix:///run/aifactory/aifactoryd.sock",
                HostUrl::Unix("/run/aifactory/aifactoryd.sock".into()),
            ),
        ] {
            let got: HostUrl = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
    }

    #[test]
    fn bad_urls_are_refused_with_the_shape_of_a_good_one() {
        for (text, want) in [
            ("build1", "use ssh://[user@]host[:port]"),
            ("http://build1", "use ssh://[user@]host[:port]"),
            ("ssh://", "names no host"),
            ("ssh://ann@", "names no host"),
            ("ssh://build1:0", "bad port `0`"),
            ("ssh://build1:99999", "bad port `99999`"),
            ("ssh://build1/srv", "give only ssh://"),
            ("ssh://-oProxyCommand=x", "read as options"),
            ("ssh://-x@build1", "read as options"),
            ("unix://run/x.sock", "absolute socket path"),
        ] {
            let err = text.parse::<HostUrl>().unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn an_ipv6_literal_keeps_its_port_apart() {
        let url: HostUrl = "ssh://[fd00::2]:2222".parse().unwrap();
        assert_eq!(url, ssh(None, "fd00::2", Some(2222)));
        assert_eq!(url.to_string(), "ssh://[fd00::2]:2222");
    }
}
