//! Wire compatibility: one value of every message, encoded, must match the golden bytes stored
//! for the current protocol version under `tests/golden/protocol-<N>/`. Changing any message's
//! bytes without bumping `PROTOCOL_VERSION` fails here. After a deliberate bump, write the new
//! version's files with `AIFACTORY_BLESS=1 cargo test -p aifactory-tests --test golden`; the old
//! versions' files stay as history.
//!
//! One file on purpose: the samples sit next to the exhaustive matches that make every new
//! variant fail to compile until it has a sample.

use std::path::PathBuf;

use aifactory_common::codec;
use aifactory_common::pane::*;
use aifactory_common::protocol::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Every variant of every message. The matches below have no wildcard arm, so adding a
/// variant does not compile until it gets a sample here.
/// Named sample values of one message type.
type Samples<T> = Vec<(&'static str, T)>;

fn client_frames() -> Vec<(&'static str, ClientFrame)> {
    let requests = vec![
        ("request-status", Request::Status),
        (
            "request-subscribe-events",
            Request::SubscribeEvents { after: None },
        ),
        (
            "request-subscribe-events-after",
            Request::SubscribeEvents { after: Some(41) },
        ),
        (
            "request-unsubscribe",
            Request::Unsubscribe { subscription: 77 },
        ),
        (
            "request-project-add",
            Request::ProjectAdd(ProjectAdd {
                path: "/srv/repo".into(),
                name: Some("repo".into()),
                provider: Some(Provider::Gitlab),
            }),
        ),
        ("request-project-list", Request::ProjectList),
        (
            "request-project-show",
            Request::ProjectShow { key: "repo".into() },
        ),
        (
            "request-project-remove",
            Request::ProjectRemove {
                key: "p-0123abcd".into(),
            },
        ),
        (
            "request-project-import-legacy",
            Request::ProjectImportLegacy {
                source: "/home/u/.aifactory/projects.json".into(),
                entries: vec![LegacyProject {
                    path: "/srv/old".into(),
                    name: None,
                }],
            },
        ),
        (
            "request-session-new",
            Request::SessionNew(SessionSpec {
                name: Some("agent".into()),
                command: vec!["sh".into(), "-c".into(), "echo hi".into()],
                cwd: "/srv/repo".into(),
                env: vec![("K".into(), "V".into())],
                cols: Some(100),
                rows: None,
            }),
        ),
        ("request-session-list", Request::SessionList),
        (
            "request-session-show",
            Request::SessionShow {
                key: "agent".into(),
            },
        ),
        (
            "request-session-input",
            Request::SessionInput {
                key: "agent".into(),
                data: b"ls\r".to_vec(),
            },
        ),
        (
            "request-session-resize",
            Request::SessionResize {
                key: "agent".into(),
                cols: 80,
                rows: 24,
            },
        ),
        (
            "request-session-kill",
            Request::SessionKill {
                key: "agent".into(),
                grace_ms: 5000,
                ignore_missing: true,
            },
        ),
        (
            "request-session-wait",
            Request::SessionWait {
                key: "agent".into(),
            },
        ),
        (
            "request-session-remove",
            Request::SessionRemove {
                key: "agent".into(),
            },
        ),
        (
            "request-session-tail",
            Request::SessionTail {
                key: "agent".into(),
                from: Some(1024),
                follow: true,
            },
        ),
        (
            "request-task-create",
            Request::TaskCreate(TaskCreate {
                project: "repo".into(),
                spec_id: "001-login".into(),
                title: Some("Login page".into()),
                agent: Some("claude".into()),
            }),
        ),
        (
            "request-task-list",
            Request::TaskList {
                project: Some("repo".into()),
            },
        ),
        (
            "request-task-show",
            Request::TaskShow {
                key: "001-login".into(),
            },
        ),
        (
            "request-task-start",
            Request::TaskStart {
                key: "t-0123abcd".into(),
            },
        ),
        (
            "request-task-stop",
            Request::TaskStop {
                key: "t-0123abcd".into(),
                grace_ms: 5000,
            },
        ),
        (
            "request-task-restart",
            Request::TaskRestart {
                key: "t-0123abcd".into(),
                grace_ms: 5000,
                fresh: true,
            },
        ),
        (
            "request-task-remove",
            Request::TaskRemove {
                key: "t-0123abcd".into(),
                prune: true,
                force: false,
            },
        ),
        ("request-agent-list", Request::AgentList),
        (
            "request-task-transcript",
            Request::TaskTranscript {
                key: "t-0123abcd".into(),
                after: Some(12),
            },
        ),
        ("request-session-strays", Request::SessionStrays),
        (
            "request-agent-show",
            Request::AgentShow {
                name: "claude".into(),
            },
        ),
        (
            "request-task-attempts",
            Request::TaskAttempts {
                key: "001-login".into(),
            },
        ),
        ("request-doctor-facts", Request::DoctorFacts),
        (
            "request-project-clone",
            Request::ProjectClone {
                url: "https://github.com/acme/repo.git".into(),
                path: "/srv/repo".into(),
                name: Some("repo".into()),
            },
        ),
    ];
    for (_, r) in &requests {
        match r {
            Request::Status
            | Request::SubscribeEvents { .. }
            | Request::Unsubscribe { .. }
            | Request::ProjectAdd(_)
            | Request::ProjectList
            | Request::ProjectShow { .. }
            | Request::ProjectRemove { .. }
            | Request::ProjectImportLegacy { .. }
            | Request::ProjectClone { .. }
            | Request::SessionNew(_)
            | Request::SessionList
            | Request::SessionShow { .. }
            | Request::SessionInput { .. }
            | Request::SessionResize { .. }
            | Request::SessionKill { .. }
            | Request::SessionWait { .. }
            | Request::SessionRemove { .. }
            | Request::SessionTail { .. }
            | Request::TaskCreate(_)
            | Request::TaskList { .. }
            | Request::TaskShow { .. }
            | Request::TaskStart { .. }
            | Request::TaskStop { .. }
            | Request::TaskRestart { .. }
            | Request::TaskRemove { .. }
            | Request::AgentList
            | Request::TaskTranscript { .. }
            | Request::SessionStrays
            | Request::AgentShow { .. }
            | Request::TaskAttempts { .. }
            | Request::DoctorFacts => {}
        }
    }
    requests
        .into_iter()
        .map(|(name, request)| (name, ClientFrame { id: 42, request }))
        .collect()
}

fn status() -> StatusInfo {
    StatusInfo {
        version: "0.1.0".into(),
        pid: 4242,
        uptime_ms: 90_061,
        protocol: 1,
        mode: RunMode::System,
        socket: "/run/aifactory/aifactoryd.sock".into(),
        state_dir: "/var/lib/aifactory".into(),
        config_file: Some("/etc/aifactory/aifactoryd.toml".into()),
        connections: 3,
        max_connections: 1024,
        schema_version: 3,
        store: StoreHealth::Writable,
        panes_dir: "/run/aifactory/panes".into(),
        panes_skipped: vec![(
            "/etc/panes".into(),
            SkipReason::NotWritable {
                error: "Permission denied (os error 13)".into(),
            },
        )],
        sessions_running: 2,
        sessions_output_blocked: 1,
        landlock_abi: 7,
        sandbox: "Landlock ABI 7: everything the cage uses".into(),
        limits_available: true,
        limits: "each task in its own cgroup (v2) below /sys/fs/cgroup/system.slice/aifactoryd.service: memory_max, cpu_weight, cpu_max and tasks_max are enforced".into(),
        load: HostLoad {
            tasks_running: 2,
            cpus: 8,
            load_average: Some(LoadAverage {
                one: 0.5,
                five: 1.25,
                fifteen: 2.0,
            }),
            memory: Some(MemoryInfo {
                total_bytes: 16 << 30,
                available_bytes: 9 << 30,
            }),
        },
    }
}

fn resources() -> ResourceUsage {
    ResourceUsage {
        cpu_usec: 1_250_000,
        memory_bytes: 48 << 20,
        memory_peak_bytes: Some(300 << 20),
        processes: 12,
        io_write_bytes: Some(3 << 20),
        oom_kills: 1,
        memory_max: Some(512 << 20),
        tasks_max: Some(4096),
    }
}

fn output_blocked() -> OutputBlocked {
    OutputBlocked {
        reason: "cannot append to /run/aifactory/panes/s-0123abcd/output.log: No space left on device (os error 28)".into(),
        since: "2026-11-26T09:30:00Z".into(),
    }
}

fn exit_info() -> ExitInfo {
    ExitInfo {
        code: Some(3),
        signal: None,
        ended_at: "2026-11-26T10:00:00Z".into(),
    }
}

fn session(state: SessionState) -> SessionInfo {
    SessionInfo {
        id: "s-0123abcd".into(),
        name: Some("agent".into()),
        command: vec!["claude".into(), "-p".into()],
        cwd: "/srv/repo".into(),
        state,
        pid: Some(4243),
        monitor_pid: Some(4242),
        cols: 120,
        rows: 40,
        pane_dir: "/run/aifactory/panes/s-0123abcd".into(),
        exit: (state == SessionState::Exited).then(exit_info),
        lost_reason: (state == SessionState::Lost).then(|| "monitor gone".into()),
        created_at: "2026-11-26T09:00:00Z".into(),
        output_blocked: None,
    }
}

fn monitor_info() -> MonitorInfo {
    MonitorInfo {
        session_id: "s-0123abcd".into(),
        name: Some("agent".into()),
        command: vec!["sh".into()],
        cwd: "/srv/repo".into(),
        pid: 4243,
        pgid: 4243,
        start_time: 123_456,
        monitor_pid: 4242,
        monitor_start_time: 123_450,
        cols: 120,
        rows: 40,
        output_end: 1 << 33,
        exit: Some(ExitInfo {
            code: None,
            signal: Some(9),
            ended_at: "2026-11-26T10:00:00Z".into(),
        }),
    }
}

/// The pane monitor's protocol crosses versions too: a daemon upgraded while sessions run
/// talks to monitors started by the old one.
fn monitor_messages() -> (Samples<MonitorRequest>, Samples<MonitorFrame>) {
    let requests = vec![
        ("monitor-request-info", MonitorRequest::Info),
        (
            "monitor-request-input",
            MonitorRequest::Input(b"y\n".to_vec()),
        ),
        (
            "monitor-request-resize",
            MonitorRequest::Resize { cols: 80, rows: 24 },
        ),
        (
            "monitor-request-signal",
            MonitorRequest::Signal { signal: 15 },
        ),
        (
            "monitor-request-subscribe",
            MonitorRequest::Subscribe { from: 4096 },
        ),
        ("monitor-request-watch-output", MonitorRequest::WatchOutput),
    ];
    for (_, r) in &requests {
        match r {
            MonitorRequest::Info
            | MonitorRequest::Input(_)
            | MonitorRequest::Resize { .. }
            | MonitorRequest::Signal { .. }
            | MonitorRequest::Subscribe { .. }
            | MonitorRequest::WaitExit
            | MonitorRequest::WatchOutput => {}
        }
    }
    let frames = vec![
        ("monitor-frame-info", MonitorFrame::Info(monitor_info())),
        (
            "monitor-frame-output",
            MonitorFrame::Output {
                offset: 7,
                data: b"hello".to_vec(),
            },
        ),
        (
            "monitor-frame-lagged",
            MonitorFrame::Lagged {
                requested: 1,
                resume_from: 99,
            },
        ),
        ("monitor-frame-exited", MonitorFrame::Exited(exit_info())),
        ("monitor-frame-error", MonitorFrame::Error("no".into())),
        ("monitor-frame-done", MonitorFrame::Done),
        (
            "monitor-frame-output-blocked",
            MonitorFrame::OutputHealth(Some(output_blocked())),
        ),
        (
            "monitor-frame-output-written",
            MonitorFrame::OutputHealth(None),
        ),
    ];
    for (_, f) in &frames {
        match f {
            MonitorFrame::Info(_)
            | MonitorFrame::Output { .. }
            | MonitorFrame::Lagged { .. }
            | MonitorFrame::Exited(_)
            | MonitorFrame::Error(_)
            | MonitorFrame::Done
            | MonitorFrame::OutputHealth(_) => {}
        }
    }
    (requests, frames)
}

fn project(provider: Provider) -> ProjectInfo {
    ProjectInfo {
        id: "p-0123abcd".into(),
        name: "repo".into(),
        path: "/srv/repo".into(),
        origin_url: Some("git@github.com:org/repo.git".into()),
        provider,
        detected_provider: Provider::Github,
        provider_manual: provider != Provider::Github,
        default_branch: "main".into(),
        created_at: "2026-11-26T10:00:00Z".into(),
        usage: usage(),
    }
}

fn usage() -> Usage {
    Usage {
        input_tokens: 1200,
        output_tokens: 340,
        cache_read_tokens: 800,
        cache_write_tokens: 64,
        cost_usd: Some(0.0125),
    }
}

fn failure(kind: FailureKind) -> Failure {
    Failure {
        kind,
        message: "API Error: 529 overloaded".into(),
        fix: "the provider is overloaded: it is retried after a backoff".into(),
        retry_after_ms: Some(30_000),
    }
}

/// One sample per kind of thing an agent does.
fn agent_events() -> Samples<AgentEvent> {
    let events = vec![
        (
            "started",
            AgentEvent::Started {
                agent_session_id: "7d3c2a10-4f7b-4c1e-9a55-0e5f3b2a9c11".into(),
                model: Some("claude-sonnet-4-5".into()),
                tools: vec!["Bash".into(), "Write".into()],
            },
        ),
        (
            "message",
            AgentEvent::Message {
                text: "I will write the login page.".into(),
            },
        ),
        (
            "tool-call",
            AgentEvent::ToolCall {
                call_id: Some("toolu_01".into()),
                tool: "Bash".into(),
                summary: "cargo test".into(),
            },
        ),
        (
            "tool-result",
            AgentEvent::ToolResult {
                call_id: Some("toolu_01".into()),
                tool: Some("Bash".into()),
                ok: false,
                summary: "exit 101".into(),
            },
        ),
        (
            "denied",
            AgentEvent::Denied {
                tool: "Bash".into(),
                summary: "rm -rf target".into(),
            },
        ),
        (
            "result",
            AgentEvent::Result(AgentResult {
                ok: true,
                status: "success".into(),
                message: Some("Done.".into()),
                turns: Some(4),
                duration_ms: Some(12_000),
                usage: usage(),
            }),
        ),
    ];
    for (_, event) in &events {
        match event {
            AgentEvent::Started { .. }
            | AgentEvent::Message { .. }
            | AgentEvent::ToolCall { .. }
            | AgentEvent::ToolResult { .. }
            | AgentEvent::Denied { .. }
            | AgentEvent::Result(_) => {}
        }
    }
    events
}

fn entry(seq: u64, event: AgentEvent) -> TranscriptEntry {
    TranscriptEntry {
        seq,
        attempt: 1,
        at: "2026-11-26T10:00:00.123Z".into(),
        event,
    }
}

fn evidence() -> StallEvidence {
    StallEvidence {
        detected_at: "2026-11-26T10:10:00Z".into(),
        stall_after_s: 600,
        last_output_at: Some("2026-11-26T10:00:00Z".into()),
        last_progress_at: None,
        pid: Some(4242),
        process_state: Some("S (sleeping)".into()),
        cpu_time_ms: Some(120),
    }
}

fn progress() -> Progress {
    Progress {
        percent: Some(40),
        subtasks_done: Some(3),
        subtasks_total: Some(7),
    }
}

fn task(phase: TaskPhase) -> TaskInfo {
    TaskInfo {
        id: "t-0123abcd".into(),
        project_id: "p-0123abcd".into(),
        project_name: "repo".into(),
        spec_id: "001-login".into(),
        title: "Login page".into(),
        agent: "claude".into(),
        phase,
        progress: progress(),
        session_id: Some("s-0123abcd".into()),
        attempts: 1,
        worktree: "/srv/repo/.aifactory/worktrees/tasks/001-login".into(),
        branch: "aifactory/001-login".into(),
        spec_dir: "/srv/repo/.aifactory/worktrees/tasks/001-login/.aifactory/specs/001-login".into(),
        progress_file:
            "/srv/repo/.aifactory/worktrees/tasks/001-login/.aifactory/specs/001-login/build-progress.txt"
                .into(),
        notes: vec!["wrote the plan".into()],
        stall: (phase == TaskPhase::Stalled).then(evidence),
        waiting_input: None,
        last_output_at: Some("2026-11-26T10:00:00Z".into()),
        last_progress_at: None,
        last_error: None,
        created_at: "2026-11-26T09:00:00Z".into(),
        updated_at: "2026-11-26T10:00:00Z".into(),
        agent_session_id: Some("7d3c2a10-4f7b-4c1e-9a55-0e5f3b2a9c11".into()),
        usage: usage(),
        turns: Some(4),
        last_tool: Some("Bash".into()),
        failure: (phase == TaskPhase::Failed).then(|| failure(FailureKind::Auth)),
        resources: Some(resources()),
        confinement: Some("confined by Landlock ABI 7 (sandbox = required); limits: memory_max = 4G, tasks_max = 4096".into()),
    }
}

fn agent(kind: AgentKind) -> AgentInfo {
    AgentInfo {
        name: kind.as_str().into(),
        kind,
        command: vec!["claude".into(), "-p".into()],
        effective_command: vec!["sleep".into(), "300".into()],
        headless: true,
        restart: RestartPolicy::OnFailure,
        max_attempts: 3,
        on_stall: OnStall::Restart,
        stall_after_s: 600,
        default: kind == AgentKind::ClaudeCode,
        problems: vec![ProfileProblem::NotOnPath {
            program: "claude".into(),
            test_override: false,
        }],
    }
}

fn event(kind: EventKind) -> StreamItem {
    StreamItem::Event(Event {
        seq: 9,
        at_ms: 1_790_000_000_000,
        kind,
    })
}

fn server_frames() -> Vec<(&'static str, ServerFrame)> {
    let reply = |result| ServerFrame::Reply { id: 42, result };
    let stream = |item| ServerFrame::Stream {
        subscription: 42,
        item,
    };
    let mut frames = vec![
        ("reply-status", reply(Ok(Reply::Status(status())))),
        (
            "reply-status-user-mode",
            reply(Ok(Reply::Status(StatusInfo {
                mode: RunMode::User,
                config_file: None,
                ..status()
            }))),
        ),
        (
            "reply-status-store-read-only",
            reply(Ok(Reply::Status(StatusInfo {
                store: StoreHealth::ReadOnly {
                    reason: "read-only".into(),
                },
                ..status()
            }))),
        ),
        (
            "reply-status-store-write-failed",
            reply(Ok(Reply::Status(StatusInfo {
                store: StoreHealth::WriteFailed {
                    reason: "disk full".into(),
                },
                ..status()
            }))),
        ),
        ("reply-subscribed", reply(Ok(Reply::Subscribed))),
        (
            "reply-project-github",
            reply(Ok(Reply::Project(project(Provider::Github)))),
        ),
        (
            "reply-project-gitlab",
            reply(Ok(Reply::Project(project(Provider::Gitlab)))),
        ),
        (
            "reply-project-azure-devops",
            reply(Ok(Reply::Project(project(Provider::AzureDevops)))),
        ),
        (
            "reply-project-bitbucket",
            reply(Ok(Reply::Project(project(Provider::Bitbucket)))),
        ),
        (
            "reply-project-unknown",
            reply(Ok(Reply::Project(project(Provider::Unknown)))),
        ),
        (
            "reply-projects",
            reply(Ok(Reply::Projects(vec![project(Provider::Github)]))),
        ),
        (
            "reply-project-removed",
            reply(Ok(Reply::ProjectRemoved(project(Provider::Github)))),
        ),
        (
            "reply-imported",
            reply(Ok(Reply::Imported(ImportReport {
                imported: vec![project(Provider::Github)],
                skipped: vec![SkippedImport {
                    path: "/srv/gone".into(),
                    name: Some("gone".into()),
                    reason: "does not exist".into(),
                }],
            }))),
        ),
        ("reply-unsubscribed", reply(Ok(Reply::Unsubscribed))),
        (
            "stream-config-reloaded",
            stream(event(EventKind::ConfigReloaded)),
        ),
        (
            "stream-config-rejected",
            stream(event(EventKind::ConfigRejected {
                reason: "unknown field `x`".into(),
            })),
        ),
        ("stream-stopping", stream(event(EventKind::Stopping))),
        ("stream-lagged", stream(StreamItem::Lagged { missed: 5 })),
        (
            "stream-session-created",
            stream(event(EventKind::SessionCreated {
                session_id: "s-0123abcd".into(),
                name: Some("agent".into()),
            })),
        ),
        (
            "stream-session-ended",
            stream(event(EventKind::SessionEnded {
                session_id: "s-0123abcd".into(),
                exit: Some(exit_info()),
                lost_reason: None,
            })),
        ),
        (
            "stream-session-removed",
            stream(event(EventKind::SessionRemoved {
                session_id: "s-0123abcd".into(),
            })),
        ),
        (
            "stream-session-output-blocked",
            stream(event(EventKind::SessionOutputBlocked {
                session_id: "s-0123abcd".into(),
                blocked: output_blocked(),
            })),
        ),
        (
            "stream-session-output-resumed",
            stream(event(EventKind::SessionOutputResumed {
                session_id: "s-0123abcd".into(),
            })),
        ),
        (
            "stream-task-created",
            stream(event(EventKind::TaskCreated {
                task_id: "t-0123abcd".into(),
                project_id: "p-0123abcd".into(),
                spec_id: "001-login".into(),
            })),
        ),
        (
            "stream-task-phase",
            stream(event(EventKind::TaskPhase {
                task_id: "t-0123abcd".into(),
                from: TaskPhase::Planning,
                to: TaskPhase::Coding,
                reason: "progress file".into(),
            })),
        ),
        (
            "stream-task-progress",
            stream(event(EventKind::TaskProgress {
                task_id: "t-0123abcd".into(),
                progress: progress(),
                note: Some("tests pass".into()),
            })),
        ),
        (
            "stream-task-stalled",
            stream(event(EventKind::TaskStalled {
                task_id: "t-0123abcd".into(),
                evidence: evidence(),
            })),
        ),
        (
            "stream-task-waiting-input",
            stream(event(EventKind::TaskWaitingInput {
                task_id: "t-0123abcd".into(),
                prompt: "Proceed? (y/n)".into(),
            })),
        ),
        (
            "stream-task-exited",
            stream(event(EventKind::TaskExited {
                task_id: "t-0123abcd".into(),
                session_id: "s-0123abcd".into(),
                exit: Some(exit_info()),
                restart_in_ms: Some(2000),
                failure: Some(failure(FailureKind::Overloaded)),
                resources: Some(Box::new(resources())),
            })),
        ),
        (
            "stream-task-removed",
            stream(event(EventKind::TaskRemoved {
                task_id: "t-0123abcd".into(),
            })),
        ),
    ];
    for phase in TaskPhase::ALL {
        let name: &'static str = match phase {
            TaskPhase::Backlog => "reply-task-backlog",
            TaskPhase::Planning => "reply-task-planning",
            TaskPhase::Coding => "reply-task-coding",
            TaskPhase::Qa => "reply-task-qa",
            TaskPhase::Done => "reply-task-done",
            TaskPhase::Failed => "reply-task-failed",
            TaskPhase::Stopped => "reply-task-stopped",
            TaskPhase::Stalled => "reply-task-stalled",
        };
        frames.push((name, reply(Ok(Reply::Task(Box::new(task(phase)))))));
    }
    for (name, agent_event) in agent_events() {
        let name: &'static str = format!("stream-task-agent-{name}").leak();
        frames.push((
            name,
            stream(event(EventKind::TaskAgent {
                task_id: "t-0123abcd".into(),
                entry: entry(3, agent_event),
            })),
        ));
    }
    for kind in FailureKind::ALL {
        let name: &'static str = match kind {
            FailureKind::Auth => "stream-task-exited-auth",
            FailureKind::RateLimit => "stream-task-exited-rate-limit",
            FailureKind::Overloaded => "stream-task-exited-overloaded",
            FailureKind::PermissionDenied => "stream-task-exited-permission-denied",
            FailureKind::MaxTurns => "stream-task-exited-max-turns",
            FailureKind::ContextOverflow => "stream-task-exited-context-overflow",
            FailureKind::Config => "stream-task-exited-config",
            FailureKind::Crashed => "stream-task-exited-crashed",
            FailureKind::Killed => "stream-task-exited-killed",
            FailureKind::Oom => "stream-task-exited-oom",
        };
        frames.push((
            name,
            stream(event(EventKind::TaskExited {
                task_id: "t-0123abcd".into(),
                session_id: "s-0123abcd".into(),
                exit: Some(exit_info()),
                restart_in_ms: None,
                failure: Some(failure(kind)),
                resources: None,
            })),
        ));
    }
    frames.push((
        "reply-transcript",
        reply(Ok(Reply::Transcript(Transcript {
            task_id: "t-0123abcd".into(),
            entries: agent_events()
                .into_iter()
                .zip(1..)
                .map(|((_, event), seq)| entry(seq, event))
                .collect(),
            dropped: 0,
        }))),
    ));
    frames.push((
        "reply-tasks",
        reply(Ok(Reply::Tasks(vec![task(TaskPhase::Coding)]))),
    ));
    frames.push((
        "reply-task-stop-report",
        reply(Ok(Reply::TaskStopped(Box::new(StopReport {
            task: task(TaskPhase::Stopped),
            signalled: vec![ProcessEntry {
                pid: 4242,
                command: "sleep 300".into(),
            }],
            survivors: vec![],
        })))),
    ));
    frames.push((
        "reply-task-removed",
        reply(Ok(Reply::TaskRemoved(Box::new(task(TaskPhase::Done))))),
    ));
    for (kind, restart, on_stall) in [
        (
            AgentKind::ClaudeCode,
            RestartPolicy::OnFailure,
            OnStall::Restart,
        ),
        (AgentKind::Codex, RestartPolicy::Never, OnStall::None),
        (
            AgentKind::OpenaiCompatible,
            RestartPolicy::Never,
            OnStall::Stop,
        ),
        (AgentKind::GeminiCli, RestartPolicy::Never, OnStall::None),
        (AgentKind::Custom, RestartPolicy::Never, OnStall::None),
    ] {
        let name: &'static str = match kind {
            AgentKind::ClaudeCode => "reply-agents-claude-code",
            AgentKind::Codex => "reply-agents-codex",
            AgentKind::OpenaiCompatible => "reply-agents-openai-compatible",
            AgentKind::GeminiCli => "reply-agents-gemini-cli",
            AgentKind::Custom => "reply-agents-custom",
        };
        frames.push((
            name,
            reply(Ok(Reply::Agents(vec![AgentInfo {
                restart,
                on_stall,
                ..agent(kind)
            }]))),
        ));
    }
    let codes = [
        ErrorCode::Invalid,
        ErrorCode::NotFound,
        ErrorCode::PermissionDenied,
        ErrorCode::Conflict,
        ErrorCode::TooManyConnections,
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::Unavailable,
        ErrorCode::ShuttingDown,
        ErrorCode::SlowClient,
        ErrorCode::Internal,
    ];
    for code in codes {
        let name: &'static str = match code {
            ErrorCode::Invalid => "reply-error-invalid",
            ErrorCode::NotFound => "reply-error-not-found",
            ErrorCode::PermissionDenied => "reply-error-permission-denied",
            ErrorCode::Conflict => "reply-error-conflict",
            ErrorCode::TooManyConnections => "reply-error-too-many-connections",
            ErrorCode::MalformedFrame => "reply-error-malformed-frame",
            ErrorCode::FrameTooLarge => "reply-error-frame-too-large",
            ErrorCode::Unavailable => "reply-error-unavailable",
            ErrorCode::ShuttingDown => "reply-error-shutting-down",
            ErrorCode::SlowClient => "reply-error-slow-client",
            ErrorCode::Internal => "reply-error-internal",
        };
        frames.push((name, reply(Err(ErrorReply::new(code, "message")))));
    }
    for state in [
        SessionState::Starting,
        SessionState::Running,
        SessionState::Exited,
        SessionState::Lost,
    ] {
        let name = match state {
            SessionState::Starting => "reply-session-starting",
            SessionState::Running => "reply-session-running",
            SessionState::Exited => "reply-session-exited",
            SessionState::Lost => "reply-session-lost",
        };
        frames.push((name, reply(Ok(Reply::Session(session(state))))));
    }
    frames.push((
        "reply-session-output-blocked",
        reply(Ok(Reply::Session(SessionInfo {
            output_blocked: Some(output_blocked()),
            ..session(SessionState::Running)
        }))),
    ));
    frames.push((
        "reply-sessions",
        reply(Ok(Reply::Sessions(vec![session(SessionState::Running)]))),
    ));
    frames.push(("reply-done", reply(Ok(Reply::Done))));
    frames.push((
        "reply-killed",
        reply(Ok(Reply::Killed(Some(session(SessionState::Exited))))),
    ));
    frames.push(("reply-killed-missing", reply(Ok(Reply::Killed(None)))));
    frames.push((
        "reply-session-killed",
        reply(Ok(Reply::SessionKilled(Box::new(SessionKillReport {
            session: Some(session(SessionState::Exited)),
            signalled: vec![ProcessEntry {
                pid: 4243,
                command: "sleep 1001".into(),
            }],
            survivors: vec![ProcessEntry {
                pid: 4244,
                command: "[stuck]".into(),
            }],
        })))),
    ));
    frames.push((
        "reply-session-killed-missing",
        reply(Ok(Reply::SessionKilled(Box::new(SessionKillReport {
            session: None,
            signalled: Vec::new(),
            survivors: Vec::new(),
        })))),
    ));
    frames.push((
        "reply-strays",
        reply(Ok(Reply::Strays(vec![StrayProcess {
            pid: 4245,
            command: "sleep 1002".into(),
            session_id: "s-0123abcd".into(),
        }]))),
    ));
    frames.push((
        "reply-doctor-facts",
        reply(Ok(Reply::DoctorFacts(Box::new(doctor_facts())))),
    ));
    frames.push((
        "reply-events-subscribed",
        reply(Ok(Reply::EventsSubscribed { head: 1 << 33 })),
    ));
    frames.push((
        "stream-output",
        stream(StreamItem::Output {
            offset: 1 << 40,
            data: vec![0, 255, 27],
        }),
    ));
    frames.push((
        "stream-output-lagged",
        stream(StreamItem::OutputLagged {
            requested: 0,
            resume_from: 64,
        }),
    ));
    frames.push((
        "stream-output-end",
        stream(StreamItem::OutputEnd {
            next: 5,
            exit: None,
        }),
    ));
    frames.push((
        "stream-output-end-exited",
        stream(StreamItem::OutputEnd {
            next: 5,
            exit: Some(exit_info()),
        }),
    ));
    frames.push((
        "goodbye",
        ServerFrame::Goodbye(ErrorReply::new(ErrorCode::PermissionDenied, "go away")),
    ));
    for (_, f) in &frames {
        match f {
            ServerFrame::Reply { result, .. } => match result {
                Ok(
                    Reply::Status(_)
                    | Reply::Subscribed
                    | Reply::Unsubscribed
                    | Reply::Project(_)
                    | Reply::Projects(_)
                    | Reply::ProjectRemoved(_)
                    | Reply::Imported(_)
                    | Reply::Session(_)
                    | Reply::Sessions(_)
                    | Reply::Done
                    | Reply::Killed(_)
                    | Reply::Task(_)
                    | Reply::Tasks(_)
                    | Reply::TaskStopped(_)
                    | Reply::TaskRemoved(_)
                    | Reply::Agents(_)
                    | Reply::Transcript(_)
                    | Reply::SessionKilled(_)
                    | Reply::Strays(_)
                    | Reply::Agent(_)
                    | Reply::Attempts(_)
                    | Reply::DoctorFacts(_)
                    | Reply::EventsSubscribed { .. },
                )
                | Err(_) => {}
            },
            ServerFrame::Stream { item, .. } => match item {
                StreamItem::Lagged { .. }
                | StreamItem::Output { .. }
                | StreamItem::OutputLagged { .. }
                | StreamItem::OutputEnd { .. } => {}
                StreamItem::Event(e) => match e.kind {
                    EventKind::ConfigReloaded
                    | EventKind::ConfigRejected { .. }
                    | EventKind::Stopping
                    | EventKind::SessionCreated { .. }
                    | EventKind::SessionEnded { .. }
                    | EventKind::SessionRemoved { .. }
                    | EventKind::TaskCreated { .. }
                    | EventKind::TaskPhase { .. }
                    | EventKind::TaskProgress { .. }
                    | EventKind::TaskStalled { .. }
                    | EventKind::TaskWaitingInput { .. }
                    | EventKind::TaskExited { .. }
                    | EventKind::TaskRemoved { .. }
                    | EventKind::TaskAgent { .. }
                    | EventKind::SessionOutputBlocked { .. }
                    | EventKind::SessionOutputResumed { .. } => {}
                },
            },
            ServerFrame::Goodbye(_) => {}
        }
    }
    for (name, why) in skip_reasons() {
        frames.push((
            name,
            reply(Ok(Reply::Status(StatusInfo {
                panes_skipped: vec![("/run/aifactory/panes".into(), why)],
                ..status()
            }))),
        ));
    }
    frames.push((
        "reply-agent",
        reply(Ok(Reply::Agent(Box::new(AgentDetail {
            agent: agent(AgentKind::ClaudeCode),
            sandbox: SandboxInfo {
                mode: "required".into(),
                from_profile: false,
                landlock: "Landlock ABI 7: everything the cage uses".into(),
                outcome: "runs confined".into(),
                read_write: vec!["{worktree}".into(), "/srv/cache".into()],
                read_only: vec![
                    "/usr".into(),
                    "{project}/* but .aifactory/, and {git}".into(),
                ],
                connect_ports: Some(vec![443, 8080]),
                allow_control_socket: false,
            },
        })))),
    ));
    frames.push((
        "reply-attempts",
        reply(Ok(Reply::Attempts(vec![
            AttemptInfo {
                n: 1,
                attempt: 1,
                session_id: "s-0badf00d".into(),
                agent: "claude".into(),
                started_at: "2026-12-04T10:00:00.000Z".into(),
                ended_at: Some("2026-12-04T10:05:00.000Z".into()),
                reason: Some("agent failed on attempt 1 of 1: no attempts left".into()),
                exit: Some(exit_info()),
                failure: Some(failure(FailureKind::Oom)),
                resources: Some(resources()),
            },
            AttemptInfo {
                n: 2,
                attempt: 1,
                session_id: "s-0badf00e".into(),
                agent: "claude".into(),
                started_at: "2026-12-04T10:06:00.000Z".into(),
                ended_at: None,
                reason: None,
                exit: None,
                failure: None,
                resources: None,
            },
        ]))),
    ));
    for (name, problem) in profile_problems() {
        frames.push((
            name,
            reply(Ok(Reply::Agents(vec![AgentInfo {
                problems: vec![problem],
                ..agent(AgentKind::Custom)
            }]))),
        ));
    }
    frames
}

