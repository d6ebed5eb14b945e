//! Issue 14's figures: what understanding an agent's output costs, measured against the
//! release binaries in one run, each beside a peer measured at the same time on the same
//! (shared, noisy) machine. Two tasks run side by side, each an agent that copies a FIFO to its
//! terminal (`cat`), so the bench decides every line the agent prints:
//!
//! - **understood**: a `claude-code` profile (built-in headless command, its program a script
//!   that `exec`s `cat`), whose output the daemon's Claude adapter parses into transcript
//!   events, stores, and publishes;
//! - **opaque** (the peer): a `custom` profile running the same `cat`, whose output the daemon
//!   only records as terminal output.
//!
//! 1. **Agent output line → event.** 1,000 Claude stream-json lines (an assistant turn with
//!    one `tool_use`, ~180 bytes), each timed from just before it is written into the FIFO until
//!    a subscribed client holds the `TaskAgent` event for it. The peer: the same line written to
//!    the opaque agent, timed until a client that follows its session's output
//!    (`SessionTail`, follow) holds the line's bytes — the raw terminal path every agent's
//!    output already takes. Blocks of 100 alternate between the two.
//! 2. **Daemon CPU per 1,000 agent events.** 1,000 such lines written at once, timed until the
//!    1,000th event (or, for the peer, the last line's bytes) reached the client; the daemon's
//!    on-CPU time over it (its threads' schedstat: finer than utime+stime's 10 ms ticks). Five
//!    rounds each, alternating; medians.
//!
//! Run with `cargo build --release -p aifactoryd -p aifactoryctl -p aifactory-pane && cargo
//! bench -p aifactory-tests --bench agents`. The tables printed at the end are markdown, ready
//! for BENCHMARKS.md. The run takes about a minute.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aifactory_common::protocol::{AgentEvent, EventKind, Request, StreamItem, TaskInfo, TaskPhase};
use aifactory_common::{Client, Subscription};
use aifactory_tests::bench::{
    Latency, RunClock, Usage, fmt_duration, print_report, sized, warn_if_stale,
};
use aifactory_tests::{Daemon, Sandbox};

static LINES: LazyLock<usize> = LazyLock::new(|| sized(1000, 4));
static BLOCK: LazyLock<usize> = LazyLock::new(|| sized(100, 2));
static WARMUP: LazyLock<usize> = LazyLock::new(|| sized(20, 1));
static ROUNDS: LazyLock<usize> = LazyLock::new(|| sized(5, 1));
/// A liveness bound for one event on a loaded machine, not a speed target.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A liveness bound for an agent to open its FIFO on a loaded machine, not a speed target.
const AGENT_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd", "aifactoryctl"]);
    let sandbox = Sandbox::new();
    let fifos = [
        sandbox.path().join("understood.fifo"),
        sandbox.path().join("opaque.fifo"),
    ];
    for fifo in &fifos {
        nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap_or_else(|e| panic!("mkfifo {}: {e}", fifo.display()));
    }
    let fake_claude = sandbox.script("claude", &format!("exec cat {}", fifos[0].display()));
    // Each agent, in its cage as any task's, may read its FIFO.
    let (understood, opaque) = (
        fifos[0].to_str().expect("a UTF-8 path"),
        fifos[1].to_str().expect("a UTF-8 path"),
    );
    sandbox.write_config(&format!(
        "default_agent = \"claude\"\n\
         [agents.claude]\nkind = \"claude-code\"\nprogram = {:?}\nenv = {{ IS_SANDBOX = \"1\" }}\n\
         read_only = [{understood:?}]\n\
         [agents.opaque]\nkind = \"custom\"\ncommand = [\"cat\", {opaque:?}]\nread_only = [{opaque:?}]\n",
        fake_claude.to_str().expect("a UTF-8 path"),
    ));
    let daemon = sandbox
        .daemon()
        .env("ANTHROPIC_API_KEY", "sk-ant-bench-not-a-key")
        .start();
    sandbox.add_project("demo");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let report = runtime.block_on(measure(&sandbox, &daemon, &fifos));
    let logs = daemon.logs();
    let warnings = logs
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    drop(daemon);
    print_report(
        &format!(
            "{}; daemon WARN/ERROR lines: {warnings}",
            clock.summary(None)
        ),
        &[report],
    );
}

