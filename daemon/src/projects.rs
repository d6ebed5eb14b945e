//! The projects registry: validating a work tree, detecting its provider, and the `projects`
//! table. A project is committed to the database before anyone hears it was added, so a `show`
//! right after an `add` always finds it.

use aifactory_common::echo::echo;
use std::path::{Path, PathBuf};

use aifactory_common::protocol::{
    ImportReport, LegacyProject, ProjectAdd, ProjectInfo, Provider, SkippedImport,
};
use aifactory_common::provider;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::git;
use crate::store::{Store, StoreError};

const MAX_NAME_LEN: usize = 100;
const COLUMNS: &str = "id, name, path, origin_url, provider, detected_provider, provider_manual, default_branch, created_at";
/// A project's usage: the sums over its tasks, read with [`COLUMNS`] from `projects`.
const USAGE: &str = "(SELECT COALESCE(SUM(input_tokens), 0) FROM tasks WHERE project_id = projects.id), \
     (SELECT COALESCE(SUM(output_tokens), 0) FROM tasks WHERE project_id = projects.id), \
     (SELECT COALESCE(SUM(cache_read_tokens), 0) FROM tasks WHERE project_id = projects.id), \
     (SELECT COALESCE(SUM(cache_write_tokens), 0) FROM tasks WHERE project_id = projects.id), \
     (SELECT SUM(cost_usd) FROM tasks WHERE project_id = projects.id)";
/// A new project has used nothing.
const NO_USAGE: &str = "0, 0, 0, 0, NULL";

/// Why a project request was refused or failed; each message says what to do. The wire form
/// (with its error code) is made in `handlers::projects`.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("no project with id or name `{}`: see `aifactoryctl projects list`", echo(.0))]
    NotFound(String),
    #[error("{} is not an absolute path: clients resolve relative paths before sending them", echo(.0))]
    RelativePath(PathBuf),
    #[error("{} does not exist: check the path", echo(.0))]
    PathMissing(PathBuf),
    #[error(
        "cannot inspect {} ({source}): make it and its parents accessible to aifactoryd (uid {uid})",
        echo(path)
    )]
    CannotInspect {
        path: PathBuf,
        uid: u32,
        source: std::io::Error,
    },
    #[error("{} is not a directory: give the project's work tree", echo(.0))]
    NotADirectory(PathBuf),
    #[error(
        "{} is not readable by aifactoryd (uid {uid}): {source}: grant it read access (e.g. `chmod o+rx` or add uid {uid} to the owning group)",
        echo(path)
    )]
    Unreadable {
        path: PathBuf,
        uid: u32,
        source: std::io::Error,
    },
    #[error(
        "cannot resolve {} ({source}): check the path and its symlinks",
        echo(path)
    )]
    CannotResolve {
        path: PathBuf,
        source: std::io::Error,
    },
    /// git refused the directory; `reason` is git's own text (its advice, e.g. for "dubious
    /// ownership", is the fix when it gives one).
    #[error(
        "{} is not a git work tree aifactoryd (uid {uid}) can use: git says: {reason}{}",
        echo(path),
        if *no_repository { ": run `git init` there, or give the repository's directory" } else { "" }
    )]
    NotAWorkTree {
        path: PathBuf,
        uid: u32,
        reason: String,
        /// No repository in the directory or above it, so `git init` is the fix.
        no_repository: bool,
    },
    #[error("{} is not valid UTF-8: rename the directory", echo(.0))]
    NotUtf8(PathBuf),
    #[error(
        "project name `{}` is not usable: give 1 to {MAX_NAME_LEN} printable characters with --name",
        echo(.0)
    )]
    UnusableName(String),
    #[error("project name `{}` looks like a project id: choose another with --name", echo(.0))]
    IdShapedName(String),
    #[error("{} is already registered as project `{}` ({}): use it, or remove it first with `aifactoryctl projects remove {}`", echo(path), existing.name, existing.id, existing.id)]
    PathTaken {
        path: String,
        existing: Box<ProjectInfo>,
    },
    #[error("a project named `{}` already exists ({}, at {}): choose another name with --name", echo(name), existing.id, existing.path.display())]
    NameTaken {
        name: String,
        existing: Box<ProjectInfo>,
    },
    #[error("project {} still has {tasks} task(s): remove them first (`aifactoryctl tasks list --project {}`, then `aifactoryctl tasks remove ID`)", project.name, project.id)]
    HasTasks {
        project: Box<ProjectInfo>,
        tasks: i64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
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
        usage: crate::tasks::usage_at(row, 9)?,
    })
}

