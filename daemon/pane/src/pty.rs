//! The PTY: opening the pair, and the master side the monitor keeps (non-blocking, driven by
//! tokio's reactor) for output, input and resizes.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::pty::Winsize;
use tokio::io::unix::AsyncFd;

#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    #[error(
        "cannot open a PTY: {0}: check that /dev/pts is mounted and that the PTY limit (/proc/sys/kernel/pty/max) is not reached"
    )]
    Open(nix::Error),
    #[error("cannot make the PTY master non-blocking: {0}")]
    Flags(nix::Error),
    #[error("cannot watch the PTY master: {0}")]
    Register(std::io::Error),
}

impl From<PtyError> for super::StartError {
    fn from(e: PtyError) -> Self {
        super::StartError::Process(super::process::ProcessError::Pty(e))
    }
}

fn winsize(cols: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Opens a PTY pair of the given size: (master, slave). Neither end leaks into the program
/// beyond its stdio: the program's pre-exec marks every other descriptor close-on-exec.
pub fn open(cols: u16, rows: u16) -> Result<(OwnedFd, OwnedFd), PtyError> {
    let pair = nix::pty::openpty(&winsize(cols, rows), None).map_err(PtyError::Open)?;
    Ok((pair.master, pair.slave))
}

/// The monitor's end of the PTY.
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

impl Master {
    pub fn new(fd: OwnedFd) -> Result<Master, PtyError> {
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(PtyError::Flags)?;
        let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(PtyError::Flags)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(flags)).map_err(PtyError::Flags)?;
        // SAFETY: the AsyncFd owns the descriptor from here on; nothing else closes or
        // replaces it.
        let fd =
            unsafe { AsyncFd::register(fd) }.map_err(|e| PtyError::Register(e.into_parts().1))?;
        Ok(Master { fd })
    }

    /// Reads what the program wrote: everything the terminal holds now, up to `buf.len()`;
    /// EIO once nothing holds the terminal any more.
    ///
    /// One read(2) of a PTY returns at most its 4 KiB line buffer, and the kernel refills that
    /// from the pending input only when asked, so this reads until the terminal has nothing
    /// more (or `buf` is full): a burst of output costs one append and one wake-up of the
    /// subscribers per 64 KiB instead of per 4 KiB, and a trickle is returned at once.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        loop {
            let mut ready = self.fd.readable().await?;
            while filled < buf.len() {
                let rest = &mut buf[filled..];
                match ready.try_io(|fd| Ok(nix::unistd::read(fd.get_ref(), rest)?)) {
                    Ok(Ok(0)) => return Ok(filled),
                    Ok(Ok(n)) => filled += n,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // EIO (and any other error) persists: the next call reports it, after
                    // these bytes.
                    Ok(Err(_)) if filled > 0 => return Ok(filled),
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => break,
                }
            }
            if filled > 0 {
                return Ok(filled);
            }
        }
    }

    /// Writes some of `data` to the program's input, waiting while the terminal's input queue
    /// is full (the program is not reading); returns how many bytes it took. EIO once nothing
    /// holds the terminal any more: that input can never be read.
    pub async fn write(&self, data: &[u8]) -> std::io::Result<usize> {
        loop {
            let mut ready = self.fd.writable().await?;
            // A hang-up stays reported (tokio never clears it), so a full queue on a terminal
            // nobody holds would wake this loop at once, forever, and starve the monitor's one
            // thread: no reaping, no output, no requests.
            let hung_up = ready.ready().is_write_closed();
            match ready.try_io(|fd| Ok(nix::unistd::write(fd.get_ref(), data)?)) {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(result) => return result,
                Err(_would_block) if hung_up => {
                    return Err(std::io::Error::from_raw_os_error(libc::EIO));
                }
                Err(_would_block) => {}
            }
        }
    }

    /// Sets the terminal size; the kernel sends SIGWINCH to the foreground process group.
    pub fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        let size = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads one `struct winsize` from the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(self.fd.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Issue 15, item 14: the tty layer hands out at most 4 KiB per read(2), so a pump that
    /// reads once per wake-up makes one append (and one wake-up of every subscriber) per 4 KiB
    /// however much the program wrote. One `read` must take everything the terminal already
    /// holds, up to the buffer, as the minimal reader's 64 KiB reads are meant to.
    #[tokio::test(flavor = "current_thread")]
    async fn one_read_takes_everything_the_terminal_holds() {
        let (master, slave) = open(120, 40).expect("open a PTY");
        let master = Master::new(master).expect("watch the master");
        // More than one read(2) returns (4 KiB), less than a PTY holds before its writer
        // blocks (its 4 KiB line buffer and 8 KiB of pending input). No newline, so the
        // terminal's output processing (\n → \r\n) changes nothing.
        let sent = vec![b'x'; 6 << 10];
        let (done, written) = std::sync::mpsc::channel();
        let writer = {
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut slave = std::fs::File::from(slave);
                let result = std::io::Write::write_all(&mut slave, &sent);
                let _ = done.send(result);
                // The slave stays open until the reader is done: no EIO in between.
                slave
            })
        };
        written
            .recv_timeout(Duration::from_secs(30))
            .expect("the PTY took 6 KiB without a reader")
            .expect("write to the slave");

        let mut buf = vec![0u8; 64 << 10];
        let n = master.read(&mut buf).await.expect("read the master");
        assert_eq!(
            n,
            sent.len(),
            "one read took {n} of the {} bytes the terminal held",
            sent.len()
        );
        assert!(buf[..n].iter().all(|&b| b == b'x'));
        drop(writer.join().expect("the writer thread"));
    }
}
