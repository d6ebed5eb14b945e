//! The checks, one function each, in the order of the troubleshooting guide. Each returns one
//! [`Check`] under a stable name.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aifactory_common::PROTOCOL_VERSION;
use aifactory_common::diagnose::{Check, CheckStatus, end_of_life};
use aifactory_common::protocol::{
    AgentInfo, ProfileProblem, SessionState, SkipReason, StoreHealth, TaskPhase,
};

use super::{Facts, fail, http, ok, warn};

/// The fixture directory the old product's end-to-end workflow creates.
pub const FIXTURE_DIR: &str = "/tmp/aifactory-e2e-fixture";
const HTTP_TOKEN_FILE: &str = "http-token";

pub async fn all(f: &Facts) -> Vec<Check> {
    vec![
        daemon(f),
        socket_access(f),
        agent_profiles(f),
        tasks_stuck(f),
        panes_root(f),
        stale_sessions(f),
        http_token(f),
        http_shim(f).await,
        console_auth(f).await,
        legacy_projects(f),
        state_dir(f),
        project_paths(f).await,
        pr_providers(f),
        deprecated_providers(f),
        test_fixtures(f),
        migrations(f),
        systemd().await,
    ]
}

/// `aifactoryd` next to this aifactoryctl, else on PATH.
pub fn daemon_binary() -> Option<PathBuf> {
    let sibling = std::env::current_exe()
        .ok()?
        .parent()
        .map(|d| d.join("aifactoryd"));
    if let Some(p) = sibling.filter(|p| p.is_file()) {
        return Some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("aifactoryd"))
        .find(|p| p.is_file())
}

fn agents(f: &Facts) -> Option<&[AgentInfo]> {
    match (f.online(), &f.local) {
        (Some(online), _) => Some(&online.agents),
        (None, Ok(local)) => Some(&local.agents),
        (None, Err(_)) => None,
    }
}

fn config_hint(f: &Facts) -> String {
    let file = f
        .online()
        .and_then(|o| o.status.config_file.clone())
        .or_else(|| f.local.as_ref().ok().and_then(|l| l.config_file.clone()));
    match file {
        Some(file) => format!("in {}", file.display()),
        None => "in the daemon's config file (see `aifactoryd --print-config`)".into(),
    }
}

fn state_dir_path(f: &Facts) -> Option<PathBuf> {
    f.online()
        .map(|o| o.status.state_dir.clone())
        .or_else(|| f.local.as_ref().ok().map(|l| l.state_dir.clone()))
}

const RELOAD: &str =
    "then reload the daemon (`systemctl reload aifactoryd`, or `kill -HUP $(pidof aifactoryd)`)";

fn daemon(f: &Facts) -> Check {
    let name = "daemon";
    match &f.online {
        Ok(o) if o.status.protocol == PROTOCOL_VERSION => ok(
            name,
            format!(
                "aifactoryd {} (pid {}, protocol {}) answers on {}",
                o.status.version,
                o.status.pid,
                o.status.protocol,
                o.status.socket.display()
            ),
        ),
        Ok(o) => fail(
            name,
            format!(
                "aifactoryd speaks protocol {}, this aifactoryctl {PROTOCOL_VERSION}",
                o.status.protocol
            ),
            "install matching versions of aifactoryd and aifactoryctl (the same package), then restart the daemon".into(),
        ),
        Err(e) if e.is_permission_denied() => ok(
            name,
            "aifactoryd runs but refuses this user (see socket-access)".into(),
        ),
        Err(e) => fail(
            name,
            format!("aifactoryd does not answer: {e}"),
            "start it: `systemctl start aifactoryd` (system), `systemctl --user start aifactoryd`, or `aifactoryd` in a terminal".into(),
        ),
    }
}

fn socket_access(f: &Facts) -> Check {
    let name = "socket-access";
    let uid = nix::unistd::getuid();
    match &f.online {
        Ok(_) => ok(name, format!("uid {uid} may use the daemon")),
        Err(e) if e.is_permission_denied() => fail(
            name,
            format!("uid {uid} is refused: {e}"),
            "sudo usermod -aG aifactory \"$USER\" (then log in again), or run your own user-mode daemon".into(),
        ),
        Err(_) => ok(name, "not checked: the daemon does not answer".into()),
    }
}

