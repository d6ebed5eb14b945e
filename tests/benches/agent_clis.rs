//! Issue 14's "20 real claude CLIs at once": what the daemon spends on understanding real
//! agents, measured against the release binaries beside a peer run in the same daemon, on the
//! same workload, at the same time of the same (shared, noisy) run.
//!
//! The real `claude` (installed by `tests/agents/install`) talks to the scripted Anthropic API
//! on loopback, the egress trap as its proxy. Every conversation gets the same script, picked
//! from the request itself since the CLIs talk at once: [`TOOL_TURNS`] replies of text and
//! [`CALLS_PER_TURN`] Bash calls (`echo` into a file, `wc -l` of it), then a last text reply,
//! so each CLI prints tens of stream-json lines and runs a few seconds.
//!
//! - **understood**: N tasks of a `claude-code` profile (the built-in headless command) are
//!   started at once; the daemon's Claude adapter parses each CLI's output into transcript
//!   events, stores and publishes them, and ends each task with its usage.
//! - **plain** (the peer): the same N runs (the argv and working directory each task's session
//!   had in the first understood round, the profile's environment and key) started at once as
//!   plain sessions, whose output the daemon only relays and records as terminal output.
//!
//! Each round is measured from the first start until all N are done (every task `done` with
//! usage, every session exited 0 with claude's success line): the daemon's CPU time
//! (utime+stime, in 10 ms ticks, and its threads' on-CPU time from schedstat, finer but blind
//! to threads that exited), its peak RSS (sampled every [`SAMPLE_EVERY`]) and RSS at the end, the wall
//! time, the transcript events stored and the terminal output. The two alternate, [`ROUNDS`]
//! rounds each; the tables give medians and each round.
//!
//! Run with `cargo build --release -p aifactoryd -p aifactoryctl -p aifactory-pane &&
//! cargo bench -p aifactory-tests --bench agent_clis`; `AIFACTORY_BENCH_CLIS=N` runs N CLIs
//! at once instead of 20. The tables printed at the end are markdown, ready for BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aifactory_common::Client;
use aifactory_common::protocol::{
    AgentEvent, Request, SessionSpec, StreamItem, TaskCreate, TaskPhase,
};
use aifactory_tests::agent_clis::{self, CLAUDE_QUIET_ENV, FAKE_API_KEY};
use aifactory_tests::anthropic_api::{AnthropicApi, Turn};
use aifactory_tests::bench::{
    RunClock, Usage, fmt_duration, mb, print_report, read_status, sized, status_field,
    warn_if_stale,
};
use aifactory_tests::egress::EgressTrap;
use aifactory_tests::git::committed_repo;
use aifactory_tests::{Daemon, Sandbox, is_root, skip};
use serde_json::{Value, json};

static DEFAULT_CLIS: LazyLock<usize> = LazyLock::new(|| sized(20, 1));
/// Rounds of each kind, alternating: understood, plain, understood, plain.
static ROUNDS: LazyLock<usize> = LazyLock::new(|| sized(2, 1));
/// Assistant replies with tool calls before the last, text-only one.
const TOOL_TURNS: usize = 4;
const CALLS_PER_TURN: usize = 2;
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// A liveness bound for one round on a loaded machine, not a speed target.
const ROUND_TIMEOUT: Duration = Duration::from_secs(900);

