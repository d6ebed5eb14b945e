//! Issue 3's figures for the control socket, all measured in one run so that peers share the
//! same (shared, noisy) machine state:
//!
//! 1. the in-process `status` round trip through `aifactory_common::Client`, with 0 and with
//!    100 other idle (handshaken) connections;
//! 2. processes doing equal work on both sides, interleaved run by run, beside `true` (the
//!    cost of spawning any process at all): `aifactoryctl --socket S status` against `tmux -S
//!    <private socket> list-sessions` with 1 session and no other client, then the same while
//!    each server holds 100 idle clients (100 handshaken connections; 100 control-mode clients
//!    `tmux -C attach`, tmux still at 1 session); then `aifactoryctl sessions list` against
//!    `tmux list-sessions` with 100 sessions on each side (100 `sleep 1000` sessions), both
//!    listing 100 sessions;
//! 3. the daemon's CPU time and context switches over 10 s idle windows, beside the tmux
//!    server's over the same windows;
//! 4. the daemon's RSS after start, with 100 idle connections and after 1000 clients hung up
//!    part-way, beside the tmux server's;
//! 5. 1, 3 and 4 for two daemons running side by side, one with `RUST_BACKTRACE` unset and one
//!    with `RUST_BACKTRACE=1`, their requests interleaved.
//!
//! Run with `cargo build --release -p aifactoryd -p aifactoryctl && cargo bench -p
//! aifactory-tests --bench status`: `cargo bench` does not build the daemon and the CLI, and
//! the bench uses the ones in `target/release` (or `$AIFACTORY_BIN_DIR`). The tables printed at
//! the end are markdown, ready for BENCHMARKS.md.
//!
//! One file past 600 lines on purpose: one bench is one BENCHMARKS.md section measured in one
//! run, so that each figure and its peer share the machine's state; shared tools live in
//! `tests/src/bench.rs`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aifactory_common::procfs;
use aifactory_common::protocol::{ClientFrame, PROTOCOL_VERSION, Request};
use aifactory_common::{Client, handshake};
use aifactory_tests::bench::{
    Latency, RunClock, checked, find_in_path, fmt_duration, print_report, sized, status_field,
    time_run, warn_if_stale,
};
use aifactory_tests::raw::{RawConn, send_client_frame};
use aifactory_tests::tmux::Tmux;
use aifactory_tests::{Daemon, Sandbox, bin, skip};
use tokio::runtime::Runtime;

/// Timed in-process round trips per series, after [`ROUND_TRIP_WARMUP`] untimed ones.
static ROUND_TRIPS: LazyLock<usize> = LazyLock::new(|| sized(2000, 5));
static ROUND_TRIP_WARMUP: LazyLock<usize> = LazyLock::new(|| sized(200, 1));
/// Timed process runs per command, interleaved, after [`SPAWN_WARMUP`] untimed ones each.
static SPAWNS: LazyLock<usize> = LazyLock::new(|| sized(300, 3));
static SPAWN_WARMUP: LazyLock<usize> = LazyLock::new(|| sized(20, 1));
/// Idle clients each server holds beside the measured one (connections to the daemon,
/// control-mode clients of tmux), then sessions each server lists.
static IDLE_CONNECTIONS: LazyLock<usize> = LazyLock::new(|| sized(100, 3));
static SESSIONS: LazyLock<usize> = LazyLock::new(|| sized(100, 3));
static IDLE_WINDOW: LazyLock<Duration> =
    LazyLock::new(|| sized(Duration::from_secs(10), Duration::from_secs(1)));
/// Clients that connect and hang up part-way, [`HANGUP_BATCH`] at a time.
static HANGUPS: LazyLock<usize> = LazyLock::new(|| sized(1000, 50));
const HANGUP_BATCH: usize = 50;
/// How long the daemon may take to notice that clients left.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd", "aifactoryctl"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the bench's tokio runtime");
    let mut tmux = match start_tmux() {
        Ok(tmux) => Some(tmux),
        Err(reason) => {
            skip("status bench: tmux comparison", &reason.to_string());
            println!("tmux comparison skipped: {reason}");
            None
        }
    };
    let report = run(&runtime, tmux.as_mut());
    drop(tmux);

    print_report(
        &clock.summary(None),
        &[latency_table(&report), resource_table(&report)],
    );
}

