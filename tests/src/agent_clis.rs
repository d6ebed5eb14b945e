//! The real agent CLIs (`claude`, `codex`) that `tests/agents/install` puts in
//! `target/agent-clis/`, and the environment claude needs to run offline and without prompts
//! against the scripted API of [`crate::anthropic_api`], with [`crate::egress`] catching any
//! other traffic.
//!
//! Tests that need a CLI call [`crate::skip`] with the [`AgentCliError`] when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::anthropic_api::AnthropicApi;
use crate::egress::EgressTrap;

/// The fake key the CLIs send to the scripted API; it is no secret.
pub const FAKE_API_KEY: &str = "sk-ant-scripted-test-key";

/// The switches claude 2.1.332 reads to stay quiet. `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`
/// is the one that matters: without it claude CONNECTs to `api.anthropic.com:443` even with
/// all the others set. The rest keep it from updating itself, reporting, surveying or
/// fetching feature flags should a future version split them off.
pub const CLAUDE_QUIET_ENV: &[(&str, &str)] = &[
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
    ("DISABLE_AUTOUPDATER", "1"),
    ("DISABLE_UPDATES", "1"),
    ("DISABLE_TELEMETRY", "1"),
    ("DISABLE_ERROR_REPORTING", "1"),
    ("DISABLE_GROWTHBOOK", "1"),
    ("CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY", "1"),
];

#[derive(Debug, thiserror::Error)]
pub enum AgentCliError {
    #[error("{cli} is not installed at {}: run tests/agents/install", path.display())]
    NotInstalled { cli: &'static str, path: PathBuf },
}

/// Where `tests/agents/install` installs the CLIs: `$AIFACTORY_AGENT_CLIS_DIR`, else the
/// workspace's `target/agent-clis`.
pub fn clis_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AIFACTORY_AGENT_CLIS_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/agent-clis")
}

fn installed(cli: &'static str) -> Result<PathBuf, AgentCliError> {
    let path = clis_dir().join("node_modules/.bin").join(cli);
    if path.exists() {
        Ok(path)
    } else {
        Err(AgentCliError::NotInstalled { cli, path })
    }
}

/// The installed `claude` (its native binary, once the install ran its postinstall).
pub fn claude() -> Result<PathBuf, AgentCliError> {
    installed("claude")
}

/// The installed `codex` (a node launcher for its native binary).
pub fn codex() -> Result<PathBuf, AgentCliError> {
    installed("codex")
}

/// A `claude` command in `cwd` with nothing from the caller's environment but `PATH`: a
/// private `HOME` and `CLAUDE_CONFIG_DIR` under `home` (its sessions live there, so a resume
/// must use the same `home`), the scripted API's URL and a fake key, the quiet switches, and
/// the egress trap as proxy. A test adds `IS_SANDBOX=1` itself when it runs as root with
/// `bypassPermissions`.
pub fn claude_command(
    claude: &Path,
    api: &AnthropicApi,
    egress: &EgressTrap,
    home: &Path,
    cwd: &Path,
) -> Command {
    let mut cmd = Command::new(claude);
    cmd.current_dir(cwd).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("HOME", home)
        .env("CLAUDE_CONFIG_DIR", home.join(".claude"))
        .env("ANTHROPIC_BASE_URL", api.base_url())
        .env("ANTHROPIC_API_KEY", FAKE_API_KEY)
        .envs(CLAUDE_QUIET_ENV.iter().copied())
        .envs(egress.env());
    cmd
}
