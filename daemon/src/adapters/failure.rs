//! Why an agent's run failed: the evidence its adapter gathered (the result line, the errors
//! and retry notices the CLI reported, denied tool calls, the last lines of plain output), and
//! classifying it with the exit status into a [`Failure`] with what to do about it.
//!
//! Structured fields (an HTTP status, the CLI's own error word) decide first; the CLI's error
//! texts second, since both CLIs put the provider's answer in them; the plain-text tail is read
//! only for what only it shows (a refused flag, the refusal to run as root).

use std::collections::VecDeque;

use aifactory_common::agent::{Failure, FailureKind};
use aifactory_common::pane::ExitInfo;

use super::Cli;
use super::summary;

/// Plain-text lines kept for classifying.
const TAIL_LINES: usize = 20;
const TAIL_LINE_CHARS: usize = 300;
/// Denials kept (the count keeps going).
const MAX_DENIALS: usize = 20;
/// How much of an error text a failure's message keeps.
const MESSAGE_CHARS: usize = 500;

/// What a CLI said about an error, a retry or its result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reported {
    /// The provider's HTTP status, when the CLI gives it as a field.
    pub status: Option<u16>,
    /// The CLI's own words for it (`authentication_error`, `prompt_too_long`, ...), space-separated.
    pub code: String,
    pub text: String,
    /// How long the CLI waits before it retries (Claude Code's `retry_delay_ms`, which honours
    /// the provider's `retry-after`).
    pub delay_ms: Option<u64>,
}

/// The end of a run as its result line said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ended {
    pub ok: bool,
    pub max_turns: bool,
    pub report: Reported,
}

/// Everything an adapter has read that can explain a failure.
#[derive(Debug, Default)]
pub struct Evidence {
    /// The last result line.
    pub result: Option<Ended>,
    /// The last error the CLI reported on its own (not as a result, not as a retry).
    pub error: Option<Reported>,
    /// The last notice of a request the CLI retries.
    pub retry: Option<Reported>,
    /// Denied tool calls: tool and summary, the first [`MAX_DENIALS`].
    pub denials: Vec<(String, String)>,
    pub denial_count: usize,
    /// The last lines of plain output.
    pub tail: VecDeque<String>,
}

impl Evidence {
    pub fn denied(&mut self, tool: &str, summary: &str) {
        self.denial_count += 1;
        if self.denials.len() < MAX_DENIALS {
            self.denials.push((tool.to_string(), summary.to_string()));
        }
    }

    /// Keeps a line of plain output (escape sequences removed), the last [`TAIL_LINES`].
    pub fn plain_line(&mut self, line: &[u8]) {
        // Only the start of a long line is read: what classifies is at the start.
        let start = &line[..line.len().min(TAIL_LINE_CHARS * 8)];
        let text = summary::cut(&String::from_utf8_lossy(start), TAIL_LINE_CHARS);
        if text.is_empty() {
            return;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text);
    }
}

