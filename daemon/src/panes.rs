//! The pane directories: where each session's output, metadata and monitor socket live.
//!
//! The root is the first candidate that really works (a file is created, written and removed
//! in it; `access()` is not trusted): config `panes_dir`, `$RUNTIME_DIRECTORY/panes`,
//! `/run/aifactory/panes`, `$XDG_RUNTIME_DIR/aifactory-rmux/panes`. A root or pane directory
//! that is a symlink, owned by another uid, or writable by group or others is refused: anyone
//! who could swap it could read a session's output or impersonate its monitor. A candidate on
//! a full file system is passed over with that reason ([`SkipReason::NoSpace`]), and a session
//! whose pane directory cannot be written is refused before its program runs.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aifactory_common::pane::{OUTPUT_LOG, OUTPUT_LOG_OLD, ROTATION_FILE};
use aifactory_common::protocol::SkipReason;

/// The chosen root and why the earlier candidates were passed over.
#[derive(Debug, Clone)]
pub struct PanesRoot {
    pub path: PathBuf,
    /// `(candidate, why it was not used)`, in order.
    pub skipped: Vec<(PathBuf, SkipReason)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PanesError {
    #[error(
        "no usable pane directory: {}: set panes_dir in the config to a directory aifactoryd (uid {uid}) can create and write",
        tried.iter().map(|(p, why)| format!("{} ({why})", p.display())).collect::<Vec<_>>().join("; ")
    )]
    NoRoot {
        tried: Vec<(PathBuf, SkipReason)>,
        uid: u32,
    },
    #[error("pane directory {}: {reason}", path.display())]
    Unsafe { path: PathBuf, reason: SkipReason },
    #[error(
        "cannot start a session: the panes root {} has no free space ({source}): free space there (`df -h {}`), or set panes_dir in the config to a directory with room and restart aifactoryd (running sessions stay where they are)",
        root.display(),
        root.display()
    )]
    NoSpace {
        root: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The candidates in order of preference.
pub fn candidates(
    configured: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = configured {
        out.push(p.to_path_buf());
    }
    if let Some(dir) = env("RUNTIME_DIRECTORY") {
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        if !first.is_empty() {
            out.push(PathBuf::from(first).join("panes"));
        }
    }
    out.push(PathBuf::from("/run/aifactory/panes"));
    if let Some(dir) = env("XDG_RUNTIME_DIR") {
        out.push(PathBuf::from(dir).join("aifactory-rmux/panes"));
    }
    out
}

/// Picks the first candidate that is safe and really writable.
pub fn choose(candidates: &[PathBuf]) -> Result<PanesRoot, PanesError> {
    let mut skipped = Vec::new();
    for candidate in candidates {
        match prepare(candidate) {
            Ok(()) => {
                for (path, why) in &skipped {
                    let path: &PathBuf = path;
                    tracing::warn!(candidate = %path.display(), "pane directory not used: {why}");
                }
                tracing::info!(panes_dir = %candidate.display(), fallbacks = skipped.len(), "pane directory chosen");
                return Ok(PanesRoot {
                    path: candidate.clone(),
                    skipped,
                });
            }
            Err(why) => skipped.push((candidate.clone(), why)),
        }
    }
    Err(PanesError::NoRoot {
        tried: skipped,
        uid: nix::unistd::geteuid().as_raw(),
    })
}

/// Creates (0700) and checks one candidate, then proves it writable.
fn prepare(dir: &Path) -> Result<(), SkipReason> {
    if let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        return Err(SkipReason::CannotCreate {
            error: e.to_string(),
        });
    }
    check_private(dir)?;
    let (written, removed) = probe(dir);
    match (written, removed) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), _) if is_full(&e) => Err(SkipReason::NoSpace {
            dir: dir.to_path_buf(),
            error: e.to_string(),
        }),
        (Err(e), _) => Err(SkipReason::NotWritable {
            error: e.to_string(),
        }),
        (_, Err(e)) => Err(SkipReason::CannotRemove {
            error: e.to_string(),
        }),
    }
}

/// Creates, writes and removes a small file in `dir`: whether it was written, and removed.
fn probe(dir: &Path) -> (std::io::Result<()>, std::io::Result<()>) {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe"));
    (written, std::fs::remove_file(&probe))
}