/// What the daemon sees for the doctor: a project in every state of its work tree, a task in
/// every state of its spec directory and progress file.
fn doctor_facts() -> DoctorFacts {
    let error = || "Permission denied (os error 13)".to_string();
    let trees = vec![
        WorkTreeState::WorkTree,
        WorkTreeState::Path(PathState::Missing),
        WorkTreeState::NotAWorkTree {
            error: "fatal: not a git repository (or any of the parent directories): .git".into(),
        },
        WorkTreeState::GitUnavailable {
            error: "No such file or directory (os error 2)".into(),
        },
        WorkTreeState::TimedOut { after_ms: 8000 },
    ];
    for state in &trees {
        match state {
            WorkTreeState::WorkTree
            | WorkTreeState::Path(_)
            | WorkTreeState::NotAWorkTree { .. }
            | WorkTreeState::GitUnavailable { .. }
            | WorkTreeState::TimedOut { .. } => {}
        }
    }
    let dirs = vec![
        PathState::Dir,
        PathState::Missing,
        PathState::NotADirectory,
        PathState::CannotInspect { error: error() },
    ];
    for state in &dirs {
        match state {
            PathState::Dir
            | PathState::Missing
            | PathState::NotADirectory
            | PathState::CannotInspect { .. } => {}
        }
    }
    let files = [
        FileState::Absent,
        FileState::Readable,
        FileState::Unreadable { error: error() },
    ];
    for state in &files {
        match state {
            FileState::Absent | FileState::Readable | FileState::Unreadable { .. } => {}
        }
    }
    DoctorFacts {
        uid: 999,
        projects: trees
            .into_iter()
            .enumerate()
            .map(|(n, state)| ProjectTree {
                id: format!("p-0123abc{n}"),
                name: format!("repo{n}"),
                path: format!("/srv/repo{n}").into(),
                state,
            })
            .collect(),
        tasks: dirs
            .into_iter()
            .zip(files.into_iter().cycle())
            .enumerate()
            .map(|(n, (spec_dir_state, progress_file_state))| TaskPaths {
                task_id: format!("t-0123abc{n}"),
                spec_id: format!("00{n}-login"),
                spec_dir: format!("/srv/repo/.aifactory/specs/00{n}-login").into(),
                spec_dir_state,
                progress_file: format!("/srv/repo/.aifactory/specs/00{n}-login/progress.md").into(),
                progress_file_state,
            })
            .collect(),
        sessions: vec![
            SessionProcess {
                session_id: "s-0123abcd".into(),
                pid: 4243,
                alive: true,
            },
            SessionProcess {
                session_id: "s-0123abce".into(),
                pid: 4246,
                alive: false,
            },
        ],
        answering_monitors: vec!["s-0123abcd".into(), "s-0123abcf".into()],
    }
}

