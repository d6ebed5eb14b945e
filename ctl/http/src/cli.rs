//! The command line, as clap derives it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// aifactory-http: REST, server-sent events and a WebSocket Live Console in front of aifactoryd.
///
/// Every `/api` request needs `Authorization: Bearer <token>` (WebSockets may pass the token as
/// the subprotocol `aifactory.token.<token>` or a `token` query parameter). The token lives in
/// `<state dir>/http-token`, made on first start; `--print-token` shows it. A browser opens the
/// page at `/` and logs in with the link `--print-url` prints, or with the token typed once.
///
/// It serves this machine's daemon, or, with `[[hosts]]` entries in its config (`name`, `url` =
/// `ssh://[user@]host[:port]` or `unix:///path`), several daemons as one board: lists gather
/// every reachable host, objects are addressed as `/api/v1/hosts/{host}/…`, and the event
/// stream merges them all. Remote hosts are reached with the system ssh, one multiplexed master
/// per host, running `aifactoryctl dial-stdio` there.
#[derive(Debug, Parser)]
#[command(name = "aifactory-http", version)]
pub struct Cli {
    /// Address and port to listen on (default 127.0.0.1:7878, or `listen` in the config).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Allow listening on an address other than loopback. Anyone who can reach it and has the
    /// token controls your agents; put TLS in front of it.
    #[arg(long)]
    pub allow_remote: bool,
    /// A web origin (e.g. `http://localhost:3000`) allowed to call the API from a browser and to
    /// open consoles; repeatable, added to `allowed_origins` from the config.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// The daemon's socket (default: $AIFACTORY_SOCKET, $RUNTIME_DIRECTORY/aifactoryd.sock,
    /// /run/aifactory/aifactoryd.sock as root, else $XDG_RUNTIME_DIR/aifactory/aifactoryd.sock).
    /// Not with `[[hosts]]`, which names every daemon served.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Where the token file `http-token` lives (default: the daemon's state directory:
    /// $AIFACTORY_STATE_DIR, $STATE_DIRECTORY, /var/lib/aifactory as root, else
    /// $XDG_STATE_HOME/aifactory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Config file (default: $CONFIGURATION_DIRECTORY/http.toml under systemd, so
    /// /etc/aifactory/http.toml for the packaged unit; that file as root; else
    /// $XDG_CONFIG_HOME/aifactory/http.toml; a missing default file means defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the API token (making it first if there is none yet) and exit.
    #[arg(long)]
    pub print_token: bool,
    /// Print a one-time login URL for a browser (valid for ten minutes, once) and exit. The
    /// code is in the URL's fragment, which browsers never send to a server or a log.
    #[arg(long, conflicts_with = "print_token")]
    pub print_url: bool,
    /// Where logs go.
    #[arg(long, value_enum, default_value = "auto")]
    pub log: aifactory_common::logging::LogTarget,
    /// Print the man page (roff) and exit; the package ships it.
    #[arg(long, hide = true)]
    pub manpage: bool,
}