/// The file system is full, or the user's quota is used up.
fn is_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Refuses a symlink, a directory of another uid, or one others can write.
pub fn check_private(dir: &Path) -> Result<(), SkipReason> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SkipReason::Missing,
        _ => SkipReason::CannotInspect {
            error: e.to_string(),
        },
    })?;
    if meta.file_type().is_symlink() {
        return Err(SkipReason::Symlink);
    }
    if !meta.is_dir() {
        return Err(SkipReason::NotADirectory);
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(SkipReason::OwnedByOther {
            dir: dir.to_path_buf(),
            owner: meta.uid(),
            daemon_uid: me,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(SkipReason::OpenToOthers {
            dir: dir.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Creates one session's pane directory (0700), refusing anything already there, and proves
/// files can be written in it: on a full disk a monitor could still create its files but
/// never write them, and the session would "run" with empty ones.
pub fn create_session_dir(root: &Path, session_id: &str) -> Result<PathBuf, PanesError> {
    check_private(root).map_err(|reason| PanesError::Unsafe {
        path: root.to_path_buf(),
        reason,
    })?;
    let dir = root.join(session_id);
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|source| PanesError::Io {
            action: "create the pane directory",
            path: dir.clone(),
            source,
        })?;
    if let (Err(source), _) = probe(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(if is_full(&source) {
            PanesError::NoSpace {
                root: root.to_path_buf(),
                source,
            }
        } else {
            PanesError::Io {
                action: "write a file in the pane directory",
                path: dir,
                source,
            }
        });
    }
    Ok(dir)
}

/// Where `output.log` starts (absolute offset), from `rotation.json`; 0 before any rotation.
pub fn output_base(pane: &Path) -> u64 {
    std::fs::read_to_string(pane.join(ROTATION_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("base").and_then(|b| b.as_u64()))
        .unwrap_or(0)
}

/// Reads a stopped session's output from disk, from absolute offset `from`, in chunks.
/// Returns `(first offset actually read, chunks)`; the first offset is later than `from`
/// when rotation dropped the bytes asked for.
pub struct DiskOutput {
    segments: Vec<(u64, File)>,
    pos: u64,
}

impl DiskOutput {
    pub fn open(pane: &Path, from: u64) -> std::io::Result<DiskOutput> {
        let base = output_base(pane);
        let mut segments = Vec::new();
        if let Ok(old) = File::open(pane.join(OUTPUT_LOG_OLD)) {
            let len = old.metadata()?.len();
            if len <= base {
                segments.push((base - len, old));
            }
        }
        segments.push((base, File::open(pane.join(OUTPUT_LOG))?));
        let oldest = segments.first().map_or(base, |(start, _)| *start);
        Ok(DiskOutput {
            segments,
            pos: from.max(oldest),
        })
    }

    /// The offset the next chunk starts at.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next chunk (at most `max` bytes), or `None` at the end.
    pub fn next_chunk(&mut self, max: usize) -> std::io::Result<Option<Vec<u8>>> {
        for (start, file) in self.segments.iter_mut() {
            let len = file.metadata()?.len();
            if self.pos >= *start + len || self.pos < *start {
                continue;
            }
            file.seek(SeekFrom::Start(self.pos - *start))?;
            let want = ((*start + len - self.pos) as usize).min(max);
            let mut buf = vec![0; want];
            file.read_exact(&mut buf)?;
            self.pos += want as u64;
            return Ok(Some(buf));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_working_candidate_wins_and_skips_are_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let blocked = tmp.path().join("file");
        std::fs::write(&blocked, "x").unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let good = tmp.path().join("good/panes");
        let root = choose(&[blocked.join("panes"), open.clone(), good.clone()]).unwrap();
        assert_eq!(root.path, good);
        assert_eq!(root.skipped.len(), 2);
        assert!(
            matches!(root.skipped[0].1, SkipReason::CannotCreate { .. }),
            "{:?}",
            root.skipped
        );
        assert!(
            root.skipped[0].1.to_string().contains("cannot create"),
            "{:?}",
            root.skipped
        );
        assert_eq!(
            root.skipped[1].1,
            SkipReason::OpenToOthers {
                dir: open.clone(),
                mode: 0o777
            }
        );
        assert!(
            root.skipped[1]
                .1
                .to_string()
                .contains("writable by group or others"),
            "{:?}",
            root.skipped
        );
        let mode = std::fs::metadata(&good).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn symlinks_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = check_private(&link).unwrap_err();
        assert_eq!(err, SkipReason::Symlink);
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[test]
    fn nothing_usable_lists_every_candidate() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let err = choose(&[file.join("a"), file.join("b")])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&file.join("a").display().to_string()), "{err}");
        assert!(err.contains(&file.join("b").display().to_string()), "{err}");
        assert!(err.contains("set panes_dir"), "{err}");
    }

    #[test]
    fn disk_output_spans_rotation_with_absolute_offsets() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(OUTPUT_LOG_OLD), b"0123456789").unwrap();
        std::fs::write(tmp.path().join(OUTPUT_LOG), b"abcdef").unwrap();
        std::fs::write(tmp.path().join(ROTATION_FILE), br#"{"base": 110}"#).unwrap();
        let mut out = DiskOutput::open(tmp.path(), 0).unwrap();
        assert_eq!(
            out.position(),
            100,
            "offsets before the oldest segment resume at it"
        );
        let mut all = Vec::new();
        while let Some(chunk) = out.next_chunk(4).unwrap() {
            all.extend(chunk);
        }
        assert_eq!(all, b"0123456789abcdef");
        assert_eq!(out.position(), 116);
        let mut mid = DiskOutput::open(tmp.path(), 112).unwrap();
        assert_eq!(mid.next_chunk(100).unwrap().unwrap(), b"cdef");
    }
}