fn main() {
    let clock = RunClock::start();
    let claude = match agent_clis::claude() {
        Ok(path) => path,
        Err(e) => {
            skip("agent_clis bench", &e.to_string());
            return;
        }
    };
    let clis = std::env::var("AIFACTORY_BENCH_CLIS")
        .ok()
        .map(|n| {
            n.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or_else(|| panic!("AIFACTORY_BENCH_CLIS={n}: give a positive count"))
        })
        .unwrap_or(*DEFAULT_CLIS);
    warn_if_stale(&["aifactoryd", "aifactoryctl"]);

    let api = AnthropicApi::start(Vec::new());
    api.answer_with(conversation_turn);
    let egress = EgressTrap::start();
    let sandbox = Sandbox::new();
    let configs = sandbox.path().join("claude-config");
    // What the profile gives claude, bar its config dir; the key comes from the daemon's own
    // environment, as it would from a credential.
    let mut env: Vec<(String, String)> = vec![("ANTHROPIC_BASE_URL".into(), api.base_url())];
    env.extend(
        CLAUDE_QUIET_ENV
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
    );
    env.extend(egress.env().into_iter().map(|(k, v)| (k.to_string(), v)));
    if is_root() {
        env.push(("IS_SANDBOX".into(), "1".into()));
    }
    let profile_env: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{k} = {v:?}"))
        .chain([format!(
            "CLAUDE_CONFIG_DIR = {:?}",
            format!("{}/{{task_id}}", configs.display())
        )])
        .collect();
    sandbox.write_config(&format!(
        "default_agent = \"claude\"\n[agents.claude]\nkind = \"claude-code\"\nprogram = {:?}\nenv = {{ {} }}\n",
        claude.to_str().expect("a UTF-8 path"),
        profile_env.join(", "),
    ));
    let daemon = sandbox
        .daemon()
        .env("ANTHROPIC_API_KEY", FAKE_API_KEY)
        .start();
    let repo = committed_repo(&sandbox.path().join("demo"));
    sandbox
        .ctl(&[
            "projects",
            "add",
            repo.to_str().expect("a UTF-8 path"),
            "--name",
            "demo",
        ])
        .assert_ok();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let bench = Bench {
        daemon: &daemon,
        api: &api,
        clis,
        configs,
        env,
    };
    let (understood, plain, between) = runtime.block_on(bench.run());
    let requests = api.message_requests().len();
    let expected = 2 * *ROUNDS * clis * (TOOL_TURNS + 1);
    assert_eq!(
        requests, expected,
        "one request per reply of each conversation"
    );
    let attempts = egress.attempts();
    assert!(
        attempts.is_empty(),
        "claude contacted a host other than the scripted API: {attempts:?}"
    );
    let logs = daemon.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    for line in &warnings {
        eprintln!("daemon: {line}");
    }
    let warnings = warnings.len();
    drop(daemon);
    print_report(
        &format!(
            "{}; scripted API: {requests} message requests ({} per conversation), {} other; egress trap: {} attempts; daemon WARN/ERROR lines: {warnings}",
            clock.summary(Some(&between)),
            TOOL_TURNS + 1,
            api.requests().len() - requests,
            attempts.len(),
        ),
        &[report(clis, &understood, &plain)],
    );
}

/// The reply to one request of a conversation: tool calls until [`TOOL_TURNS`] assistant
/// replies are in its history, then the last text.
fn conversation_turn(request: &Value) -> Turn {
    let done = request["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count());
    if done >= TOOL_TURNS {
        return Turn::text("All steps are written to bench-notes.txt.");
    }
    let mut calls = vec![(
        "Bash",
        json!({"command": format!("echo 'step {done}' >> bench-notes.txt"),
               "description": "Append a step"}),
    )];
    calls.extend((1..CALLS_PER_TURN).map(|k| {
        (
            "Bash",
            json!({"command": format!("wc -l bench-notes.txt # check {k}"),
                   "description": "Count the steps"}),
        )
    }));
    Turn::tools(&format!("Step {done}: writing it down."), &calls)
}

/// One round's figures.
struct Measure {
    /// utime+stime, in clock ticks' resolution (10 ms).
    cpu_ms: f64,
    /// On-CPU time of the daemon's threads alive at the end (schedstat): finer than the ticks.
    on_cpu_ms: f64,
    peak_rss_kb: u64,
    final_rss_kb: u64,
    wall: Duration,
    /// Transcript entries stored (understood) or 0 (plain).
    events: u64,
    /// Terminal output bytes the daemon recorded, over all N sessions.
    output_bytes: u64,
}

struct Bench<'a> {
    daemon: &'a Daemon,
    api: &'a AnthropicApi,
    clis: usize,
    configs: PathBuf,
    env: Vec<(String, String)>,
}

