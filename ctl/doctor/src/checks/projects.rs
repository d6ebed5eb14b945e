//! Projects: the old product's project list against the registered ones, each project's
//! work tree, and providers set by hand against what the origin says.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use aifactory_common::diagnose::Check;
use aifactory_common::protocol::{PathState, WorkTreeState};

use super::daemon_view;
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

/// Each project's work tree as the daemon sees it (it asks git, bounded in time): the
/// caller may not be allowed to look, or see another file system.
pub(super) fn project_paths(f: &Facts) -> Check {
    let name = "project-paths";
    let Some(online) = f.online() else {
        return skip(
            name,
            "the daemon does not answer (see the daemon check)",
            None,
        );
    };
    let view = match daemon_view(name, online) {
        Ok(view) => view,
        Err(skipped) => return skipped,
    };
    let mut bad = Vec::new();
    let mut fixes = vec![
        "restore the directory, or forget the project: `aifactoryctl projects remove NAME`"
            .to_string(),
    ];
    let mut unchecked = Vec::new();
    for p in &view.projects {
        let what = match &p.state {
            WorkTreeState::WorkTree => continue,
            WorkTreeState::Path(PathState::Missing) => "does not exist".to_string(),
            WorkTreeState::Path(PathState::NotADirectory) => "is not a directory".to_string(),
            WorkTreeState::Path(PathState::CannotInspect { error }) => {
                fixes.push(format!(
                    "let the daemon's user (uid {}) reach {}",
                    view.uid,
                    p.path.display()
                ));
                format!("cannot be inspected by the daemon: {error}")
            }
            WorkTreeState::NotAWorkTree { error } => format!("is not a git work tree: {error}"),
            WorkTreeState::GitUnavailable { error } => {
                fixes.push(
                    "install git where the daemon finds it (its PATH), then restart the daemon"
                        .into(),
                );
                format!("cannot be checked, the daemon cannot run git: {error}")
            }
            // A directory the daemon did not ask git about: not a verdict either way.
            WorkTreeState::Path(PathState::Dir) => {
                unchecked.push(format!("{} (git was not asked)", p.name));
                continue;
            }
            WorkTreeState::TimedOut { after_ms } => {
                unchecked.push(format!(
                    "{} (no answer within {} s)",
                    p.name,
                    after_ms / 1000
                ));
                continue;
            }
        };
        bad.push(format!(
            "{} ({}): {} {what}",
            p.name,
            p.id,
            p.path.display()
        ));
    }
    if !bad.is_empty() {
        if !unchecked.is_empty() {
            bad.push(format!("not checked: {}", unchecked.join(", ")));
        }
        return fail(name, bad.join("; "), fixes.join("; "));
    }
    if !unchecked.is_empty() {
        return skip(
            name,
            &format!(
                "the daemon did not find out in time whether each project is a git work tree: {}",
                unchecked.join(", ")
            ),
            Some(
                "see what hangs on those directories (a network mount?), then run the doctor again"
                    .into(),
            ),
        );
    }
    ok(
        name,
        format!("{} project(s), each a git work tree", view.projects.len()),
    )
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