/// Why the run failed, or `None` when it succeeded: it exited 0 (or printed a good result
/// when the exit is unknown), with no error result and nothing denied.
pub fn classify(cli: Option<Cli>, ev: &Evidence, exit: Option<&ExitInfo>) -> Option<Failure> {
    let code = exit.and_then(|e| e.code);
    let signal = exit.and_then(|e| e.signal).filter(|_| code.is_none());
    let result_ok = ev.result.as_ref().map(|r| r.ok);
    let exited_ok = match exit {
        Some(_) => code == Some(0),
        None => result_ok == Some(true),
    };
    if exited_ok && result_ok != Some(false) && ev.denial_count == 0 {
        return None;
    }

    let failed = ev.result.as_ref().filter(|r| !r.ok);
    let clues = Clues::new(
        failed
            .map(|r| &r.report)
            .into_iter()
            .chain(ev.error.as_ref())
            .chain(ev.retry.as_ref()),
    );
    let tail = ev.tail.iter().map(|l| l.to_lowercase()).collect::<Vec<_>>();
    let config = tail
        .iter()
        .map(String::as_str)
        .chain([clues.words.as_str()])
        .find_map(ConfigCause::of);

    let kind = if signal.is_some() {
        // A run killed while the CLI retried a bad key is an auth failure all the same.
        clues.provider_kind().unwrap_or(FailureKind::Killed)
    } else if config.is_some() {
        FailureKind::Config
    } else if ev.denial_count > 0 && clues.provider_kind().is_none() {
        FailureKind::PermissionDenied
    } else if failed.is_some_and(|r| r.max_turns) {
        FailureKind::MaxTurns
    } else if clues.any(&[
        "prompt_too_long",
        "prompt is too long",
        "context_length_exceeded",
        "context length",
        "context window",
        "maximum context",
    ]) {
        FailureKind::ContextOverflow
    } else if let Some(kind) = clues.provider_kind() {
        kind
    } else if failed.is_none() && matches!(code, Some(129 | 130 | 137 | 143)) {
        // 128 + SIGHUP, SIGINT, SIGKILL, SIGTERM: the CLI died of the signal it was sent.
        FailureKind::Killed
    } else {
        FailureKind::Crashed
    };

    let exit_said = exit.map_or_else(|| "it ended".to_string(), ExitInfo::describe);
    let said = match kind {
        FailureKind::PermissionDenied => Some(denied_message(ev)),
        FailureKind::Config => ev
            .tail
            .iter()
            .rfind(|l| ConfigCause::of(&l.to_lowercase()).is_some())
            .cloned()
            .or_else(|| clues.first_text()),
        _ => clues.first_text().or_else(|| ev.tail.back().cloned()),
    };
    let message = match said {
        Some(text) => format!("{} ({exit_said})", summary::cut(&text, MESSAGE_CHARS)),
        None => exit_said,
    };
    let retry_after_ms = matches!(kind, FailureKind::RateLimit | FailureKind::Overloaded)
        .then(|| clues.retry_after_ms())
        .flatten();
    Some(Failure {
        kind,
        message,
        fix: fix(cli, kind, config).to_string(),
        retry_after_ms,
    })
}

fn denied_message(ev: &Evidence) -> String {
    let calls = ev
        .denials
        .iter()
        .take(3)
        .map(|(tool, summary)| format!("{tool} ({summary})"))
        .collect::<Vec<_>>()
        .join(", ");
    let more = ev.denial_count.saturating_sub(3);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "{} tool call{} denied: {calls}{more}",
        ev.denial_count,
        if ev.denial_count == 1 {
            " was"
        } else {
            "s were"
        }
    )
}

/// The reports' statuses and words, lowercased, for matching.
struct Clues<'a> {
    reports: Vec<&'a Reported>,
    statuses: Vec<u16>,
    words: String,
}

impl<'a> Clues<'a> {
    fn new(reports: impl Iterator<Item = &'a Reported>) -> Self {
        let reports: Vec<_> = reports.collect();
        let statuses = reports.iter().filter_map(|r| r.status).collect();
        let words = reports
            .iter()
            .map(|r| format!("{} {}", r.code, r.text))
            .collect::<Vec<_>>()
            .join("\n")
            .to_lowercase();
        Clues {
            reports,
            statuses,
            words,
        }
    }

    fn any(&self, needles: &[&str]) -> bool {
        needles.iter().any(|n| self.words.contains(n))
    }

    fn status(&self, status: u16) -> bool {
        self.statuses.contains(&status) || has_number(&self.words, &status.to_string())
    }

    /// A failure of the provider's: the key, its rate limit, its load.
    fn provider_kind(&self) -> Option<FailureKind> {
        if self.status(401)
            || self.any(&[
                "authentication",
                "invalid api key",
                "incorrect api key",
                "invalid x-api-key",
                "not logged in",
                "missing environment variable",
                "/login",
                "unauthorized",
            ])
        {
            Some(FailureKind::Auth)
        } else if self.status(429) || self.any(&["rate_limit", "rate limit", "too many requests"]) {
            Some(FailureKind::RateLimit)
        } else if self.status(529)
            || self.status(503)
            || self.any(&["overloaded", "service unavailable"])
        {
            Some(FailureKind::Overloaded)
        } else {
            None
        }
    }

