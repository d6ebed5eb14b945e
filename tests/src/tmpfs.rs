//! A tiny tmpfs mounted for one test (a disk that fills up on purpose), filled to the last
//! byte and emptied again. Mounting needs root: [`Tmpfs::mount`] says why it could not, so the
//! test can `skip` with that reason. Declare it before the [`Sandbox`](crate::Sandbox) whose
//! panes live on it ([`Sandbox::panes_under`](crate::Sandbox::panes_under)): the sandbox then
//! ends its sessions before the disk goes away.

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// The file that fills the mount.
const FILLER: &str = ".filler";

/// A mounted tmpfs, lazily unmounted when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `1m`), mode 0700, owned by `owner` (uid, gid) or by us,
    /// on a new temporary directory. `Err` says why not (not root, no mount here).
    pub fn mount(size: &str, owner: Option<(u32, u32)>) -> Result<Tmpfs, String> {
        if !crate::is_root() {
            return Err("needs root to mount a tiny tmpfs as a full disk".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("aifactory-tmpfs-")
            .tempdir()
            .map_err(|e| format!("cannot create a mount point: {e}"))?;
        let mut options = format!("size={size},mode=0700");
        if let Some((uid, gid)) = owner {
            options.push_str(&format!(",uid={uid},gid={gid}"));
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a tmpfs here: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system to the last byte.
    pub fn fill(&self) {
        let mut f =
            std::fs::File::create(self.path().join(FILLER)).expect("create the filler file");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&[0u8]).is_ok() {}
    }

    /// Gives the space back.
    pub fn free(&self) {
        std::fs::remove_file(self.path().join(FILLER)).expect("remove the filler file");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}
