//! Issue 6's figures for tasks, measured against the release binaries in one run, each beside
//! a peer measured at the same time on the same (shared, noisy) machine:
//!
//! 1. **Progress write → event.** One task whose agent is `sleep 1000` and one client
//!    subscribed to the daemon's events. 1,000 appends of `progress: N\n` to the task's progress
//!    file (N cycles through 0..=100, so each value differs from the one before and each append
//!    makes an event), each timed from just before the file is opened until the client holds
//!    the `TaskProgress` event with that value. Peers:
//!    - the floor: a minimal inotify watcher in this process (one thread blocked in `read` on
//!      an inotify descriptor that watches a directory for IN_MODIFY, IN_CLOSE_WRITE,
//!      IN_MOVED_TO and IN_CREATE, as the daemon does), timed from just before the same kind of
//!      append until that thread woke up; 1,000 appends, in blocks of 100 that alternate with
//!      the daemon's;
//!    - the old product's behaviour: a thread that reads 5 files (one per task) every 3 s, and
//!      for each file a thread that appends at random moments, timed until the read that sees
//!      the new value. It runs in the background for the whole bench (at least 8 appends per
//!      file), since each append costs up to 3 s.
//!
//!    The daemon's CPU time per event is taken too. After part 2, the same is measured 200
//!    times for another task whose progress file is 1 MiB long, the most of it the daemon reads
//!    at each change.
//! 2. **50 tasks at once.** 50 tasks whose agent is a shell loop that prints a line and appends
//!    a progress line every second. Once all 50 have reported, two 10 s windows: the daemon's
//!    CPU time (utime+stime from `/proc/<pid>/stat`, schedstat on-CPU time beside it), context
//!    switches, RSS and PSS; the same summed over the 50 pane monitors; the progress events the
//!    daemon published and the progress lines the agents wrote. At the same moments, a private
//!    tmux server (`tmux -S <sock> -f /dev/null`) runs the same loop in 50 sessions. The
//!    daemon's RSS is also taken at each step (start, after the latency part, with 50 tasks
//!    created, started, and stopped again).
//!
//! Run with `cargo build --release -p aifactoryd -p aifactoryctl && cargo bench -p aifactory-tests
//! --bench tasks`: `cargo bench` does not build the daemon or the CLI. The bench uses the binaries
//! in `target/release` (or `$AIFACTORY_BIN_DIR`) and warns if they are older than the sources. The
//! tables printed at the end are markdown, ready for BENCHMARKS.md. The run takes about 2 minutes.
//!
//! One file past 600 lines on purpose: one bench is one BENCHMARKS.md section measured in one
//! run, so that each figure and its peer share the machine's state; shared tools live in
//! `tests/src/bench.rs`.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aifactory_common::protocol::{
    EventKind, Reply, Request, SessionInfo, StreamItem, TaskInfo, TaskPhase,
};
use aifactory_common::{Client, Subscription};
use aifactory_tests::bench::{
    Latency, RunClock, Smaps, Usage, create_task, loadavg, mb, median_u64, print_report,
    read_status, request, sized, start_task, status_field, stop_task, tmux_or_skip, warn_if_stale,
};
use aifactory_tests::git::committed_repo;
use aifactory_tests::tmux::Tmux;
use aifactory_tests::{Daemon, Sandbox};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Timed appends, for the daemon and for the floor each.
static WRITES: LazyLock<usize> = LazyLock::new(|| sized(1000, 4));
/// Untimed appends first, for each.
static WARMUP: LazyLock<usize> = LazyLock::new(|| sized(20, 1));
/// The most of a progress file the daemon reads (its last MiB), and the timed appends made
/// once the file is that long.
const LONG_FILE: u64 = 1 << 20;
static LONG_WRITES: LazyLock<usize> = LazyLock::new(|| sized(200, 2));
/// The daemon's appends and the floor's alternate in blocks of this many.
static BLOCK: LazyLock<usize> = LazyLock::new(|| sized(100, 2));
/// The pause before each append is drawn from this range (ms): no lockstep with any timer.
const GAP_MS: std::ops::Range<u64> = 1..4;
/// The old product's poll interval.
const POLL_INTERVAL: Duration = Duration::from_secs(3);
/// Files the 3 s poll reads (one per task, as the old product did), each with its own writer.
static POLL_FILES: LazyLock<usize> = LazyLock::new(|| sized(5, 1));
/// Each writer appends at least this many times.
static POLL_MIN_SAMPLES: LazyLock<usize> = LazyLock::new(|| sized(8, 1));
/// Tasks in the load test, and tmux sessions beside them.
static TASKS: LazyLock<usize> = LazyLock::new(|| sized(50, 3));
static WINDOW: LazyLock<Duration> =
    LazyLock::new(|| sized(Duration::from_secs(10), Duration::from_secs(1)));