    fn first_text(&self) -> Option<String> {
        self.reports
            .iter()
            .map(|r| r.text.trim())
            .find(|t| !t.is_empty())
            .map(str::to_string)
    }

    /// The wait the CLI or the provider named: a retry delay, else "try again in 20s" or
    /// "retry after 20" in an error text.
    fn retry_after_ms(&self) -> Option<u64> {
        self.reports
            .iter()
            .find_map(|r| r.delay_ms)
            .or_else(|| wait_in_text(&self.words))
    }
}

/// `number` in `text` with no digit either side.
fn has_number(text: &str, number: &str) -> bool {
    text.match_indices(number).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + number.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// `try again in 1.5s`, `try again in 300ms`, `retry after 20` (seconds), in lowercase text.
fn wait_in_text(text: &str) -> Option<u64> {
    ["try again in ", "retry after ", "retry-after: "]
        .iter()
        .find_map(|lead| {
            let at = text.find(lead)? + lead.len();
            let rest = &text[at..];
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let number: f64 = rest[..number_len].parse().ok()?;
            let unit = rest[number_len..].trim_start();
            let ms = if unit.starts_with("ms") {
                number
            } else {
                number * 1000.0
            };
            (ms.is_finite() && ms >= 0.0).then_some(ms.round() as u64)
        })
}

/// Which configuration keeps the agent from running.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ConfigCause {
    /// Claude Code refuses `bypassPermissions` as root.
    Root,
    /// The CLI refused a flag or argument of the command.
    Arguments,
    /// The conversation to resume is gone.
    ResumeGone,
    /// The CLI cannot read its configuration (codex: a `-c` value or `config.toml`).
    ConfigFile,
}

impl ConfigCause {
    /// The cause a lowercased line shows, if any.
    fn of(line: &str) -> Option<ConfigCause> {
        if line.contains("cannot be used with root/sudo privileges") {
            Some(ConfigCause::Root)
        } else if line.contains("unknown option")
            || line.contains("unexpected argument")
            || line.contains("invalid value for")
            || line.contains("unrecognized option")
        {
            Some(ConfigCause::Arguments)
        } else if line.contains("no conversation found with session id")
            || line.contains("no rollout found for thread id")
        {
            Some(ConfigCause::ResumeGone)
        } else if line.contains("error loading config.toml") {
            Some(ConfigCause::ConfigFile)
        } else {
            None
        }
    }
}

/// A session lost with its monitor: its end is unknown.
pub fn lost(reason: &str) -> Failure {
    Failure {
        kind: FailureKind::Crashed,
        message: format!("lost: {reason}"),
        fix: fix(None, FailureKind::Crashed, None).to_string(),
        retry_after_ms: None,
    }
}

