//! Connections held open by another uid, for the connection-budget tests: a forked child
//! becomes that uid, opens many connections to a socket (saying the hello on each, or not),
//! and holds them until dropped. A child rather than threads here, because the daemon judges
//! a peer by its kernel credentials, which belong to the whole process.

use std::os::fd::AsRawFd;
use std::path::Path;

use aifactory_common::PROTOCOL_VERSION;
use aifactory_common::handshake;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork};

/// The child holding the connections; dropping it kills the child, which closes them.
pub struct IdlePeers {
    child: Pid,
    /// How many connects succeeded.
    pub opened: u32,
}

/// Whether each connection says the protocol hello (and reads the daemon's) before the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello {
    Never,
    Said,
}

impl IdlePeers {
    /// Opens `count` connections to `socket` as `uid`/`gid` and returns once all were tried.
    /// Needs root (to take the other uid).
    pub fn hold(socket: &Path, uid: u32, gid: u32, count: u32, hello: Hello) -> IdlePeers {
        let addr = sockaddr(socket);
        let greeting = handshake::hello(PROTOCOL_VERSION);
        let (report_rd, report_wr) = nix::unistd::pipe().expect("pipe");
        // SAFETY: the child calls only async-signal-safe functions (raw syscalls on memory
        // prepared before the fork) and never returns: it waits in pause() until killed.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let wr = report_wr.as_raw_fd();
                // SAFETY: raw syscalls on values prepared before the fork.
                unsafe { child(&addr, uid, gid, count, hello, &greeting, wr) }
            }
            ForkResult::Parent { child } => {
                drop(report_wr);
                let mut buf = [0u8; 4];
                let read =
                    nix::unistd::read(&report_rd, &mut buf).expect("read the child's report");
                assert_eq!(
                    read, 4,
                    "the connection-holding child died before reporting"
                );
                IdlePeers {
                    child,
                    opened: u32::from_ne_bytes(buf),
                }
            }
        }
    }
}

impl Drop for IdlePeers {
    fn drop(&mut self) {
        let _ = kill(self.child, Signal::SIGKILL);
        let _ = waitpid(self.child, None);
    }
}

fn sockaddr(socket: &Path) -> libc::sockaddr_un {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = socket.as_os_str().as_bytes();
    assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    addr
}

/// The forked child: become `uid`, connect `count` times, report how many connected, wait.
///
/// # Safety
/// Only to be called in a freshly forked child.
unsafe fn child(
    addr: &libc::sockaddr_un,
    uid: u32,
    gid: u32,
    count: u32,
    hello: Hello,
    greeting: &[u8],
    report: i32,
) -> ! {
    // SAFETY: plain syscalls on valid pointers; see the caller.
    unsafe {
        let limit = libc::rlimit {
            rlim_cur: u64::from(count) + 64,
            rlim_max: u64::from(count) + 64,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            libc::_exit(2);
        }
        let mut opened: u32 = 0;
        for _ in 0..count {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 {
                break;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, (addr as *const libc::sockaddr_un).cast(), len) != 0 {
                libc::close(fd);
                continue;
            }
            opened += 1;
            if hello == Hello::Said {
                libc::send(
                    fd,
                    greeting.as_ptr().cast(),
                    greeting.len(),
                    libc::MSG_NOSIGNAL,
                );
                let mut theirs = [0u8; handshake::HELLO_LEN];
                libc::recv(
                    fd,
                    theirs.as_mut_ptr().cast(),
                    theirs.len(),
                    libc::MSG_WAITALL,
                );
            }
        }
        let bytes = opened.to_ne_bytes();
        libc::write(report, bytes.as_ptr().cast(), bytes.len());
        loop {
            libc::pause();
        }
    }
}