/// A problem that the end-of-life check reports instead.
fn is_eol_problem(problem: &ProfileProblem) -> bool {
    matches!(problem, ProfileProblem::EndOfLife { .. })
}

fn agent_profiles(f: &Facts) -> Check {
    let name = "agent-profiles";
    let Some(agents) = agents(f) else {
        return warn(
            name,
            "cannot read the agent profiles: the daemon does not answer and `aifactoryd check` cannot run".into(),
            "start the daemon, or install aifactoryd next to aifactoryctl".into(),
        );
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
            "edit {} {} as each problem says, {RELOAD}",
            names.join(", "),
            config_hint(f)
        ),
    )
}

fn deprecated_providers(f: &Facts) -> Check {
    let name = "deprecated-providers";
    let Some(agents) = agents(f) else {
        return ok(name, "not checked: no agent profiles could be read".into());
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
    super::check(name, status, found.join("; "), fix)
}

fn tasks_stuck(f: &Facts) -> Check {
    let name = "tasks-stuck";
    let Some(online) = f.online() else {
        return ok(name, "not checked: the daemon does not answer".into());
    };
    let mut problems = Vec::new();
    for t in &online.tasks {
        if t.phase == TaskPhase::Stalled {
            let e = t.stall.as_ref();
            problems.push(format!(
                "task {} ({}) is stalled since {}: no output since {}, no progress since {}, process {} with {} ms CPU",
                t.id,
                t.spec_id,
                e.map(|e| e.detected_at.as_str()).unwrap_or("?"),
                e.and_then(|e| e.last_output_at.as_deref()).unwrap_or("its start"),
                e.and_then(|e| e.last_progress_at.as_deref()).unwrap_or("its start"),
                e.and_then(|e| e.process_state.as_deref()).unwrap_or("gone"),
                e.and_then(|e| e.cpu_time_ms).map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
            ));
        }
        if t.phase.is_active() {
            if !t.spec_dir.is_dir() {
                problems.push(format!(
                    "task {}: its spec directory {} is missing, so its progress cannot be watched",
                    t.id,
                    t.spec_dir.display()
                ));
            } else if t.progress_file.exists()
                && let Err(e) = std::fs::File::open(&t.progress_file)
            {
                problems.push(format!(
                    "task {}: {} cannot be read: {e}",
                    t.id,
                    t.progress_file.display()
                ));
            }
        }
    }
    if problems.is_empty() {
        let working = online.tasks.iter().filter(|t| t.phase.is_active()).count();
        return ok(name, format!("{working} working task(s), none stalled"));
    }
    fail(
        name,
        problems.join("; "),
        "look at the agent's output (`aifactoryctl tasks logs ID`), then `aifactoryctl tasks restart ID` or `aifactoryctl tasks stop ID`; a progress file the daemon cannot read needs `chmod u+r` for the daemon's user".into(),
    )
}

fn panes_root(f: &Facts) -> Check {
    let name = "panes-root";
    let (root, skipped) = match (f.online(), &f.local) {
        (Some(o), _) => (
            Ok(o.status.panes_dir.clone()),
            o.status.panes_skipped.clone(),
        ),
        (None, Ok(l)) => (l.panes_root.clone(), l.panes_skipped.clone()),
        (None, Err(e)) => (Err(e.clone()), Vec::new()),
    };
    let root = match root {
        Ok(root) => root,
        Err(e) => {
            return fail(
                name,
                format!("no pane directory root works: {e}"),
                "create one the daemon's user owns, mode 0700 (`install -d -m 0700 DIR`), and set panes_dir = \"DIR\" in the config".into(),
            );
        }
    };
    // In user mode the system's /run/aifactory/panes is not ours to use: passing it over is the
    // design, not a fault, unless it is unsafe. Anything else passed over is a fault.
    let unexpected: Vec<&(PathBuf, SkipReason)> = skipped
        .iter()
        .filter(|(path, why)| {
            !(path == Path::new("/run/aifactory/panes")
                && !nix::unistd::geteuid().is_root()
                && !why.is_unsafe())
        })
        .collect();
    let passed = skipped
        .iter()
        .map(|(p, why)| format!("{} ({why})", p.display()))
        .collect::<Vec<_>>()
        .join("; ");
    if unexpected.is_empty() {
        let note = if passed.is_empty() {
            String::new()
        } else {
            format!("; passed over as expected: {passed}")
        };
        return ok(
            name,
            format!("sessions live under {}{note}", root.display()),
        );
    }
    let (first, why) = unexpected[0];
    warn(
        name,
        format!(
            "fell back to {} because {} was passed over: {passed}",
            root.display(),
            first.display()
        ),
        match why {
            SkipReason::OwnedByOther { .. } | SkipReason::OpenToOthers { .. } => format!(
                "make {} owned by the daemon's user and mode 0700 (`chown USER {} && chmod 0700 {}`), or remove it",
                first.display(),
                first.display(),
                first.display()
            ),
            SkipReason::Missing
            | SkipReason::CannotCreate { .. }
            | SkipReason::CannotInspect { .. }
            | SkipReason::Symlink
            | SkipReason::NotADirectory
            | SkipReason::NotWritable { .. }
            | SkipReason::CannotRemove { .. } => format!(
                "make {} writable by the daemon's user (`install -d -m 0700 -o USER {}`), or point panes_dir elsewhere",
                first.display(),
                first.display()
            ),
        },
    )
}

/// Sessions whose pane monitor answers on its socket under `root` (monitors are forked by
/// a zygote, so their command lines do not name their session: their sockets do).
fn answering_monitors(root: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            let socket = e.path().join(aifactory_common::pane::MONITOR_SOCKET);
            std::os::unix::net::UnixStream::connect(socket).is_ok()
        })
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

