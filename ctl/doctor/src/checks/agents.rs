//! Agent profiles: whether each can run, whether each runs confined (its cage), which use a
//! provider past its end of life, and whether a test override replaces every agent's command.

use std::path::Path;

use aifactory_common::diagnose::{Check, CheckStatus, end_of_life};
use aifactory_common::protocol::{AgentInfo, ProfileProblem};

use super::{RELOAD, config_hint, profiles};
use crate::{Facts, fail, ok, skip, warn};

/// The fixture directory the old product's end-to-end workflow creates.
const FIXTURE_DIR: &str = "/tmp/aifactory-e2e-fixture";

/// Why the checks of agent profiles did not run, and what lets them.
const NO_PROFILES: &str = "the agent profiles cannot be read: the daemon does not answer and `aifactoryd check` gives no report";
const LET_PROFILES_RUN: &str = "start the daemon, or install aifactoryd next to aifactoryctl";

/// A problem that the end-of-life check reports instead.
fn is_eol_problem(problem: &ProfileProblem) -> bool {
    matches!(problem, ProfileProblem::EndOfLife { .. })
}

pub(super) fn agent_profiles(f: &Facts) -> Check {
    let name = "agent-profiles";
    let Some(agents) = profiles(f) else {
        return skip(name, NO_PROFILES, Some(LET_PROFILES_RUN.into()));
    };
    let bad: Vec<(&AgentInfo, Vec<&ProfileProblem>)> = agents
        .iter()
        .map(|a| {
            let problems: Vec<&ProfileProblem> =
                a.problems.iter().filter(|p| !is_eol_problem(p)).collect();
            (a, problems)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    if bad.is_empty() {
        return ok(
            name,
            format!(
                "{} profile(s) can run: {}",
                agents.len(),
                agents
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let message = bad
        .iter()
        .map(|(a, p)| {
            format!(
                "{} ({}): {}",
                a.name,
                a.kind.as_str(),
                p.iter()
                    .map(|problem| problem.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
        .collect::<Vec<_>>()
        .join(" | ");
    let names: Vec<String> = bad
        .iter()
        .map(|(a, _)| format!("[agents.{}]", a.name))
        .collect();
    fail(
        name,
        message,
        format!(
            "do what each problem says for {} {} (the profile, its key file or credential, or the user aifactoryd runs as), {RELOAD}",
            names.join(", "),
            config_hint(f)
        ),
    )
}

/// Whether each profile's agents run confined here (Landlock), as the daemon decides it.
pub(super) fn agent_sandbox(f: &Facts) -> Check {
    let name = "agent-sandbox";
    let Some(online) = f.online() else {
        return skip(
            name,
            "the agents' cages are known to the running daemon only, and it does not answer",
            Some("start the daemon".into()),
        );
    };
    let Some(sandboxes) = &online.sandboxes else {
        return skip(
            name,
            "this daemon does not describe its agents' cages (older than aifactoryctl)",
            Some("restart the daemon from the same build as aifactoryctl".into()),
        );
    };
    let mut status = CheckStatus::Ok;
    let mut found = Vec::new();
    for (agent, s) in sandboxes {
        let this = if s.outcome.starts_with("refused") {
            CheckStatus::Fail
        } else if s.outcome == "runs confined" {
            CheckStatus::Ok
        } else {
            CheckStatus::Warn
        };
        if this == CheckStatus::Fail || (this == CheckStatus::Warn && status == CheckStatus::Ok) {
            status = this;
        }
        found.push(format!("{agent} (sandbox = {}): {}", s.mode, s.outcome));
    }
    let landlock = sandboxes
        .first()
        .map(|(_, s)| s.landlock.clone())
        .unwrap_or_default();
    let message = format!("{landlock}; {}", found.join(" | "));
    match status {
        CheckStatus::Ok => ok(name, message),
        _ => crate::check(
            name,
            status,
            message,
            Some(format!(
                "see `aifactoryctl agents show NAME`: use a kernel with Landlock (5.13+, enabled in `lsm=`; under systemd the unit must allow the landlock_* system calls), or choose sandbox = \"best-effort\" or \"off\" deliberately {}",
                config_hint(f)
            )),
        ),
    }
}

pub(super) fn deprecated_providers(f: &Facts) -> Check {
    let name = "deprecated-providers";
    let Some(agents) = profiles(f) else {
        return skip(name, NO_PROFILES, Some(LET_PROFILES_RUN.into()));
    };
    let mut found = Vec::new();
    let mut status = CheckStatus::Ok;
    let mut fix = None;
    for a in agents {
        let Some((day, _, advice)) = end_of_life(a.kind) else {
            continue;
        };
        let refused = a.problems.iter().any(is_eol_problem);
        let past = a.problems.is_empty() || refused;
        if refused {
            status = CheckStatus::Fail;
            found.push(format!(
                "profile {} uses {}, past its end of life on {day}: tasks that use it are refused",
                a.name,
                a.kind.as_str()
            ));
        } else if past {
            if status == CheckStatus::Ok {
                status = CheckStatus::Warn;
            }
            found.push(format!(
                "profile {} uses {} (end of life {day}) with allow_eol = true",
                a.name,
                a.kind.as_str()
            ));
        }
        fix = Some(format!("{advice} {}", config_hint(f)));
    }
    if found.is_empty() {
        return ok(
            name,
            "no profile uses a provider past its end of life".into(),
        );
    }
    crate::check(name, status, found.join("; "), fix)
}

pub(super) fn test_fixtures(f: &Facts) -> Check {
    let name = "test-fixtures";
    let overridden = match (f.online(), &f.local) {
        (Some(o), _) => o
            .agents
            .iter()
            .find(|a| a.effective_command != a.command)
            .map(|a| a.effective_command.join(" ")),
        (None, Ok(l)) => l.test_agent_cmd.clone(),
        (None, Err(_)) => {
            return skip(name, NO_PROFILES, Some(LET_PROFILES_RUN.into()));
        }
    };
    let fixture = Path::new(FIXTURE_DIR);
    let fixture_state = if fixture.is_dir() {
        format!("{FIXTURE_DIR} exists")
    } else {
        format!("{FIXTURE_DIR} does not exist (end-to-end runs need it: `mkdir -p {FIXTURE_DIR}`)")
    };
    match overridden {
        Some(cmd) => warn(
            name,
            format!("AIFACTORY_TEST_AGENT_CMD (or test_agent_cmd) is set in the daemon: every agent runs `{cmd}` instead of its own command; {fixture_state}"),
            "unless this is a test machine, remove it from the daemon's environment (`systemctl edit aifactoryd`, or unset it) and test_agent_cmd from the config, then restart the daemon".into(),
        ),
        None => ok(name, "no test override: agents run their own commands".into()),
    }
}
