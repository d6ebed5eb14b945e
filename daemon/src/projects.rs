//! The projects registry: validating a work tree, detecting its provider, and the `projects`
//! table. A project is committed to the database before anyone hears it was added, so a `show`
//! right after an `add` always finds it.

use std::path::{Path, PathBuf};

use aifactory_common::protocol::{
    ErrorCode, ErrorReply, ImportReport, LegacyProject, ProjectAdd, ProjectInfo, Provider,
    SkippedImport,
};
use aifactory_common::provider;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::git;
use crate::store::{Store, StoreError};

const MAX_NAME_LEN: usize = 100;
const COLUMNS: &str = "id, name, path, origin_url, provider, detected_provider, provider_manual, default_branch, created_at";

impl From<StoreError> for ErrorReply {
    fn from(e: StoreError) -> Self {
        let code = match e {
            StoreError::WriteFailed(_) | StoreError::Gone => ErrorCode::Unavailable,
            StoreError::Sqlite { .. } => ErrorCode::Internal,
        };
        ErrorReply::new(code, e.to_string())
    }
}

fn invalid(message: String) -> ErrorReply {
    ErrorReply::new(ErrorCode::Invalid, message)
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<ProjectInfo> {
    let provider: String = row.get(4)?;
    let detected: String = row.get(5)?;
    Ok(ProjectInfo {
        id: row.get(0)?,
        name: row.get(1)?,
        path: PathBuf::from(row.get::<_, String>(2)?),
        origin_url: row.get(3)?,
        provider: Provider::parse(&provider).unwrap_or(Provider::Unknown),
        detected_provider: Provider::parse(&detected).unwrap_or(Provider::Unknown),
        provider_manual: row.get(6)?,
        default_branch: row.get(7)?,
        created_at: row.get(8)?,
    })
}

fn by_key(conn: &Connection, key: &str) -> rusqlite::Result<Option<ProjectInfo>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM projects WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1"),
        params![key],
        from_row,
    )
    .optional()
}

fn by_path(conn: &Connection, path: &str) -> rusqlite::Result<Option<ProjectInfo>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM projects WHERE path = ?1"),
        params![path],
        from_row,
    )
    .optional()
}

fn by_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<ProjectInfo>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM projects WHERE name = ?1"),
        params![name],
        from_row,
    )
    .optional()
}

fn not_found(key: &str) -> ErrorReply {
    ErrorReply::new(
        ErrorCode::NotFound,
        format!("no project with id or name `{key}`: see `aifactoryctl projects list`"),
    )
}

fn is_id_shaped(name: &str) -> bool {
    name.len() == 10 && name.starts_with("p-") && name[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_name(name: &str) -> Result<(), ErrorReply> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "project name `{name}` is not usable: give 1 to {MAX_NAME_LEN} printable characters with --name"
        )));
    }
    if is_id_shaped(name) {
        return Err(invalid(format!(
            "project name `{name}` looks like a project id: choose another with --name"
        )));
    }
    Ok(())
}

/// What the daemon found at a path it was asked to register.
struct Inspected {
    path: PathBuf,
    origin_url: Option<String>,
    detected: Provider,
    default_branch: String,
}

/// Checks that `path` exists, is a directory the daemon can read, and is a git work tree.
async fn inspect(path: &Path) -> Result<Inspected, ErrorReply> {
    let uid = nix::unistd::geteuid();
    if !path.is_absolute() {
        return Err(invalid(format!(
            "{} is not an absolute path: clients resolve relative paths before sending them",
            path.display()
        )));
    }
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ErrorReply::new(
                ErrorCode::NotFound,
                format!("{} does not exist: check the path", path.display()),
            ));
        }
        Err(e) => {
            return Err(invalid(format!(
                "cannot inspect {} ({e}): make it and its parents accessible to aifactoryd (uid {uid})",
                path.display()
            )));
        }
    };
    if !meta.is_dir() {
        return Err(invalid(format!(
            "{} is not a directory: give the project's work tree",
            path.display()
        )));
    }
    if let Err(e) = std::fs::read_dir(path) {
        return Err(invalid(format!(
            "{} is not readable by aifactoryd (uid {uid}): {e}: grant it read access (e.g. `chmod o+rx` or add uid {uid} to the owning group)",
            path.display()
        )));
    }
    let canonical = std::fs::canonicalize(path)
        .map_err(|e| invalid(format!("cannot resolve {} ({e})", path.display())))?;
    git::check_work_tree(&canonical).await.map_err(|reason| {
        // git's own advice (e.g. for "dubious ownership") is the fix when it gives one.
        let fix = if reason.contains("not a git repository") {
            ": run `git init` there, or give the repository's directory"
        } else {
            ""
        };
        invalid(format!(
            "{} is not a git work tree aifactoryd (uid {uid}) can use: git says: {reason}{fix}",
            canonical.display()
        ))
    })?;
    let origin_url = git::origin_url(&canonical).await;
    let detected = origin_url
        .as_deref()
        .map_or(Provider::Unknown, provider::detect);
    Ok(Inspected {
        default_branch: git::default_branch(&canonical).await,
        path: canonical,
        origin_url,
        detected,
    })
}

fn path_text(path: &Path) -> Result<String, ErrorReply> {
    path.to_str().map(str::to_string).ok_or_else(|| {
        invalid(format!(
            "{} is not valid UTF-8: rename the directory",
            path.display()
        ))
    })
}