/// One agents sample per problem that keeps a profile from running.
fn profile_problems() -> Samples<ProfileProblem> {
    let profile = || "p".to_string();
    let problems = vec![
        (
            "reply-agents-problem-unreadable",
            ProfileProblem::Unreadable {
                profile: profile(),
                error: "invalid type: string \"x\", expected a sequence".into(),
            },
        ),
        (
            "reply-agents-problem-unknown-kind",
            ProfileProblem::UnknownKind {
                kind: "claude".into(),
            },
        ),
        (
            "reply-agents-problem-no-kind",
            ProfileProblem::NoKind { profile: profile() },
        ),
        (
            "reply-agents-problem-no-command",
            ProfileProblem::NoCommand { profile: profile() },
        ),
        (
            "reply-agents-problem-unknown-restart",
            ProfileProblem::UnknownRestart {
                value: "always".into(),
            },
        ),
        (
            "reply-agents-problem-unknown-on-stall",
            ProfileProblem::UnknownOnStall {
                value: "kill".into(),
            },
        ),
        (
            "reply-agents-problem-no-attempts",
            ProfileProblem::NoAttempts,
        ),
        (
            "reply-agents-problem-stalls-at-once",
            ProfileProblem::StallsAtOnce,
        ),
        (
            "reply-agents-problem-headless-without-bypass",
            ProfileProblem::HeadlessWithoutBypass,
        ),
        (
            "reply-agents-problem-end-of-life",
            ProfileProblem::EndOfLife {
                kind: AgentKind::GeminiCli,
                last_day: "2026-06-18".into(),
                advice: "move the profile to Claude Code".into(),
            },
        ),
        (
            "reply-agents-problem-no-base-url",
            ProfileProblem::NoBaseUrl,
        ),
        (
            "reply-agents-problem-no-api-key-env",
            ProfileProblem::NoApiKeyEnv,
        ),
        (
            "reply-agents-problem-not-on-path",
            ProfileProblem::NotOnPath {
                program: "aider".into(),
                test_override: true,
            },
        ),
        (
            "reply-agents-problem-root-without-sandbox",
            ProfileProblem::RootWithoutSandbox,
        ),
        (
            "reply-agents-problem-no-key-source",
            ProfileProblem::NoKeySource {
                profile: profile(),
                variable: "ANTHROPIC_API_KEY".into(),
            },
        ),
        (
            "reply-agents-problem-key-in-config",
            ProfileProblem::KeyInConfig {
                variable: "ANTHROPIC_API_KEY".into(),
            },
        ),
        (
            "reply-agents-problem-key-file-open",
            ProfileProblem::KeyFileOpen {
                path: "/etc/aifactory/claude.env".into(),
                mode: 0o644,
            },
        ),
        (
            "reply-agents-problem-key-file-unreadable",
            ProfileProblem::KeyFileUnreadable {
                path: "/etc/aifactory/claude.env".into(),
                error: "No such file or directory (os error 2)".into(),
            },
        ),
        (
            "reply-agents-problem-credential-missing",
            ProfileProblem::CredentialMissing {
                name: "anthropic-key".into(),
                dir: Some("/run/credentials/aifactoryd.service".into()),
            },
        ),
    ];
    for (_, problem) in &problems {
        match problem {
            ProfileProblem::Unreadable { .. }
            | ProfileProblem::UnknownKind { .. }
            | ProfileProblem::NoKind { .. }
            | ProfileProblem::NoCommand { .. }
            | ProfileProblem::UnknownRestart { .. }
            | ProfileProblem::UnknownOnStall { .. }
            | ProfileProblem::NoAttempts
            | ProfileProblem::StallsAtOnce
            | ProfileProblem::HeadlessWithoutBypass
            | ProfileProblem::EndOfLife { .. }
            | ProfileProblem::NoBaseUrl
            | ProfileProblem::NoApiKeyEnv
            | ProfileProblem::NotOnPath { .. }
            | ProfileProblem::RootWithoutSandbox
            | ProfileProblem::NoKeySource { .. }
            | ProfileProblem::KeyInConfig { .. }
            | ProfileProblem::KeyFileOpen { .. }
            | ProfileProblem::KeyFileUnreadable { .. }
            | ProfileProblem::CredentialMissing { .. } => {}
        }
    }
    problems
}

