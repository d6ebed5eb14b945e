//! The small files of a pane directory: atomic JSON writes and their timestamps.
//!
//! `meta.json`, `exit.json` and `rotation.json` are written to `<name>.tmp` (0600) and renamed
//! over the real name, so a reader (or a daemon adopting the pane after a crash) sees either
//! the old or the new content, never a torn one. They are not fsynced: they are atomic against
//! a crash of any process, and a power loss ends the session (and the tail of `output.log`)
//! anyway.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Now as RFC 3339 UTC with seconds (`2025-11-26T10:04:05Z`), without a clock crate.
pub fn now_rfc3339() -> String {
    // A clock before 1970 is a broken clock; the epoch is as good an answer as any.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_704_067_199), "2023-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_764_151_445), "2025-11-26T10:04:05Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }

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
