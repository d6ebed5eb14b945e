//! What the daemon asks git about a work tree. git's own error text reaches the user.

use std::path::Path;

use tokio::process::Command;

/// git's answer: trimmed stdout on success, trimmed stderr on failure.
async fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| {
            format!("cannot run git ({e}): install git and make sure it is on aifactoryd's PATH")
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Ok when `dir` is inside a git work tree; otherwise git's reason.
pub async fn check_work_tree(dir: &Path) -> Result<(), String> {
    match git(dir, &["rev-parse", "--is-inside-work-tree"]).await {
        Ok(answer) if answer == "true" => Ok(()),
        Ok(answer) => Err(format!(
            "git says --is-inside-work-tree is `{answer}` (a bare repository or a .git directory?)"
        )),
        Err(reason) => Err(reason),
    }
}

pub async fn origin_url(dir: &Path) -> Option<String> {
    git(dir, &["remote", "get-url", "origin"])
        .await
        .ok()
        .filter(|u| !u.is_empty())
}

/// The branch new work starts from: origin's HEAD when known, else the checked-out branch,
/// else `main`.
pub async fn default_branch(dir: &Path) -> String {
    if let Ok(head) = git(
        dir,
        &["symbolic-ref", "--short", "refs/remotes/origin/HEAD"],
    )
    .await
        && let Some(branch) = head.strip_prefix("origin/")
    {
        return branch.to_string();
    }
    match git(dir, &["symbolic-ref", "--short", "HEAD"]).await {
        Ok(branch) if !branch.is_empty() => branch,
        _ => "main".into(),
    }
}