fn by_key(conn: &Connection, key: &str) -> rusqlite::Result<Option<ProjectInfo>> {
    conn.query_row(
        &format!("SELECT {COLUMNS}, {USAGE} FROM projects WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1"),
        params![key],
        from_row,
    )
    .optional()
}

fn by_path(conn: &Connection, path: &str) -> rusqlite::Result<Option<ProjectInfo>> {
    conn.query_row(
        &format!("SELECT {COLUMNS}, {USAGE} FROM projects WHERE path = ?1"),
        params![path],
        from_row,
    )
    .optional()
}

fn by_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<ProjectInfo>> {
    conn.query_row(
        &format!("SELECT {COLUMNS}, {USAGE} FROM projects WHERE name = ?1"),
        params![name],
        from_row,
    )
    .optional()
}

fn is_id_shaped(name: &str) -> bool {
    name.len() == 10 && name.starts_with("p-") && name[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_name(name: &str) -> Result<(), ProjectError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(ProjectError::UnusableName(name.to_string()));
    }
    if is_id_shaped(name) {
        return Err(ProjectError::IdShapedName(name.to_string()));
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

/// Whether no git repository holds `dir`: no `.git` in it or above it, and it is not inside a
/// bare repository (a directory with `HEAD` and `objects/`). Decides whether `git init` is the
/// advice, from the file system rather than from git's wording.
fn outside_any_repository(dir: &Path) -> bool {
    !dir.ancestors().any(|d| {
        d.join(".git").exists() || (d.join("HEAD").is_file() && d.join("objects").is_dir())
    })
}

/// Checks that `path` exists, is a directory the daemon can read, and is a git work tree.
async fn inspect(path: &Path) -> Result<Inspected, ProjectError> {
    let uid = nix::unistd::geteuid().as_raw();
    if !path.is_absolute() {
        return Err(ProjectError::RelativePath(path.to_path_buf()));
    }
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ProjectError::PathMissing(path.to_path_buf()));
        }
        Err(source) => {
            return Err(ProjectError::CannotInspect {
                path: path.to_path_buf(),
                uid,
                source,
            });
        }
    };
    if !meta.is_dir() {
        return Err(ProjectError::NotADirectory(path.to_path_buf()));
    }
    if let Err(source) = std::fs::read_dir(path) {
        return Err(ProjectError::Unreadable {
            path: path.to_path_buf(),
            uid,
            source,
        });
    }
    let canonical = std::fs::canonicalize(path).map_err(|source| ProjectError::CannotResolve {
        path: path.to_path_buf(),
        source,
    })?;
    if let Err(reason) = git::check_work_tree(&canonical).await {
        return Err(ProjectError::NotAWorkTree {
            no_repository: outside_any_repository(&canonical),
            path: canonical,
            uid,
            reason: reason.to_string(),
        });
    }
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

fn path_text(path: &Path) -> Result<String, ProjectError> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| ProjectError::NotUtf8(path.to_path_buf()))
}

/// What an insert transaction found; it is committed whichever it is.
enum Insert {
    Added(ProjectInfo),
    PathTaken(ProjectInfo),
    NameTaken(ProjectInfo),
}

/// Inserts a project unless its path or name is taken; the outcome is committed before it is
/// returned.
async fn insert(
    store: &Store,
    found: Inspected,
    name: String,
    manual: Option<Provider>,
) -> Result<ProjectInfo, ProjectError> {
    let path = path_text(&found.path)?;
    let provider = manual.unwrap_or(found.detected);
    let (path_in, name_in) = (path.clone(), name.clone());
    let outcome = store
        .write(move |tx| {
            if let Some(existing) = by_path(tx, &path_in)? {
                return Ok(Insert::PathTaken(existing));
            }
            if let Some(existing) = by_name(tx, &name_in)? {
                return Ok(Insert::NameTaken(existing));
            }
            tx.query_row(
                &format!(
                    "INSERT INTO projects ({COLUMNS})
                     VALUES ('p-' || lower(hex(randomblob(4))), ?1, ?2, ?3, ?4, ?5, ?6, ?7,
                             strftime('%Y-%m-%dT%H:%M:%SZ','now'))
                     RETURNING {COLUMNS}, {NO_USAGE}"
                ),
                params![
                    name_in,
                    path_in,
                    found.origin_url,
                    provider.as_str(),
                    found.detected.as_str(),
                    manual.is_some(),
                    found.default_branch,
                ],
                from_row,
            )
            .map(Insert::Added)
        })
        .await?;
    match outcome {
        Insert::Added(project) => Ok(project),
        Insert::PathTaken(existing) => Err(ProjectError::PathTaken {
            path,
            existing: Box::new(existing),
        }),
        Insert::NameTaken(existing) => Err(ProjectError::NameTaken {
            name,
            existing: Box::new(existing),
        }),
    }
}

