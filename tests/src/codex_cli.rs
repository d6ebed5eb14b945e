//! The real Codex CLI for tests (installed where [`crate::agent_clis`] finds it): the
//! headless, offline command line that runs it against the scripted Responses API of
//! [`crate::openai_api`]. What each switch does and why is in `tests/agents/CODEX.md`.

use std::path::Path;
use std::process::{Command, Stdio};

/// The provider name the command line defines, and the env var its key is read from.
pub const PROVIDER: &str = "scripted";
pub const KEY_ENV: &str = "AIFACTORY_TEST_OPENAI_KEY";
/// A model name the scripted server accepts; codex warns it has no metadata for it.
pub const MODEL: &str = "test-model";

/// Limits of the provider: how often codex retries on its own, how long a silent stream may
/// last before it gives up.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    /// `request_max_retries`: retries of a failed request (5xx, connection errors).
    pub request: u32,
    /// `stream_max_retries`: "Reconnecting... N/M" retries of a turn (429 and broken streams).
    pub stream: u32,
    /// `stream_idle_timeout_ms`: a stream silent this long fails the turn.
    pub idle_timeout_ms: u64,
}

impl Retries {
    /// No retries, a short idle timeout: each failure shows at once.
    pub const NONE: Retries = Retries {
        request: 0,
        stream: 0,
        idle_timeout_ms: 3_000,
    };
}

/// `codex exec --json` with approvals off, the workspace-write sandbox, no nonessential
/// traffic, and the scripted provider at `base_url`, in `dir`, with a private `codex_home`.
/// `args` come last: the prompt, or `resume ID PROMPT`. Stdin is null (codex would otherwise
/// wait for more input on a pipe), the key is in the environment, never in argv.
pub fn exec_command(
    bin: &Path,
    dir: &Path,
    codex_home: &Path,
    base_url: &str,
    retries: Retries,
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(exec_args(base_url, retries))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", codex_home)
        .env("CODEX_HOME", codex_home)
        .env(KEY_ENV, "sk-scripted-test-key")
        .stdin(Stdio::null());
    cmd
}

/// The argv after the program name, before the prompt.
pub fn exec_args(base_url: &str, retries: Retries) -> Vec<String> {
    let provider = format!(
        "model_providers.{PROVIDER}={{name=\"{PROVIDER}\",base_url=\"{base_url}\",\
         env_key=\"{KEY_ENV}\",wire_api=\"responses\",request_max_retries={},\
         stream_max_retries={},stream_idle_timeout_ms={}}}",
        retries.request, retries.stream, retries.idle_timeout_ms
    );
    [
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--strict-config",
        "--sandbox",
        "workspace-write",
        "-c",
        "approval_policy=\"never\"",
        // Without these, codex clones github.com/openai/plugins.git, asks api.github.com and
        // chatgpt.com (plugins) and posts to ab.chatgpt.com (analytics).
        "--disable",
        "plugins",
        "-c",
        "analytics.enabled=false",
        "-c",
        "check_for_update_on_startup=false",
        "-c",
        &provider,
        "-c",
        &format!("model_provider=\"{PROVIDER}\""),
        "-m",
        MODEL,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