/// A run to repeat as a plain session: its argv and working directory.
type Run = (Vec<String>, PathBuf);

impl Bench<'_> {
    /// Alternates the rounds; returns each kind's measures and the load between them.
    async fn run(&self) -> (Vec<Measure>, Vec<Measure>, String) {
        let client = self.daemon.client().await;
        let (mut understood, mut plain) = (Vec::new(), Vec::new());
        let mut runs: Option<Vec<Run>> = None;
        let mut loads = Vec::new();
        for round in 0..*ROUNDS {
            let (measure, these) = self.understood(&client, round).await;
            understood.push(measure);
            let runs = runs.get_or_insert(these);
            loads.push(aifactory_tests::bench::loadavg());
            plain.push(self.plain(&client, round, runs).await);
            loads.push(aifactory_tests::bench::loadavg());
        }
        loads.pop();
        (understood, plain, loads.join(" / "))
    }

    /// N claude-code tasks at once, until every one is `done`.
    async fn understood(&self, client: &Client, round: usize) -> (Measure, Vec<Run>) {
        let mut ids = Vec::new();
        for i in 0..self.clis {
            let task = client
                .task_create(TaskCreate {
                    project: "demo".into(),
                    spec_id: format!("r{round}-c{i}"),
                    title: Some(format!("Bench conversation {i}")),
                    agent: None,
                })
                .await
                .expect("task create");
            ids.push(task.id);
        }
        let pid = self.daemon.pid();
        let requests = self.api.message_requests().len();
        let sampler = RssSampler::start(pid);
        let before = Usage::read(pid);
        let began = Instant::now();
        let round_done = async {
            let started =
                futures::future::join_all(ids.iter().map(|id| client.task_start(id.clone()))).await;
            let sessions: Vec<String> = started
                .into_iter()
                .map(|t| {
                    let t = t.expect("task start");
                    t.session_id
                        .unwrap_or_else(|| panic!("{}: no session", t.id))
                })
                .collect();
            futures::future::join_all(sessions.iter().map(|s| client.session_wait(s.clone())))
                .await;
            for id in &ids {
                loop {
                    let task = client.task_show(id.clone()).await.expect("task show");
                    if task.phase == TaskPhase::Done {
                        break;
                    }
                    assert!(
                        task.phase.is_active(),
                        "{id} ended {:?}: {:?} {:?}",
                        task.phase,
                        task.failure,
                        task.last_error
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            sessions
        };
        let sessions = tokio::time::timeout(ROUND_TIMEOUT, round_done)
            .await
            .unwrap_or_else(|_| panic!("understood round {round}: not done in {ROUND_TIMEOUT:?}"));
        let wall = began.elapsed();
        let after = Usage::read(pid);
        let (cpu_ms, on_cpu_ms) = (after.cpu_ms_since(&before), after.on_cpu_ms_since(&before));
        let peak_rss_kb = sampler.stop();
        let final_rss_kb = rss_kb(pid);
        assert_eq!(
            self.api.message_requests().len() - requests,
            self.clis * (TOOL_TURNS + 1),
            "understood round {round}: every conversation ran its whole script"
        );

        let (mut events, mut output_bytes, mut runs) = (0, 0, Vec::new());
        for (id, session) in ids.iter().zip(&sessions) {
            let task = client.task_show(id.clone()).await.expect("task show");
            assert!(
                task.usage.output_tokens > 0 && task.failure.is_none(),
                "{id}: done with usage: {task:?}"
            );
            let transcript = client
                .task_transcript(id.clone(), None)
                .await
                .expect("transcript");
            let calls = transcript
                .entries
                .iter()
                .filter(|e| matches!(e.event, AgentEvent::ToolCall { .. }))
                .count();
            assert_eq!(calls, TOOL_TURNS * CALLS_PER_TURN, "{id}: tool calls");
            assert!(
                matches!(
                    transcript.entries.last().map(|e| &e.event),
                    Some(AgentEvent::Result(_))
                ),
                "{id}: the transcript ends in the result"
            );
            events += transcript.entries.len() as u64 + transcript.dropped;
            output_bytes += output(client, session).await.len() as u64;
            let info = client.session_show(session.clone()).await.expect("session");
            runs.push((info.command, info.cwd));
        }
        let measure = Measure {
            cpu_ms,
            on_cpu_ms,
            peak_rss_kb,
            final_rss_kb,
            wall,
            events,
            output_bytes,
        };
        (measure, runs)
    }

    /// The same N runs as plain sessions at once, until every one has exited.
    async fn plain(&self, client: &Client, round: usize, runs: &[Run]) -> Measure {
        let specs: Vec<SessionSpec> = runs
            .iter()
            .enumerate()
            .map(|(i, (command, cwd))| {
                let config = self.configs.join(format!("plain-{round}-{i}"));
                let mut env = self.env.clone();
                env.push((
                    "CLAUDE_CONFIG_DIR".into(),
                    config.to_string_lossy().into_owned(),
                ));
                env.push(("ANTHROPIC_API_KEY".into(), FAKE_API_KEY.into()));
                SessionSpec {
                    name: Some(format!("plain-{round}-{i}")),
                    command: command.clone(),
                    cwd: cwd.clone(),
                    env,
                    cols: None,
                    rows: None,
                }
            })
            .collect();
        let pid = self.daemon.pid();
        let requests = self.api.message_requests().len();
        let sampler = RssSampler::start(pid);
        let before = Usage::read(pid);
        let began = Instant::now();
        let round_done = async {
            let started =
                futures::future::join_all(specs.into_iter().map(|s| client.session_new(s))).await;
            let sessions: Vec<String> = started
                .into_iter()
                .map(|s| s.expect("session new").id)
                .collect();
            let ended =
                futures::future::join_all(sessions.iter().map(|s| client.session_wait(s.clone())))
                    .await;
            (sessions, ended)
        };
        let (sessions, ended) = tokio::time::timeout(ROUND_TIMEOUT, round_done)
            .await
            .unwrap_or_else(|_| panic!("plain round {round}: not done in {ROUND_TIMEOUT:?}"));
        let wall = began.elapsed();
        let after = Usage::read(pid);
        let (cpu_ms, on_cpu_ms) = (after.cpu_ms_since(&before), after.on_cpu_ms_since(&before));
        let peak_rss_kb = sampler.stop();
        let final_rss_kb = rss_kb(pid);
        assert_eq!(
            self.api.message_requests().len() - requests,
            self.clis * (TOOL_TURNS + 1),
            "plain round {round}: every conversation ran its whole script"
        );

        let mut output_bytes = 0;
        for (session, ended) in sessions.iter().zip(ended) {
            let ended = ended.expect("session wait");
            let out = output(client, session).await;
            let text = String::from_utf8_lossy(&out);
            assert!(
                ended.exit.as_ref().and_then(|e| e.code) == Some(0)
                    && text.contains("\"subtype\":\"success\""),
                "{session} ended {:?} without claude's success line:\n{text}",
                ended.exit
            );
            output_bytes += out.len() as u64;
        }
        Measure {
            cpu_ms,
            on_cpu_ms,
            peak_rss_kb,
            final_rss_kb,
            wall,
            events: 0,
            output_bytes,
        }
    }
}

/// All the terminal output the daemon kept of `session`.
async fn output(client: &Client, session: &str) -> Vec<u8> {
    let mut tail = client
        .subscribe(Request::SessionTail {
            key: session.to_string(),
            from: None,
            follow: false,
        })
        .await
        .expect("session tail");
    let mut out = Vec::new();
    loop {
        match tail.next().await.expect("output stream open") {
            StreamItem::Output { data, .. } => out.extend_from_slice(&data),
            StreamItem::OutputEnd { .. } => return out,
            other => panic!("{session}: unexpected {other:?} in its output"),
        }
    }
}

fn rss_kb(pid: u32) -> u64 {
    status_field(&read_status(pid), "VmRSS").unwrap_or(0)
}

/// Samples a process's RSS on a thread of its own, keeping the highest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut peak = rss_kb(pid);
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(SAMPLE_EVERY);
                    peak = peak.max(rss_kb(pid));
                }
                peak
            })
        };
        RssSampler { stop, thread }
    }

    /// The peak, in KiB.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the RSS sampler")
    }
}