// ---------------------------------------------------------------------------------------------
// The run: two daemons side by side, RUST_BACKTRACE unset and set.

/// One daemon under test. `daemon` is declared first so it is killed before its directory
/// goes.
struct Subject {
    daemon: Daemon,
    sandbox: Sandbox,
    label: &'static str,
}

impl Subject {
    fn start(label: &'static str, backtrace: bool) -> Subject {
        let sandbox = Sandbox::new();
        let mut builder = sandbox.daemon();
        if backtrace {
            builder = builder.env("RUST_BACKTRACE", "1");
        }
        let daemon = builder.start();
        Subject {
            daemon,
            sandbox,
            label,
        }
    }

    fn pid(&self) -> u32 {
        self.daemon.pid()
    }
}

/// What one daemon showed.
struct DaemonReport {
    label: &'static str,
    mem_start: Mem,
    mem_with_idle: Mem,
    mem_after_hangups: Mem,
    mem_end: Mem,
    idle_fresh: Idle,
    idle_after_work: Idle,
    round_trip_alone: Latency,
    round_trip_with_idle: Latency,
    log_lines: usize,
}

/// The tmux server at the same points, with its session count.
struct TmuxReport {
    mem_start: (usize, Mem),
    mem_with_idle: (usize, Mem),
    mem_end: (usize, Mem),
    idle_fresh: (usize, Idle),
    idle_after_work: (usize, Idle),
}

struct Report {
    daemons: Vec<DaemonReport>,
    tmux: Option<TmuxReport>,
    /// Process-level series, against the RUST_BACKTRACE-unset daemon.
    process_alone: Vec<Series>,
    process_with_idle: Vec<Series>,
    /// `aifactoryctl sessions list` against `tmux list-sessions`, [`SESSIONS`] sessions each.
    process_listing: Vec<Series>,
}