/// What to do about a failure of this kind (`cli`: the agent's CLI, when it is known).
fn fix(cli: Option<Cli>, kind: FailureKind, config: Option<ConfigCause>) -> &'static str {
    match (kind, cli) {
        (FailureKind::Auth, Some(Cli::Claude)) => {
            "check the profile's key source (a systemd credential or an env_file with ANTHROPIC_API_KEY) or log the CLI in as aifactoryd's user (run `claude` once as that user), then restart the task"
        }
        (FailureKind::Auth, Some(Cli::Codex)) => {
            "check the profile's key source (a systemd credential or an env_file with the key its provider reads) or log the CLI in as aifactoryd's user (`codex login` as that user), then restart the task"
        }
        (FailureKind::Auth, None) => {
            "check the profile's key source (a systemd credential or an env_file) or the agent's own login as aifactoryd's user, then restart the task"
        }
        (FailureKind::PermissionDenied, None) => {
            "give the headless agent the permissions it needs in the profile's `command`, then restart the task"
        }
        (FailureKind::RateLimit, _) => {
            "the provider limits requests for this key: the task is retried after a back-off; run fewer agents at once or raise the key's limit if it keeps happening"
        }
        (FailureKind::Overloaded, _) => {
            "the provider is overloaded (a server-side problem, usually brief): the task is retried after a back-off"
        }
        (FailureKind::PermissionDenied, Some(Cli::Claude)) => {
            "a headless agent needs --permission-mode bypassPermissions in its profile (the built-in claude-code command has it; add it to a hand-written `command`), then restart the task"
        }
        (FailureKind::PermissionDenied, Some(Cli::Codex)) => {
            "a headless agent needs a sandbox that lets it work: use the built-in codex command (--sandbox workspace-write) or add it to the profile's `command`, then restart the task"
        }
        (FailureKind::MaxTurns, _) => {
            "the agent used all the turns its command allows: raise or drop --max-turns in the profile's command, or split the task; a restart resumes the conversation"
        }
        (FailureKind::ContextOverflow, _) => {
            "the conversation no longer fits the model's context: start over with `aifactoryctl tasks restart --fresh ID`, with a shorter spec or a model with a larger context"
        }
        (FailureKind::Config, _) => match config {
            Some(ConfigCause::Root) => {
                "claude refuses bypassPermissions as root: run aifactoryd as a normal user (the packaged service runs as `aifactory`, a user daemon as your own user), or set IS_SANDBOX=1 in the profile's env only inside a disposable sandbox"
            }
            Some(ConfigCause::ResumeGone) => {
                "the agent's saved conversation is gone (another HOME or CODEX_HOME, or deleted): start over with `aifactoryctl tasks restart --fresh ID`"
            }
            Some(ConfigCause::ConfigFile) => {
                "the CLI cannot read its configuration: fix its config file or the profile's `-c` values as the message says"
            }
            Some(ConfigCause::Arguments) | None => {
                "the CLI refused its arguments: check the profile's `command` against the CLI's `--help` (its version may differ from the one the built-in command expects)"
            }
        },
        (FailureKind::Crashed, _) => {
            "see what the agent printed last with `aifactoryctl tasks logs ID`; a restart resumes the conversation"
        }
        (FailureKind::Oom, _) => {
            "raise memory_max in the agent's profile (or [limits]) of the daemon's config, or give the task less to hold in memory"
        }
        (FailureKind::Killed, _) => {
            "a signal ended the agent (a stop, the OOM killer, a shutdown): `aifactoryctl tasks restart ID` resumes its conversation"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> ExitInfo {
        ExitInfo {
            code: Some(code),
            signal: None,
            ended_at: String::new(),
        }
    }

    fn failed_with(status: Option<u16>, code: &str, text: &str) -> Evidence {
        Evidence {
            result: Some(Ended {
                ok: false,
                max_turns: false,
                report: Reported {
                    status,
                    code: code.into(),
                    text: text.into(),
                    delay_ms: None,
                },
            }),
            ..Evidence::default()
        }
    }

    fn kind(ev: &Evidence, exit: &ExitInfo) -> FailureKind {
        classify(Some(Cli::Claude), ev, Some(exit))
            .map(|f| f.kind)
            .unwrap()
    }

    #[test]
    fn exit_zero_with_a_good_result_is_no_failure() {
        let ok = Evidence {
            result: Some(Ended {
                ok: true,
                ..Ended::default()
            }),
            ..Evidence::default()
        };
        assert_eq!(classify(Some(Cli::Claude), &ok, Some(&exited(0))), None);
        assert_eq!(classify(Some(Cli::Claude), &ok, None), None);
        assert_eq!(
            classify(Some(Cli::Claude), &Evidence::default(), Some(&exited(0))),
            None
        );
        assert_eq!(kind(&ok, &exited(2)), FailureKind::Crashed);
        let nothing = classify(Some(Cli::Claude), &Evidence::default(), None).unwrap();
        assert_eq!(nothing.kind, FailureKind::Crashed);
        assert_eq!(nothing.message, "it ended");
    }

    #[test]
    fn texts_classify_when_no_field_does() {
        let e1 = exited(1);
        for (text, expected) in [
            (
                "unexpected status 401 Unauthorized: Incorrect API key provided",
                FailureKind::Auth,
            ),
            ("Not logged in · Please run /login", FailureKind::Auth),
            (
                "Missing environment variable: `GEMINI_API_KEY`.",
                FailureKind::Auth,
            ),
            (
                "unexpected status 529 <unknown status code>: busy, url: http://127.0.0.1:4/v1/responses",
                FailureKind::Overloaded,
            ),
            (
                "exceeded retry limit, last status: 429 Too Many Requests",
                FailureKind::RateLimit,
            ),
            (
                "unexpected status 503 Service Unavailable: The server is overloaded",
                FailureKind::Overloaded,
            ),
            (
                "This model's maximum context length is 128000 tokens (context_length_exceeded)",
                FailureKind::ContextOverflow,
            ),
            (
                "stream disconnected before completion: idle timeout waiting for SSE",
                FailureKind::Crashed,
            ),
            ("listening on 127.0.0.1:14290", FailureKind::Crashed),
        ] {
            assert_eq!(kind(&failed_with(None, "", text), &e1), expected, "{text}");
        }
    }

    #[test]
    fn the_tail_shows_configuration_failures() {
        let mut ev = Evidence::default();
        ev.plain_line(b"\x1b[31m--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\x1b[0m\r");
        let failure = classify(Some(Cli::Claude), &ev, Some(&exited(1))).unwrap();
        assert_eq!(failure.kind, FailureKind::Config);
        assert_eq!(
            failure.message,
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons (exited 1)"
        );
        assert!(failure.fix.contains("IS_SANDBOX=1"), "{}", failure.fix);

        let mut ev = Evidence::default();
        ev.plain_line(b"error: unexpected argument '--bogus-flag' found");
        ev.plain_line(b"  tip: to pass '--bogus-flag' as a value, use '-- --bogus-flag'");
        let failure = classify(Some(Cli::Codex), &ev, Some(&exited(2))).unwrap();
        assert_eq!(failure.kind, FailureKind::Config);
        assert!(failure.message.starts_with("error: unexpected argument"));

        let mut ev = Evidence::default();
        ev.plain_line(b"Error: thread/resume: thread/resume failed: no rollout found for thread id 01a2 (code -32600)");
        let failure = classify(Some(Cli::Codex), &ev, Some(&exited(1))).unwrap();
        assert_eq!(failure.kind, FailureKind::Config);
        assert!(failure.fix.contains("--fresh"));
    }

    #[test]
    fn a_signal_kills_unless_the_cli_was_retrying_a_provider_error() {
        let signalled = ExitInfo {
            code: None,
            signal: Some(15),
            ended_at: String::new(),
        };
        let failure = classify(Some(Cli::Claude), &Evidence::default(), Some(&signalled)).unwrap();
        assert_eq!(failure.kind, FailureKind::Killed);
        assert_eq!(failure.message, "killed by signal 15");
        assert_eq!(
            kind(&Evidence::default(), &exited(143)),
            FailureKind::Killed
        );
        let retrying = Evidence {
            retry: Some(Reported {
                status: Some(401),
                code: "authentication_failed".into(),
                ..Reported::default()
            }),
            ..Evidence::default()
        };
        assert_eq!(kind(&retrying, &signalled), FailureKind::Auth);
    }

    #[test]
    fn a_wait_is_read_from_the_retry_delay_or_the_text() {
        assert_eq!(wait_in_text("please try again in 1.5s."), Some(1500));
        assert_eq!(wait_in_text("try again in 300ms"), Some(300));
        assert_eq!(wait_in_text("retry after 20 seconds"), Some(20_000));
        assert_eq!(wait_in_text("try again later"), None);
        let ev = failed_with(Some(429), "rate_limit_error", "Please try again in 2s");
        let failure = classify(Some(Cli::Codex), &ev, Some(&exited(1))).unwrap();
        assert_eq!(failure.retry_after_ms, Some(2000));
        assert!(has_number("status: 429 too many", "429"));
        assert!(!has_number("port 14290", "429"));
    }
}
