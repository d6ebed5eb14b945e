//! The small files of a pane directory, written atomically (their timestamps come from
//! [`aifactory_common::time`]).
//!
//! `meta.json`, `exit.json` and `rotation.json` are written to `<name>.tmp` (0600) and renamed
//! over the real name, so a reader (or a daemon adopting the pane after a crash) sees either
//! the old or the new content, never a torn one. They are not fsynced: they are atomic against
//! a crash of any process, and a power loss ends the session (and the tail of `output.log`)
//! anyway.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Writes `value` as JSON to `<dir>/<name>.tmp` and returns that path; [`commit`] renames it.
pub fn write_temp<T: Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<PathBuf> {
    let mut bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    Ok(tmp)
}

/// Renames a file from [`write_temp`] over `<dir>/<name>`.
pub fn commit(tmp: &Path, dir: &Path, name: &str) -> std::io::Result<()> {
    std::fs::rename(tmp, dir.join(name))
}

/// Replaces `<dir>/<name>` with `value` as JSON, atomically.
pub fn write_json_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    let tmp = write_temp(dir, name, value)?;
    commit(&tmp, dir, name).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        write_json_atomic(dir.path(), "x.json", &serde_json::json!({"base": 5})).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.json")).unwrap(),
            "{\"base\":5}\n"
        );
        assert!(!dir.path().join("x.json.tmp").exists());
    }
}
