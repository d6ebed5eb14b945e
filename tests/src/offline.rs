//! Keeping an agent CLI offline, and proving it tried nothing else: a private network
//! namespace with only loopback up (as root), and a recording proxy every client is pointed at.
//!
//! Why both. The namespace enforces: a process in it has one interface, `lo`, and no route
//! anywhere else, so a request to any other host fails in the kernel whatever the client does
//! (even one that ignores proxy variables). But a blocked request fails quietly, so the test
//! would not see it; the proxy detects: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` point at a
//! listener that records each request line (`CONNECT github.com:443 ...`) and refuses it, with
//! `NO_PROXY=127.0.0.1,localhost` so the scripted model server is reached directly. A test
//! asserts the proxy saw nothing. Codex 0.171.0 honours these variables (its plugin sync, its
//! analytics and git's clone all went through the proxy before their switches were set), so the
//! check can fail. Without root there is no namespace and the proxy alone is the check.
//!
//! Servers the CLI must reach bind their listeners through [`Offline::bind_loopback`], inside
//! the namespace; the CLI is spawned through [`Offline::spawn`], which forks from a thread that
//! entered the namespace (a network namespace belongs to a thread, and a child inherits it),
//! so no `pre_exec` is needed.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsFd;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

use nix::sched::{CloneFlags, setns, unshare};

/// The private namespace (if any) and the recording proxy of one test.
pub struct Offline {
    /// `/proc/thread-self/ns/net` of the thread that made the namespace; holding it keeps the
    /// namespace alive after that thread ends.
    netns: Option<File>,
    proxy_port: u16,
    attempts: Arc<Mutex<Vec<String>>>,
}

impl Offline {
    /// A private network namespace when running as root (and `unshare` and `ip` work), else
    /// none; plus the recording proxy, inside the namespace when there is one.
    pub fn start() -> Offline {
        let netns = if crate::is_root() {
            match private_netns() {
                Ok(ns) => Some(ns),
                Err(e) => {
                    eprintln!(
                        "offline: no private network namespace ({e}); the proxy alone checks"
                    );
                    None
                }
            }
        } else {
            None
        };
        let mut offline = Offline {
            netns,
            proxy_port: 0,
            attempts: Arc::new(Mutex::new(Vec::new())),
        };
        let proxy = offline.bind_loopback();
        offline.proxy_port = proxy.local_addr().expect("proxy address").port();
        let attempts = Arc::clone(&offline.attempts);
        std::thread::spawn(move || record_attempts(&proxy, &attempts));
        offline
    }

    /// Whether the kernel enforces it (a private namespace), not only the proxy.
    pub fn is_isolated(&self) -> bool {
        self.netns.is_some()
    }

    /// A listener on 127.0.0.1 with a free port, in the namespace when there is one.
    pub fn bind_loopback(&self) -> TcpListener {
        self.in_netns(|| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind a loopback listener")
    }

    /// Points `cmd` at the recording proxy and spawns it, in the namespace when there is one.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<Child> {
        let proxy = format!("http://127.0.0.1:{}", self.proxy_port);
        for var in ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"] {
            cmd.env(var, &proxy).env(var.to_lowercase(), &proxy);
        }
        cmd.env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        self.in_netns(|| cmd.spawn())
    }

    /// The request lines the proxy saw: each one is an attempt to reach another host.
    pub fn attempts(&self) -> Vec<String> {
        self.attempts.lock().expect("proxy attempts").clone()
    }

    /// Runs `f` on a thread that entered the namespace (or here when there is none).
    fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let Some(ns) = &self.netns else { return f() };
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                    .expect("enter the test's network namespace");
                f()
            })
            .join()
            .expect("a thread in the test's network namespace")
        })
    }
}

/// A new network namespace with `lo` up, made on a thread of its own so the test process keeps
/// the host's network.
fn private_netns() -> Result<File, String> {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        // The child inherits this thread's namespace: `lo` starts down, so 127.0.0.1 is absent.
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .map_err(|e| format!("run `ip link set lo up`: {e}"))?;
        if !up.success() {
            return Err(format!("`ip link set lo up` failed: {up}"));
        }
        File::open("/proc/thread-self/ns/net").map_err(|e| format!("open the namespace: {e}"))
    })
    .join()
    .map_err(|_| "the namespace thread panicked".to_string())?
}

/// Accepts proxy connections for the life of the test: records each request line, refuses it.
fn record_attempts(listener: &TcpListener, attempts: &Mutex<Vec<String>>) {
    for stream in listener.incoming().flatten() {
        crate::egress::record_and_refuse(stream, attempts);
    }
}