fn stale_sessions(f: &Facts) -> Check {
    let name = "stale-sessions";
    let Some(online) = f.online() else {
        return ok(name, "not checked: the daemon does not answer".into());
    };
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    for s in &online.sessions {
        match s.state {
            SessionState::Running
                if s.pid
                    .is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) =>
            {
                fails.push(format!(
                    "session {} is recorded as running but its process {} is gone",
                    s.id,
                    s.pid.unwrap_or(0)
                ));
            }
            SessionState::Lost => warns.push(format!(
                "session {} was lost ({})",
                s.id,
                s.lost_reason.as_deref().unwrap_or("no reason recorded")
            )),
            _ => {}
        }
    }
    // Only this daemon's panes root: another user's daemon has monitors of its own.
    let root = &online.status.panes_dir;
    for id in answering_monitors(root) {
        // A monitor lingers a moment after its session ended (exited): that is by design.
        let known = online.sessions.iter().any(|s| {
            s.id == id
                && matches!(
                    s.state,
                    SessionState::Running | SessionState::Starting | SessionState::Exited
                )
        });
        if !known {
            fails.push(format!(
                "a pane monitor answers for session {id} in {}, which the daemon does not have as running",
                root.display()
            ));
        }
    }
    if !fails.is_empty() {
        return fail(
            name,
            fails.iter().chain(&warns).cloned().collect::<Vec<_>>().join("; "),
            "end them: `aifactoryctl sessions kill ID --ignore-missing` (for a monitor without a record, `fuser -k PANES/ID/monitor.sock`), then `aifactoryctl sessions remove ID`".into(),
        );
    }
    if !warns.is_empty() {
        return warn(
            name,
            warns.join("; "),
            "forget them: `aifactoryctl sessions remove ID` for each".into(),
        );
    }
    ok(
        name,
        format!(
            "{} session(s) recorded, every running one has its process",
            online.sessions.len()
        ),
    )
}

fn token_file(f: &Facts) -> Option<PathBuf> {
    state_dir_path(f).map(|d| d.join(HTTP_TOKEN_FILE))
}

