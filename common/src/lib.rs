//! The one protocol crate shared by `aifactoryd`, `aifactoryctl` and `aifactory-http`.
//!
//! Every message shape that crosses the control socket is defined here once ([`protocol`], and
//! [`agent`] for what the daemon reads of an agent's run),
//! together with the payload [`codec`], the raw [`handshake`], the [`frame`] layer, the
//! socket/state path resolution ([`paths`]) and the async [`client`] (with [`in_doubt`]: which
//! requests may have completed when their reply is lost). Clients and the daemon never
//! re-declare a shape.
//!
//! It is also the one home of the small OS facts every program of the workspace needs:
//! [`ssh`] (the transport to a remote daemon), [`time`] (RFC 3339 timestamps), [`procfs`] (`/proc/<pid>/stat`), [`sync`] (locking a
//! mutex whose holder panicked) and [`echo`] (client input in messages, bounded), and, behind
//! the cargo feature `logging`, of the `logging` setup the daemon and the HTTP shim share.

pub mod agent;
pub mod client;
pub mod codec;
pub mod diagnose;
pub mod echo;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod host;
pub mod in_doubt;
#[cfg(feature = "logging")]
pub mod logging;
pub mod pane;
pub mod paths;
pub mod procfs;
pub mod protocol;
pub mod provider;
pub mod ssh;
pub mod sync;
pub mod time;

pub use client::{Client, ClientOptions, Subscription};
pub use error::ClientError;
pub use protocol::PROTOCOL_VERSION;
