//! `aifactoryctl projects ...`: the projects registry.

use std::path::{Path, PathBuf};

use aifactory_common::protocol::{ImportReport, LegacyProject, ProjectAdd, ProjectInfo};

use crate::cli::{Cli, ProjectsCommand};
use crate::connect::connect;
use crate::exit::{FAILED, Failure};

pub async fn run(cli: &Cli, command: &ProjectsCommand) -> Result<(), Failure> {
    // Local inputs (paths, the legacy file) are checked before connecting, so their errors come
    // first.
    match command {
        ProjectsCommand::Add {
            path,
            name,
            provider,
        } => {
            let add = ProjectAdd {
                path: absolute(path)?,
                name: name.clone(),
                provider: *provider,
            };
            let p = connect(cli).await?.project_add(add).await?;
            print_project(cli.json, &p, None);
        }
        ProjectsCommand::List => print_list(cli.json, &connect(cli).await?.project_list().await?),
        ProjectsCommand::Show { project } => {
            let p = connect(cli).await?.project_show(project).await?;
            print_project(cli.json, &p, None);
        }
        ProjectsCommand::Remove { project } => {
            let p = connect(cli).await?.project_remove(project).await?;
            let done = format!(
                "removed project {} ({}); its files at {} were not touched",
                p.name,
                p.id,
                p.path.display()
            );
            print_project(cli.json, &p, Some(done));
        }
        ProjectsCommand::ImportLegacy { file } => {
            let file = match file {
                Some(file) => file.clone(),
                None => default_legacy_file()?,
            };
            let entries = read_legacy(&file)?;
            let source = absolute(&file)?;
            let client = connect(cli).await?;
            print_import(
                cli.json,
                &client.project_import_legacy(source, entries).await?,
            );
        }
    }
    Ok(())
}

/// The daemon has its own working directory, so relative paths are resolved here.
fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(path).map_err(|e| Failure {
        code: FAILED,
        message: format!("cannot resolve {}: {e}", path.display()),
    })
}

pub fn project_json(p: &ProjectInfo) -> serde_json::Value {
    serde_json::to_value(p).unwrap_or_default()
}

fn print_project(json: bool, p: &ProjectInfo, headline: Option<String>) {
    if json {
        println!("{}", project_json(p));
        return;
    }
    if let Some(line) = headline {
        println!("{line}");
        return;
    }
    let provider = if p.provider_manual && p.provider != p.detected_provider {
        format!(
            "{} (set by hand; origin says {})",
            p.provider.as_str(),
            p.detected_provider.as_str()
        )
    } else if p.provider_manual {
        format!("{} (set by hand)", p.provider.as_str())
    } else {
        p.provider.as_str().to_string()
    };
    println!("id              {}", p.id);
    println!("name            {}", p.name);
    println!("path            {}", p.path.display());
    println!("provider        {provider}");
    println!(
        "origin          {}",
        p.origin_url.as_deref().unwrap_or("(no origin remote)")
    );
    println!("default branch  {}", p.default_branch);
    println!("created         {}", p.created_at);
    println!(
        "usage           {} (all its tasks)",
        crate::transcript::usage_text(&p.usage)
    );
}

fn print_list(json: bool, list: &[ProjectInfo]) {
    if json {
        let items: Vec<_> = list.iter().map(project_json).collect();
        println!("{}", serde_json::Value::Array(items));
        return;
    }
    if list.is_empty() {
        println!("no projects: add one with `aifactoryctl projects add PATH`");
        return;
    }
    let width = list.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
    println!("{:<10}  {:<width$}  {:<12}  PATH", "ID", "NAME", "PROVIDER");
    for p in list {
        println!(
            "{:<10}  {:<width$}  {:<12}  {}",
            p.id,
            p.name,
            p.provider.as_str(),
            p.path.display()
        );
    }
}

fn print_import(json: bool, report: &ImportReport) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "imported": report.imported.iter().map(project_json).collect::<Vec<_>>(),
                "skipped": report.skipped,
            })
        );
        return;
    }
    for p in &report.imported {
        println!("imported {} ({}) from {}", p.name, p.id, p.path.display());
    }
    for s in &report.skipped {
        println!("skipped {}: {}", s.path.display(), s.reason);
    }
    println!(
        "{} imported, {} skipped",
        report.imported.len(),
        report.skipped.len()
    );
}

pub(crate) fn default_legacy_file() -> Result<PathBuf, Failure> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".aifactory/projects.json"))
        .ok_or_else(|| Failure {
            code: FAILED,
            message:
                "HOME is not set, so ~/.aifactory/projects.json cannot be found: pass the file"
                    .into(),
        })
}

/// Reads the old product's project list. It was written in a few shapes over time: a list of
/// entries, `{"projects": [...]}`, or a map from id to entry; an entry has a `path` (or `root`,
/// `project_path`, `projectPath`, `dir`) and maybe a `name`.
pub(crate) fn read_legacy(file: &Path) -> Result<Vec<LegacyProject>, Failure> {
    let fail = |message: String| Failure {
        code: FAILED,
        message,
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        fail(format!(
            "{} is not JSON ({e}): fix or remove the file",
            file.display()
        ))
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
            return Err(fail(format!(
                "{} holds neither a list nor an object of projects",
                file.display()
            )));
        }
    };
    let mut out = Vec::new();
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
            eprintln!(
                "skipped entry {}: it has no path",
                key.unwrap_or_else(|| entry.to_string())
            );
            continue;
        };
        out.push(LegacyProject {
            path: PathBuf::from(path),
            name: field(&["name", "title"]),
        });
    }
    Ok(out)
}
