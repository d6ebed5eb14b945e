//! The old product's project list, `~/.aifactory/projects.json`: where it is and what it holds.
//! `aifactoryctl projects import-legacy` imports it; the `legacy-projects` check compares it with
//! the registered projects. It was written in a few shapes over time: a list of entries,
//! `{"projects": [...]}`, or a map from id to entry; an entry has a `path` (or `root`,
//! `project_path`, `projectPath`, `dir`) and maybe a `name`.

use std::path::{Path, PathBuf};

use aifactory_common::protocol::LegacyProject;

/// Why the list cannot be found or read.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("HOME is not set, so ~/.aifactory/projects.json cannot be found")]
    NoHome,
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not JSON ({source}): fix or remove the file", file.display())]
    NotJson {
        file: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} holds neither a list nor an object of projects", file.display())]
    Shape { file: PathBuf },
}

/// What the list holds.
pub struct Legacy {
    pub projects: Vec<LegacyProject>,
    /// Entries without a path, which nothing can import: each by its key, else as written.
    pub without_path: Vec<String>,
}

/// `~/.aifactory/projects.json` of `$HOME`.
pub fn default_file() -> Result<PathBuf, LegacyError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".aifactory/projects.json"))
        .ok_or(LegacyError::NoHome)
}

/// Reads the list in `file`, whichever shape it has.
pub fn read(file: &Path) -> Result<Legacy, LegacyError> {
    let text = std::fs::read_to_string(file).map_err(|source| LegacyError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| LegacyError::NotJson {
            file: file.to_path_buf(),
            source,
        })?;
    let entries: Vec<(Option<String>, serde_json::Value)> = match value {
        serde_json::Value::Array(items) => items.into_iter().map(|v| (None, v)).collect(),
        serde_json::Value::Object(mut map) => match map.remove("projects") {
            Some(serde_json::Value::Array(items)) => items.into_iter().map(|v| (None, v)).collect(),
            Some(serde_json::Value::Object(inner)) => {
                inner.into_iter().map(|(k, v)| (Some(k), v)).collect()
            }
            _ => map.into_iter().map(|(k, v)| (Some(k), v)).collect(),
        },
        _ => {
            return Err(LegacyError::Shape {
                file: file.to_path_buf(),
            });
        }
    };
    let mut out = Legacy {
        projects: Vec::new(),
        without_path: Vec::new(),
    };
    for (key, entry) in entries {
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| entry.get(*n).and_then(|v| v.as_str()).map(str::to_string))
        };
        let path = match &entry {
            serde_json::Value::String(path) => Some(path.clone()),
            _ => field(&["path", "root", "project_path", "projectPath", "dir"]),
        };
        let Some(path) = path else {
            out.without_path
                .push(key.unwrap_or_else(|| entry.to_string()));
            continue;
        };
        out.projects.push(LegacyProject {
            path: PathBuf::from(path),
            name: field(&["name", "title"]),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_is_read_and_entries_without_a_path_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("projects.json");
        for (text, paths) in [
            (r#"[{"path": "/a", "name": "a"}, "/b"]"#, vec!["/a", "/b"]),
            (r#"{"projects": [{"root": "/c"}]}"#, vec!["/c"]),
            (r#"{"projects": {"x": {"dir": "/d"}}}"#, vec!["/d"]),
            (
                r#"{"y": {"projectPath": "/e"}, "z": {"name": "no path"}}"#,
                vec!["/e"],
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let legacy = read(&file).unwrap();
            let got: Vec<_> = legacy.projects.iter().map(|p| p.path.clone()).collect();
            let want: Vec<_> = paths.iter().map(PathBuf::from).collect();
            assert_eq!(got, want, "{text}");
            if text.contains("no path") {
                assert_eq!(legacy.without_path, vec!["z".to_string()]);
            }
        }
        std::fs::write(&file, "3").unwrap();
        assert!(matches!(read(&file), Err(LegacyError::Shape { .. })));
        std::fs::write(&file, "{").unwrap();
        assert!(matches!(read(&file), Err(LegacyError::NotJson { .. })));
    }
}
