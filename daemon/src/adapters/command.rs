//! The built-in headless command of each known agent kind, and the prompt an attempt gets.
//!
//! - claude-code: `claude -p --output-format stream-json --verbose --permission-mode
//!   bypassPermissions [--model M] [--resume ID] -- PROMPT`.
//! - codex: `codex exec --json --skip-git-repo-check --sandbox workspace-write -c
//!   approval_policy="never" --disable plugins -c analytics.enabled=false [-m M] -- PROMPT`;
//!   resuming, `... resume ID -- PROMPT` (`exec resume` has no `--sandbox`, but the one given
//!   to `exec` before it holds for the resumed turn). In the task's cage, `--sandbox
//!   danger-full-access` instead ([`inside_cage`]). `exec` has no `-a`: the approval policy is
//!   a `-c`. Plugins and analytics off: they reach github.com and chatgpt.com at every start.
//! - openai-compatible: codex with a provider of its own (`-c model_providers.aifactory={...}`,
//!   `wire_api = "responses"`: codex 0.171 refuses `chat`), with codex's own retries off so
//!   that each failure reaches the daemon's restart policy at once. Its key stays in the
//!   environment: the command names the variable (`env_key`), never the key.
//!
//! `--` ends the options, so a prompt never reads as one.

use std::path::Path;

use aifactory_common::protocol::AgentKind;

/// What a profile sets of a built-in command.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadlessSettings<'a> {
    /// The program to run instead of `claude` / `codex`.
    pub program: Option<&'a str>,
    pub model: Option<&'a str>,
    /// openai-compatible: the API's base URL (`https://host/v1`).
    pub base_url: Option<&'a str>,
    /// openai-compatible: the environment variable that holds the key.
    pub api_key_env: Option<&'a str>,
}

/// The provider name an openai-compatible profile gets in codex's configuration.
const PROVIDER: &str = "aifactory";

/// A spec longer than this is cut in the prompt (an argument may not pass 128 KiB); the agent
/// reads the rest from the file.
const MAX_SPEC_BYTES: usize = 64 << 10;

/// The built-in headless argv for a known kind (claude-code, codex, openai-compatible), or
/// `None` (custom, gemini-cli). `resume` is the agent session id to continue.
pub fn headless_command(
    kind: AgentKind,
    settings: &HeadlessSettings,
    prompt: &str,
    resume: Option<&str>,
) -> Option<Vec<String>> {
    let mut argv: Vec<String> = Vec::new();
    match kind {
        AgentKind::ClaudeCode => {
            argv.push(settings.program.unwrap_or("claude").into());
            argv.extend(
                [
                    "-p",
                    "--output-format",
                    "stream-json",
                    "--verbose",
                    "--permission-mode",
                    "bypassPermissions",
                ]
                .map(String::from),
            );
            if let Some(model) = settings.model {
                argv.extend(["--model".into(), model.into()]);
            }
            if let Some(id) = resume {
                argv.extend(["--resume".into(), id.into()]);
            }
        }
        AgentKind::Codex | AgentKind::OpenaiCompatible => {
            argv.push(settings.program.unwrap_or("codex").into());
            argv.extend(
                [
                    "exec",
                    "--json",
                    "--skip-git-repo-check",
                    "--sandbox",
                    "workspace-write",
                    "-c",
                    "approval_policy=\"never\"",
                    "--disable",
                    "plugins",
                    "-c",
                    "analytics.enabled=false",
                ]
                .map(String::from),
            );
            if let Some(model) = settings.model {
                argv.extend(["-m".into(), model.into()]);
            }
            if kind == AgentKind::OpenaiCompatible {
                argv.extend(["-c".into(), provider(settings)]);
                argv.extend([
                    "-c".into(),
                    format!("model_provider={}", toml_str(PROVIDER)),
                ]);
            }
            if let Some(id) = resume {
                argv.extend(["resume".into(), id.into()]);
            }
        }
        AgentKind::GeminiCli | AgentKind::Custom => return None,
    }
    argv.extend(["--".into(), prompt.into()]);
    Some(argv)
}