pub async fn add(store: &Store, request: ProjectAdd) -> Result<ProjectInfo, ProjectError> {
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
    tracing::info!(project_id = %project.id, name = %project.name, path = %echo(&project.path), provider = project.provider.as_str(), "project added");
    Ok(project)
}

pub async fn list(store: &Store) -> Result<Vec<ProjectInfo>, ProjectError> {
    Ok(store
        .read(|conn| {
            conn.prepare(&format!(
                "SELECT {COLUMNS}, {USAGE} FROM projects ORDER BY created_at, name"
            ))?
            .query_map([], from_row)?
            .collect()
        })
        .await?)
}

pub async fn show(store: &Store, key: String) -> Result<ProjectInfo, ProjectError> {
    let lookup = key.clone();
    store
        .read(move |conn| by_key(conn, &lookup))
        .await?
        .ok_or(ProjectError::NotFound(key))
}

/// What a remove transaction found; it is committed whichever it is.
enum Removal {
    Removed(ProjectInfo),
    Missing,
    HasTasks(ProjectInfo, i64),
}

pub async fn remove(store: &Store, key: String) -> Result<ProjectInfo, ProjectError> {
    let lookup = key.clone();
    let outcome = store
        .write(move |tx| {
            let Some(project) = by_key(tx, &lookup)? else {
                return Ok(Removal::Missing);
            };
            let tasks: i64 = tx.query_row(
                "SELECT count(*) FROM tasks WHERE project_id = ?1",
                params![project.id],
                |r| r.get(0),
            )?;
            if tasks > 0 {
                return Ok(Removal::HasTasks(project, tasks));
            }
            tx.execute("DELETE FROM projects WHERE id = ?1", params![project.id])?;
            Ok(Removal::Removed(project))
        })
        .await?;
    let removed = match outcome {
        Removal::Removed(project) => project,
        Removal::Missing => return Err(ProjectError::NotFound(key)),
        Removal::HasTasks(project, tasks) => {
            return Err(ProjectError::HasTasks {
                project: Box::new(project),
                tasks,
            });
        }
    };
    tracing::info!(project_id = %removed.id, name = %removed.name, "project removed (files untouched)");
    Ok(removed)
}

/// Imports the old product's entries; each one that cannot be imported is reported with why.
/// Running it again imports nothing new: already registered paths are skipped.
pub async fn import_legacy(
    store: &Store,
    source: PathBuf,
    entries: Vec<LegacyProject>,
) -> Result<ImportReport, ProjectError> {
    let mut report = ImportReport {
        imported: Vec::new(),
        skipped: Vec::new(),
    };
    for entry in entries {
        let skip = |reason: ProjectError| SkippedImport {
            path: entry.path.clone(),
            name: entry.name.clone(),
            reason: reason.to_string(),
        };
        let found = match inspect(&entry.path).await {
            Ok(found) => found,
            Err(e) => {
                report.skipped.push(skip(e));
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
            report.skipped.push(skip(e));
            continue;
        }
        match insert(store, found, name, None).await {
            Ok(project) => report.imported.push(project),
            Err(e @ (ProjectError::PathTaken { .. } | ProjectError::NameTaken { .. })) => {
                report.skipped.push(skip(e))
            }
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

    #[test]
    fn git_init_is_advised_only_outside_every_repository() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        assert!(outside_any_repository(&plain));
        let work = tmp.path().join("work");
        std::fs::create_dir_all(work.join(".git")).unwrap();
        std::fs::create_dir_all(work.join("src")).unwrap();
        assert!(!outside_any_repository(&work));
        assert!(!outside_any_repository(&work.join("src")));
        let bare = tmp.path().join("bare.git");
        std::fs::create_dir_all(bare.join("objects")).unwrap();
        std::fs::write(bare.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert!(!outside_any_repository(&bare));
    }
}