fn line(n: usize) -> String {
    format!(
        "{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"tool_use\",\"id\":\"toolu_{n:06}\",\"name\":\"Bash\",\"input\":{{\"command\":\"cargo test --package demo -- case_{n}\"}}}}]}}}}\n"
    )
}

async fn start_task(sandbox: &Sandbox, client: &Client, spec: &str, agent: &str) -> TaskInfo {
    let id = sandbox.create_task("demo", spec, &["--agent", agent]);
    client.task_start(id).await.expect("task start")
}

async fn measure(sandbox: &Sandbox, daemon: &Daemon, fifos: &[PathBuf; 2]) -> String {
    let client = daemon.client().await;
    let mut events = client
        .subscribe(Request::SubscribeEvents { after: None })
        .await
        .expect("subscribe");
    let understood = start_task(sandbox, &client, "understood", "claude").await;
    let opaque = start_task(sandbox, &client, "opaque", "opaque").await;
    // Opening for writing waits for `cat` to open its end: the agents are running.
    let mut to_understood = open_writer(&fifos[0]);
    let mut to_opaque = open_writer(&fifos[1]);
    let session = opaque
        .session_id
        .clone()
        .expect("the opaque task's session");
    // Its own connection: a stream nobody reads for a while must not hold up the other.
    let tail_client = daemon.client().await;
    let mut tail = tail_client
        .subscribe(Request::SessionTail {
            key: session,
            from: None,
            follow: true,
        })
        .await
        .expect("tail the opaque agent");
    let mut seen_raw = Vec::new();

    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    for _ in 0..*WARMUP {
        let i = next();
        understood_line(&mut to_understood, &mut events, &understood.id, i).await;
        opaque_line(&mut to_opaque, &mut tail, &mut seen_raw, i).await;
    }
    let (mut agent, mut raw) = (Vec::new(), Vec::new());
    while agent.len() < *LINES {
        for _ in 0..*BLOCK {
            let i = next();
            agent.push(understood_line(&mut to_understood, &mut events, &understood.id, i).await);
        }
        for _ in 0..*BLOCK {
            let i = next();
            raw.push(opaque_line(&mut to_opaque, &mut tail, &mut seen_raw, i).await);
        }
    }
    let (agent, raw) = (Latency::new(agent), Latency::new(raw));

    let pid = daemon.pid();
    let (mut cpu_agent, mut cpu_raw, mut wall_agent, mut wall_raw) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..*ROUNDS {
        let first = n + 1;
        n += *LINES;
        let burst: String = (first..=n).map(line).collect();
        let before = Usage::read(pid);
        let began = Instant::now();
        write_all(&mut to_understood, &burst);
        wait_event(&mut events, &understood.id, n).await;
        wall_agent.push(began.elapsed());
        cpu_agent.push(Usage::read(pid).on_cpu_ms_since(&before));

        let before = Usage::read(pid);
        let began = Instant::now();
        write_all(&mut to_opaque, &burst);
        wait_raw(&mut tail, &mut seen_raw, n).await;
        wall_raw.push(began.elapsed());
        cpu_raw.push(Usage::read(pid).on_cpu_ms_since(&before));
    }
    drop((to_understood, to_opaque));
    for id in [&understood.id, &opaque.id] {
        let task = client.task_show(id.clone()).await.expect("task show");
        assert!(
            task.phase == TaskPhase::Done || task.phase.is_active(),
            "{id}: {task:?}"
        );
    }
    let transcript = client
        .task_transcript(understood.id.clone(), None)
        .await
        .expect("transcript");
    let stored = transcript.entries.len() as u64 + transcript.dropped;
    // The understood agent got every warm-up and timed line, and every burst.
    let written = *WARMUP + agent.len() + *ROUNDS * *LINES;
    assert_eq!(stored, written as u64, "every line became one entry");

    let mut out = String::new();
    let _ = writeln!(
        out,
        "| agent output line → at the client | n | median | p99 | max | peer: the same line as raw terminal output | peer p99 | median ÷ peer | p99 ÷ peer |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| Claude stream-json line → `TaskAgent` event (parsed, stored, published) | {} | {} | {} | {} | {} | {} | {:.2}× | {:.2}× |",
        agent.len(),
        fmt_duration(agent.median()),
        fmt_duration(agent.p99()),
        fmt_duration(agent.max()),
        fmt_duration(raw.median()),
        fmt_duration(raw.p99()),
        agent.median().as_secs_f64() / raw.median().as_secs_f64(),
        agent.p99().as_secs_f64() / raw.p99().as_secs_f64(),
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| {} lines at once, {} rounds (medians) | daemon CPU | wall time to the last | peer: opaque agent, daemon CPU | peer wall time | CPU ÷ peer |",
        *LINES, *ROUNDS
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let (ca, cr) = (median_f64(&mut cpu_agent), median_f64(&mut cpu_raw));
    let _ = writeln!(
        out,
        "| understood: {} transcript events | {ca:.1} ms | {} | {cr:.1} ms | {} | {:.2}× |",
        *LINES,
        fmt_duration(Latency::new(wall_agent).median()),
        fmt_duration(Latency::new(wall_raw).median()),
        ca / cr,
    );
    out
}

fn median_f64(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Opens `fifo` for writing once its agent has opened it for reading. Bounded: an agent that
/// died before (e.g. refused its FIFO) would leave a plain open waiting for good.
fn open_writer(fifo: &Path) -> fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = Instant::now() + AGENT_OPEN_TIMEOUT;
    let file = loop {
        match fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(file) => break file,
            // ENXIO: nobody reads it yet.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!(
                "open {} for writing: {e} (its agent never opened it: see the daemon's log)",
                fifo.display()
            ),
        }
    };
    // Writes block again, as the bench's pacing expects.
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).expect("F_GETFL");
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags)).expect("F_SETFL");
    file
}

