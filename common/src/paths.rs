//! Where the control socket, the state directory and the config file live.
//!
//! The daemon and every client resolve paths with this same code, so they always agree. Each
//! resolver takes the environment as a lookup function so the order can be tested without
//! touching the process environment.

use std::ffi::OsString;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::protocol::RunMode;

pub const SOCKET_ENV: &str = "AIFACTORY_SOCKET";
pub const STATE_DIR_ENV: &str = "AIFACTORY_STATE_DIR";
pub const SOCKET_NAME: &str = "aifactoryd.sock";
pub const SYSTEM_RUNTIME_DIR: &str = "/run/aifactory";
pub const SYSTEM_STATE_DIR: &str = "/var/lib/aifactory";
pub const SYSTEM_CONFIG_DIR: &str = "/etc/aifactory";
pub const SYSTEM_CONFIG_FILE: &str = "/etc/aifactory/aifactoryd.toml";
pub const CONFIG_FILE_NAME: &str = "aifactoryd.toml";

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error(
        "no usable directory for the control socket; tried {}: pass --socket PATH, set {SOCKET_ENV}, or set XDG_RUNTIME_DIR",
        .tried.join("; ")
    )]
    NoSocketDir { tried: Vec<String> },
    #[error(
        "no usable state directory; tried {}: pass --state-dir DIR, set {STATE_DIR_ENV}, or set HOME",
        .tried.join("; ")
    )]
    NoStateDir { tried: Vec<String> },
}

/// The process environment, as the resolvers see it.
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// Whether we run as root (system paths apply).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The first entry of a systemd `*_DIRECTORY` variable (it is `:`-separated when a unit lists
/// several directories).
fn first_systemd_dir(value: OsString) -> Option<PathBuf> {
    let s = value.to_string_lossy().into_owned();
    s.split(':').find(|p| !p.is_empty()).map(PathBuf::from)
}

/// Control socket: explicit (`--socket`), `$AIFACTORY_SOCKET`, `$RUNTIME_DIRECTORY/aifactoryd.sock`
/// (set by systemd), `/run/aifactory/aifactoryd.sock` as root, else
/// `$XDG_RUNTIME_DIR/aifactory/aifactoryd.sock`.
pub fn socket_path(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
    root: bool,
) -> Result<PathBuf, PathError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let mut tried = vec!["--socket (not given)".to_string()];
    if let Some(p) = env(SOCKET_ENV) {
        return Ok(PathBuf::from(p));
    }
    tried.push(format!("${SOCKET_ENV} (unset)"));
    if let Some(dir) = env("RUNTIME_DIRECTORY").and_then(first_systemd_dir) {
        return Ok(dir.join(SOCKET_NAME));
    }
    tried.push("$RUNTIME_DIRECTORY (unset)".into());
    if root {
        return Ok(system_socket());
    }
    tried.push(format!("{SYSTEM_RUNTIME_DIR} (only as root)"));
    if let Some(dir) = env("XDG_RUNTIME_DIR") {
        return Ok(PathBuf::from(dir).join("aifactory").join(SOCKET_NAME));
    }
    tried.push("$XDG_RUNTIME_DIR (unset)".into());
    Err(PathError::NoSocketDir { tried })
}

/// The socket a client uses: as [`socket_path`] when a path is named (`--socket`,
/// `$AIFACTORY_SOCKET`, `$RUNTIME_DIRECTORY`) or as root. Otherwise, as docker's client finds
/// docker's socket: the user's own daemon (`$XDG_RUNTIME_DIR/aifactory/aifactoryd.sock`) when
/// its socket exists, else the system daemon's when that exists (a member of its group is
/// served; anyone else is told the group to join), else the user's path, whose "cannot reach"
/// error says how to start a daemon. `is_socket` says whether a socket file exists at a path.
pub fn client_socket_path(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
    root: bool,
    is_socket: &dyn Fn(&Path) -> bool,
) -> Result<PathBuf, PathError> {
    let named =
        explicit.is_some() || env(SOCKET_ENV).is_some() || env("RUNTIME_DIRECTORY").is_some();
    if named || root {
        return socket_path(explicit, env, root);
    }
    let user = user_socket(env);
    if let Some(user) = user.as_ref().filter(|p| is_socket(p)) {
        return Ok(user.clone());
    }
    let system = system_socket();
    if is_socket(&system) {
        return Ok(system);
    }
    user.ok_or_else(|| PathError::NoSocketDir {
        tried: vec![
            "--socket (not given)".into(),
            format!("${SOCKET_ENV} (unset)"),
            "$RUNTIME_DIRECTORY (unset)".into(),
            "$XDG_RUNTIME_DIR (unset)".into(),
            format!("{} (no socket there)", system.display()),
        ],
    })
}

