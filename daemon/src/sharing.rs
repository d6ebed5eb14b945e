//! How what the daemon creates inside a project is shared with the project's people: a task's
//! worktree and spec directory get the project's group and modes, not the daemon's own umask
//! (077; `UMask=0077` under the packaged service), so the project's owner and group can enter
//! them, read the agent's work and review its branch.
//!
//! Modes: the child that creates them (`git worktree add`, `mkdir -p`) runs with a umask made
//! from the directory they are created in: it keeps what that directory grants its group and
//! others, and never lets others write. Group: the kernel's, not ours: in a setgid project
//! directory every new directory inherits the project's group and the setgid bit. The daemon
//! does not chmod afterwards: under the packaged service (`RestrictSUIDSGID=yes`) a chmod that
//! keeps a setgid bit fails, and one that drops it loses the project's group for what comes
//! later; a child with the right umask needs neither.
//!
//! What the agent writes later: the pane monitor gives its program umask 002 when it starts in
//! a group-writable directory (022 elsewhere), so its files are group-readable (and writable
//! in a shared project), and in a setgid tree they get the project's group. A default ACL
//! would do too, but needs ACL support in the project's file system; a setgid project
//! directory and a group umask need nothing but the modes README asks for.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    #[error(
        "cannot read the modes of {}: {source}: check that it exists and that aifactoryd's user may reach it",
        path.display()
    )]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run mkdir ({0}): install coreutils and make sure it is on aifactoryd's PATH")]
    Spawn(#[source] std::io::Error),
    /// mkdir refused; its own words (trimmed stderr).
    #[error("mkdir says: {stderr}")]
    Mkdir { stderr: String },
}

/// The umask for what the daemon creates in a directory of a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sharing {
    umask: u32,
}

impl Sharing {
    /// The modes of what is created in `dir`: those `dir` has.
    pub fn of(dir: &Path) -> Result<Sharing, SharingError> {
        let meta = std::fs::metadata(dir).map_err(|source| SharingError::Stat {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Sharing::from_mode(meta.permissions().mode()))
    }

    /// Masks what `mode` does not grant group and others, and others' write in any case.
    fn from_mode(mode: u32) -> Sharing {
        Sharing {
            umask: (!mode & 0o077) | 0o002,
        }
    }

    /// Makes `command`'s child create its files and directories with these modes.
    pub fn apply(self, command: &mut Command) {
        let umask = self.umask as libc::mode_t;
        // SAFETY: umask(2) is async-signal-safe, allocates nothing and changes only the
        // child's own file-creation mask.
        unsafe {
            command.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
    }

    /// Creates `dir` and its missing parents with these modes (a `mkdir -p` child, for the
    /// umask: see the module's comment).
    pub async fn create_dir_all(self, dir: &Path) -> Result<(), SharingError> {
        if dir.is_dir() {
            return Ok(());
        }
        let mut command = Command::new("mkdir");
        command
            .arg("-p")
            .arg("--")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        self.apply(&mut command);
        let out = command.output().await.map_err(SharingError::Spawn)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(SharingError::Mkdir {
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_the_directory_never_writable_by_others() {
        assert_eq!(Sharing::from_mode(0o2775).umask, 0o002);
        assert_eq!(Sharing::from_mode(0o2770).umask, 0o007);
        assert_eq!(Sharing::from_mode(0o755).umask, 0o022);
        assert_eq!(Sharing::from_mode(0o700).umask, 0o077);
        assert_eq!(Sharing::from_mode(0o777).umask, 0o002);
    }

    #[tokio::test]
    async fn a_child_creates_with_the_directorys_modes_whatever_our_umask() {
        let project = tempfile::tempdir().unwrap();
        std::fs::set_permissions(project.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        let sharing = Sharing::of(project.path()).unwrap();
        let dir = project.path().join("a/b");
        sharing.create_dir_all(&dir).await.unwrap();
        for made in [project.path().join("a"), dir] {
            let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o750, "{}", made.display());
        }
    }
}