fn write_all(to: &mut fs::File, text: &str) {
    to.write_all(text.as_bytes())
        .expect("write to the agent's FIFO");
}

async fn understood_line(
    to: &mut fs::File,
    events: &mut Subscription,
    task: &str,
    n: usize,
) -> Duration {
    let text = line(n);
    let began = Instant::now();
    write_all(to, &text);
    wait_event(events, task, n).await;
    began.elapsed()
}

/// Until the `TaskAgent` event of line `n` (its tool call id) arrives.
async fn wait_event(events: &mut Subscription, task: &str, n: usize) {
    let want = format!("toolu_{n:06}");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let item = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no event for line {n} within {TIMEOUT:?}"))
            .unwrap_or_else(|| panic!("the event stream ended while waiting for line {n}"));
        if let StreamItem::Event(e) = item
            && let EventKind::TaskAgent { task_id, entry } = e.kind
            && task_id == task
            && let AgentEvent::ToolCall {
                call_id: Some(id), ..
            } = &entry.event
            && *id == want
        {
            return;
        }
    }
}

async fn opaque_line(
    to: &mut fs::File,
    tail: &mut Subscription,
    seen: &mut Vec<u8>,
    n: usize,
) -> Duration {
    let text = line(n);
    let began = Instant::now();
    write_all(to, &text);
    wait_raw(tail, seen, n).await;
    began.elapsed()
}

/// Until the bytes of line `n` (its tool call id and the end of its line) arrived as output.
async fn wait_raw(tail: &mut Subscription, seen: &mut Vec<u8>, n: usize) {
    let want = format!("toolu_{n:06}");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(at) = find(seen, want.as_bytes())
            && seen[at..].contains(&b'\n')
        {
            seen.drain(..at + want.len());
            return;
        }
        let item = tokio::time::timeout_at(deadline, tail.next())
            .await
            .unwrap_or_else(|_| panic!("no output for line {n} within {TIMEOUT:?}"))
            .expect("output stream open");
        if let StreamItem::Output { data, .. } = item {
            seen.extend_from_slice(&data);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
