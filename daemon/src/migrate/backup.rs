//! Backups taken before a non-empty database is migrated: SQLite online backups in
//! `<state dir>/backups/aifactory-v<from>-<time>.db`, of which the newest five are kept, and
//! the newest one is named in every refusal so the operator knows what to restore.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::MigrateError;

pub const BACKUP_DIR: &str = "backups";
const BACKUPS_KEPT: usize = 5;

pub fn newest_backup(state_dir: &Path) -> Option<PathBuf> {
    backups(state_dir).pop()
}

/// Backups, oldest first (their names sort by time).
fn backups(state_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(state_dir.join(BACKUP_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("aifactory-v") && n.ends_with(".db"))
        })
        .collect();
    found.sort_by_key(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        // aifactory-v<from>-<timestamp>.db: sort by timestamp, then name.
        name.map(|n| {
            let stamp = n
                .rsplit_once('-')
                .map(|(_, s)| s.to_string())
                .unwrap_or_default();
            (stamp, n)
        })
    });
    found
}

/// Copies the live database with SQLite's online backup API and keeps the newest five.
pub(super) fn backup(
    conn: &Connection,
    file: &Path,
    state_dir: &Path,
    from: u32,
) -> Result<PathBuf, MigrateError> {
    let dir = state_dir.join(BACKUP_DIR);
    let stamp = aifactory_common::time::now_rfc3339().replace([':', '-'], "");
    let path = dir.join(format!("aifactory-v{from}-{stamp}.db"));
    let err = |message: String| MigrateError::Backup {
        file: file.to_path_buf(),
        backup: path.clone(),
        message,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| err(e.to_string()))?;
    conn.backup(
        rusqlite::MAIN_DB,
        &path,
        None::<fn(rusqlite::backup::Progress)>,
    )
    .map_err(|e| err(e.to_string()))?;
    tracing::info!(backup = %path.display(), "backed up the database before migrating");
    let all = backups(state_dir);
    for old in all.iter().take(all.len().saturating_sub(BACKUPS_KEPT)) {
        if let Err(e) = std::fs::remove_file(old) {
            tracing::warn!(backup = %old.display(), error = %e, "cannot remove an old backup");
        }
    }
    Ok(path)
}
