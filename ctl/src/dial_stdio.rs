//! `aifactoryctl dial-stdio`: the remote end of an ssh transport (as `docker system
//! dial-stdio`). It connects to this machine's daemon socket, found the usual way, and relays
//! stdin to the socket and the socket to stdout byte for byte; nothing else ever reaches
//! stdout. When stdin ends, the socket's write half is shut down and the daemon's last bytes
//! still flow back; when the daemon closes, the relay ends.
//!
//! A socket that cannot be opened is reported on stderr with the exit codes of every other
//! command (3 unreachable, 5 permission, naming the socket's group), before any byte is
//! relayed: the `--host` side reads ssh's exit status and stderr and recognises both.
//!
//! Plain threads and blocking I/O: two byte pumps need no runtime, and a blocking read of
//! stdin must not hold the process open once the daemon has closed.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

use aifactory_common::client::connect_error;

use crate::cli::Cli;
use crate::connect;
use crate::exit::{FAILED, Failure};

const CHUNK: usize = 64 * 1024;

pub fn run(cli: &Cli) -> Result<(), Failure> {
    let socket = connect::local_socket(cli)?;
    let stream =
        UnixStream::connect(&socket).map_err(|e| Failure::from(connect_error(&socket, e)))?;
    let upstream = stream.try_clone().map_err(|e| Failure {
        code: FAILED,
        message: format!("cannot duplicate the socket to {}: {e}", socket.display()),
    })?;
    // stdin → socket; at stdin's end, half-close so the daemon sees EOF and may still answer.
    std::thread::spawn(move || {
        let mut upstream = upstream;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if upstream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = upstream.shutdown(Shutdown::Write);
    });
    // socket → stdout, flushed chunk by chunk: the peer waits for each reply.
    let mut downstream = stream;
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match downstream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                // The reader of our stdout went away (ssh ended): nothing left to relay to.
                if stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failure {
                    code: FAILED,
                    message: format!("reading from {} failed: {e}", socket.display()),
                });
            }
        }
    }
}