fn run(runtime: &Runtime, mut tmux: Option<&mut Tmux>) -> Report {
    let subjects = [Subject::start("unset", false), Subject::start("1", true)];
    let pids: Vec<u32> = subjects.iter().map(Subject::pid).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mem_start = read_mems(&pids);
    let tmux_mem_start = tmux.as_deref().map(tmux_mem);

    eprintln!("idle window: fresh daemons, no client ever connected");
    let (idle_fresh, tmux_idle_fresh) = idle_window(&pids, tmux.as_deref());

    let probes: Vec<Client> = runtime.block_on(futures::future::join_all(
        subjects.iter().map(|s| s.daemon.client()),
    ));
    eprintln!("in-process round trips, no other connection");
    let round_trip_alone = runtime.block_on(round_trips(&probes));
    eprintln!("process round trips: aifactoryctl, no other connection; tmux, 1 session");
    let process_alone = process_series(
        &subjects[0].sandbox,
        tmux.as_deref(),
        Listing::Status,
        "0 other connections".into(),
    );

    let idle = *IDLE_CONNECTIONS;
    let idle_clients: Vec<Vec<Client>> = runtime.block_on(async {
        let mut all = Vec::new();
        for subject in &subjects {
            let mut clients = Vec::with_capacity(idle);
            for _ in 0..idle {
                clients.push(subject.daemon.client().await);
            }
            all.push(clients);
        }
        all
    });
    runtime.block_on(wait_all(&probes, &subjects, idle as u32 + 1));
    eprintln!("in-process round trips, {idle} idle connections");
    let round_trip_with_idle = runtime.block_on(round_trips(&probes));
    // Equal work: tmux too answers its one-session query while holding `idle` idle clients.
    let tmux_clients = tmux
        .as_deref()
        .map(|tmux| IdleTmuxClients::attach(tmux, idle));
    eprintln!(
        "process round trips: aifactoryctl, {idle} idle connections; tmux, 1 session and {idle} idle clients"
    );
    let process_with_idle = process_series(
        &subjects[0].sandbox,
        tmux.as_deref(),
        Listing::Status,
        format!("{idle} other connections"),
    );
    let mem_with_idle = read_mems(&pids);
    let tmux_mem_with_idle = tmux.as_deref().map(tmux_mem);
    drop(idle_clients);
    drop(tmux_clients);
    // Client::drop aborts its reader task, which owns the read half: the socket closes only
    // once the runtime runs again, which wait_all does.
    runtime.block_on(wait_all(&probes, &subjects, 1));

    // Equal work: each side lists as many sessions.
    let sessions = *SESSIONS;
    create_sessions(&subjects[0].sandbox, sessions);
    if let Some(tmux) = tmux.as_deref_mut() {
        grow_to(tmux, sessions);
    }
    eprintln!(
        "process round trips: aifactoryctl sessions list and tmux list-sessions, {sessions} sessions each"
    );
    let process_listing = process_series(
        &subjects[0].sandbox,
        tmux.as_deref(),
        Listing::Sessions,
        format!("{sessions} sessions"),
    );

    eprintln!("{} clients per daemon hanging up part-way", *HANGUPS);
    runtime.block_on(async {
        for subject in &subjects {
            hang_ups(&subject.daemon).await;
        }
    });
    runtime.block_on(wait_all(&probes, &subjects, 1));
    let mem_after_hangups = read_mems(&pids);
    drop(probes);
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });

    eprintln!("idle window: after the work, no client connected");
    let (idle_after_work, tmux_idle_after_work) = idle_window(&pids, tmux.as_deref());
    let mem_end = read_mems(&pids);
    let tmux_mem_end = tmux.as_deref().map(tmux_mem);

    let mut daemons = Vec::new();
    for (i, mut subject) in subjects.into_iter().enumerate() {
        if let Some(status) = subject.daemon.try_exit() {
            panic!(
                "aifactoryd (RUST_BACKTRACE {}) exited ({status}) during the bench:\n{}",
                subject.label,
                subject.daemon.logs()
            );
        }
        daemons.push(DaemonReport {
            label: subject.label,
            mem_start: mem_start[i],
            mem_with_idle: mem_with_idle[i],
            mem_after_hangups: mem_after_hangups[i],
            mem_end: mem_end[i],
            idle_fresh: idle_fresh[i].clone(),
            idle_after_work: idle_after_work[i].clone(),
            round_trip_alone: round_trip_alone[i].clone(),
            round_trip_with_idle: round_trip_with_idle[i].clone(),
            log_lines: subject.daemon.logs().lines().count(),
        });
    }
    let tmux = match (
        tmux_mem_start,
        tmux_mem_with_idle,
        tmux_mem_end,
        tmux_idle_fresh,
        tmux_idle_after_work,
    ) {
        (Some(a), Some(b), Some(c), Some(d), Some(e)) => Some(TmuxReport {
            mem_start: a,
            mem_with_idle: b,
            mem_end: c,
            idle_fresh: d,
            idle_after_work: e,
        }),
        _ => None,
    };
    Report {
        daemons,
        tmux,
        process_alone,
        process_with_idle,
        process_listing,
    }
}

fn read_mems(pids: &[u32]) -> Vec<Mem> {
    pids.iter().map(|&pid| Mem::read(pid)).collect()
}

/// One series per client, interleaved request by request (each round starts with a different
/// client) so that noise falls on all of them alike.
async fn round_trips(clients: &[Client]) -> Vec<Latency> {
    for client in clients {
        for _ in 0..*ROUND_TRIP_WARMUP {
            client.status().await.expect("status (warm-up)");
        }
    }
    let mut samples: Vec<Vec<Duration>> = clients
        .iter()
        .map(|_| Vec::with_capacity(*ROUND_TRIPS))
        .collect();
    for round in 0..*ROUND_TRIPS {
        for k in 0..clients.len() {
            let which = (round + k) % clients.len();
            let start = Instant::now();
            clients[which].status().await.expect("status round trip");
            samples[which].push(start.elapsed());
        }
    }
    samples.into_iter().map(Latency::new).collect()
}