/// A built-in command whose agent runs confined in the task's cage: codex's own sandbox gives
/// way to the cage (`--sandbox danger-full-access`). Its bubblewrap cannot work there: it
/// needs user namespaces (which the packaged unit refuses) and cannot build its mounts inside
/// Landlock ("error building bubblewrap command: Permission denied"). The cage holds what
/// codex's sandbox held, but for the network: `connect_ports` limits that.
pub fn inside_cage(kind: AgentKind, argv: &mut [String]) {
    if !matches!(kind, AgentKind::Codex | AgentKind::OpenaiCompatible) {
        return;
    }
    if let Some(mode) = argv
        .windows(2)
        .position(|w| w[0] == "--sandbox" && w[1] == "workspace-write")
        .map(|i| i + 1)
    {
        argv[mode] = "danger-full-access".into();
    }
}

/// `model_providers.aifactory={name=..., base_url=..., env_key=..., wire_api="responses"}`.
fn provider(settings: &HeadlessSettings) -> String {
    let mut fields = vec![format!("name={}", toml_str(PROVIDER))];
    if let Some(url) = settings.base_url {
        fields.push(format!("base_url={}", toml_str(url)));
    }
    if let Some(var) = settings.api_key_env {
        fields.push(format!("env_key={}", toml_str(var)));
    }
    fields.push(format!("wire_api={}", toml_str("responses")));
    fields.push("request_max_retries=0".into());
    fields.push("stream_max_retries=0".into());
    format!("model_providers.{PROVIDER}={{{}}}", fields.join(", "))
}

