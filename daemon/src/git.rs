//! What the daemon asks git about a work tree. git's own error text reaches the user.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::sharing::Sharing;

/// Why git did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git ({0}): install git and make sure it is on aifactoryd's PATH")]
    Spawn(#[source] std::io::Error),
    /// git refused; its own words (trimmed stderr) are the message.
    #[error("{stderr}")]
    Refused { stderr: String },
    #[error("git says --is-inside-work-tree is `{0}` (a bare repository or a .git directory?)")]
    NotWorkTree(String),
    #[error(
        "{} already holds a worktree on branch `{on}`, not `{branch}`: remove it with `git worktree remove {}` or choose another spec id",
        path.display(),
        path.display()
    )]
    OtherBranch {
        path: PathBuf,
        on: String,
        branch: String,
    },
    #[error("cannot update {}: {source}", path.display())]
    Exclude {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// git's answer: trimmed stdout on success, its trimmed stderr as the error on failure.
async fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    run(command(dir, args)).await
}

/// `git -C dir ARGS`. The daemon trusts the repository it was told to work in even when
/// another user owns it (a project shared with the service: README): git's ownership check
/// (`safe.directory`) keeps a user from running someone else's repository's config by chance,
/// but here a member of the socket group named it, and a member may run any program as the
/// daemon's user in a session anyway.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut safe = std::ffi::OsString::from("safe.directory=");
    safe.push(dir);
    let mut command = Command::new("git");
    command
        .arg("-c")
        .arg(safe)
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null());
    command
}

async fn run(mut command: Command) -> Result<String, GitError> {
    let out = command.output().await.map_err(GitError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(GitError::Refused {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `git clone -- URL PATH`, killed when it takes longer than `limit` (a hung remote must not
/// hold the request forever). git prompts for nothing: credentials come from its own config.
pub async fn clone(url: &str, path: &Path, limit: std::time::Duration) -> Result<(), GitError> {
    let mut command = Command::new("git");
    command
        .arg("clone")
        .arg("--quiet")
        .arg("--")
        .arg(url)
        .arg(path)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(limit, run(command)).await {
        Ok(result) => result.map(|_| ()),
        Err(_) => Err(GitError::Refused {
            stderr: format!(
                "no result within {} s: check that the URL is reachable from this host",
                limit.as_secs()
            ),
        }),
    }
}

/// Ok when `dir` is inside a git work tree; otherwise git's reason.
pub async fn check_work_tree(dir: &Path) -> Result<(), GitError> {
    work_tree_answer(git(dir, &["rev-parse", "--is-inside-work-tree"]).await)
}

/// [`check_work_tree`] for a caller that may give up waiting (the doctor's facts, under a
/// time bound): git is killed when the future is dropped.
pub async fn probe_work_tree(dir: &Path) -> Result<(), GitError> {
    let mut command = command(dir, &["rev-parse", "--is-inside-work-tree"]);
    command.kill_on_drop(true);
    work_tree_answer(run(command).await)
}

fn work_tree_answer(answer: Result<String, GitError>) -> Result<(), GitError> {
    match answer {
        Ok(answer) if answer == "true" => Ok(()),
        Ok(answer) => Err(GitError::NotWorkTree(answer)),
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

/// Creates (or takes back) the task's worktree at `path` on branch `branch`, starting from
/// `base`, with the project's modes (`sharing`); keeps `.aifactory/` out of the project's
/// `git status`.
pub async fn add_worktree(
    project: &Path,
    path: &Path,
    branch: &str,
    base: &str,
    sharing: Sharing,
) -> Result<(), GitError> {
    exclude_aifactory_dir(project).await?;
    if path.join(".git").exists() {
        // Left by a task that was removed without --prune: its work is still there.
        let on = git(path, &["symbolic-ref", "--short", "HEAD"]).await?;
        if on == branch {
            return Ok(());
        }
        return Err(GitError::OtherBranch {
            path: path.to_path_buf(),
            on,
            branch: branch.to_string(),
        });
    }
    let path_text = path.to_string_lossy();
    let branch_ref = format!("refs/heads/{branch}");
    let exists = git(project, &["rev-parse", "--verify", "--quiet", &branch_ref])
        .await
        .is_ok();
    let mut command = if exists {
        // The branch outlived an earlier task of the same spec: continue its work.
        command(project, &["worktree", "add", &path_text, branch])
    } else {
        command(
            project,
            &["worktree", "add", "-b", branch, &path_text, base],
        )
    };
    sharing.apply(&mut command);
    run(command).await.map(|_| ())
}

/// Removes a task's worktree; without `force`, git refuses one with changes.
pub async fn remove_worktree(project: &Path, path: &Path, force: bool) -> Result<(), GitError> {
    let path_text = path.to_string_lossy();
    let mut args = vec!["worktree", "remove"];
    if force {
        args.push("--force");
    }
    args.push(&path_text);
    git(project, &args).await.map(|_| ())
}

/// Adds `/.aifactory/` to the repository's `info/exclude` (shared by all its worktrees) once.
async fn exclude_aifactory_dir(project: &Path) -> Result<(), GitError> {
    let common = git(
        project,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .await?;
    let info = Path::new(&common).join("info");
    let exclude = info.join("exclude");
    let current = std::fs::read_to_string(&exclude).unwrap_or_default();
    if current.lines().any(|l| l.trim() == "/.aifactory/") {
        return Ok(());
    }
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# aifactory: task worktrees and specs\n/.aifactory/\n");
    std::fs::create_dir_all(&info)
        .and_then(|()| std::fs::write(&exclude, text))
        .map_err(|source| GitError::Exclude {
            path: exclude.clone(),
            source,
        })
}