/// One status sample per reason a pane directory is passed over.
fn skip_reasons() -> Samples<SkipReason> {
    let error = || "Permission denied (os error 13)".to_string();
    let reasons = vec![
        ("reply-status-panes-missing", SkipReason::Missing),
        (
            "reply-status-panes-cannot-create",
            SkipReason::CannotCreate { error: error() },
        ),
        (
            "reply-status-panes-cannot-inspect",
            SkipReason::CannotInspect { error: error() },
        ),
        ("reply-status-panes-symlink", SkipReason::Symlink),
        (
            "reply-status-panes-not-a-directory",
            SkipReason::NotADirectory,
        ),
        (
            "reply-status-panes-owned-by-other",
            SkipReason::OwnedByOther {
                dir: "/run/aifactory/panes".into(),
                owner: 0,
                daemon_uid: 1000,
            },
        ),
        (
            "reply-status-panes-open-to-others",
            SkipReason::OpenToOthers {
                dir: "/run/aifactory/panes".into(),
                mode: 0o777,
            },
        ),
        (
            "reply-status-panes-not-writable",
            SkipReason::NotWritable { error: error() },
        ),
        (
            "reply-status-panes-cannot-remove",
            SkipReason::CannotRemove { error: error() },
        ),
        (
            "reply-status-panes-no-space",
            SkipReason::NoSpace {
                dir: "/run/aifactory/panes".into(),
                error: "No space left on device (os error 28)".into(),
            },
        ),
    ];
    for (_, why) in &reasons {
        match why {
            SkipReason::Missing
            | SkipReason::CannotCreate { .. }
            | SkipReason::CannotInspect { .. }
            | SkipReason::Symlink
            | SkipReason::NotADirectory
            | SkipReason::OwnedByOther { .. }
            | SkipReason::OpenToOthers { .. }
            | SkipReason::NotWritable { .. }
            | SkipReason::CannotRemove { .. }
            | SkipReason::NoSpace { .. } => {}
        }
    }
    reasons
}