/// The system daemon's socket.
pub fn system_socket() -> PathBuf {
    Path::new(SYSTEM_RUNTIME_DIR).join(SOCKET_NAME)
}

/// A user daemon's socket, when `$XDG_RUNTIME_DIR` is set.
fn user_socket(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    env("XDG_RUNTIME_DIR").map(|dir| PathBuf::from(dir).join("aifactory").join(SOCKET_NAME))
}

/// Whether a socket file exists at `path` (the probe [`client_socket_path`] uses).
pub fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// The default daemons other than the one at `reached` whose sockets exist: the system daemon
/// and the user's own. `status` names them, so someone with both knows which one answered.
pub fn other_daemons(
    reached: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
    is_socket: &dyn Fn(&Path) -> bool,
) -> Vec<(PathBuf, RunMode)> {
    [
        Some((system_socket(), RunMode::System)),
        user_socket(env).map(|p| (p, RunMode::User)),
    ]
    .into_iter()
    .flatten()
    .filter(|(path, _)| path != reached && is_socket(path))
    .collect()
}

/// State directory: explicit (`--state-dir`), `$AIFACTORY_STATE_DIR`, `$STATE_DIRECTORY`,
/// `/var/lib/aifactory` as root, else `$XDG_STATE_HOME/aifactory` (default
/// `~/.local/state/aifactory`).
pub fn state_dir(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
    root: bool,
) -> Result<PathBuf, PathError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = env(STATE_DIR_ENV) {
        return Ok(PathBuf::from(p));
    }
    if let Some(dir) = env("STATE_DIRECTORY").and_then(first_systemd_dir) {
        return Ok(dir);
    }
    if root {
        return Ok(PathBuf::from(SYSTEM_STATE_DIR));
    }
    if let Some(dir) = env("XDG_STATE_HOME") {
        return Ok(PathBuf::from(dir).join("aifactory"));
    }
    if let Some(home) = env("HOME") {
        return Ok(PathBuf::from(home).join(".local/state/aifactory"));
    }
    Err(PathError::NoStateDir {
        tried: vec![
            "--state-dir (not given)".into(),
            format!("${STATE_DIR_ENV} (unset)"),
            "$STATE_DIRECTORY (unset)".into(),
            format!("{SYSTEM_STATE_DIR} (only as root)"),
            "$XDG_STATE_HOME (unset)".into(),
            "$HOME (unset)".into(),
        ],
    })
}

/// Default config file: `$CONFIGURATION_DIRECTORY/aifactoryd.toml` (set by systemd's
/// `ConfigurationDirectory=`, so the packaged service, which runs as user `aifactory`, reads
/// `/etc/aifactory/aifactoryd.toml`), `/etc/aifactory/aifactoryd.toml` as root, else
/// `$XDG_CONFIG_HOME/aifactory/aifactoryd.toml` (default `~/.config/...`). `None` when none can
/// be named; a missing file simply means defaults.
pub fn default_config_file(env: &dyn Fn(&str) -> Option<OsString>, root: bool) -> Option<PathBuf> {
    config_file_named(CONFIG_FILE_NAME, env, root)
}