static WINDOWS: LazyLock<usize> = LazyLock::new(|| sized(2, 1));
/// Quiet time between the last start and the first window.
static SETTLE: LazyLock<Duration> =
    LazyLock::new(|| sized(Duration::from_secs(3), Duration::from_secs(1)));
/// After a window, how long events published in it may take to arrive.
const DRAIN: Duration = Duration::from_millis(500);
/// A liveness bound for one event on a loaded machine, not a speed target.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
const PROGRESS_FILE: &str = "build-progress.txt";
/// The fake agent of the load test (and of the tmux sessions beside it).
const AGENT_LOOP: &str = r#"i=0; while :; do i=$((i+1)); echo "step $i"; echo "progress: $((i%100))" >> "$AIFACTORY_PROGRESS_FILE"; sleep 1; done"#;

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd", "aifactoryctl"]);
    let tmux_exe = tmux_or_skip("tasks");

    let sandbox = Sandbox::new();
    sandbox.write_config(&format!(
        "default_agent = \"idle\"\n\
         [agents.idle]\nkind = \"custom\"\ncommand = [\"sleep\", \"1000\"]\n\
         [agents.loop]\nkind = \"custom\"\ncommand = [\"sh\", \"-c\", {AGENT_LOOP:?}]\n"
    ));
    let mut daemon = sandbox.daemon().start();
    project(&sandbox, "demo");
    let poll = PollPeer::start();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut rss = vec![("after start".to_string(), vm_rss(daemon.pid()))];
    let latency = runtime.block_on(latency(&daemon));
    rss.push((
        "after the progress appends (that task stopped)".to_string(),
        vm_rss(daemon.pid()),
    ));
    let load_mid = loadavg();
    let load = runtime.block_on(load(&daemon, tmux_exe.as_deref(), &mut rss));
    let long = runtime.block_on(long_file(&daemon));
    rss.push((
        "after the appends to a 1 MiB progress file (that task stopped)".to_string(),
        vm_rss(daemon.pid()),
    ));
    let polled = poll.finish();

    if let Some(status) = daemon.try_exit() {
        panic!(
            "aifactoryd exited ({status}) during the bench:\n{}",
            daemon.logs()
        );
    }
    let logs = daemon.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    for line in &warnings {
        eprintln!("daemon log: {line}");
    }
    let log_lines = logs.lines().count();
    drop(daemon);
    drop(sandbox);

    print_report(
        &format!(
            "{}; daemon log lines: {log_lines} ({} WARN/ERROR)",
            clock.summary(Some(&load_mid)),
            warnings.len(),
        ),
        &[
            latency_table(&latency, &long, &polled),
            load_table(&load),
            rss_table(&rss),
        ],
    );
}

fn vm_rss(pid: u32) -> u64 {
    status_field(&read_status(pid), "VmRSS").unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Setup.

/// A git repository with one commit on `main`, registered as project `name`.
fn project(sandbox: &Sandbox, name: &str) {
    let path = committed_repo(&sandbox.path().join(name));
    let path_text = path.to_str().expect("a UTF-8 sandbox path");
    sandbox
        .ctl(&["projects", "add", path_text, "--name", name])
        .assert_ok();
}

/// Opens for appending, writes, closes: what an agent's `echo ... >> file` does.
fn append(file: &Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap_or_else(|e| panic!("open {}: {e}", file.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", file.display()));
}

async fn session(daemon: &Daemon, client: &Client, id: &str) -> SessionInfo {
    match request(daemon, client, Request::SessionShow { key: id.into() }).await {
        Reply::Session(session) => session,
        other => panic!("SessionShow: unexpected reply {other:?}"),
    }
}

async fn next_item(daemon: &Daemon, sub: &mut Subscription, waiting_for: &str) -> StreamItem {
    let item = tokio::time::timeout(EVENT_TIMEOUT, sub.next())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no {waiting_for} within {EVENT_TIMEOUT:?}:\n{}",
                daemon.logs()
            )
        })
        .unwrap_or_else(|| panic!("the event stream ended:\n{}", daemon.logs()));
    if let StreamItem::Lagged { missed } = item {
        panic!("the subscription fell behind by {missed} events");
    }
    item
}