async fn wait_all(probes: &[Client], subjects: &[Subject], expected: u32) {
    for (probe, subject) in probes.iter().zip(subjects) {
        wait_connections(probe, expected, &subject.daemon).await;
    }
}

/// Waits until the daemon counts `expected` connections (the probe included).
async fn wait_connections(probe: &Client, expected: u32, daemon: &Daemon) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let now = probe.status().await.expect("status (connection count)");
        if now.connections == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "aifactoryd still counts {} connections after {SETTLE_TIMEOUT:?}, expected {expected}:\n{}",
            now.connections,
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Clients that leave at every point of a conversation: before the handshake, half-way
/// through it, right after it, with a request in flight, and half-way through a frame.
async fn hang_ups(daemon: &Daemon) {
    let socket = daemon.socket.as_path();
    let opts = daemon.client_options();
    for batch in 0..*HANGUPS / HANGUP_BATCH {
        let clients = (0..HANGUP_BATCH).map(|i| {
            let opts = &opts;
            async move {
                match (batch * HANGUP_BATCH + i) % 5 {
                    0 => drop(RawConn::connect(socket).await),
                    1 => {
                        let mut conn = RawConn::connect(socket).await;
                        // The daemon may already have hung up on us: that is fine too.
                        let _ = conn.write(&handshake::hello(PROTOCOL_VERSION)[..5]).await;
                    }
                    2 => drop(Client::connect(opts).await.expect("connect a client")),
                    3 => {
                        let mut framed = handshaken(socket).await;
                        let frame = ClientFrame {
                            id: 1,
                            request: Request::Status,
                        };
                        send_client_frame(&mut framed, &frame)
                            .await
                            .expect("send a status request");
                    }
                    _ => {
                        let mut framed = handshaken(socket).await;
                        // A length prefix announcing 64 bytes, then only 10 of them.
                        let mut partial = 64u32.to_be_bytes().to_vec();
                        partial.extend_from_slice(&[0u8; 10]);
                        let stream = framed.get_mut();
                        tokio::io::AsyncWriteExt::write_all(stream, &partial)
                            .await
                            .expect("send a partial frame");
                    }
                }
            }
        });
        futures::future::join_all(clients).await;
    }
}

async fn handshaken(
    socket: &Path,
) -> tokio_util::codec::Framed<tokio::net::UnixStream, tokio_util::codec::LengthDelimitedCodec> {
    let mut conn = RawConn::connect(socket).await;
    conn.send_hello(PROTOCOL_VERSION).await;
    conn.read_hello().await.expect("read the daemon's hello");
    conn.framed()
}
// ---------------------------------------------------------------------------------------------
// Process-level round trips.

/// The daemon's side of a process series: `aifactoryctl status` or `aifactoryctl sessions
/// list`, against `tmux list-sessions` on the other side.
#[derive(Clone, Copy, PartialEq)]
enum Listing {
    Status,
    Sessions,
}