fn read_token(f: &Facts) -> Option<String> {
    let text = std::fs::read_to_string(token_file(f)?).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

fn http_token(f: &Facts) -> Check {
    let name = "http-token";
    let Some(file) = token_file(f) else {
        return ok(name, "not checked: the state directory is unknown".into());
    };
    match std::fs::metadata(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => warn(
            name,
            format!(
                "{} does not exist: aifactory-http has never run, so web clients and the Live Console cannot connect",
                file.display()
            ),
            "start the shim: `systemctl start aifactory-http` (or run `aifactory-http`); it creates the token".into(),
        ),
        Err(e) => fail(
            name,
            format!("{} cannot be read: {e}", file.display()),
            format!("chmod 0600 {} and chown it to the daemon's user", file.display()),
        ),
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => fail(
            name,
            format!(
                "{} has mode {:04o}: others can read the token",
                file.display(),
                meta.permissions().mode() & 0o777
            ),
            format!("chmod 0600 {}", file.display()),
        ),
        Ok(meta) if meta.uid() != nix::unistd::geteuid().as_raw() && read_token(f).is_none() => {
            warn(
                name,
                format!(
                    "{} is owned by uid {} and this user cannot read it",
                    file.display(),
                    meta.uid()
                ),
                "run the doctor as the daemon's user (or root) to check the console's authentication".into(),
            )
        }
        Ok(_) => ok(name, format!("{} exists with mode 0600", file.display())),
    }
}

async fn http_shim(f: &Facts) -> Check {
    let name = "http-shim";
    match http::get(&f.http, "/healthz", &[]).await {
        Ok(r) if r.status == 200 => {
            let answers = serde_json::from_str::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v.get("daemon").cloned());
            ok(
                name,
                format!(
                    "aifactory-http answers on {} (daemon: {})",
                    f.http,
                    answers.map(|d| d.to_string()).unwrap_or_else(|| "?".into())
                ),
            )
        }
        Ok(r) => fail(
            name,
            format!("{} answered /healthz with HTTP {}: {:.200}", f.http, r.status, r.body),
            "look at the shim's log (`journalctl -u aifactory-http`)".into(),
        ),
        Err(e) => warn(
            name,
            format!("aifactory-http does not answer on {}: {e}", f.http),
            "start it: `systemctl start aifactory-http` (or run `aifactory-http`); pass --http ADDR:PORT if it listens elsewhere".into(),
        ),
    }
}

async fn console_auth(f: &Facts) -> Check {
    let name = "console-auth";
    let path = "/api/v1/sessions/doctor-check/console";
    let without = match http::get(&f.http, path, &http::upgrade_headers()).await {
        Ok(r) => r.status,
        Err(_) => return ok(name, "not checked: aifactory-http does not answer".into()),
    };
    if without != 401 {
        return fail(
            name,
            format!("a console WebSocket without a token got HTTP {without}, not 401: anyone on this machine could type into agents' terminals"),
            "run the aifactory-http that ships with this aifactoryctl (it refuses tokenless consoles)".into(),
        );
    }
    let Some(token) = read_token(f) else {
        return ok(name, "a console without a token is refused (401); the token file cannot be read here to check the other half".into());
    };
    let protocol = format!("aifactory.token.{token}");
    let mut headers = http::upgrade_headers();
    headers.push(("Sec-WebSocket-Protocol", &protocol));
    match http::get(&f.http, path, &headers).await {
        Ok(r) if r.status == 401 => fail(
            name,
            "a console WebSocket with the token from the token file is refused (401): web clients stay on \"Connecting...\"".into(),
            "restart aifactory-http so it reads the current token file, and have clients send the token as the subprotocol `aifactory.token.<token>` or `?token=`".into(),
        ),
        Ok(r) => ok(
            name,
            format!("a console without a token is refused (401), one with the token is let through (HTTP {})", r.status),
        ),
        Err(e) => warn(
            name,
            format!("the console handshake with the token failed: {e}"),
            "look at the shim's log (`journalctl -u aifactory-http`)".into(),
        ),
    }
}

fn legacy_projects(f: &Facts) -> Check {
    let name = "legacy-projects";
    let Ok(file) = crate::projects::default_legacy_file() else {
        return ok(name, "not checked: HOME is not set".into());
    };
    let meta = match std::fs::metadata(&file) {
        Ok(meta) => meta,
        Err(_) => return ok(name, format!("no old project list at {}", file.display())),
    };
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me || meta.permissions().mode() & 0o200 == 0 {
        return warn(
            name,
            format!(
                "{} is owned by uid {} with mode {:04o}: the old product's writes to it failed silently (\"Project not found\" after a 201)",
                file.display(),
                meta.uid(),
                meta.permissions().mode() & 0o777
            ),
            format!(
                "`sudo chown {me} {} && chmod u+w {}`, then `aifactoryctl projects import-legacy`",
                file.display(),
                file.display()
            ),
        );
    }
    let entries = match crate::projects::read_legacy(&file) {
        Ok(entries) => entries,
        Err(e) => {
            return warn(name, e.message, format!("fix or remove {}", file.display()));
        }
    };
    let Some(online) = f.online() else {
        return ok(
            name,
            format!(
                "{} holds {} project(s); not compared: the daemon does not answer",
                file.display(),
                entries.len()
            ),
        );
    };
    let registered = |p: &Path| {
        let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        online.projects.iter().any(|r| r.path == canonical)
    };
    let missing: Vec<String> = entries
        .iter()
        .filter(|e| e.path.exists() && !registered(&e.path))
        .map(|e| e.path.display().to_string())
        .collect();
    if missing.is_empty() {
        ok(
            name,
            format!("every project of {} is registered", file.display()),
        )
    } else {
        warn(
            name,
            format!(
                "{} holds {} project(s) not registered with the daemon: {}",
                file.display(),
                missing.len(),
                missing.join(", ")
            ),
            "aifactoryctl projects import-legacy".into(),
        )
    }
}

