//! What the daemon understands of an agent's run, as the wire carries it: the typed events an
//! adapter reads from a CLI's structured output ([`AgentEvent`]), a task's transcript entries,
//! token usage and cost ([`Usage`]), and why an attempt failed ([`Failure`]).
//!
//! Part of the protocol (the same compatibility rules as [`crate::protocol`] apply: enums are
//! append-only, any byte change bumps `PROTOCOL_VERSION`); kept apart because it describes the
//! agents, not the daemon.

use serde::{Deserialize, Serialize};

/// Tokens used and money spent, summed over what it covers (a result, an attempt, a task or a
/// project).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// In US dollars, when the CLI reports it (Claude Code does; Codex does not).
    pub cost_usd: Option<f64>,
}

impl Usage {
    /// `self` plus `other`; a cost is known when either side knows one.
    pub fn plus(self, other: Usage) -> Usage {
        let cost_usd = match (self.cost_usd, other.cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        Usage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cache_read_tokens: self
                .cache_read_tokens
                .saturating_add(other.cache_read_tokens),
            cache_write_tokens: self
                .cache_write_tokens
                .saturating_add(other.cache_write_tokens),
            cost_usd,
        }
    }

    /// `self` less `before`, field by field, never below zero: what was added since `before`
    /// (a CLI that reports a thread's running total, after a resume).
    pub fn minus(self, before: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_sub(before.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(before.output_tokens),
            cache_read_tokens: self
                .cache_read_tokens
                .saturating_sub(before.cache_read_tokens),
            cache_write_tokens: self
                .cache_write_tokens
                .saturating_sub(before.cache_write_tokens),
            cost_usd: self
                .cost_usd
                .map(|c| (c - before.cost_usd.unwrap_or(0.0)).max(0.0)),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

/// The end of an agent's run as its CLI reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentResult {
    /// The CLI says the run succeeded.
    pub ok: bool,
    /// The CLI's own word for how it ended (`success`, `error_max_turns`, `turn.failed`, ...).
    pub status: String,
    /// Its final answer, or its error text.
    pub message: Option<String>,
    pub turns: Option<u32>,
    pub duration_ms: Option<u64>,
    pub usage: Usage,
}

/// One thing an agent did, read from one line of its CLI's structured output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// Externally tagged: bincode cannot read internally tagged enums. The rename only shapes JSON.
#[serde(rename_all = "snake_case")]
pub enum AgentEvent {
    /// The CLI started a conversation: the id that resumes it, its model and tools.
    Started {
        agent_session_id: String,
        model: Option<String>,
        tools: Vec<String>,
    },
    /// Text the assistant said.
    Message { text: String },
    /// The agent called a tool; `summary` is a short account of the input (a command, a path).
    ToolCall {
        call_id: Option<String>,
        tool: String,
        summary: String,
    },
    /// What a tool call gave back; `summary` is its first line or the error.
    ToolResult {
        call_id: Option<String>,
        tool: Option<String>,
        ok: bool,
        summary: String,
    },
    /// A tool call the CLI refused for want of permission.
    Denied { tool: String, summary: String },
    /// The run ended.
    Result(AgentResult),
}

impl AgentEvent {
    /// The tool this event is about, if any.
    pub fn tool(&self) -> Option<&str> {
        match self {
            AgentEvent::ToolCall { tool, .. } | AgentEvent::Denied { tool, .. } => Some(tool),
            AgentEvent::ToolResult { tool, .. } => tool.as_deref(),
            _ => None,
        }
    }
}

/// One stored event of a task's transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TranscriptEntry {
    /// Position in the task's transcript, from 1, never reused.
    pub seq: u64,
    /// The attempt that produced it.
    pub attempt: u32,
    /// RFC 3339, UTC, with milliseconds.
    pub at: String,
    pub event: AgentEvent,
}

/// Why an attempt failed, by cause: what the restart policy acts on.
// The rename only shapes JSON; bincode encodes variants by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The key is invalid or the CLI is not logged in.
    Auth,
    /// HTTP 429 from the provider.
    RateLimit,
    /// HTTP 529 / 503: the provider is overloaded.
    Overloaded,
    /// Tool calls were refused for want of permission.
    PermissionDenied,
    /// The run hit its turn limit.
    MaxTurns,
    /// The conversation no longer fits the model's context.
    ContextOverflow,
    /// The profile or the machine keeps the agent from running (a refused flag, a missing
    /// program, running as root without a sandbox).
    Config,
    /// The agent ended with an error nothing else explains.
    Crashed,
    /// A signal ended it.
    Killed,
    /// The kernel killed it (or one of its processes) at its cgroup's `memory_max`.
    Oom,
}

