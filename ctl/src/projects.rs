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
                path: crate::connect::absolute_on_target(cli, path)?,
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
        ProjectsCommand::Clone {
            project,
            path,
            from,
            name,
        } => {
            let path = crate::connect::absolute_on_target(cli, path)?;
            let source_target = match from {
                Some(host) => crate::connect::target_for_host(host)?,
                None => crate::connect::Target::Local(crate::connect::local_socket(cli)?),
            };
            let source = crate::connect::connect_to(&source_target)
                .await?
                .project_show(project)
                .await?;
            let Some(url) = source.origin_url.clone() else {
                return Err(Failure {
                    code: FAILED,
                    message: format!(
                        "project {} has no origin remote to clone: add one in {} (`git remote add origin URL`) or register a copy with `projects add --host HOST PATH`",
                        source.name,
                        source.path.display()
                    ),
                });
            };
            let name = name.clone().or(Some(source.name.clone()));
            let p = connect(cli).await?.project_clone(url, path, name).await?;
            print_project(cli.json, &p, None);
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

/// `~/.aifactory/projects.json`, unless HOME is not set.
fn default_legacy_file() -> Result<PathBuf, Failure> {
    aifactory_doctor::legacy::default_file().map_err(|e| Failure {
        code: FAILED,
        message: format!("{e}: pass the file"),
    })
}

/// The old product's project list; entries without a path are skipped, each said on stderr.
fn read_legacy(file: &Path) -> Result<Vec<LegacyProject>, Failure> {
    let legacy = aifactory_doctor::legacy::read(file).map_err(|e| Failure {
        code: FAILED,
        message: e.to_string(),
    })?;
    for entry in &legacy.without_path {
        eprintln!("skipped entry {entry}: it has no path");
    }
    Ok(legacy.projects)
}