fn state_dir(f: &Facts) -> Check {
    let name = "state-dir";
    if let Some(online) = f.online() {
        return match &online.status.store {
            StoreHealth::Writable => ok(
                name,
                format!(
                    "{} and its database take writes",
                    online.status.state_dir.display()
                ),
            ),
            StoreHealth::ReadOnly { reason } | StoreHealth::WriteFailed { reason } => fail(
                name,
                format!("the database does not take writes: {reason}"),
                format!(
                    "make {} and aifactory.db writable by the daemon's user, free disk space, then restart the daemon",
                    online.status.state_dir.display()
                ),
            ),
        };
    }
    match &f.local {
        Ok(l) => match &l.state_dir_error {
            None => ok(name, format!("{} takes writes", l.state_dir.display())),
            Some(e) => fail(
                name,
                e.clone(),
                format!(
                    "make {} writable by the daemon's user",
                    l.state_dir.display()
                ),
            ),
        },
        Err(e) => warn(
            name,
            format!("not checked: {e}"),
            "start the daemon, or install aifactoryd next to aifactoryctl".into(),
        ),
    }
}

async fn project_paths(f: &Facts) -> Check {
    let name = "project-paths";
    let Some(online) = f.online() else {
        return ok(name, "not checked: the daemon does not answer".into());
    };
    let mut bad = Vec::new();
    for p in &online.projects {
        if !p.path.is_dir() {
            bad.push(format!(
                "{} ({}): {} does not exist",
                p.name,
                p.id,
                p.path.display()
            ));
            continue;
        }
        // The project belongs to the daemon's user, not necessarily to whoever runs the
        // doctor: git's ownership check would refuse this read-only question.
        let out = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&p.path)
            .args([
                "-c",
                "safe.directory=*",
                "rev-parse",
                "--is-inside-work-tree",
            ])
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => bad.push(format!(
                "{} ({}): {} is not a git work tree: {}",
                p.name,
                p.id,
                p.path.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => bad.push(format!("{}: cannot run git: {e}", p.name)),
        }
    }
    if bad.is_empty() {
        ok(
            name,
            format!("{} project(s), each a git work tree", online.projects.len()),
        )
    } else {
        fail(
            name,
            bad.join("; "),
            "restore the directory, or forget the project: `aifactoryctl projects remove NAME`"
                .into(),
        )
    }
}

