//! Projects: the old product's project list against the registered ones, each project's
//! work tree, and providers set by hand against what the origin says.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use aifactory_common::diagnose::Check;

use crate::{Facts, fail, ok, skip, warn};

pub(super) fn legacy_projects(f: &Facts) -> Check {
    let name = "legacy-projects";
    let Ok(file) = crate::legacy::default_file() else {
        return skip(
            name,
            "HOME is not set, so ~/.aifactory/projects.json cannot be found",
            Some("run the doctor with HOME set to the old product's user's home".into()),
        );
    };
    let meta = match std::fs::metadata(&file) {
        Ok(meta) => meta,
        Err(_) => return ok(name, format!("no old project list at {}", file.display())),
    };
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me || meta.permissions().mode() & 0o200 == 0 {
        return warn(
            name,
            format!(
                "{} is owned by uid {} with mode {:04o}: the old product's writes to it failed silently (\"Project not found\" after a 201)",
                file.display(),
                meta.uid(),
                meta.permissions().mode() & 0o777
            ),
            format!(
                "`sudo chown {me} {} && chmod u+w {}`, then `aifactoryctl projects import-legacy`",
                file.display(),
                file.display()
            ),
        );
    }
    let entries = match crate::legacy::read(&file) {
        Ok(legacy) => legacy.projects,
        Err(e) => {
            return warn(
                name,
                e.to_string(),
                format!("fix or remove {}", file.display()),
            );
        }
    };
    // Entries whose directory is gone cannot be imported: say which and why, daemon or not.
    let gone: Vec<String> = entries
        .iter()
        .filter_map(|e| match std::fs::metadata(&e.path) {
            Ok(_) => None,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Some(format!("{} (does not exist)", e.path.display()))
            }
            Err(err) => Some(format!("{} (cannot be read: {err})", e.path.display())),
        })
        .collect();
    let mut found = Vec::new();
    let mut fixes = Vec::new();
    if !gone.is_empty() {
        found.push(format!(
            "{} holds {} project(s) that cannot be imported: {}",
            file.display(),
            gone.len(),
            gone.join(", ")
        ));
        fixes.push(format!(
            "restore those directories, or remove their entries from {}",
            file.display()
        ));
    }
    let Some(online) = f.online() else {
        if found.is_empty() {
            return skip(
                name,
                &format!(
                    "{} holds {} project(s), not compared with the registered ones: the daemon does not answer",
                    file.display(),
                    entries.len()
                ),
                None,
            );
        }
        found.push("the others are not compared: the daemon does not answer".into());
        return warn(name, found.join("; "), fixes.join("; "));
    };
    let registered = |p: &Path| {
        let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        online.projects.iter().any(|r| r.path == canonical)
    };
    let missing: Vec<String> = entries
        .iter()
        .filter(|e| e.path.exists() && !registered(&e.path))
        .map(|e| e.path.display().to_string())
        .collect();
    if !missing.is_empty() {
        found.push(format!(
            "{} holds {} project(s) not registered with the daemon: {}",
            file.display(),
            missing.len(),
            missing.join(", ")
        ));
        fixes.push("aifactoryctl projects import-legacy".into());
    }
    if found.is_empty() {
        ok(
            name,
            format!("every project of {} is registered", file.display()),
        )
    } else {
        warn(name, found.join("; "), fixes.join("; "))
    }
}

pub(super) async fn project_paths(f: &Facts) -> Check {
    let name = "project-paths";
    let Some(online) = f.online() else {
        return skip(
            name,
            "the daemon does not answer (see the daemon check)",
            None,
        );
    };
    let mut bad = Vec::new();
    for p in &online.projects {
        if !p.path.is_dir() {
            bad.push(format!(
                "{} ({}): {} does not exist",
                p.name,
                p.id,
                p.path.display()
            ));
            continue;
        }
        // The project belongs to the daemon's user, not necessarily to whoever runs the
        // doctor: git's ownership check would refuse this read-only question.
        let out = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&p.path)
            .args([
                "-c",
                "safe.directory=*",
                "rev-parse",
                "--is-inside-work-tree",
            ])
            .kill_on_drop(true)
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => bad.push(format!(
                "{} ({}): {} is not a git work tree: {}",
                p.name,
                p.id,
                p.path.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => bad.push(format!("{}: cannot run git: {e}", p.name)),
        }
    }
    if bad.is_empty() {
        ok(
            name,
            format!("{} project(s), each a git work tree", online.projects.len()),
        )
    } else {
        fail(
            name,
            bad.join("; "),
            "restore the directory, or forget the project: `aifactoryctl projects remove NAME`"
                .into(),
        )
    }
}

pub(super) fn pr_providers(f: &Facts) -> Check {
    let name = "pr-providers";
    let Some(online) = f.online() else {
        return skip(
            name,
            "the daemon does not answer (see the daemon check)",
            None,
        );
    };
    let mismatched: Vec<String> = online
        .projects
        .iter()
        .filter(|p| p.provider_manual && p.provider != p.detected_provider)
        .map(|p| {
            format!(
                "{}: set by hand to {}, but origin {} says {}",
                p.name,
                p.provider.as_str(),
                p.origin_url.as_deref().unwrap_or("(none)"),
                p.detected_provider.as_str()
            )
        })
        .collect();
    let all = online
        .projects
        .iter()
        .map(|p| format!("{} {}", p.name, p.provider.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    if mismatched.is_empty() {
        ok(
            name,
            if all.is_empty() {
                "no projects".into()
            } else {
                all
            },
        )
    } else {
        warn(
            name,
            mismatched.join("; "),
            "if the origin is right: `aifactoryctl projects remove NAME` and add it again without --provider (or with the provider the origin says)".into(),
        )
    }
}