impl FailureKind {
    pub const ALL: [FailureKind; 10] = [
        FailureKind::Auth,
        FailureKind::RateLimit,
        FailureKind::Overloaded,
        FailureKind::PermissionDenied,
        FailureKind::MaxTurns,
        FailureKind::ContextOverflow,
        FailureKind::Config,
        FailureKind::Crashed,
        FailureKind::Killed,
        FailureKind::Oom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Auth => "auth",
            FailureKind::RateLimit => "rate_limit",
            FailureKind::Overloaded => "overloaded",
            FailureKind::PermissionDenied => "permission_denied",
            FailureKind::MaxTurns => "max_turns",
            FailureKind::ContextOverflow => "context_overflow",
            FailureKind::Config => "config",
            FailureKind::Crashed => "crashed",
            FailureKind::Killed => "killed",
            FailureKind::Oom => "oom",
        }
    }

    /// Whether another attempt can help: never for a key or a profile that is wrong, a
    /// conversation too long to resume, or a task that needs more memory than its limit.
    pub fn retryable(self) -> bool {
        !matches!(
            self,
            FailureKind::Auth
                | FailureKind::Config
                | FailureKind::PermissionDenied
                | FailureKind::ContextOverflow
                | FailureKind::Oom
        )
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Failure {
    pub kind: FailureKind,
    /// What the CLI or the exit status said.
    pub message: String,
    /// What to do about it.
    pub fix: String,
    /// How long the provider asked to wait before trying again, when it said.
    pub retry_after_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_adds_up_and_keeps_a_known_cost() {
        let a = Usage {
            input_tokens: 10,
            output_tokens: 5,
            cost_usd: Some(0.5),
            ..Usage::default()
        };
        let b = Usage {
            input_tokens: 1,
            cache_read_tokens: 7,
            ..Usage::default()
        };
        let sum = a.plus(b);
        assert_eq!(sum.input_tokens, 11);
        assert_eq!(sum.cache_read_tokens, 7);
        assert_eq!(sum.cost_usd, Some(0.5));
        assert_eq!(Usage::default().plus(b).cost_usd, None);
        assert!(Usage::default().is_empty() && !b.is_empty());
    }

    #[test]
    fn usage_less_an_earlier_total_never_goes_below_zero() {
        let before = Usage {
            input_tokens: 10,
            output_tokens: 9,
            cost_usd: Some(0.5),
            ..Usage::default()
        };
        let total = Usage {
            input_tokens: 15,
            output_tokens: 4,
            cost_usd: Some(0.75),
            ..Usage::default()
        };
        let added = total.minus(before);
        assert_eq!((added.input_tokens, added.output_tokens), (5, 0));
        assert_eq!(added.cost_usd, Some(0.25));
        assert_eq!(before.minus(total).cost_usd, Some(0.0));
        assert_eq!(Usage::default().minus(before).cost_usd, None);
    }

    #[test]
    fn auth_and_config_failures_are_never_retried() {
        let retried: Vec<_> = FailureKind::ALL
            .into_iter()
            .filter(|k| k.retryable())
            .map(FailureKind::as_str)
            .collect();
        assert_eq!(
            retried,
            ["rate_limit", "overloaded", "max_turns", "crashed", "killed"]
        );
    }
}