/// One versioned family of messages and the directory of its golden bytes.
struct Family {
    /// What to bump, for messages: "PROTOCOL_VERSION in common/src/protocol.rs".
    constant: &'static str,
    dir: PathBuf,
}

impl Family {
    fn control() -> Family {
        Family {
            constant: "PROTOCOL_VERSION in common/src/protocol.rs",
            dir: golden_root().join(format!("protocol-{PROTOCOL_VERSION}")),
        }
    }

    fn monitor() -> Family {
        Family {
            constant: "MONITOR_PROTOCOL_VERSION in common/src/pane.rs",
            dir: golden_root().join(format!("monitor-{MONITOR_PROTOCOL_VERSION}")),
        }
    }
}

fn golden_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n"
}

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    family: &Family,
    name: &str,
    value: &T,
    failures: &mut Vec<String>,
) {
    let bytes = codec::encode(value).unwrap();
    let decoded: T = codec::decode(&bytes).unwrap();
    assert_eq!(&decoded, value, "{name} does not survive a round trip");
    let path = family.dir.join(format!("{name}.hex"));
    if std::env::var("AIFACTORY_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(&family.dir).unwrap();
        if path.exists() {
            let old = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                old,
                hex(&bytes),
                "{name}: blessing would rewrite stored golden bytes; bump {} instead",
                family.constant
            );
        }
        std::fs::write(&path, hex(&bytes)).unwrap();
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(stored) if stored == hex(&bytes) => {}
        Ok(_) => failures.push(format!(
            "{name}: its bytes changed without a version bump: bump {}, then bless (AIFACTORY_BLESS=1)",
            family.constant
        )),
        Err(_) => failures.push(format!(
            "{name}: no golden file {}: a new message needs one (AIFACTORY_BLESS=1 writes it; existing files are never rewritten)",
            path.display()
        )),
    }
}

