//! Why the state directory takes no writes, as the filesystem holding it tells: mounted
//! read-only, or out of space. Errors about the state directory name that cause and its fix
//! rather than permissions, which are not the problem then (and never are for root).

use std::path::Path;

use nix::errno::Errno;
use nix::sys::statvfs::{FsFlags, statvfs};

/// A cause found on the filesystem itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Mounted read-only (`ST_RDONLY`, or the OS said EROFS).
    ReadOnlyMount,
    /// No block or inode left to this user (or the OS said ENOSPC or EDQUOT).
    Full,
}

impl Cause {
    /// What is wrong with `dir` and what to do, as one clause.
    pub fn fix(self, dir: &Path) -> String {
        let dir = dir.display();
        match self {
            Cause::ReadOnlyMount => format!(
                "{dir} is on a read-only file system: remount it read-write or set state_dir elsewhere"
            ),
            Cause::Full => format!(
                "the disk is full: free space on the filesystem holding {dir} (`df -h {dir}`) or set state_dir elsewhere"
            ),
        }
    }
}

/// The cause of a failed write under `dir`: the OS error when it says, else the filesystem's
/// own state. SQLite reports the last of several errors (ENOENT after EROFS, when it falls
/// back to opening its journal read-only), so the mount flags are asked whatever the errno.
pub fn cause(dir: &Path, errno: Option<i32>) -> Option<Cause> {
    let errno = errno.map(Errno::from_raw);
    match errno {
        Some(Errno::EROFS) => return Some(Cause::ReadOnlyMount),
        Some(Errno::ENOSPC | Errno::EDQUOT) => return Some(Cause::Full),
        _ => {}
    }
    let stat = statvfs(dir).ok()?;
    if stat.flags().contains(FsFlags::ST_RDONLY) {
        return Some(Cause::ReadOnlyMount);
    }
    // A refused permission is its own cause, however full the disk.
    if matches!(errno, Some(Errno::EACCES | Errno::EPERM)) {
        return None;
    }
    // Root may use the blocks reserved for it; others may not.
    let blocks = if nix::unistd::geteuid().is_root() {
        stat.blocks_free()
    } else {
        stat.blocks_available()
    };
    // Filesystems without an inode count (btrfs) report none at all.
    let no_inodes = stat.files() > 0 && stat.files_available() == 0;
    (blocks == 0 || no_inodes).then_some(Cause::Full)
}

/// Why the state directory `dir` did not take the probe file, with the fix.
pub fn refusal(dir: &Path, e: &std::io::Error) -> String {
    match cause(dir, e.raw_os_error()) {
        Some(cause) => format!(
            "{} does not take writes ({e}): {}",
            dir.display(),
            cause.fix(dir)
        ),
        None => format!(
            "the state directory {} is not writable ({e}): make it writable by uid {}",
            dir.display(),
            nix::unistd::geteuid()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_error_names_the_cause_first() {
        let dir = Path::new("/");
        assert_eq!(cause(dir, Some(libc::EROFS)), Some(Cause::ReadOnlyMount));
        assert_eq!(cause(dir, Some(libc::ENOSPC)), Some(Cause::Full));
        assert_eq!(cause(dir, Some(libc::EDQUOT)), Some(Cause::Full));
        let fix = Cause::ReadOnlyMount.fix(Path::new("/var/lib/aifactory"));
        assert!(
            fix.contains("read-only file system: remount it read-write or set state_dir elsewhere"),
            "{fix}"
        );
        assert!(Cause::Full.fix(dir).contains("df -h /"));
    }

    #[test]
    fn a_writable_directory_with_space_has_no_cause() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cause(dir.path(), Some(libc::EACCES)), None);
        assert_eq!(cause(dir.path(), None), None);
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(refusal(dir.path(), &e).contains("make it writable by uid"));
    }
}