fn pr_providers(f: &Facts) -> Check {
    let name = "pr-providers";
    let Some(online) = f.online() else {
        return ok(name, "not checked: the daemon does not answer".into());
    };
    let mismatched: Vec<String> = online
        .projects
        .iter()
        .filter(|p| p.provider_manual && p.provider != p.detected_provider)
        .map(|p| {
            format!(
                "{}: set by hand to {}, but origin {} says {}",
                p.name,
                p.provider.as_str(),
                p.origin_url.as_deref().unwrap_or("(none)"),
                p.detected_provider.as_str()
            )
        })
        .collect();
    let all = online
        .projects
        .iter()
        .map(|p| format!("{} {}", p.name, p.provider.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    if mismatched.is_empty() {
        ok(
            name,
            if all.is_empty() {
                "no projects".into()
            } else {
                all
            },
        )
    } else {
        warn(
            name,
            mismatched.join("; "),
            "if the origin is right: `aifactoryctl projects remove NAME` and add it again without --provider (or with the provider the origin says)".into(),
        )
    }
}

fn test_fixtures(f: &Facts) -> Check {
    let name = "test-fixtures";
    let overridden = match (f.online(), &f.local) {
        (Some(o), _) => o
            .agents
            .iter()
            .find(|a| a.effective_command != a.command)
            .map(|a| a.effective_command.join(" ")),
        (None, Ok(l)) => l.test_agent_cmd.clone(),
        (None, Err(_)) => None,
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

fn migrations(f: &Facts) -> Check {
    let name = "migrations";
    let m = match &f.local {
        Ok(l) => match &l.migrations {
            Ok(m) => m,
            Err(e) => {
                return fail(
                    name,
                    format!("the database's migrations cannot be read: {e}"),
                    "run `aifactoryd migrate --status` as the daemon's user for details".into(),
                );
            }
        },
        Err(e) => {
            return warn(
                name,
                format!("not checked: {e}"),
                "install aifactoryd next to aifactoryctl".into(),
            );
        }
    };
    let backup = m
        .newest_backup
        .as_ref()
        .map(|b| b.display().to_string())
        .unwrap_or_else(|| "none".into());
    let lock = if m.lock.held {
        format!("; the migration lock is {}", m.lock)
    } else {
        String::new()
    };
    let summary = format!(
        "schema version {} of {} known by this aifactoryd; newest backup: {backup}{lock}",
        m.schema_version, m.known_version
    );
    if !m.checksum_mismatch.is_empty() || !m.unknown_applied.is_empty() {
        return fail(
            name,
            format!(
                "{summary}; changed migrations: {:?}; applied by a newer aifactoryd: {:?}",
                m.checksum_mismatch, m.unknown_applied
            ),
            format!(
                "install the aifactoryd that made this database, or restore the backup {backup}"
            ),
        );
    }
    if !m.pending.is_empty() || m.lock.held {
        let fix = if m.lock.held && m.lock.holder_alive {
            format!(
                "wait for pid {} to finish; if it is stuck, `kill {}` (the kernel frees the lock), then `aifactoryd migrate`",
                m.lock.holder_pid.unwrap_or(0),
                m.lock.holder_pid.unwrap_or(0)
            )
        } else {
            "run `aifactoryd migrate` as the daemon's user (or restart the daemon, which migrates at boot)".into()
        };
        let pending = if m.pending.is_empty() {
            String::new()
        } else {
            format!("; pending: {}", m.pending.join(", "))
        };
        return warn(name, format!("{summary}{pending}"), fix);
    }
    ok(name, summary)
}

async fn systemd() -> Check {
    let name = "systemd";
    if !Path::new("/run/systemd/system").is_dir() {
        return ok(
            name,
            "systemd is not this machine's init: nothing to check".into(),
        );
    }
    let show = tokio::process::Command::new("systemctl")
        .args([
            "show",
            "aifactoryd",
            "-p",
            "ActiveState",
            "-p",
            "WatchdogUSec",
            "-p",
            "LoadState",
        ])
        .output()
        .await;
    let Ok(out) = show else {
        return ok(name, "systemctl is not available".into());
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
            .unwrap_or_default()
    };
    if value("LoadState") != "loaded" {
        return ok(
            name,
            "aifactoryd is not installed as a systemd unit (user mode or by hand)".into(),
        );
    }
    if value("ActiveState") != "active" {
        return warn(
            name,
            format!("aifactoryd.service is {}", value("ActiveState")),
            "systemctl start aifactoryd.socket aifactoryd.service; see `journalctl -u aifactoryd -e`".into(),
        );
    }
    let watchdog = value("WatchdogUSec");
    if watchdog.is_empty() || watchdog == "0" || watchdog == "infinity" {
        return warn(
            name,
            "aifactoryd.service runs without a watchdog: a wedged daemon would not be restarted".into(),
            "set WatchdogSec=30 in the unit (`systemctl edit aifactoryd`), then `systemctl daemon-reload && systemctl restart aifactoryd`".into(),
        );
    }
    let journal = tokio::process::Command::new("journalctl")
        .args(["-u", "aifactoryd", "-n", "1", "-o", "cat", "--no-pager"])
        .output()
        .await;
    let logged = journal.is_ok_and(|o| !o.stdout.is_empty());
    if !logged {
        return warn(
            name,
            "the journal holds no line of aifactoryd".into(),
            "check that systemd-journald runs (`systemctl status systemd-journald`) and that you may read the journal (group systemd-journal)".into(),
        );
    }
    ok(
        name,
        format!("aifactoryd.service is active, watchdog {watchdog}, the journal receives its logs"),
    )
}