fn random_gap() -> Duration {
    Duration::from_millis(fastrand::u64(GAP_MS))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// 1. Progress write → event.

struct LatencyReport {
    ours: Latency,
    /// The daemon's CPU time (utime+stime) over the part with the timed appends, in ms.
    ours_cpu_ms: f64,
    floor: Latency,
    /// Of the floor's timed appends, how many first woke the watcher with IN_MODIFY.
    floor_woken_by_modify: usize,
}

async fn latency(daemon: &Daemon) -> LatencyReport {
    let client = daemon.client().await;
    let task = create_task(daemon, &client, "latency", "idle").await;
    let mut sub = client
        .subscribe(Request::SubscribeEvents { after: None })
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    start_task(daemon, &client, &task.id).await;
    let floor = Floor::start();

    // One value sequence per file: each append differs from that file's previous one.
    let (mut ours_value, mut floor_value) = (Cycle::default(), Cycle::default());
    eprintln!("progress latency: {} untimed appends each", *WARMUP);
    for _ in 0..*WARMUP {
        ours_once(daemon, &mut sub, &task, ours_value.next()).await;
        floor.once(floor_value.next());
    }
    let mut ours = Vec::with_capacity(*WRITES);
    let mut floor_samples = Vec::with_capacity(*WRITES);
    let mut floor_woken_by_modify = 0;
    // An idle daemon uses no CPU (status bench), so this is the appends' cost.
    let cpu_before = Usage::read(daemon.pid());
    for block in 0..*WRITES / *BLOCK {
        eprintln!(
            "progress latency: block {} of {}",
            block + 1,
            *WRITES / *BLOCK
        );
        for part in 0..2 {
            // Who goes first alternates block by block.
            if (part + block) % 2 == 0 {
                for _ in 0..*BLOCK {
                    tokio::time::sleep(random_gap()).await;
                    ours.push(ours_once(daemon, &mut sub, &task, ours_value.next()).await);
                }
            } else {
                for _ in 0..*BLOCK {
                    std::thread::sleep(random_gap());
                    let (took, by_modify) = floor.once(floor_value.next());
                    floor_samples.push(took);
                    floor_woken_by_modify += usize::from(by_modify);
                }
            }
        }
    }
    let ours_cpu_ms = Usage::read(daemon.pid()).cpu_ms_since(&cpu_before);

    let shown = match request(
        daemon,
        &client,
        Request::TaskShow {
            key: task.id.clone(),
        },
    )
    .await
    {
        Reply::Task(t) => t,
        other => panic!("TaskShow: unexpected reply {other:?}"),
    };
    assert_eq!(
        shown.phase,
        TaskPhase::Planning,
        "the task still works after the appends"
    );
    stop_task(daemon, &client, &task.id).await;
    LatencyReport {
        ours: Latency::new(ours),
        ours_cpu_ms,
        floor: Latency::new(floor_samples),
        floor_woken_by_modify,
    }
}

/// Progress values 0, 1, ..., 100, 0, ...: never the same twice in a row.
#[derive(Default)]
struct Cycle(u8);

impl Cycle {
    fn next(&mut self) -> u8 {
        let v = self.0;
        self.0 = (v + 1) % 101;
        v
    }

    /// The value [`Cycle::next`] returned last.
    fn previous(&self) -> u8 {
        (self.0 + 100) % 101
    }
}

/// One append to the task's progress file, timed until the subscribed client has its event.
async fn ours_once(
    daemon: &Daemon,
    sub: &mut Subscription,
    task: &TaskInfo,
    value: u8,
) -> Duration {
    let start = Instant::now();
    append(&task.progress_file, &format!("progress: {value}\n"));
    wait_progress(daemon, sub, task, value).await;
    start.elapsed()
}

/// Until the subscribed client has the task's `TaskProgress` event with `value`.
async fn wait_progress(daemon: &Daemon, sub: &mut Subscription, task: &TaskInfo, value: u8) {
    loop {
        if let StreamItem::Event(event) = next_item(daemon, sub, "TaskProgress event").await
            && let EventKind::TaskProgress {
                task_id, progress, ..
            } = &event.kind
            && *task_id == task.id
            && progress.percent == Some(value)
        {
            return;
        }
    }
}

/// The daemon reads the whole progress file (its last MiB) at each change: the same appends,
/// with the file at that size, as an agent that appends a line a second for a day leaves it.
/// Returns the samples and the daemon's CPU time over them (ms).
async fn long_file(daemon: &Daemon) -> (Latency, f64) {
    let client = daemon.client().await;
    let task = create_task(daemon, &client, "latency-long", "idle").await;
    let mut sub = client
        .subscribe(Request::SubscribeEvents { after: None })
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let mut value = Cycle::default();
    let mut text = String::new();
    while (text.len() as u64) < LONG_FILE {
        let _ = writeln!(text, "progress: {}", value.next());
    }
    fs::write(&task.progress_file, &text).expect("write the long progress file");
    drop(text);
    start_task(daemon, &client, &task.id).await;
    // The runner's first read publishes the file's last value.
    wait_progress(daemon, &mut sub, &task, value.previous()).await;
    eprintln!(
        "progress latency with a 1 MiB file: {} untimed, {} timed appends",
        *WARMUP, *LONG_WRITES
    );
    for _ in 0..*WARMUP {
        ours_once(daemon, &mut sub, &task, value.next()).await;
    }
    let cpu_before = Usage::read(daemon.pid());
    let mut samples = Vec::with_capacity(*LONG_WRITES);
    for _ in 0..*LONG_WRITES {
        tokio::time::sleep(random_gap()).await;
        samples.push(ours_once(daemon, &mut sub, &task, value.next()).await);
    }
    let cpu_ms = Usage::read(daemon.pid()).cpu_ms_since(&cpu_before);
    stop_task(daemon, &client, &task.id).await;
    (Latency::new(samples), cpu_ms)
}

/// The floor: a minimal inotify watcher, one thread blocked in `read` as the daemon's watcher
/// thread is.
struct Floor {
    _dir: tempfile::TempDir,
    file: PathBuf,
    /// When the watcher thread woke up, and the events of the progress file it read.
    wakes: mpsc::Receiver<(Instant, AddWatchFlags)>,
}

impl Floor {
    fn start() -> Floor {
        let dir = tempfile::Builder::new()
            .prefix("aifactory-bench-inotify-")
            .tempdir()
            .expect("create a directory for the inotify floor");
        let file = dir.path().join(PROGRESS_FILE);
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC).expect("inotify_init1");
        inotify
            .add_watch(
                dir.path(),
                AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CREATE,
            )
            .expect("inotify_add_watch");
        let (tx, wakes) = mpsc::channel();
        // Detached: it stays blocked in `read` until the bench process exits.
        std::thread::spawn(move || {
            loop {
                let events = match inotify.read_events() {
                    Ok(events) => events,
                    Err(Errno::EINTR) => continue,
                    Err(e) => panic!("read the inotify descriptor: {e}"),
                };
                let woke = Instant::now();
                let mask = events
                    .iter()
                    .filter(|e| e.name.as_deref() == Some(PROGRESS_FILE.as_ref()))
                    .fold(AddWatchFlags::empty(), |m, e| m | e.mask);
                if !mask.is_empty() && tx.send((woke, mask)).is_err() {
                    return;
                }
            }
        });
        Floor {
            _dir: dir,
            file,
            wakes,
        }
    }

    /// One append, timed until the watcher woke; and whether IN_MODIFY woke it.
    fn once(&self, value: u8) -> (Duration, bool) {
        let start = Instant::now();
        append(&self.file, &format!("progress: {value}\n"));
        let recv = || {
            self.wakes
                .recv_timeout(EVENT_TIMEOUT)
                .expect("the inotify floor woke up")
        };
        let (woke, mut mask) = recv();
        let by_modify = mask.contains(AddWatchFlags::IN_MODIFY);
        // The close is queued by now: take its event too, so it cannot pass for the next
        // append's.
        while !mask.contains(AddWatchFlags::IN_CLOSE_WRITE) {
            mask |= recv().1;
        }
        (woke.duration_since(start), by_modify)
    }
}