/// Inserts a project unless its path or name is taken; the outcome is committed before it is
/// returned.
async fn insert(
    store: &Store,
    found: Inspected,
    name: String,
    manual: Option<Provider>,
) -> Result<ProjectInfo, ErrorReply> {
    let path = path_text(&found.path)?;
    let provider = manual.unwrap_or(found.detected);
    store
        .write(move |tx| {
            if let Some(existing) = by_path(tx, &path)? {
                return Ok(Err(ErrorReply::new(
                    ErrorCode::Conflict,
                    format!(
                        "{path} is already registered as project `{}` ({}): use it, or remove it first with `aifactoryctl projects remove {}`",
                        existing.name, existing.id, existing.id
                    ),
                )));
            }
            if let Some(existing) = by_name(tx, &name)? {
                return Ok(Err(ErrorReply::new(
                    ErrorCode::Conflict,
                    format!(
                        "a project named `{name}` already exists ({}, at {}): choose another name with --name",
                        existing.id,
                        existing.path.display()
                    ),
                )));
            }
            let id: String = tx.query_row(
                &format!(
                    "INSERT INTO projects ({COLUMNS})
                     VALUES ('p-' || lower(hex(randomblob(4))), ?1, ?2, ?3, ?4, ?5, ?6, ?7,
                             strftime('%Y-%m-%dT%H:%M:%SZ','now'))
                     RETURNING id"
                ),
                params![
                    name,
                    path,
                    found.origin_url,
                    provider.as_str(),
                    found.detected.as_str(),
                    manual.is_some(),
                    found.default_branch,
                ],
                |r| r.get(0),
            )?;
            Ok(by_key(tx, &id)?.ok_or_else(|| not_found(&id)))
        })
        .await?
}

pub async fn add(store: &Store, request: ProjectAdd) -> Result<ProjectInfo, ErrorReply> {
    let found = inspect(&request.path).await?;
    let name = match request.name {
        Some(name) => name,
        None => found
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into()),
    };
    check_name(&name)?;
    let project = insert(store, found, name, request.provider).await?;
    tracing::info!(project_id = %project.id, name = %project.name, path = %project.path.display(), provider = project.provider.as_str(), "project added");
    Ok(project)
}

pub async fn list(store: &Store) -> Result<Vec<ProjectInfo>, ErrorReply> {
    Ok(store
        .read(|conn| {
            conn.prepare(&format!(
                "SELECT {COLUMNS} FROM projects ORDER BY created_at, name"
            ))?
            .query_map([], from_row)?
            .collect()
        })
        .await?)
}

pub async fn show(store: &Store, key: String) -> Result<ProjectInfo, ErrorReply> {
    let lookup = key.clone();
    store
        .read(move |conn| by_key(conn, &lookup))
        .await?
        .ok_or_else(|| not_found(&key))
}

pub async fn remove(store: &Store, key: String) -> Result<ProjectInfo, ErrorReply> {
    let removed = store
        .write(move |tx| {
            let Some(project) = by_key(tx, &key)? else {
                return Ok(Err(not_found(&key)));
            };
            let tasks: i64 = tx.query_row(
                "SELECT count(*) FROM tasks WHERE project_id = ?1",
                params![project.id],
                |r| r.get(0),
            )?;
            if tasks > 0 {
                return Ok(Err(ErrorReply::new(
                    ErrorCode::Conflict,
                    format!(
                        "project {} still has {tasks} task(s): remove them first (`aifactoryctl tasks list --project {}`, then `aifactoryctl tasks remove ID`)",
                        project.name, project.id
                    ),
                )));
            }
            tx.execute("DELETE FROM projects WHERE id = ?1", params![project.id])?;
            Ok(Ok(project))
        })
        .await??;
    tracing::info!(project_id = %removed.id, name = %removed.name, "project removed (files untouched)");
    Ok(removed)
}

/// Imports the old product's entries; each one that cannot be imported is reported with why.
/// Running it again imports nothing new: already registered paths are skipped.
pub async fn import_legacy(
    store: &Store,
    source: PathBuf,
    entries: Vec<LegacyProject>,
) -> Result<ImportReport, ErrorReply> {
    let mut report = ImportReport {
        imported: Vec::new(),
        skipped: Vec::new(),
    };
    for entry in entries {
        let skip = |reason: String| SkippedImport {
            path: entry.path.clone(),
            name: entry.name.clone(),
            reason,
        };
        let found = match inspect(&entry.path).await {
            Ok(found) => found,
            Err(e) => {
                report.skipped.push(skip(e.message));
                continue;
            }
        };
        let name = entry.name.clone().unwrap_or_else(|| {
            found
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".into())
        });
        if let Err(e) = check_name(&name) {
            report.skipped.push(skip(e.message));
            continue;
        }
        match insert(store, found, name, None).await {
            Ok(project) => report.imported.push(project),
            Err(e) if e.code == ErrorCode::Conflict => report.skipped.push(skip(e.message)),
            // A failed write stops the import: nothing after it would be saved either.
            Err(e) => return Err(e),
        }
    }
    let (imported, skipped) = (report.imported.len() as i64, report.skipped.len() as i64);
    let source_text = source.display().to_string();
    store
        .write(move |tx| {
            tx.execute(
                "INSERT INTO legacy_imports (source, imported_at, imported, skipped)
                 VALUES (?1, strftime('%Y-%m-%dT%H:%M:%SZ','now'), ?2, ?3)",
                params![source_text, imported, skipped],
            )
        })
        .await?;
    tracing::info!(source = %source.display(), imported, skipped, "legacy projects imported");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("web-app").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name("p-0123abcd").is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
        // The bound is in characters, as the message and the OpenAPI schema say.
        assert!(check_name(&"é".repeat(100)).is_ok());
        assert!(check_name(&"é".repeat(101)).is_err());
    }
}