/// The median; the mean of the middle two for an even count.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median of each measure.
fn medians(m: &[Measure]) -> Measure {
    let of = |f: fn(&Measure) -> f64| median(m.iter().map(f));
    Measure {
        cpu_ms: of(|m| m.cpu_ms),
        on_cpu_ms: of(|m| m.on_cpu_ms),
        peak_rss_kb: of(|m| m.peak_rss_kb as f64) as u64,
        final_rss_kb: of(|m| m.final_rss_kb as f64) as u64,
        wall: Duration::from_secs_f64(of(|m| m.wall.as_secs_f64())),
        events: of(|m| m.events as f64) as u64,
        output_bytes: of(|m| m.output_bytes as f64) as u64,
    }
}

fn row(out: &mut String, label: &str, m: &Measure) {
    let events = if m.events == 0 {
        "—".to_string()
    } else {
        m.events.to_string()
    };
    let _ = writeln!(
        out,
        "| {label} | {:.0} ms | {:.1} ms | {} | {} | {} | {events} | {:.0} KB |",
        m.cpu_ms,
        m.on_cpu_ms,
        mb(m.peak_rss_kb),
        mb(m.final_rss_kb),
        fmt_duration(m.wall),
        m.output_bytes as f64 / 1024.0,
    );
}

fn report(clis: usize, understood: &[Measure], plain: &[Measure]) -> String {
    let (u, p) = (medians(understood), medians(plain));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {clis} real claude CLIs at once, {TOOL_TURNS} tool turns + 1 each (median of {} rounds) | daemon CPU (utime+stime) | daemon threads on CPU (schedstat) | daemon peak RSS | daemon RSS at the end | wall time | transcript events stored | terminal output |",
        *ROUNDS
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    row(&mut out, "understood: `claude-code` tasks", &u);
    row(
        &mut out,
        "peer: the same runs as plain terminal sessions",
        &p,
    );
    let _ = writeln!(
        out,
        "| **understood ÷ plain: the cost of understanding them** | {} | **{:.1}×** | {:.2}× | {:.2}× | {:.2}× | | |",
        if p.cpu_ms > 0.0 {
            format!("{:.1}×", u.cpu_ms / p.cpu_ms)
        } else {
            "— (peer under a tick)".to_string()
        },
        u.on_cpu_ms / p.on_cpu_ms.max(0.001),
        u.peak_rss_kb as f64 / p.peak_rss_kb.max(1) as f64,
        u.final_rss_kb as f64 / p.final_rss_kb.max(1) as f64,
        u.wall.as_secs_f64() / p.wall.as_secs_f64(),
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| round, in the order run | daemon CPU (utime+stime) | daemon threads on CPU (schedstat) | daemon peak RSS | daemon RSS at the end | wall time | transcript events stored | terminal output |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (u, p)) in understood.iter().zip(plain).enumerate() {
        row(&mut out, &format!("{}. understood", 2 * i + 1), u);
        row(&mut out, &format!("{}. plain", 2 * i + 2), p);
    }
    out
}