/// The old product's way of following progress: every [`POLL_INTERVAL`], read each task's
/// file. One thread polls [`POLL_FILES`] files; for each file, another appends at random
/// moments and times each append until the poll that sees it.
struct PollPeer {
    stop: Vec<mpsc::Sender<()>>,
    writers: Vec<std::thread::JoinHandle<Vec<Duration>>>,
    _dir: tempfile::TempDir,
}

/// The value of the last complete `progress:` line.
fn last_progress(text: &str) -> Option<u8> {
    let complete = &text[..text.rfind('\n')?];
    complete
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("progress:")?.trim().parse().ok())
}

impl PollPeer {
    fn start() -> PollPeer {
        let dir = tempfile::Builder::new()
            .prefix("aifactory-bench-poll-")
            .tempdir()
            .expect("create a directory for the 3 s poll");
        let files: Vec<PathBuf> = (0..*POLL_FILES)
            .map(|i| dir.path().join(format!("{i}-{PROGRESS_FILE}")))
            .collect();
        let mut seen_txs = Vec::new();
        let mut seen_rxs = Vec::new();
        for file in &files {
            fs::write(file, "").expect("create a polled file");
            let (tx, rx) = mpsc::channel::<(u8, Instant)>();
            seen_txs.push(tx);
            seen_rxs.push(rx);
        }
        let polled = files.clone();
        // Detached: it ends at its first poll after the writers are gone.
        std::thread::spawn(move || {
            let mut next = Instant::now() + POLL_INTERVAL;
            let mut last = vec![None; polled.len()];
            loop {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                next += POLL_INTERVAL;
                for (i, file) in polled.iter().enumerate() {
                    let now = last_progress(&fs::read_to_string(file).unwrap_or_default());
                    if now != last[i] {
                        last[i] = now;
                        if let Some(v) = now
                            && seen_txs[i].send((v, Instant::now())).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let mut stop = Vec::new();
        let mut writers = Vec::new();
        for (file, seen) in files.into_iter().zip(seen_rxs) {
            let (stop_tx, stopped) = mpsc::channel::<()>();
            stop.push(stop_tx);
            writers.push(std::thread::spawn(move || {
                poll_writer(&file, &seen, &stopped)
            }));
        }
        PollPeer {
            stop,
            writers,
            _dir: dir,
        }
    }

    fn finish(self) -> Latency {
        eprintln!(
            "3 s poll: finishing (at least {} appends to each of {} files)",
            *POLL_MIN_SAMPLES, *POLL_FILES
        );
        for stop in &self.stop {
            let _ = stop.send(());
        }
        let samples = self
            .writers
            .into_iter()
            .flat_map(|w| w.join().expect("a 3 s poll writer"))
            .collect();
        Latency::new(samples)
    }
}

/// Appends to `file` at random moments until asked to stop (and at least
/// [`POLL_MIN_SAMPLES`] times), each timed until the poller reports the new value.
fn poll_writer(
    file: &Path,
    seen: &mpsc::Receiver<(u8, Instant)>,
    stopped: &mpsc::Receiver<()>,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    let mut stopping = false;
    let mut value = 0u8;
    while !(stopping && samples.len() >= *POLL_MIN_SAMPLES) {
        let pause = Duration::from_millis(fastrand::u64(0..POLL_INTERVAL.as_millis() as u64));
        if stopping {
            std::thread::sleep(pause);
        } else if !matches!(
            stopped.recv_timeout(pause),
            Err(mpsc::RecvTimeoutError::Timeout)
        ) {
            // Asked to stop (or the bench is gone): only the minimum is still owed.
            stopping = true;
            if samples.len() >= *POLL_MIN_SAMPLES {
                break;
            }
        }
        value = (value + 1) % 101;
        let start = Instant::now();
        append(file, &format!("progress: {value}\n"));
        let (seen_value, at) = seen
            .recv_timeout(POLL_INTERVAL * 3)
            .expect("the 3 s poll saw the append");
        assert_eq!(seen_value, value, "the 3 s poll saw another value");
        samples.push(at.duration_since(start));
    }
    samples
}

// ---------------------------------------------------------------------------------------------
// 2. 50 tasks at once.

struct LoadReport {
    windows: Vec<Window>,
    tmux_sessions: usize,
    monitors: usize,
}

struct Window {
    daemon_cpu_ms: f64,
    daemon_on_cpu_ms: f64,
    daemon_switches: u64,
    daemon_threads: usize,
    daemon_rss_kb: u64,
    daemon_hwm_kb: u64,
    daemon_mem: Smaps,
    monitors_cpu_ms: f64,
    monitors_on_cpu_ms: f64,
    monitors_switches: u64,
    monitor_pss_kb: Vec<u64>,
    monitor_private_kb: Vec<u64>,
    /// Progress events the daemon published (stamped) inside the window.
    events: usize,
    /// Progress lines the 50 agents appended inside the window.
    lines_written: usize,
    tmux: Option<TmuxWindow>,
}

struct TmuxWindow {
    cpu_ms: f64,
    on_cpu_ms: f64,
    switches: u64,
    rss_kb: u64,
    mem: Smaps,
    lines_written: usize,
}

async fn load(
    daemon: &Daemon,
    tmux_exe: Option<&Path>,
    rss: &mut Vec<(String, u64)>,
) -> LoadReport {
    let client = daemon.client().await;
    let mut sub = client
        .subscribe(Request::SubscribeEvents { after: None })
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    eprintln!("load: creating {} tasks", *TASKS);
    let mut tasks = Vec::with_capacity(*TASKS);
    for i in 0..*TASKS {
        tasks.push(create_task(daemon, &client, &format!("load-{i:02}"), "loop").await);
    }
    rss.push((
        format!("with {} more tasks created", *TASKS),
        vm_rss(daemon.pid()),
    ));
    let tmux = tmux_exe.map(|exe| {
        eprintln!("load: {} tmux sessions", *TASKS);
        TmuxLoops::start(exe, *TASKS)
    });
    eprintln!("load: starting {} tasks", *TASKS);
    let mut monitors = Vec::with_capacity(*TASKS);
    for task in &tasks {
        let started = start_task(daemon, &client, &task.id).await;
        let sid = started
            .session_id
            .unwrap_or_else(|| panic!("started task {} has no session", task.id));
        let session = session(daemon, &client, &sid).await;
        monitors.push(
            session
                .monitor_pid
                .unwrap_or_else(|| panic!("session {sid} has no monitor")),
        );
    }
    // Every agent runs: each has reported once.
    let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    let mut reported = vec![false; *TASKS];
    while reported.iter().any(|r| !r) {
        if let StreamItem::Event(event) = next_item(daemon, &mut sub, "first progress").await
            && let EventKind::TaskProgress { task_id, .. } = &event.kind
            && let Some(i) = ids.iter().position(|id| id == task_id)
        {
            reported[i] = true;
        }
    }
    drain(&mut sub, Instant::now() + *SETTLE).await;
    rss.push((
        format!("with the {} tasks started, before the windows", *TASKS),
        vm_rss(daemon.pid()),
    ));

    let files: Vec<PathBuf> = tasks.iter().map(|t| t.progress_file.clone()).collect();
    let mut windows = Vec::with_capacity(*WINDOWS);
    for w in 0..*WINDOWS {
        eprintln!(
            "load: window {} of {}, {} s",
            w + 1,
            *WINDOWS,
            WINDOW.as_secs()
        );
        windows.push(window(daemon, &mut sub, &ids, &monitors, &files, tmux.as_ref()).await);
    }

    // Nothing failed or stalled meanwhile.
    let listed = match request(daemon, &client, Request::TaskList { project: None }).await {
        Reply::Tasks(list) => list,
        other => panic!("TaskList: unexpected reply {other:?}"),
    };
    for task in listed.iter().filter(|t| ids.contains(&t.id.as_str())) {
        assert_eq!(
            task.phase,
            TaskPhase::Planning,
            "task {} after the windows",
            task.id
        );
    }
    eprintln!("load: stopping {} tasks", *TASKS);
    for id in &ids {
        stop_task(daemon, &client, id).await;
    }
    rss.push((
        format!("after the {} tasks were stopped", *TASKS),
        vm_rss(daemon.pid()),
    ));
    LoadReport {
        windows,
        tmux_sessions: tmux.as_ref().map(|t| t.sessions).unwrap_or(0),
        monitors: monitors.len(),
    }
}

/// Reads (and drops) events until `deadline`, so the daemon never sees a slow client.
async fn drain(sub: &mut Subscription, deadline: Instant) {
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline.into(), sub.next()).await {}
}

fn line_count(file: &Path) -> usize {
    fs::read(file)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

async fn window(
    daemon: &Daemon,
    sub: &mut Subscription,
    ids: &[&str],
    monitors: &[u32],
    files: &[PathBuf],
    tmux: Option<&TmuxLoops>,
) -> Window {
    let lines = |files: &[PathBuf]| -> usize { files.iter().map(|f| line_count(f)).sum() };
    let start_ms = now_ms();
    let daemon_before = Usage::read(daemon.pid());
    let monitors_before: Vec<Usage> = monitors.iter().map(|&p| Usage::read(p)).collect();
    let tmux_before = tmux.map(|t| Usage::read(t.server.pid()));
    let lines_before = lines(files);
    let tmux_lines_before = tmux.map(|t| lines(&t.files));

    let deadline = Instant::now() + *WINDOW;
    let mut stamped = Vec::new();
    let mut collect = |item: StreamItem| {
        if let StreamItem::Event(event) = item
            && let EventKind::TaskProgress { task_id, .. } = &event.kind
            && ids.contains(&task_id.as_str())
        {
            stamped.push(event.at_ms);
        }
    };
    while let Ok(item) = tokio::time::timeout_at(deadline.into(), sub.next()).await {
        collect(item.unwrap_or_else(|| panic!("the event stream ended:\n{}", daemon.logs())));
    }

    let daemon_after = Usage::read(daemon.pid());
    let monitors_after: Vec<Usage> = monitors.iter().map(|&p| Usage::read(p)).collect();
    let tmux_after = tmux.map(|t| Usage::read(t.server.pid()));
    let lines_after = lines(files);
    let tmux_lines_after = tmux.map(|t| lines(&t.files));
    let end_ms = now_ms();
    // Events stamped inside the window may still be on their way.
    let drained = Instant::now() + DRAIN;
    while let Ok(item) = tokio::time::timeout_at(drained.into(), sub.next()).await {
        collect(item.unwrap_or_else(|| panic!("the event stream ended:\n{}", daemon.logs())));
    }
    let events = stamped
        .iter()
        .filter(|&&at| at >= start_ms && at < end_ms)
        .count();

    let status = read_status(daemon.pid());
    let monitor_mem: Vec<Smaps> = monitors.iter().map(|&p| Smaps::read(p)).collect();
    let pairs = || monitors_before.iter().zip(&monitors_after);
    Window {
        daemon_cpu_ms: daemon_after.cpu_ms_since(&daemon_before),
        daemon_on_cpu_ms: daemon_after.on_cpu_ms_since(&daemon_before),
        daemon_switches: daemon_after.switches.saturating_sub(daemon_before.switches),
        daemon_threads: daemon_after.threads,
        daemon_rss_kb: status_field(&status, "VmRSS").unwrap_or(0),
        daemon_hwm_kb: status_field(&status, "VmHWM").unwrap_or(0),
        daemon_mem: Smaps::read(daemon.pid()),
        monitors_cpu_ms: pairs().map(|(b, a)| a.cpu_ms_since(b)).sum(),
        monitors_on_cpu_ms: pairs().map(|(b, a)| a.on_cpu_ms_since(b)).sum(),
        monitors_switches: pairs()
            .map(|(b, a)| a.switches.saturating_sub(b.switches))
            .sum(),
        monitor_pss_kb: monitor_mem.iter().map(|m| m.pss_kb).collect(),
        monitor_private_kb: monitor_mem.iter().map(|m| m.private_kb).collect(),
        events,
        lines_written: lines_after - lines_before,
        tmux: tmux
            .zip(tmux_before.zip(tmux_after))
            .map(|(t, (b, a))| TmuxWindow {
                cpu_ms: a.cpu_ms_since(&b),
                on_cpu_ms: a.on_cpu_ms_since(&b),
                switches: a.switches.saturating_sub(b.switches),
                rss_kb: status_field(&read_status(t.server.pid()), "VmRSS").unwrap_or(0),
                mem: Smaps::read(t.server.pid()),
                lines_written: tmux_lines_after.unwrap_or(0) - tmux_lines_before.unwrap_or(0),
            }),
    }
}

/// A private tmux server running [`AGENT_LOOP`] in `n` sessions, each with a progress file of
/// its own.
struct TmuxLoops {
    server: Tmux,
    sessions: usize,
    files: Vec<PathBuf>,
    /// Where the progress files live.
    _dir: tempfile::TempDir,
}

impl TmuxLoops {
    fn start(exe: &Path, n: usize) -> TmuxLoops {
        let dir = tempfile::Builder::new()
            .prefix("aifactory-bench-progress-")
            .tempdir()
            .expect("create a temporary directory");
        let files: Vec<PathBuf> = (0..n)
            .map(|i| dir.path().join(format!("progress-{i:02}.txt")))
            .collect();
        let command = |i: usize| {
            format!(
                "export AIFACTORY_PROGRESS_FILE='{}'; {AGENT_LOOP}",
                files[i].display()
            )
        };
        let server = Tmux::start(exe, &["-s", "t00", &command(0)])
            .unwrap_or_else(|e| panic!("start tmux: {e}"));
        for i in 1..n {
            server.ok(&["new-session", "-d", "-s", &format!("t{i:02}"), &command(i)]);
        }
        let sessions = server.session_count();
        assert_eq!(sessions, n, "tmux sessions running the loop");
        TmuxLoops {
            server,
            sessions,
            files,
            _dir: dir,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown.

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{:.1} µs", ms * 1000.0)
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn ratio(a: Duration, b: Duration) -> String {
    let r = a.as_secs_f64() / b.as_secs_f64();
    if r < 0.01 {
        format!("{r:.4}×")
    } else {
        format!("{r:.2}×")
    }
}

fn latency_table(l: &LatencyReport, long: &(Latency, f64), polled: &Latency) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Progress write → seen | n | median | p99 | max | min | median ÷ floor | median ÷ 3 s poll | p99 ÷ 3 s poll | target |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let row = |out: &mut String, what: &str, s: &Latency, vs: bool, target: &str| {
        let (f, p) = if vs {
            (
                ratio(s.median(), l.floor.median()),
                (
                    ratio(s.median(), polled.median()),
                    ratio(s.p99(), polled.p99()),
                ),
            )
        } else {
            ("–".into(), ("–".into(), "–".into()))
        };
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {} | {} | {f} | {} | {} | {target} |",
            s.len(),
            ms(s.median()),
            ms(s.p99()),
            ms(s.max()),
            ms(s.min()),
            p.0,
            p.1,
        );
    };
    row(
        &mut out,
        "aifactoryd: append `progress: N` → the subscribed client has the `TaskProgress` event",
        &l.ours,
        true,
        "p99 < 100 ms (aim < 10 ms)",
    );
    row(
        &mut out,
        &format!(
            "aifactoryd, the same with the progress file at {} MiB (the most the daemon reads)",
            LONG_FILE >> 20
        ),
        &long.0,
        true,
        "–",
    );
    row(
        &mut out,
        &format!(
            "floor: minimal inotify watcher in the bench process, append → its thread woke (by IN_MODIFY {} of {} times)",
            l.floor_woken_by_modify,
            l.floor.len()
        ),
        &l.floor,
        false,
        "–",
    );
    row(
        &mut out,
        "old product's behaviour: the file read every 3 s, append at a random moment → the read that sees it",
        polled,
        false,
        "–",
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| aifactoryd CPU (utime+stime) per progress event | small file (≤ 13 KB) | {} MiB file |",
        LONG_FILE >> 20
    );
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(
        out,
        "| over the timed appends | {:.3} ms ({:.0} ms / {}) | {:.3} ms ({:.0} ms / {}) |",
        l.ours_cpu_ms / l.ours.len() as f64,
        l.ours_cpu_ms,
        l.ours.len(),
        long.1 / long.0.len() as f64,
        long.1,
        long.0.len()
    );
    out
}

fn load_table(r: &LoadReport) -> String {
    let mut out = String::new();
    let n = r.windows.len();
    let _ = write!(
        out,
        "| {} tasks, agent: `sh` loop printing a line and appending `progress: N` every second |",
        *TASKS
    );
    for w in 1..=n {
        let _ = write!(out, " aifactoryd, window {w} |");
    }
    for w in 1..=n {
        let _ = write!(
            out,
            " tmux server, {} sessions, window {w} (same moments) |",
            r.tmux_sessions
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|---|{}", "---:|".repeat(2 * n));
    let secs = WINDOW.as_secs_f64();
    let cpu = |ms: f64, on: f64| {
        format!(
            "{ms:.0} ms ({:.1}% of a core) [on-CPU {on:.0} ms]",
            ms / secs / 10.0
        )
    };
    let mut row =
        |what: &str, ours: &dyn Fn(&Window) -> String, tmux: &dyn Fn(&TmuxWindow) -> String| {
            let _ = write!(out, "| {what} |");
            for w in &r.windows {
                let _ = write!(out, " {} |", ours(w));
            }
            for w in &r.windows {
                let _ = write!(
                    out,
                    " {} |",
                    w.tmux.as_ref().map(tmux).unwrap_or_else(|| "–".into())
                );
            }
            let _ = writeln!(out);
        };
    let none = |_: &TmuxWindow| "–".to_string();
    row(
        &format!(
            "{} s CPU (utime+stime): daemon / tmux server",
            WINDOW.as_secs()
        ),
        &|w| cpu(w.daemon_cpu_ms, w.daemon_on_cpu_ms),
        &|t| cpu(t.cpu_ms, t.on_cpu_ms),
    );
    row(
        &format!(
            "{} s CPU: the {} pane monitors, summed",
            WINDOW.as_secs(),
            r.monitors
        ),
        &|w| cpu(w.monitors_cpu_ms, w.monitors_on_cpu_ms),
        &none,
    );
    row(
        &format!(
            "{} s CPU: daemon + monitors / tmux server",
            WINDOW.as_secs()
        ),
        &|w| {
            cpu(
                w.daemon_cpu_ms + w.monitors_cpu_ms,
                w.daemon_on_cpu_ms + w.monitors_on_cpu_ms,
            )
        },
        &|t| cpu(t.cpu_ms, t.on_cpu_ms),
    );
    row(
        "progress lines the agents appended in the window",
        &|w| w.lines_written.to_string(),
        &|t| t.lines_written.to_string(),
    );
    row(
        "`TaskProgress` events the daemon published in the window",
        &|w| w.events.to_string(),
        &none,
    );
    row(
        "daemon CPU per progress event (utime+stime / events)",
        &|w| {
            if w.events == 0 {
                "–".into()
            } else {
                format!("{:.2} ms", w.daemon_cpu_ms / w.events as f64)
            }
        },
        &none,
    );
    row(
        "context switches: daemon (threads) / monitors / tmux server",
        &|w| {
            format!(
                "{} ({}) / {}",
                w.daemon_switches, w.daemon_threads, w.monitors_switches
            )
        },
        &|t| t.switches.to_string(),
    );
    row(
        "RSS (VmRSS) at the end of the window: daemon / tmux server",
        &|w| format!("{} (peak {})", mb(w.daemon_rss_kb), mb(w.daemon_hwm_kb)),
        &|t| mb(t.rss_kb),
    );
    row(
        "PSS (private): daemon / tmux server",
        &|w| {
            format!(
                "{} ({})",
                mb(w.daemon_mem.pss_kb),
                mb(w.daemon_mem.private_kb)
            )
        },
        &|t| format!("{} ({})", mb(t.mem.pss_kb), mb(t.mem.private_kb)),
    );
    row(
        "PSS of the monitors: sum (median each; private median)",
        &|w| {
            format!(
                "{} ({}; {})",
                mb(w.monitor_pss_kb.iter().sum()),
                mb(median_u64(&w.monitor_pss_kb)),
                mb(median_u64(&w.monitor_private_kb))
            )
        },
        &none,
    );
    row(
        "PSS: daemon + monitors / tmux server",
        &|w| mb(w.daemon_mem.pss_kb + w.monitor_pss_kb.iter().sum::<u64>()),
        &|t| mb(t.mem.pss_kb),
    );
    out
}

fn rss_table(rss: &[(String, u64)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| aifactoryd VmRSS | MB |");
    let _ = writeln!(out, "|---|---:|");
    for (when, kb) in rss {
        let _ = writeln!(out, "| {when} | {} |", mb(*kb));
    }
    out
}
