//! A trap for traffic that should not leave the machine: an HTTP proxy on 127.0.0.1 that
//! records the first line of every request it receives (`CONNECT host:443` for HTTPS, an
//! absolute URI for plain HTTP), answers `403`, and forwards nothing.
//!
//! A test puts it in `HTTPS_PROXY`/`HTTP_PROXY` with `NO_PROXY=127.0.0.1,localhost`, so
//! loopback (the scripted model API) is reached directly and any other host lands here. The
//! agent CLIs honour these variables (claude 2.1.332 without
//! `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC` sends `CONNECT api.anthropic.com:443` to it), so
//! an empty [`EgressTrap::attempts`] means no other host was contacted. A private network
//! namespace (`unshare -n`) would also hide the loopback server from the CLI, and needs root.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The recording proxy; stops when dropped.
pub struct EgressTrap {
    addr: SocketAddr,
    attempts: Arc<Mutex<Vec<String>>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EgressTrap {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the egress trap on loopback");
        let addr = listener.local_addr().expect("the egress trap's address");
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let attempts = Arc::clone(&attempts);
            let stopping = Arc::clone(&stopping);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let attempts = Arc::clone(&attempts);
                    std::thread::spawn(move || record_and_refuse(conn, &attempts));
                }
            })
        };
        Self {
            addr,
            attempts,
            stopping,
            thread: Some(thread),
        }
    }

    /// The proxy URL for `HTTPS_PROXY`/`HTTP_PROXY`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment that routes everything but loopback through the trap.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let url = self.proxy_url();
        let no_proxy = "127.0.0.1,localhost".to_owned();
        vec![
            ("HTTPS_PROXY", url.clone()),
            ("https_proxy", url.clone()),
            ("HTTP_PROXY", url.clone()),
            ("http_proxy", url),
            ("NO_PROXY", no_proxy.clone()),
            ("no_proxy", no_proxy),
        ]
    }

    /// The request lines received so far (`CONNECT api.anthropic.com:443 HTTP/1.1`, ...).
    pub fn attempts(&self) -> Vec<String> {
        self.attempts.lock().expect("the attempts lock").clone()
    }
}

/// Records one proxy request's first line (`CONNECT host:443 HTTP/1.1`) and refuses it.
pub fn record_and_refuse(conn: TcpStream, attempts: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_ok() && !line.is_empty() {
        attempts
            .lock()
            .expect("the attempts lock")
            .push(line.trim_end().to_owned());
    }
    let _ = (&conn)
        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
}

impl Drop for EgressTrap {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
