//! Git repositories for tests: `git` run with a test identity, and the repositories tests
//! register as projects.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `git -C dir args...` as a test identity; fails the test if git fails. Returns its
/// standard output, trimmed.
pub fn git(args: &[&str], dir: &Path) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An empty repository at `path` (created if missing) on `branch`, with `origin` as its
/// remote if given.
pub fn init_repo(path: &Path, branch: &str, origin: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    git(&["init", "-q", "-b", branch], path);
    if let Some(url) = origin {
        git(&["remote", "add", "origin", url], path);
    }
    path.to_path_buf()
}

/// A repository at `path` with one commit (a README) on `main`.
pub fn committed_repo(path: &Path) -> PathBuf {
    init_repo(path, "main", None);
    std::fs::write(path.join("README"), "hello\n").expect("write README");
    git(&["add", "README"], path);
    git(&["commit", "-q", "-m", "init"], path);
    path.to_path_buf()
}