/// `text` as a TOML string, quoted and escaped.
fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// The prompt of an attempt: why it was restarted (a resumed attempt), the task's title, its
/// `spec.md` when there is one, and how to report progress in `progress_file`.
pub fn prompt(
    title: &str,
    spec: Option<&str>,
    progress_file: &Path,
    why_restarted: Option<&str>,
) -> String {
    let progress = progress_file.display();
    let mut out = String::new();
    if let Some(why) = why_restarted {
        out.push_str(&format!(
            "This attempt continues your earlier work on this task; why it was restarted: {why}. \
             Check the state of the working tree, then carry on where you stopped.\n\n"
        ));
    }
    out.push_str(&format!("# Task: {title}\n\n"));
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        Some(spec) if spec.len() > MAX_SPEC_BYTES => {
            let mut end = MAX_SPEC_BYTES;
            while !spec.is_char_boundary(end) {
                end -= 1;
            }
            let file = progress_file.with_file_name("spec.md");
            out.push_str(&format!(
                "## Spec\n\n{}\n\n(The spec goes on: read the rest in {}.)\n\n",
                &spec[..end],
                file.display()
            ));
        }
        Some(spec) => out.push_str(&format!("## Spec\n\n{spec}\n\n")),
        None => out.push_str("There is no written spec: work from the title.\n\n"),
    }
    out.push_str(&format!(
        "## Reporting progress\n\n\
         Nobody answers questions while you work: decide, and note your decisions. Report your \
         progress in the file {progress}, one statement a line (append lines or rewrite the \
         file; the last value of each wins):\n\n\
         phase: planning      (one of planning, coding, qa)\n\
         progress: 40         (percent of the task done)\n\
         subtask: 3/7         (subtasks done / subtasks in all)\n\
         any other line       (a short note on what you are doing)\n\n\
         Write `phase: planning` when you start, and update the file as you go.\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_runs_headless_in_stream_json_and_resumes_by_session_id() {
        let settings = HeadlessSettings {
            model: Some("claude-sonnet-4-5"),
            ..HeadlessSettings::default()
        };
        let argv =
            headless_command(AgentKind::ClaudeCode, &settings, "do it", Some("abc")).unwrap();
        assert_eq!(
            argv.join(" "),
            "claude -p --output-format stream-json --verbose --permission-mode bypassPermissions \
             --model claude-sonnet-4-5 --resume abc -- do it"
        );
        let fresh = headless_command(
            AgentKind::ClaudeCode,
            &HeadlessSettings {
                program: Some("/opt/claude"),
                ..HeadlessSettings::default()
            },
            "-p looks like a flag",
            None,
        )
        .unwrap();
        assert_eq!(fresh[0], "/opt/claude");
        assert_eq!(fresh[fresh.len() - 2..], ["--", "-p looks like a flag"]);
        assert!(!fresh.contains(&"--resume".to_string()));
    }

    #[test]
    fn codex_runs_exec_json_in_the_workspace_sandbox_and_resumes_by_thread_id() {
        let settings = HeadlessSettings {
            model: Some("gpt-5"),
            ..HeadlessSettings::default()
        };
        let argv = headless_command(AgentKind::Codex, &settings, "do it", None).unwrap();
        assert_eq!(
            argv.join(" "),
            "codex exec --json --skip-git-repo-check --sandbox workspace-write \
             -c approval_policy=\"never\" --disable plugins -c analytics.enabled=false \
             -m gpt-5 -- do it"
        );
        let resumed = headless_command(AgentKind::Codex, &settings, "go on", Some("t-1")).unwrap();
        assert_eq!(
            resumed[resumed.len() - 4..],
            ["resume", "t-1", "--", "go on"]
        );
    }

    #[test]
    fn openai_compatible_is_codex_with_a_provider_that_names_the_key_variable_only() {
        let settings = HeadlessSettings {
            program: None,
            model: Some("gemini-2.5-pro"),
            base_url: Some("https://generativelanguage.googleapis.com/v1beta/openai/"),
            api_key_env: Some("GEMINI_API_KEY"),
        };
        let argv = headless_command(AgentKind::OpenaiCompatible, &settings, "do it", None).unwrap();
        assert_eq!(argv[..2], ["codex", "exec"]);
        assert!(
            argv.contains(
                &"model_providers.aifactory={name=\"aifactory\", \
              base_url=\"https://generativelanguage.googleapis.com/v1beta/openai/\", \
              env_key=\"GEMINI_API_KEY\", wire_api=\"responses\", \
              request_max_retries=0, stream_max_retries=0}"
                    .to_string()
            )
        );
        assert!(argv.contains(&"model_provider=\"aifactory\"".to_string()));
        for text in ["a\"b\\c", "it's", "new\nline", "'\"\"\"'"] {
            let table: toml::Table = toml::from_str(&format!("x = {}", toml_str(text))).unwrap();
            assert_eq!(table["x"].as_str(), Some(text));
        }
    }

    #[test]
    fn opaque_kinds_have_no_built_in_command() {
        let settings = HeadlessSettings::default();
        for kind in [AgentKind::Custom, AgentKind::GeminiCli] {
            assert_eq!(headless_command(kind, &settings, "x", None), None);
        }
    }

    #[test]
    fn the_prompt_has_the_title_spec_progress_contract_and_why_it_was_restarted() {
        let file = Path::new("/w/.aifactory/specs/s1/build-progress.txt");
        let first = prompt("Add a parser", Some("Parse the lines.\n"), file, None);
        assert!(first.starts_with("# Task: Add a parser\n\n## Spec\n\nParse the lines.\n"));
        assert!(first.contains("in the file /w/.aifactory/specs/s1/build-progress.txt"));
        for line in ["phase: planning", "progress: 40", "subtask: 3/7"] {
            assert!(first.contains(line), "{line}");
        }
        assert!(!first.contains("restarted"));

        let again = prompt("Add a parser", None, file, Some("it stalled"));
        assert!(again.starts_with("This attempt continues"));
        assert!(again.contains("why it was restarted: it stalled."));
        assert!(again.contains("There is no written spec"));

        let long = "ü".repeat(MAX_SPEC_BYTES);
        let cut = prompt("Big", Some(&long), file, None);
        assert!(cut.len() < MAX_SPEC_BYTES + 2048);
        assert!(cut.contains("read the rest in /w/.aifactory/specs/s1/spec.md"));
    }
}
