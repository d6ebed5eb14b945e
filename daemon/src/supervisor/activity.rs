//! What a runner knows of one session's activity while it watches it: when the agent last
//! showed life (and so when it stalls), when its output went quiet (and so when to look for a
//! prompt), whether it waits for input, and when the last-output time was last written. Pure
//! state: the runner feeds it events with the time they came and carries out what it answers.

use std::time::Duration;

use aifactory_common::protocol::TaskPhase;
use regex::Regex;
use tokio::time::Instant;

use super::output::LineBuffer;

/// Output silence after which the last line is checked for a prompt.
pub const QUIET: Duration = Duration::from_millis(750);
/// How often at most the last-output time is written to the store (it is kept in memory).
pub const OUTPUT_TIME_EVERY: Duration = Duration::from_secs(5);
/// Stands for "never" where a deadline would fall past what the clock can hold.
const NEVER: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + after`, or [`NEVER`] from now when that sum is past what the clock can hold (the
/// config bounds its durations, but no duration may panic a runner).
pub fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(NEVER))
        .unwrap_or(now)
}

#[derive(Debug)]
pub struct Activity {
    stall_after: Duration,
    /// `None` once the stall was recorded: the next sign of life undoes it.
    stall_deadline: Option<Instant>,
    /// Set by output; when it passes, the partial last line is checked for a prompt.
    quiet_deadline: Option<Instant>,
    /// When the last-output time was last written (`None`: no output yet).
    output_time_written: Option<Instant>,
    /// The task is recorded as waiting for input.
    waiting: bool,
    line: LineBuffer,
}

/// What the runner does after output came, in this order.
#[derive(Debug, Default, PartialEq)]
pub struct OnOutput {
    /// The task was stalled: it is active again.
    pub unstall: bool,
    /// The task was waiting for input: it no longer does.
    pub stop_waiting: bool,
    /// Phases the agent reported with markers in its output.
    pub phases: Vec<TaskPhase>,
    /// Time to write the last-output time.
    pub write_output_time: bool,
}

impl Activity {
    pub fn new(now: Instant, stall_after: Duration) -> Activity {
        Activity {
            stall_after,
            stall_deadline: Some(later(now, stall_after)),
            quiet_deadline: None,
            output_time_written: None,
            waiting: false,
            line: LineBuffer::default(),
        }
    }

    pub fn stall_deadline(&self) -> Option<Instant> {
        self.stall_deadline
    }

    pub fn quiet_deadline(&self) -> Option<Instant> {
        self.quiet_deadline
    }

    /// The agent printed `data` at `now`.
    pub fn output(&mut self, now: Instant, data: &[u8]) -> OnOutput {
        let unstall = self.stall_deadline.is_none();
        self.stall_deadline = Some(later(now, self.stall_after));
        self.quiet_deadline = Some(later(now, QUIET));
        let stop_waiting = std::mem::take(&mut self.waiting);
        let phases = self.line.push(data);
        let write_output_time = self
            .output_time_written
            .is_none_or(|t| now.duration_since(t) >= OUTPUT_TIME_EVERY);
        if write_output_time {
            self.output_time_written = Some(now);
        }
        OnOutput {
            unstall,
            stop_waiting,
            phases,
            write_output_time,
        }
    }

    /// The agent's progress file said something new at `now`; true when that ends a stall.
    pub fn progress(&mut self, now: Instant) -> bool {
        let unstall = self.stall_deadline.is_none();
        self.stall_deadline = Some(later(now, self.stall_after));
        unstall
    }

    /// The quiet deadline passed: the prompt the agent now waits at, if its last line is one
    /// of `prompts` (`None`: the profile is not usable, nothing is recognised).
    pub fn quiet(&mut self, prompts: Option<&[Regex]>) -> Option<String> {
        self.quiet_deadline = None;
        let prompt = self.line.prompt(prompts?)?;
        self.waiting = true;
        Some(prompt)
    }

    /// The stall deadline passed; the stall is recorded until the agent shows life.
    pub fn stalled(&mut self) {
        self.stall_deadline = None;
    }

    /// The session ended: whether the last-output time must be written a last time.
    pub fn had_output(&self) -> bool {
        self.output_time_written.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(60);

    #[test]
    fn a_stall_time_past_the_clock_never_stalls_and_never_panics() {
        // `stall_after = 9223372036854775807` once panicked here ("overflow when adding
        // duration to instant") and left the task in planning.
        let t0 = Instant::now();
        let mut a = Activity::new(t0, Duration::MAX);
        let far = a.stall_deadline().unwrap();
        assert!(far > t0 + Duration::from_secs(86_400 * 365), "{far:?}");
        a.output(t0, b"x");
        a.stalled();
        assert!(a.progress(t0));
        assert!(a.stall_deadline().is_some());
    }

    #[test]
    fn output_moves_the_deadlines_and_writes_its_time_now_and_then() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0, STALL);
        assert_eq!(a.stall_deadline(), Some(t0 + STALL));
        assert_eq!(a.quiet_deadline(), None);
        assert!(!a.had_output());
        let at = t0 + Duration::from_secs(1);
        let first = a.output(at, b"hello\n");
        assert_eq!(
            first,
            OnOutput {
                write_output_time: true,
                ..OnOutput::default()
            }
        );
        assert_eq!(a.stall_deadline(), Some(at + STALL));
        assert_eq!(a.quiet_deadline(), Some(at + QUIET));
        assert!(a.had_output());
        assert!(
            !a.output(at + Duration::from_secs(4), b"x")
                .write_output_time
        );
        assert!(a.output(at + OUTPUT_TIME_EVERY, b"x").write_output_time);
    }

    #[test]
    fn a_stall_ends_with_output_or_progress() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0, STALL);
        a.stalled();
        assert_eq!(a.stall_deadline(), None);
        let at = t0 + STALL + Duration::from_secs(1);
        assert!(a.output(at, b"alive").unstall);
        assert!(!a.output(at, b"alive").unstall);
        a.stalled();
        assert!(a.progress(at));
        assert_eq!(a.stall_deadline(), Some(at + STALL));
        assert!(!a.progress(at));
    }

    #[test]
    fn a_prompt_is_waited_at_until_the_next_output() {
        let prompts = [Regex::new(r"\(y/n\)\s*$").unwrap()];
        let t0 = Instant::now();
        let mut a = Activity::new(t0, STALL);
        a.output(t0, b"Continue? (y/n) ");
        assert_eq!(a.quiet(None), None, "no usable profile, no prompts");
        assert_eq!(a.quiet_deadline(), None);
        a.output(t0, b"");
        assert_eq!(a.quiet(Some(&prompts)).as_deref(), Some("Continue? (y/n)"));
        let next = a.output(t0, b"y\n__EXEC_PHASE__:qa\n");
        assert!(next.stop_waiting);
        assert_eq!(next.phases, [TaskPhase::Qa]);
        assert!(!a.output(t0, b"more").stop_waiting);
        assert_eq!(a.quiet(Some(&prompts)), None);
    }
}