/// Stored files that no sample produces mean a message was removed or renamed.
fn check_no_strays(family: &Family, names: &[&str], failures: &mut Vec<String>) {
    let Ok(dir) = std::fs::read_dir(&family.dir) else {
        return;
    };
    for entry in dir.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = file.strip_suffix(".hex")
            && !names.contains(&stem)
        {
            failures.push(format!(
                "{}: stored but no longer produced: messages are append-only",
                family.dir.join(&file).display()
            ));
        }
    }
}

#[test]
fn every_message_matches_its_golden_bytes() {
    let mut failures = Vec::new();
    let control = Family::control();
    let mut names = Vec::new();
    for (name, frame) in client_frames() {
        check(&control, name, &frame, &mut failures);
        names.push(name);
    }
    for (name, frame) in server_frames() {
        check(&control, name, &frame, &mut failures);
        names.push(name);
    }
    check_no_strays(&control, &names, &mut failures);

    let monitor = Family::monitor();
    let mut names = Vec::new();
    let (monitor_requests, monitor_frames) = monitor_messages();
    for (name, request) in monitor_requests {
        check(&monitor, name, &request, &mut failures);
        names.push(name);
    }
    for (name, frame) in monitor_frames {
        check(&monitor, name, &frame, &mut failures);
        names.push(name);
    }
    check_no_strays(&monitor, &names, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn handshake_layout_never_changes() {
    assert_eq!(
        aifactory_common::handshake::hello(1),
        *b"AIFCTRL\0\x00\x01",
        "the handshake's raw layout is fixed forever"
    );
}

#[test]
fn every_provider_and_store_health_has_a_sample() {
    for p in Provider::ALL {
        match p {
            Provider::Github
            | Provider::Gitlab
            | Provider::AzureDevops
            | Provider::Bitbucket
            | Provider::Unknown => {}
        }
    }
    match StoreHealth::Writable {
        StoreHealth::Writable | StoreHealth::ReadOnly { .. } | StoreHealth::WriteFailed { .. } => {}
    }
}