/// `aifactoryctl` (`listing`), `tmux list-sessions` and `true`, interleaved run by run (each
/// run starts with a different one), so that noise falls on all of them alike. `context` says
/// what the daemon holds; tmux's sessions and clients are counted here.
fn process_series(
    sandbox: &Sandbox,
    tmux: Option<&Tmux>,
    listing: Listing,
    context: String,
) -> Vec<Series> {
    let ctl = || {
        let mut cmd = Command::new(bin("aifactoryctl"));
        sandbox.apply_env(&mut cmd);
        cmd.arg("--socket").arg(sandbox.socket());
        match listing {
            Listing::Status => cmd.arg("status"),
            Listing::Sessions => cmd.args(["sessions", "list"]),
        };
        cmd
    };
    let true_exe = find_in_path("true").expect("`true` is on PATH");
    let spawn_floor = || {
        let mut cmd = Command::new(&true_exe);
        sandbox.apply_env(&mut cmd);
        cmd
    };
    let mut peers: Vec<(Peer, String, Command)> = Vec::new();
    let (peer, expect) = match listing {
        Listing::Status => (Peer::Ctl, "aifactoryd"),
        Listing::Sessions => (Peer::CtlSessions, "sleep"),
    };
    peers.push((peer, context, checked(ctl(), expect)));
    if let Some(tmux) = tmux {
        let sessions = tmux.session_count();
        let clients = tmux.client_count();
        let clients = if clients == 0 {
            String::new()
        } else {
            format!(" and {clients} idle client{}", plural(clients))
        };
        peers.push((
            Peer::Tmux,
            format!("{sessions} session{}{clients}", plural(sessions)),
            checked(tmux.command(&["list-sessions"]), "windows"),
        ));
    }
    peers.push((
        Peer::True,
        "the floor: spawning any process".into(),
        checked(spawn_floor(), ""),
    ));

    let mut samples: Vec<Vec<Duration>> =
        peers.iter().map(|_| Vec::with_capacity(*SPAWNS)).collect();
    for run in 0..*SPAWN_WARMUP + *SPAWNS {
        for k in 0..peers.len() {
            let which = (run + k) % peers.len();
            let (peer, _, cmd) = &mut peers[which];
            let took = time_run(cmd, peer.command());
            if run >= *SPAWN_WARMUP {
                samples[which].push(took);
            }
        }
    }
    peers
        .into_iter()
        .zip(samples)
        .map(|((peer, context, _), samples)| Series {
            peer,
            context,
            latency: Latency::new(samples),
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Ctl,
    CtlSessions,
    Tmux,
    True,
}

impl Peer {
    fn command(self) -> &'static str {
        match self {
            Peer::Ctl => "aifactoryctl --socket S status",
            Peer::CtlSessions => "aifactoryctl --socket S sessions list",
            Peer::Tmux => "tmux -S S list-sessions",
            Peer::True => "true",
        }
    }
}

/// One process-level series.
struct Series {
    peer: Peer,
    /// What surrounded it: the daemon's other connections, tmux's sessions.
    context: String,
    latency: Latency,
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A private tmux server, for the comparison; why not, when it cannot be started.
fn start_tmux() -> anyhow::Result<Tmux> {
    let exe = find_in_path("tmux")
        .ok_or_else(|| anyhow::anyhow!("tmux is not installed (not found on PATH)"))?;
    Ok(Tmux::start(&exe, &[])?)
}

/// Grows the tmux server to `sessions` sessions.
fn grow_to(tmux: &Tmux, sessions: usize) {
    for _ in tmux.session_count()..sessions {
        tmux.ok(&["new-session", "-d"]);
    }
    let now = tmux.session_count();
    assert_eq!(
        now, sessions,
        "tmux holds {now} sessions, wanted {sessions}"
    );
}

/// `n` sessions of `sleep 1000` in the daemon, one `aifactoryctl sessions new` each (the
/// sandbox's drop ends them).
fn create_sessions(sandbox: &Sandbox, n: usize) {
    for _ in 0..n {
        let out = sandbox
            .ctl_command(&["sessions", "new", "--", "sleep", "1000"])
            .output()
            .expect("run aifactoryctl sessions new");
        assert!(
            out.status.success(),
            "aifactoryctl sessions new failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Control-mode clients (`tmux -C attach`) that hold a connection to the tmux server and do
/// nothing: tmux's side of the daemon's idle connections. Killed when dropped.
struct IdleTmuxClients {
    children: Vec<Child>,
}

impl IdleTmuxClients {
    fn attach(tmux: &Tmux, n: usize) -> IdleTmuxClients {
        let mut clients = IdleTmuxClients {
            children: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let child = tmux
                .command(&["-C", "attach-session"])
                // An open stdin that never says anything: the client stays attached and idle.
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a tmux control-mode client");
            clients.children.push(child);
        }
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while tmux.client_count() < n {
            assert!(
                Instant::now() < deadline,
                "tmux counts {} clients after {SETTLE_TIMEOUT:?}, expected {n}",
                tmux.client_count()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        clients
    }
}

impl Drop for IdleTmuxClients {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The tmux server's session count and memory.
fn tmux_mem(tmux: &Tmux) -> (usize, Mem) {
    (tmux.session_count(), Mem::read(tmux.pid()))
}

// ---------------------------------------------------------------------------------------------
// Measurements from /proc.

#[derive(Clone, Copy)]
struct Mem {
    rss_kb: u64,
    hwm_kb: u64,
}

impl Mem {
    fn read(pid: u32) -> Mem {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
        Mem {
            rss_kb: status_field(&status, "VmRSS").expect("VmRSS in /proc/<pid>/status"),
            hwm_kb: status_field(&status, "VmHWM").expect("VmHWM in /proc/<pid>/status"),
        }
    }
}

/// One live thread: its name and its voluntary + nonvoluntary context switches so far.
struct ThreadUsage {
    name: String,
    switches: u64,
}

/// What a process has spent so far.
struct Usage {
    /// utime + stime from /proc/<pid>/stat, in clock ticks (all threads, live or dead).
    ticks: u64,
    /// Sum of the live threads' on-CPU time from schedstat, in ns, when the kernel has it.
    sched_ns: Option<u64>,
    /// Live threads by tid.
    threads: HashMap<String, ThreadUsage>,
}

impl Usage {
    fn read(pid: u32) -> Usage {
        let ticks = procfs::stat(pid)
            .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"))
            .cpu_ticks;

        let mut threads = HashMap::new();
        let mut sched_ns = Some(0u64);
        let tasks = fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap_or_else(|e| panic!("list /proc/{pid}/task: {e}"));
        for task in tasks.flatten() {
            let tid = task.file_name().to_string_lossy().into_owned();
            // A thread may exit between the listing and the read.
            let Ok(status) = fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            let switches = status_field(&status, "voluntary_ctxt_switches").unwrap_or(0)
                + status_field(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
            let name = status
                .lines()
                .find_map(|line| line.strip_prefix("Name:"))
                .unwrap_or("?")
                .trim()
                .to_string();
            threads.insert(tid, ThreadUsage { name, switches });
            let on_cpu = fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            sched_ns = sched_ns.zip(on_cpu).map(|(sum, ns)| sum + ns);
        }
        Usage {
            ticks,
            sched_ns,
            threads,
        }
    }
}

/// What a process spent over an idle window.
#[derive(Clone)]
struct Idle {
    cpu_ms: f64,
    sched_ms: Option<f64>,
    /// Context switches of the threads alive at the end, plus one for each thread that exited
    /// in the window (it had to run to exit; its own counters die with it): a lower bound.
    wakeups: u64,
    /// "name (tid)" of the threads that exited in the window.
    exited: Vec<String>,
    threads_before: usize,
    threads_after: usize,
}

impl Idle {
    fn between(before: &Usage, after: &Usage) -> Idle {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // Per thread, so that a thread born in the window counts whole.
        let live: u64 = after
            .threads
            .iter()
            .map(|(tid, now)| {
                let then = before.threads.get(tid).map_or(0, |t| t.switches);
                now.switches.saturating_sub(then)
            })
            .sum();
        let mut exited: Vec<String> = before
            .threads
            .iter()
            .filter(|(tid, _)| !after.threads.contains_key(*tid))
            .map(|(tid, t)| format!("{} (tid {tid})", t.name))
            .collect();
        exited.sort();
        Idle {
            cpu_ms: after.ticks.saturating_sub(before.ticks) as f64 * 1000.0 / hz,
            sched_ms: before
                .sched_ns
                .zip(after.sched_ns)
                .map(|(b, a)| a.saturating_sub(b) as f64 / 1e6),
            wakeups: live + exited.len() as u64,
            exited,
            threads_before: before.threads.len(),
            threads_after: after.threads.len(),
        }
    }
}

/// Sleeps through [`IDLE_WINDOW`] and returns what each daemon, and the tmux server as a peer
/// (with its session count), spent in it.
fn idle_window(pids: &[u32], tmux: Option<&Tmux>) -> (Vec<Idle>, Option<(usize, Idle)>) {
    let sessions = tmux.map(Tmux::session_count);
    let before: Vec<Usage> = pids.iter().map(|&pid| Usage::read(pid)).collect();
    let tmux_before = tmux.map(|t| Usage::read(t.pid()));
    std::thread::sleep(*IDLE_WINDOW);
    let after: Vec<Usage> = pids.iter().map(|&pid| Usage::read(pid)).collect();
    let tmux_after = tmux.map(|t| Usage::read(t.pid()));
    let idle = before
        .iter()
        .zip(&after)
        .map(|(b, a)| Idle::between(b, a))
        .collect();
    let tmux_idle = sessions
        .zip(tmux_before.zip(tmux_after))
        .map(|(n, (b, a))| (n, Idle::between(&b, &a)));
    (idle, tmux_idle)
}

// ---------------------------------------------------------------------------------------------
// Markdown.

fn fmt_mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

fn fmt_cpu(i: &Idle) -> String {
    let sched = i
        .sched_ms
        .map(|ms| format!(" (on-CPU {ms:.2} ms)"))
        .unwrap_or_default();
    format!("{:.0} ms{sched}", i.cpu_ms)
}

fn fmt_wakeups(i: &Idle) -> String {
    if i.exited.is_empty() {
        format!(
            "{} ({} thread{})",
            i.wakeups,
            i.threads_after,
            plural(i.threads_after)
        )
    } else {
        format!(
            "≥ {} (incl. {} thread exit{}: {}; threads {} → {})",
            i.wakeups,
            i.exited.len(),
            plural(i.exited.len()),
            i.exited.join(", "),
            i.threads_before,
            i.threads_after
        )
    }
}

fn with_sessions(sessions: usize, value: String) -> String {
    format!("{value}, {sessions} session{}", plural(sessions))
}

fn latency_table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Round trip | n | median | p99 | ÷ tmux median | ÷ tmux p99 |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let with_idle = format!("{} other idle connections", *IDLE_CONNECTIONS);
    for (what, pick) in [
        (
            "0 other connections",
            (|d: &DaemonReport| &d.round_trip_alone) as fn(&DaemonReport) -> &Latency,
        ),
        (with_idle.as_str(), |d| &d.round_trip_with_idle),
    ] {
        for daemon in &report.daemons {
            let latency = pick(daemon);
            let _ = writeln!(
                out,
                "| in-process `Client::status()`, {what}, RUST_BACKTRACE {} | {} | {} | {} | – | – |",
                daemon.label,
                latency.len(),
                fmt_duration(latency.median()),
                fmt_duration(latency.p99()),
            );
        }
    }
    for series in [
        &report.process_alone,
        &report.process_with_idle,
        &report.process_listing,
    ] {
        let tmux = series
            .iter()
            .find(|s| s.peer == Peer::Tmux)
            .map(|s| &s.latency);
        for Series {
            peer,
            context,
            latency,
        } in series
        {
            let ours = matches!(peer, Peer::Ctl | Peer::CtlSessions);
            let (by_median, by_p99) = match (ours, tmux) {
                (true, Some(tmux)) => (
                    ratio(latency.median(), tmux.median()),
                    ratio(latency.p99(), tmux.p99()),
                ),
                _ => ("–".into(), "–".into()),
            };
            let _ = writeln!(
                out,
                "| process: `{}`, {context} | {} | {} | {} | {by_median} | {by_p99} |",
                peer.command(),
                latency.len(),
                fmt_duration(latency.median()),
                fmt_duration(latency.p99()),
            );
        }
    }
    out
}

fn resource_table(report: &Report) -> String {
    let mut out = String::new();
    let mut header: Vec<String> = report
        .daemons
        .iter()
        .map(|d| format!("aifactoryd, RUST_BACKTRACE {}", d.label))
        .collect();
    if report.tmux.is_some() {
        header.push("tmux server (peer, same moments)".into());
    }
    let _ = writeln!(out, "| Measurement | {} | target |", header.join(" | "));
    let _ = writeln!(out, "|---|{}---|", "---:|".repeat(header.len()));
    let tmux = report.tmux.as_ref();
    let mut row =
        |what: &str, cell: &dyn Fn(&DaemonReport) -> String, peer: Option<String>, target: &str| {
            let mut cells: Vec<String> = report.daemons.iter().map(cell).collect();
            if tmux.is_some() {
                cells.push(peer.unwrap_or_else(|| "–".into()));
            }
            let _ = writeln!(out, "| {what} | {} | {target} |", cells.join(" | "));
        };
    let tmux_mem = |pick: fn(&TmuxReport) -> (usize, Mem), rss: bool| {
        tmux.map(|t| {
            let (sessions, mem) = pick(t);
            let kb = if rss { mem.rss_kb } else { mem.hwm_kb };
            with_sessions(sessions, fmt_mb(kb))
        })
    };
    let tmux_idle = |pick: fn(&TmuxReport) -> &(usize, Idle), f: fn(&Idle) -> String| {
        tmux.map(|t| {
            let (sessions, idle) = pick(t);
            with_sessions(*sessions, f(idle))
        })
    };
    row(
        "RSS after start",
        &|d| fmt_mb(d.mem_start.rss_kb),
        tmux_mem(|t| t.mem_start, true),
        "< 10 MB",
    );
    row(
        &format!(
            "RSS with {0} idle connections (tmux: {0} idle control-mode clients)",
            *IDLE_CONNECTIONS
        ),
        &|d| fmt_mb(d.mem_with_idle.rss_kb),
        tmux_mem(|t| t.mem_with_idle, true),
        "< 10 MB",
    );
    row(
        "RSS after 1000 clients hung up part-way",
        &|d| fmt_mb(d.mem_after_hangups.rss_kb),
        None,
        "< 10 MB",
    );
    row(
        "RSS at the end (after the second idle window)",
        &|d| fmt_mb(d.mem_end.rss_kb),
        tmux_mem(|t| t.mem_end, true),
        "< 10 MB",
    );
    row(
        "peak RSS (VmHWM) over the run",
        &|d| fmt_mb(d.mem_end.hwm_kb),
        tmux_mem(|t| t.mem_end, false),
        "< 10 MB",
    );
    row(
        "idle 10 s, fresh: CPU (utime+stime)",
        &|d| fmt_cpu(&d.idle_fresh),
        tmux_idle(|t| &t.idle_fresh, fmt_cpu),
        "0",
    );
    row(
        "idle 10 s, fresh: wakeups (context switches)",
        &|d| fmt_wakeups(&d.idle_fresh),
        tmux_idle(|t| &t.idle_fresh, fmt_wakeups),
        "0",
    );
    row(
        "idle 10 s, after the work: CPU (utime+stime)",
        &|d| fmt_cpu(&d.idle_after_work),
        tmux_idle(|t| &t.idle_after_work, fmt_cpu),
        "0",
    );
    row(
        "idle 10 s, after the work: wakeups (context switches)",
        &|d| fmt_wakeups(&d.idle_after_work),
        tmux_idle(|t| &t.idle_after_work, fmt_wakeups),
        "0",
    );
    row(
        "daemon log lines over the run",
        &|d| d.log_lines.to_string(),
        None,
        "–",
    );
    out
}