/// [`default_config_file`]'s lookup for another program's file `name` (e.g. `http.toml`).
pub fn config_file_named(
    name: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
    root: bool,
) -> Option<PathBuf> {
    if let Some(dir) = env("CONFIGURATION_DIRECTORY").and_then(first_systemd_dir) {
        return Some(dir.join(name));
    }
    if root {
        return Some(Path::new(SYSTEM_CONFIG_DIR).join(name));
    }
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("aifactory").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn socket_order() {
        let all = env_of(&[
            (SOCKET_ENV, "/env.sock"),
            ("RUNTIME_DIRECTORY", "/run/a:/run/b"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        assert_eq!(
            socket_path(Some(Path::new("/x.sock")), &all, false).unwrap(),
            PathBuf::from("/x.sock")
        );
        assert_eq!(
            socket_path(None, &all, false).unwrap(),
            PathBuf::from("/env.sock")
        );
        let systemd = env_of(&[
            ("RUNTIME_DIRECTORY", "/run/a:/run/b"),
            ("XDG_RUNTIME_DIR", "/r"),
        ]);
        assert_eq!(
            socket_path(None, &systemd, true).unwrap(),
            PathBuf::from("/run/a/aifactoryd.sock")
        );
        let user = env_of(&[("XDG_RUNTIME_DIR", "/run/user/1000")]);
        assert_eq!(
            socket_path(None, &user, true).unwrap(),
            PathBuf::from("/run/aifactory/aifactoryd.sock")
        );
        assert_eq!(
            socket_path(None, &user, false).unwrap(),
            PathBuf::from("/run/user/1000/aifactory/aifactoryd.sock")
        );
    }

    #[test]
    fn socket_error_names_what_was_tried() {
        let err = socket_path(None, &env_of(&[]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("XDG_RUNTIME_DIR (unset)"), "{err}");
        assert!(err.contains("/run/aifactory (only as root)"), "{err}");
        assert!(err.contains("pass --socket"), "{err}");
    }

    #[test]
    fn a_client_finds_its_own_daemon_then_the_system_one() {
        let system = PathBuf::from("/run/aifactory/aifactoryd.sock");
        let user_sock = PathBuf::from("/run/user/1000/aifactory/aifactoryd.sock");
        let user = env_of(&[("XDG_RUNTIME_DIR", "/run/user/1000")]);
        let none = |_: &Path| false;
        let only_system = |p: &Path| p == Path::new("/run/aifactory/aifactoryd.sock");
        let both = |_: &Path| true;
        // A group member with no daemon of their own reaches the system daemon, with or
        // without a runtime directory.
        assert_eq!(
            client_socket_path(None, &user, false, &only_system).unwrap(),
            system
        );
        assert_eq!(
            client_socket_path(None, &env_of(&[]), false, &only_system).unwrap(),
            system
        );
        // Their own daemon wins; with neither, their own path (its error says how to start one).
        assert_eq!(
            client_socket_path(None, &user, false, &both).unwrap(),
            user_sock
        );
        assert_eq!(
            client_socket_path(None, &user, false, &none).unwrap(),
            user_sock
        );
        let err = client_socket_path(None, &env_of(&[]), false, &none)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/run/aifactory/aifactoryd.sock (no socket there)"),
            "{err}"
        );
        // A named socket and root are as for the daemon.
        let named = env_of(&[(SOCKET_ENV, "/env.sock"), ("XDG_RUNTIME_DIR", "/r")]);
        assert_eq!(
            client_socket_path(None, &named, false, &both).unwrap(),
            PathBuf::from("/env.sock")
        );
        assert_eq!(
            client_socket_path(None, &user, true, &none).unwrap(),
            system
        );
        // The other daemon is named, not the one reached.
        assert_eq!(
            other_daemons(&user_sock, &user, &both),
            vec![(system.clone(), RunMode::System)]
        );
        assert_eq!(
            other_daemons(&system, &user, &both),
            vec![(user_sock, RunMode::User)]
        );
        assert!(other_daemons(&system, &user, &only_system).is_empty());
    }

    #[test]
    fn state_order() {
        let env = env_of(&[("XDG_STATE_HOME", "/xs"), ("HOME", "/home/u")]);
        assert_eq!(
            state_dir(None, &env, false).unwrap(),
            PathBuf::from("/xs/aifactory")
        );
        assert_eq!(
            state_dir(None, &env, true).unwrap(),
            PathBuf::from("/var/lib/aifactory")
        );
        let home = env_of(&[("HOME", "/home/u")]);
        assert_eq!(
            state_dir(None, &home, false).unwrap(),
            PathBuf::from("/home/u/.local/state/aifactory")
        );
        let systemd = env_of(&[("STATE_DIRECTORY", "/var/lib/aifactory2"), ("HOME", "/h")]);
        assert_eq!(
            state_dir(None, &systemd, false).unwrap(),
            PathBuf::from("/var/lib/aifactory2")
        );
        assert!(state_dir(None, &env_of(&[]), false).is_err());
    }

    #[test]
    fn config_order() {
        let systemd = env_of(&[
            ("CONFIGURATION_DIRECTORY", "/etc/aifactory:/etc/other"),
            ("XDG_CONFIG_HOME", "/xc"),
        ]);
        assert_eq!(
            default_config_file(&systemd, false),
            Some(PathBuf::from("/etc/aifactory/aifactoryd.toml"))
        );
        // The shim's file, found the same way (its packaged unit runs as user aifactory).
        assert_eq!(
            config_file_named("http.toml", &systemd, false),
            Some(PathBuf::from("/etc/aifactory/http.toml"))
        );
        assert_eq!(
            config_file_named("http.toml", &env_of(&[("HOME", "/home/u")]), true),
            Some(PathBuf::from("/etc/aifactory/http.toml"))
        );
        let user = env_of(&[("XDG_CONFIG_HOME", "/xc"), ("HOME", "/home/u")]);
        assert_eq!(
            default_config_file(&user, true),
            Some(PathBuf::from(SYSTEM_CONFIG_FILE))
        );
        assert_eq!(
            default_config_file(&user, false),
            Some(PathBuf::from("/xc/aifactory/aifactoryd.toml"))
        );
        let home = env_of(&[("HOME", "/home/u")]);
        assert_eq!(
            default_config_file(&home, false),
            Some(PathBuf::from("/home/u/.config/aifactory/aifactoryd.toml"))
        );
        assert_eq!(default_config_file(&env_of(&[]), false), None);
    }
}
