//! Issue 5's figures for terminal sessions, measured against the release binaries in one run,
//! beside a private tmux server (`tmux -S <sock> -f /dev/null`), so that peers share the same
//! (shared, noisy) machine state:
//!
//! 1. creating 100 sessions running `sleep 1000`, one `aifactoryctl sessions new` process each,
//!    sequentially (each returns once its program runs), against `tmux new-session -d -s sN
//!    sleep 1000`, one client call each; then killing all 100 (`aifactoryctl sessions kill ID
//!    --grace 5`, which returns once the end is recorded) against `tmux kill-session -t sN`
//!    (timed until every pane's process is also reaped). Two daemons take part: one with its
//!    pane directories on a tmpfs, as in production (`/run/aifactory/panes`, or
//!    `$XDG_RUNTIME_DIR`), one with them in the sandbox on `$TMPDIR`'s file system (the test
//!    harness's default). Beside them, 100 `aifactoryctl status` calls: the cost of 100 CLI
//!    processes and round trips. Repetitions rotate which goes first. Each create series also
//!    sums the on-CPU time (`schedstat`) of every process involved: clients, daemon and
//!    zygote or tmux server, monitors, programs; unlike elapsed time, it does not count
//!    waiting for a CPU on a loaded machine.
//! 2. 100 MB through one session until all of it is in `output.log`, for `head -c 100000000
//!    /dev/urandom | base64` and `yes | head -c 100000000`, timed from `sessions new` until the
//!    session is recorded as ended and `output.log` holds every byte; beside it the same command
//!    redirected to a plain file, tmux with `pipe-pane -o 'cat > FILE'`, and the kernel's own
//!    limit: a minimal reader in this process that copies a fresh PTY's master to a file until
//!    EIO, 64 KiB at a time (it reads until the terminal has nothing more: one read(2) of a PTY
//!    returns at most 4 KiB). Methods rotate run by run, each after a `syncfs`. Beside the
//!    times, the on-CPU time of the copier (the reader's thread, the session's monitor), run by
//!    run: the pump's own cost, which a loaded machine does not inflate.
//! 3. with 100 idle sessions (on the tmpfs daemon): the daemon's RSS, the PSS of the daemon,
//!    its monitor zygote and every monitor (`/proc/<pid>/smaps_rollup`), and the CPU time and
//!    context switches of all of them over a 10 s window; the tmux server's, with its 100
//!    sessions, over the same window.
//!
//! `AIFACTORY_BENCH_THROUGHPUT=base64` (or `yes`, or `base64,yes`) runs only part 2, for those
//! commands, `AIFACTORY_BENCH_THROUGHPUT_REPS=N` times each (default 3): what tuning the
//! monitor's pump needs, the ratio to the minimal PTY reader measured in the same run.
//!
//! Run with `cargo build --release -p aifactoryd -p aifactoryctl && cargo bench -p aifactory-tests
//! --bench sessions`: `cargo bench` does not build the daemon or the CLI. The bench uses the
//! binaries in `target/release` (or `$AIFACTORY_BIN_DIR`) and warns if they are older than the
//! sources. The tables printed at the end are markdown, ready for BENCHMARKS.md. The run takes
//! about 2–3 minutes and needs about 1 GB free in `$TMPDIR`.
//!
//! One file past 600 lines on purpose: one bench is one BENCHMARKS.md section measured in one
//! run, so that each figure and its peer share the machine's state; shared tools live in
//! `tests/src/bench.rs`.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aifactory_tests::bench::{
    RunClock, Smaps, Usage, clock_ticks, mb, median_u64, print_report, read_status, sized,
    status_field, tmux_or_skip, warn_if_stale,
};
use aifactory_tests::tmux::Tmux;
use aifactory_tests::{Daemon, Sandbox};

/// Sessions created and killed per repetition.
static SESSIONS: LazyLock<usize> = LazyLock::new(|| sized(100, 3));
/// Repetitions of the create/kill series.
static CREATE_REPS: LazyLock<usize> = LazyLock::new(|| sized(3, 1));
/// Repetitions of each throughput run.
static THROUGHPUT_REPS: LazyLock<usize> = LazyLock::new(|| {
    std::env::var("AIFACTORY_BENCH_THROUGHPUT_REPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| sized(3, 1))
});
/// Only the throughput part, for these commands (by name).
static THROUGHPUT_ONLY: LazyLock<Option<Vec<String>>> = LazyLock::new(|| {
    std::env::var("AIFACTORY_BENCH_THROUGHPUT")
        .ok()
        .map(|names| names.split(',').map(|n| n.trim().to_string()).collect())
});
static IDLE_WINDOW: LazyLock<Duration> =
    LazyLock::new(|| sized(Duration::from_secs(10), Duration::from_secs(1)));
/// Quiet time before the idle window.
/// Not shorter in a smoke run: the warm-up session's monitor lingers 2 s after its end, and
/// the window reads every monitor it saw at its start.
const IDLE_SETTLE: Duration = Duration::from_secs(3);
/// No rotation during the throughput runs: every byte stays in `output.log`.
const PANE_LOG_MAX: u64 = 1 << 30;
/// The PTY size the daemon gives a session by default, used for the peers too.
const COLS: u16 = 120;
const ROWS: u16 = 40;
/// The pause before the command in tmux's session, so `pipe-pane` is attached before it runs.
const TMUX_PAUSE: Duration = Duration::from_millis(500);
/// How long one throughput run may take before the bench gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// A tmux pipe that stops growing for this long is taken as finished (short).
const STALL: Duration = Duration::from_secs(5);

/// Bytes each throughput command writes before the PTY's `\n` → `\r\n`.
static PAYLOAD: LazyLock<u64> = LazyLock::new(|| sized(100_000_000, 1_000_000));

/// The throughput commands: (name, shell command).
fn commands() -> [(&'static str, String); 2] {
    let n = *PAYLOAD;
    [
        ("base64", format!("head -c {n} /dev/urandom | base64")),
        ("yes", format!("yes | head -c {n}")),
    ]
}

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd", "aifactoryctl"]);
    let tmux_exe = tmux_or_skip("sessions");

    let config = format!("pane_log_max = {PANE_LOG_MAX}\n");
    // The sandbox's own pane directory (on $TMPDIR's disk), and one on a tmpfs.
    let sandbox = Sandbox::new();
    sandbox.write_config(&config);
    let mut on_tmpfs = Sandbox::new();
    let tmpfs = find_tmpfs();
    let mut places = vec![Place::start(&sandbox, &std::env::temp_dir())];
    match &tmpfs {
        Some(parent) => {
            on_tmpfs.panes_under(parent, &config);
            places.insert(0, Place::start(&on_tmpfs, parent));
        }
        None => eprintln!(
            "no tmpfs found ($XDG_RUNTIME_DIR, /dev/shm, /run): only the disk placement is measured"
        ),
    }
    let work = tempfile::Builder::new()
        .prefix("aifactory-bench-sessions-")
        .tempdir()
        .expect("create a work directory");

    let lifecycle = match &*THROUGHPUT_ONLY {
        Some(_) => None,
        None => Some(lifecycle(&places, tmux_exe.as_deref())),
    };
    let throughput = throughput(&sandbox, tmux_exe.as_deref(), work.path());

    let mut log_lines = 0;
    for place in &mut places {
        if let Some(status) = place.daemon.try_exit() {
            panic!(
                "aifactoryd exited ({status}) during the bench:\n{}",
                place.daemon.logs()
            );
        }
        log_lines += place.daemon.logs().lines().count();
    }
    drop(places);
    drop(on_tmpfs);
    drop(sandbox);

    let tables = match &lifecycle {
        Some(lifecycle) => vec![
            lifecycle_table(lifecycle),
            throughput_table(&throughput),
            pump_table(&throughput),
            idle_table(&lifecycle.idle, &lifecycle.idle_place),
        ],
        None => vec![throughput_table(&throughput), pump_table(&throughput)],
    };
    print_report(
        &format!("{}; daemon log lines: {log_lines}", clock.summary(None)),
        &tables,
    );
}

// ---------------------------------------------------------------------------------------------
// 1 and 3: create, idle, kill.

/// One daemon and where its pane directories are.
struct Place<'a> {
    sandbox: &'a Sandbox,
    daemon: Daemon,
    /// E.g. `tmpfs: /dev/shm` or `ext4: /tmp`.
    label: String,
}

impl<'a> Place<'a> {
    /// Starts the sandbox's daemon, whose pane directories are under `parent`.
    fn start(sandbox: &'a Sandbox, parent: &Path) -> Place<'a> {
        Place {
            sandbox,
            daemon: sandbox.daemon().start(),
            label: format!("{} ({})", fs_type(parent), parent.display()),
        }
    }
}

/// A directory on a tmpfs to put pane directories under, as `/run` is in production.
fn find_tmpfs() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        Some(PathBuf::from("/dev/shm")),
        Some(PathBuf::from("/run")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| fs_type(dir) == "tmpfs" && tempfile::tempdir_in(dir).is_ok())
}

/// The name of the file system `path` is on.
fn fs_type(path: &Path) -> String {
    use nix::sys::statfs::{BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC};
    match nix::sys::statfs::statfs(path) {
        Ok(s) if s.filesystem_type() == TMPFS_MAGIC => "tmpfs".into(),
        Ok(s) if s.filesystem_type() == EXT4_SUPER_MAGIC => "ext4".into(),
        Ok(s) if s.filesystem_type() == XFS_SUPER_MAGIC => "xfs".into(),
        Ok(s) if s.filesystem_type() == BTRFS_SUPER_MAGIC => "btrfs".into(),
        Ok(s) => format!("fs {:#x}", s.filesystem_type().0),
        Err(e) => format!("unknown ({e})"),
    }
}

/// One daemon's create and kill series.
#[derive(Default)]
struct Series {
    label: String,
    create: Vec<Duration>,
    create_calls: Vec<Duration>,
    /// CPU per create, one per repetition.
    create_cpu: Vec<CreateCpu>,
    kill: Vec<Duration>,
    kill_calls: Vec<Duration>,
}

/// On-CPU time per session start, split by process: less sensitive than elapsed time to a
/// shared machine's load, since waiting for a CPU is not counted.
#[derive(Clone, Copy, Default)]
struct CreateCpu {
    /// The client processes (`aifactoryctl`, `tmux`), from this process's reaped children.
    client: Duration,
    /// The daemon (all threads) and its zygote, or the tmux server.
    server: Duration,
    /// The pane monitors, over their whole life so far.
    monitors: Duration,
    /// The programs (`sleep`), including the start of their process before the exec.
    programs: Duration,
}

impl CreateCpu {
    fn total(&self) -> Duration {
        self.client + self.server + self.monitors + self.programs
    }
}

/// On-CPU time of a process, all threads, from `/proc/<pid>/task/*/schedstat` (ns).
fn on_cpu(pid: u32) -> Duration {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// CPU time of this process's reaped children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes one struct rusage to a valid pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct Lifecycle {
    ours: Vec<Series>,
    ctl_status: Vec<Duration>,
    tmux_create: Vec<Duration>,
    tmux_create_calls: Vec<Duration>,
    tmux_create_cpu: Vec<CreateCpu>,
    /// The kill-session calls alone, and until every pane's process was reaped.
    tmux_kill: Vec<Duration>,
    tmux_kill_calls: Vec<Duration>,
    tmux_kill_reaped: Vec<Duration>,
    /// Where the idle daemon keeps its panes.
    idle_place: String,
    idle: IdleReport,
}

/// Who creates (or kills) next in a repetition: a daemon (by index) or tmux.
#[derive(Clone, Copy)]
enum Turn {
    Ours(usize),
    Tmux,
}

fn lifecycle(places: &[Place<'_>], tmux_exe: Option<&Path>) -> Lifecycle {
    let tmux = tmux_exe.map(start_tmux);
    let mut report = Lifecycle {
        ours: places
            .iter()
            .map(|p| Series {
                label: p.label.clone(),
                ..Series::default()
            })
            .collect(),
        ctl_status: Vec::new(),
        tmux_create: Vec::new(),
        tmux_create_calls: Vec::new(),
        tmux_create_cpu: Vec::new(),
        tmux_kill: Vec::new(),
        tmux_kill_calls: Vec::new(),
        tmux_kill_reaped: Vec::new(),
        idle_place: places[0].label.clone(),
        idle: IdleReport::default(),
    };
    // Untimed: the first session ever starts the runtime's paths (and the monitor zygote),
    // the first kill too.
    for place in places {
        let warm = ctl_ok(place.sandbox, &["sessions", "new", "--", "sleep", "1000"]);
        ctl_ok(
            place.sandbox,
            &[
                "sessions",
                "kill",
                warm.stdout_text().trim(),
                "--grace",
                "5",
            ],
        );
    }
    let mut turns: Vec<Turn> = (0..places.len()).map(Turn::Ours).collect();
    if tmux.is_some() {
        turns.push(Turn::Tmux);
    }

    for rep in 0..*CREATE_REPS {
        eprintln!("create/kill {} sessions: repetition {}", *SESSIONS, rep + 1);
        // Each takes each place in the order once over as many repetitions.
        let mut order = turns.clone();
        order.rotate_left(rep % turns.len());
        let mut ids: Vec<Vec<String>> = vec![Vec::new(); places.len()];
        for turn in &order {
            match (*turn, &tmux) {
                (Turn::Ours(i), _) => {
                    let daemon = places[i].daemon.pid();
                    let server =
                        || on_cpu(daemon) + zygote_of(daemon).map_or(Duration::ZERO, on_cpu);
                    let (server_before, client_before) = (server(), children_cpu());
                    let (took, calls, created) = create_ours(places[i].sandbox);
                    let (server_after, client_after) = (server(), children_cpu());
                    let sessions = running_sessions(places[i].sandbox);
                    report.ours[i].create_cpu.push(CreateCpu {
                        client: (client_after - client_before) / *SESSIONS as u32,
                        server: server_after.saturating_sub(server_before) / *SESSIONS as u32,
                        monitors: sessions.iter().map(|s| on_cpu(s.1)).sum::<Duration>()
                            / *SESSIONS as u32,
                        programs: sessions.iter().map(|s| on_cpu(s.0)).sum::<Duration>()
                            / *SESSIONS as u32,
                    });
                    report.ours[i].create.push(took);
                    report.ours[i].create_calls.extend(calls);
                    ids[i] = created;
                }
                (Turn::Tmux, Some(tmux)) => {
                    let (server_before, client_before) = (on_cpu(tmux.pid()), children_cpu());
                    let (took, calls) = tmux.create(*SESSIONS);
                    let (server_after, client_after) = (on_cpu(tmux.pid()), children_cpu());
                    let panes = tmux.pane_pids();
                    report.tmux_create_cpu.push(CreateCpu {
                        client: (client_after - client_before) / *SESSIONS as u32,
                        server: server_after.saturating_sub(server_before) / *SESSIONS as u32,
                        monitors: Duration::ZERO,
                        programs: panes.iter().map(|&p| on_cpu(p)).sum::<Duration>()
                            / *SESSIONS as u32,
                    });
                    report.tmux_create.push(took);
                    report.tmux_create_calls.extend(calls);
                }
                (Turn::Tmux, None) => {}
            }
        }
        for place in places {
            let monitors = running_monitors(place.sandbox);
            assert_eq!(
                monitors.len(),
                *SESSIONS,
                "aifactoryd counts {} running sessions, wanted {}:\n{}",
                monitors.len(),
                *SESSIONS,
                place.daemon.logs()
            );
        }
        if rep == 0 {
            // The warm-up sessions' monitors linger 2 s (`LINGER`) after their end: let that
            // pass before the window.
            std::thread::sleep(IDLE_SETTLE);
            eprintln!(
                "idle window: {} sessions, {} s",
                *SESSIONS,
                IDLE_WINDOW.as_secs()
            );
            let monitors = running_monitors(places[0].sandbox);
            report.idle = idle(places[0].daemon.pid(), &monitors, tmux.as_ref());
        }
        // The floor: 100 CLI processes and round trips, no session work.
        let start = Instant::now();
        for _ in 0..*SESSIONS {
            ctl_ok(places[0].sandbox, &["status"]);
        }
        report.ctl_status.push(start.elapsed());

        for turn in &order {
            match (*turn, &tmux) {
                (Turn::Ours(i), _) => {
                    let (took, calls) = kill_ours(places[i].sandbox, &ids[i]);
                    report.ours[i].kill.push(took);
                    report.ours[i].kill_calls.extend(calls);
                }
                (Turn::Tmux, Some(tmux)) => {
                    let (calls_took, reaped, calls) = tmux.kill(*SESSIONS);
                    report.tmux_kill.push(calls_took);
                    report.tmux_kill_reaped.push(reaped);
                    report.tmux_kill_calls.extend(calls);
                }
                (Turn::Tmux, None) => {}
            }
        }
        for place in places {
            assert!(
                running_monitors(place.sandbox).is_empty(),
                "sessions still running after the kills:\n{}",
                place.daemon.logs()
            );
        }
    }
    report
}

/// Creates [`SESSIONS`] sessions one `aifactoryctl sessions new` at a time: total, per call,
/// the ids.
fn create_ours(sandbox: &Sandbox) -> (Duration, Vec<Duration>, Vec<String>) {
    let mut ids = Vec::with_capacity(*SESSIONS);
    let mut calls = Vec::with_capacity(*SESSIONS);
    let start = Instant::now();
    for _ in 0..*SESSIONS {
        let call = Instant::now();
        let out = ctl_ok(sandbox, &["sessions", "new", "--", "sleep", "1000"]);
        calls.push(call.elapsed());
        ids.push(out.stdout_text().trim().to_string());
    }
    (start.elapsed(), calls, ids)
}

/// Kills every session in `ids`, one `aifactoryctl sessions kill` at a time.
fn kill_ours(sandbox: &Sandbox, ids: &[String]) -> (Duration, Vec<Duration>) {
    let mut calls = Vec::with_capacity(ids.len());
    let start = Instant::now();
    for id in ids {
        let call = Instant::now();
        let out = ctl_ok(sandbox, &["sessions", "kill", id, "--grace", "5"]);
        calls.push(call.elapsed());
        let text = out.stdout_text();
        assert!(
            text.contains("signal") || text.contains("exit"),
            "`sessions kill {id}` did not report an end: {text}"
        );
    }
    (start.elapsed(), calls)
}

/// (program pid, monitor pid) of the sessions the daemon lists as running.
fn running_sessions(sandbox: &Sandbox) -> Vec<(u32, u32)> {
    let out = ctl_ok(sandbox, &["--json", "sessions", "list"]);
    let list: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("`sessions list --json` prints JSON");
    let pid = |s: &serde_json::Value, key: &str| {
        s[key].as_u64().expect("a running session's pids") as u32
    };
    list.as_array()
        .expect("a JSON array of sessions")
        .iter()
        .filter(|s| s["state"] == "running")
        .map(|s| (pid(s, "pid"), pid(s, "monitor_pid")))
        .collect()
}

/// Monitor pids of the sessions the daemon lists as running.
fn running_monitors(sandbox: &Sandbox) -> Vec<u32> {
    let out = ctl_ok(sandbox, &["--json", "sessions", "list"]);
    let list: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("`sessions list --json` prints JSON");
    list.as_array()
        .expect("a JSON array of sessions")
        .iter()
        .filter(|s| s["state"] == "running")
        .map(|s| {
            s["monitor_pid"]
                .as_u64()
                .expect("a running session's monitor pid") as u32
        })
        .collect()
}

trait OutputText {
    fn stdout_text(&self) -> String;
}

impl OutputText for Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

fn ctl_ok(sandbox: &Sandbox, args: &[&str]) -> Output {
    let out = sandbox
        .ctl_command(args)
        .output()
        .expect("run aifactoryctl");
    assert!(
        out.status.success(),
        "aifactoryctl {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts a private tmux server. One `keep` session holds the server up between repetitions,
/// as the daemon is up before the first `sessions new`.
fn start_tmux(exe: &Path) -> Tmux {
    Tmux::start(exe, &["-s", "keep", "sleep", "1000"]).unwrap_or_else(|e| panic!("{e}"))
}

/// What the lifecycle measures of tmux: creating and killing sessions `s0`, `s1`, ...
trait TmuxLifecycle {
    fn create(&self, n: usize) -> (Duration, Vec<Duration>);
    fn pane_pids(&self) -> Vec<u32>;
    fn kill(&self, n: usize) -> (Duration, Duration, Vec<Duration>);
}

impl TmuxLifecycle for Tmux {
    fn create(&self, n: usize) -> (Duration, Vec<Duration>) {
        let mut calls = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n {
            let call = Instant::now();
            self.ok(&["new-session", "-d", "-s", &format!("s{i}"), "sleep", "1000"]);
            calls.push(call.elapsed());
        }
        (start.elapsed(), calls)
    }

    /// Pids of the panes of sessions `s*`.
    fn pane_pids(&self) -> Vec<u32> {
        self.ok(&["list-panes", "-a", "-F", "#{session_name} #{pane_pid}"])
            .stdout_text()
            .lines()
            .filter_map(|line| {
                let (name, pid) = line.split_once(' ')?;
                name.starts_with('s').then(|| pid.parse().ok()).flatten()
            })
            .collect()
    }

    /// Kill-session calls; returns their time, the time until every pane process was reaped,
    /// and each call.
    fn kill(&self, n: usize) -> (Duration, Duration, Vec<Duration>) {
        let pids = self.pane_pids();
        assert_eq!(pids.len(), n, "tmux panes before the kills");
        let mut calls = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n {
            let call = Instant::now();
            self.ok(&["kill-session", "-t", &format!("s{i}")]);
            calls.push(call.elapsed());
        }
        let calls_took = start.elapsed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids
            .iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            assert!(
                Instant::now() < deadline,
                "tmux panes' processes still there"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        (calls_took, start.elapsed(), calls)
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Idle cost.

#[derive(Default)]
struct IdleReport {
    daemon_rss_kb: u64,
    daemon_pss_kb: u64,
    daemon_private_kb: u64,
    monitor_pss_kb: Vec<u64>,
    monitor_private_kb: Vec<u64>,
    monitor_rss_kb: Vec<u64>,
    daemon_cpu_ms: f64,
    daemon_switches: u64,
    daemon_threads: usize,
    monitors_cpu_ms: f64,
    monitors_switches: u64,
    monitors_threads: usize,
    /// Monitors that switched at all in the window.
    monitors_woken: usize,
    /// The daemon's monitor zygote and its waiting monitors, if it has one.
    zygote: Option<HelperIdle>,
    tmux: Option<TmuxIdle>,
}

/// The zygote and the monitors it keeps waiting (with their program processes), summed.
struct HelperIdle {
    zygote: u32,
    processes: usize,
    pss_kb: u64,
    private_kb: u64,
    cpu_ms: f64,
    switches: u64,
}

struct TmuxIdle {
    sessions: usize,
    rss_kb: u64,
    pss_kb: u64,
    cpu_ms: f64,
    switches: u64,
}

/// (pid, parent pid, command name) of every process.
fn processes() -> Vec<(u32, u32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let (comm, rest) = stat.rsplit_once(')')?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            let comm = comm.split_once('(')?.1.to_string();
            Some((pid, ppid, comm))
        })
        .collect()
}

/// The daemon's monitor zygote: its child `aifactory-pane` (the monitors are not the daemon's
/// children).
fn zygote_of(daemon: u32) -> Option<u32> {
    processes()
        .into_iter()
        .find(|(_, ppid, comm)| *ppid == daemon && comm == "aifactory-pane")
        .map(|(pid, ..)| pid)
}

/// The zygote, then the monitors it keeps waiting for sessions (its children that run no
/// session) and their program processes.
fn zygote_family(daemon: u32, session_monitors: &[u32]) -> Vec<u32> {
    let Some(zygote) = zygote_of(daemon) else {
        return Vec::new();
    };
    let all = processes();
    let waiting: Vec<u32> = all
        .iter()
        .filter(|(pid, ppid, _)| *ppid == zygote && !session_monitors.contains(pid))
        .map(|(pid, ..)| *pid)
        .collect();
    let stubs = all
        .iter()
        .filter(|(_, ppid, _)| waiting.contains(ppid))
        .map(|(pid, ..)| *pid);
    std::iter::once(zygote)
        .chain(waiting.iter().copied())
        .chain(stubs)
        .collect()
}

fn idle(daemon: u32, monitors: &[u32], tmux: Option<&Tmux>) -> IdleReport {
    let family = zygote_family(daemon, monitors);
    let before_daemon = Usage::read(daemon);
    let before_family: Vec<Usage> = family.iter().map(|&p| Usage::read(p)).collect();
    let before_monitors: Vec<Usage> = monitors.iter().map(|&p| Usage::read(p)).collect();
    let before_tmux = tmux.map(|t| Usage::read(t.pid()));
    std::thread::sleep(*IDLE_WINDOW);
    let after_daemon = Usage::read(daemon);
    let after_family: Vec<Usage> = family.iter().map(|&p| Usage::read(p)).collect();
    let after_monitors: Vec<Usage> = monitors.iter().map(|&p| Usage::read(p)).collect();
    let after_tmux = tmux.map(|t| Usage::read(t.pid()));

    let hz = clock_ticks();
    let cpu = |b: &Usage, a: &Usage| a.ticks.saturating_sub(b.ticks) as f64 * 1000.0 / hz;
    let switched: Vec<u64> = before_monitors
        .iter()
        .zip(&after_monitors)
        .map(|(b, a)| a.switches.saturating_sub(b.switches))
        .collect();
    let daemon_mem = Smaps::read(daemon);
    let monitor_mem: Vec<Smaps> = monitors.iter().map(|&p| Smaps::read(p)).collect();
    IdleReport {
        daemon_rss_kb: status_field(&read_status(daemon), "VmRSS").unwrap_or(0),
        daemon_pss_kb: daemon_mem.pss_kb,
        daemon_private_kb: daemon_mem.private_kb,
        monitor_pss_kb: monitor_mem.iter().map(|m| m.pss_kb).collect(),
        monitor_private_kb: monitor_mem.iter().map(|m| m.private_kb).collect(),
        monitor_rss_kb: monitor_mem.iter().map(|m| m.rss_kb).collect(),
        daemon_cpu_ms: cpu(&before_daemon, &after_daemon),
        daemon_switches: after_daemon.switches.saturating_sub(before_daemon.switches),
        daemon_threads: after_daemon.threads,
        monitors_cpu_ms: before_monitors
            .iter()
            .zip(&after_monitors)
            .map(|(b, a)| cpu(b, a))
            .sum(),
        monitors_switches: switched.iter().sum(),
        monitors_threads: after_monitors.iter().map(|u| u.threads).sum(),
        monitors_woken: switched.iter().filter(|&&n| n > 0).count(),
        zygote: family.first().map(|&zygote| {
            let mem: Vec<Smaps> = family.iter().map(|&p| Smaps::read(p)).collect();
            HelperIdle {
                zygote,
                processes: family.len(),
                pss_kb: mem.iter().map(|m| m.pss_kb).sum(),
                private_kb: mem.iter().map(|m| m.private_kb).sum(),
                cpu_ms: before_family
                    .iter()
                    .zip(&after_family)
                    .map(|(b, a)| cpu(b, a))
                    .sum(),
                switches: before_family
                    .iter()
                    .zip(&after_family)
                    .map(|(b, a)| a.switches.saturating_sub(b.switches))
                    .sum(),
            }
        }),
        tmux: tmux.zip(before_tmux.zip(after_tmux)).map(|(t, (b, a))| {
            let mem = Smaps::read(t.pid());
            TmuxIdle {
                sessions: t.ok(&["list-sessions"]).stdout_text().lines().count(),
                rss_kb: status_field(&read_status(t.pid()), "VmRSS").unwrap_or(0),
                pss_kb: mem.pss_kb,
                cpu_ms: cpu(&b, &a),
                switches: a.switches.saturating_sub(b.switches),
            }
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Throughput.

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Plain,
    PtyReader,
    Ours,
    Tmux,
}

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::Plain => "plain file: `sh -c 'CMD > file'` (no PTY)",
            Method::PtyReader => {
                "minimal PTY reader (this process: openpty, copy master → file until EIO)"
            }
            Method::Ours => "aifactoryd: `sessions new` → ended and all bytes in output.log",
            Method::Tmux => {
                "tmux: `pipe-pane -o 'cat > file'`, until the file is complete (minus the 0.5 s pause)"
            }
        }
    }
}

struct Run {
    took: Duration,
    bytes: u64,
    /// For aifactoryd: from `sessions new` until `sessions wait` returned.
    ended: Option<Duration>,
    /// On-CPU time (schedstat) of what copied the PTY to the file: the reader's thread, the
    /// session's monitor. Unlike elapsed time it does not count waiting for a CPU, so it is
    /// the pump's own cost even on a loaded machine.
    copier_cpu: Option<Duration>,
}

struct Throughput {
    name: &'static str,
    command: String,
    plain_bytes: u64,
    pty_bytes: u64,
    methods: Vec<(Method, Vec<Run>)>,
}

fn throughput(sandbox: &Sandbox, tmux_exe: Option<&Path>, work: &Path) -> Vec<Throughput> {
    let mut methods = vec![Method::Plain, Method::PtyReader, Method::Ours];
    if tmux_exe.is_some() {
        methods.push(Method::Tmux);
    }
    let tmux = tmux_exe.map(start_tmux);
    let mut results = Vec::new();
    for (name, command) in commands() {
        if THROUGHPUT_ONLY
            .as_ref()
            .is_some_and(|only| !only.iter().any(|n| n == name))
        {
            continue;
        }
        let command = command.as_str();
        // Untimed: the expected sizes (and warm caches).
        let file = work.join("expected");
        plain(command, &file);
        let data = fs::read(&file).expect("read the plain output");
        let plain_bytes = data.len() as u64;
        let newlines = data.iter().filter(|&&b| b == b'\n').count() as u64;
        drop(data);
        let _ = fs::remove_file(&file);
        // A fresh PTY's output processing (OPOST|ONLCR) turns each \n into \r\n.
        let pty_bytes = plain_bytes + newlines;
        let mut runs: Vec<(Method, Vec<Run>)> = methods.iter().map(|&m| (m, Vec::new())).collect();
        for rep in 0..*THROUGHPUT_REPS {
            for k in 0..methods.len() {
                let which = (rep + k) % methods.len();
                let method = methods[which];
                eprintln!(
                    "throughput `{command}`: {} (repetition {})",
                    method.label(),
                    rep + 1
                );
                syncfs(work);
                let file = work.join("out");
                let run = match method {
                    Method::Plain => {
                        let took = plain(command, &file);
                        Run {
                            took,
                            bytes: file_len(&file),
                            ended: None,
                            copier_cpu: None,
                        }
                    }
                    Method::PtyReader => {
                        let (took, cpu) = pty_reader(command, &file);
                        Run {
                            took,
                            bytes: file_len(&file),
                            ended: None,
                            copier_cpu: Some(cpu),
                        }
                    }
                    Method::Ours => through_session(sandbox, command, pty_bytes),
                    Method::Tmux => {
                        through_tmux(tmux.as_ref().expect("tmux"), command, &file, pty_bytes, rep)
                    }
                };
                let _ = fs::remove_file(&file);
                runs[which].1.push(run);
            }
        }
        results.push(Throughput {
            name,
            command: command.to_string(),
            plain_bytes,
            pty_bytes,
            methods: runs,
        });
    }
    results
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn syncfs(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        // SAFETY: syncfs only reads the descriptor, which outlives the call.
        unsafe { libc::syncfs(f.as_raw_fd()) };
    }
}

fn plain(command: &str, file: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} > '{}'", file.display()))
        .stdin(Stdio::null())
        .status()
        .expect("run sh");
    let took = start.elapsed();
    assert!(status.success(), "`{command}` > file failed ({status})");
    took
}

/// The kernel's limit: a fresh PTY (default termios, the sessions' size), the command on the
/// slave as session leader with it as controlling terminal, and this thread copying the master
/// to a file until EIO, 64 KiB at a time: it waits in poll(2), then reads until the terminal
/// has nothing more or 64 KiB are in (one read(2) of a PTY returns at most 4 KiB), then writes
/// them. Returns the time taken and the copying thread's on-CPU time.
fn pty_reader(command: &str, file: &Path) -> (Duration, Duration) {
    let size = nix::pty::Winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let start = Instant::now();
    let pair = nix::pty::openpty(&size, None).expect("openpty");
    let master: OwnedFd = pair.master;
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .expect("FD_CLOEXEC on the master");
    let mut child = {
        let slave = pair.slave;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(Stdio::from(slave.try_clone().expect("dup the slave")))
            .stdout(Stdio::from(slave.try_clone().expect("dup the slave")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().expect("spawn the command on the PTY")
        // `cmd`, and with it the parent's slave descriptors, is dropped here.
    };
    let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL).expect("F_GETFL");
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .expect("O_NONBLOCK on the master");
    let mut master = fs::File::from(master);
    let mut out = fs::File::create(file).expect("create the reader's file");
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: gettid has no preconditions.
    let schedstat = format!("/proc/self/task/{}/schedstat", unsafe { libc::gettid() });
    let cpu_before = on_cpu_of(&schedstat);
    let mut ended = false;
    while !ended {
        let mut pollfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes one pollfd, which outlives the call.
        if unsafe { libc::poll(&mut pollfd, 1, -1) } < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::Interrupted,
                "poll the PTY master: {e}"
            );
            continue;
        }
        let mut filled = 0;
        while filled < buf.len() {
            match master.read(&mut buf[filled..]) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    ended = true;
                    break;
                }
                Err(e) => panic!("read the PTY master: {e}"),
            }
        }
        out.write_all(&buf[..filled])
            .expect("write the reader's file");
    }
    let cpu = on_cpu_of(&schedstat).saturating_sub(cpu_before);
    let status = child.wait().expect("wait for the command");
    let took = start.elapsed();
    assert!(status.success(), "`{command}` on the PTY failed ({status})");
    (took, cpu)
}

/// The on-CPU time in a `schedstat` file (its first field, ns).
fn on_cpu_of(schedstat: &str) -> Duration {
    let text = fs::read_to_string(schedstat).unwrap_or_else(|e| panic!("read {schedstat}: {e}"));
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .unwrap_or_else(|| panic!("no on-CPU time in {schedstat}: {text:?}"));
    Duration::from_nanos(ns)
}

/// `sessions new -- sh -c CMD`, `sessions wait`, then until `output.log` holds `expected`
/// bytes. The session is removed (untimed) afterwards.
fn through_session(sandbox: &Sandbox, command: &str, expected: u64) -> Run {
    let start = Instant::now();
    let out = ctl_ok(sandbox, &["sessions", "new", "--", "sh", "-c", command]);
    let id = out.stdout_text().trim().to_string();
    let waited = sandbox
        .ctl_command(&["sessions", "wait", &id])
        .output()
        .expect("run aifactoryctl sessions wait");
    let ended = start.elapsed();
    assert!(
        waited.status.success(),
        "`sessions wait {id}`: {}",
        waited.stdout_text()
    );
    let dir = sandbox.panes_dir().join(&id);
    // The monitor lingers a moment after the end (for late requests): long enough to read it.
    let meta: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(dir.join("meta.json")).expect("read the session's meta.json"),
    )
    .expect("parse the session's meta.json");
    let monitor = meta["monitor_pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no monitor_pid in {id}'s meta.json: {meta}"));
    let copier_cpu = on_cpu_of(&format!("/proc/{monitor}/schedstat"));
    let bytes = || file_len(&dir.join("output.log")) + file_len(&dir.join("output.log.1"));
    while bytes() < expected {
        assert!(
            start.elapsed() < RUN_TIMEOUT,
            "output.log of {id} holds {} of {expected} bytes after {RUN_TIMEOUT:?}",
            bytes()
        );
        std::thread::sleep(Duration::from_micros(500));
    }
    let took = start.elapsed();
    let run = Run {
        took,
        bytes: bytes(),
        ended: Some(ended),
        copier_cpu: Some(copier_cpu),
    };
    ctl_ok(sandbox, &["sessions", "remove", &id]);
    run
}

/// A tmux session whose command waits [`TMUX_PAUSE`], `pipe-pane` attached right after its
/// creation; timed until the file holds `expected` bytes (or stops growing for [`STALL`]), minus
/// the pause.
fn through_tmux(tmux: &Tmux, command: &str, file: &Path, expected: u64, rep: usize) -> Run {
    let name = format!("tp{rep}");
    let script = format!("sleep {}; {command}; sleep 1", TMUX_PAUSE.as_secs_f64());
    let cols = COLS.to_string();
    let rows = ROWS.to_string();
    let start = Instant::now();
    tmux.ok(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        &cols,
        "-y",
        &rows,
        "sh",
        "-c",
        &script,
    ]);
    tmux.ok(&[
        "pipe-pane",
        "-o",
        "-t",
        &name,
        &format!("cat > '{}'", file.display()),
    ]);
    let mut last = (0, Instant::now());
    loop {
        let now = file_len(file);
        if now >= expected {
            last = (now, Instant::now());
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > STALL && start.elapsed() > TMUX_PAUSE + STALL {
            eprintln!("tmux's pipe stopped at {now} of {expected} bytes");
            break;
        }
        assert!(
            start.elapsed() < RUN_TIMEOUT,
            "tmux's pipe holds {now} of {expected} bytes after {RUN_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
    let took = last.1.duration_since(start).saturating_sub(TMUX_PAUSE);
    let _ = tmux
        .command(&["kill-session", "-t", &name])
        .stderr(Stdio::null())
        .status();
    Run {
        took,
        bytes: last.0,
        ended: None,
        copier_cpu: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let n = s.len();
    assert!(n > 0, "no samples");
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown.

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

fn min_max(samples: &[Duration]) -> (Duration, Duration) {
    (
        samples.iter().copied().min().unwrap_or_default(),
        samples.iter().copied().max().unwrap_or_default(),
    )
}

fn lifecycle_table(l: &Lifecycle) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {} sessions (`sleep 1000`), sequential | reps | median total | min | max | median per call | ÷ tmux (median total) |",
        *SESSIONS
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let mut row = |what: &str, totals: &[Duration], calls: &[Duration], tmux: &[Duration]| {
        if totals.is_empty() {
            return;
        }
        let (min, max) = min_max(totals);
        let vs = if tmux.is_empty() {
            "–".to_string()
        } else {
            ratio(median(totals), median(tmux))
        };
        let per_call = if calls.is_empty() {
            "–".to_string()
        } else {
            ms(median(calls))
        };
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {} | {per_call} | {vs} |",
            totals.len(),
            secs(median(totals)),
            secs(min),
            secs(max),
        );
    };
    for series in &l.ours {
        row(
            &format!(
                "create: `aifactoryctl sessions new -- sleep 1000` × 100, panes on {}",
                series.label
            ),
            &series.create,
            &series.create_calls,
            &l.tmux_create,
        );
    }
    row(
        "create: `tmux new-session -d -s sN sleep 1000` × 100",
        &l.tmux_create,
        &l.tmux_create_calls,
        &[],
    );
    for series in &l.ours {
        row(
            &format!(
                "kill: `aifactoryctl sessions kill ID --grace 5` × 100 (returns once the end is recorded), panes on {}",
                series.label
            ),
            &series.kill,
            &series.kill_calls,
            &l.tmux_kill_reaped,
        );
    }
    row(
        "kill: `tmux kill-session -t sN` × 100, until every pane process is reaped",
        &l.tmux_kill_reaped,
        &[],
        &[],
    );
    row(
        "kill: `tmux kill-session -t sN` × 100, the calls alone",
        &l.tmux_kill,
        &l.tmux_kill_calls,
        &[],
    );
    row(
        "floor: `aifactoryctl status` × 100 (CLI process + round trip)",
        &l.ctl_status,
        &[],
        &[],
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| on-CPU time per session start (median of the repetitions' means) | client | daemon + zygote / tmux server | monitor | program | total | ÷ tmux |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let tmux_total = (!l.tmux_create_cpu.is_empty()).then(|| {
        median(
            &l.tmux_create_cpu
                .iter()
                .map(CreateCpu::total)
                .collect::<Vec<_>>(),
        )
    });
    let mut cpu_row = |what: &str, cpu: &[CreateCpu]| {
        if cpu.is_empty() {
            return;
        }
        let part =
            |f: fn(&CreateCpu) -> Duration| ms(median(&cpu.iter().map(f).collect::<Vec<_>>()));
        let total = median(&cpu.iter().map(CreateCpu::total).collect::<Vec<_>>());
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {} | {} | {} |",
            part(|c| c.client),
            part(|c| c.server),
            part(|c| c.monitors),
            part(|c| c.programs),
            ms(total),
            tmux_total.map_or("–".into(), |t| ratio(total, t)),
        );
    };
    for series in &l.ours {
        cpu_row(
            &format!("aifactoryd, panes on {}", series.label),
            &series.create_cpu,
        );
    }
    cpu_row("tmux", &l.tmux_create_cpu);
    out
}

fn throughput_table(results: &[Throughput]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| command | method | reps | median | min | max | bytes written | MB/s (written, median) | ÷ PTY reader | ÷ tmux |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for t in results {
        // A `|` inside a code span still ends a table cell in GitHub's markdown.
        let command = t.command.replace('|', "\\|");
        let median_of = |m: Method| {
            t.methods
                .iter()
                .find(|(method, _)| *method == m)
                .map(|(_, runs)| median(&runs.iter().map(|r| r.took).collect::<Vec<_>>()))
        };
        let reader = median_of(Method::PtyReader);
        let tmux = median_of(Method::Tmux);
        for (method, runs) in &t.methods {
            let took: Vec<Duration> = runs.iter().map(|r| r.took).collect();
            let m = median(&took);
            let (min, max) = min_max(&took);
            let bytes: Vec<u64> = runs.iter().map(|r| r.bytes).collect();
            let bytes_text = if bytes.iter().all(|&b| b == bytes[0]) {
                bytes[0].to_string()
            } else {
                format!(
                    "{}–{}",
                    bytes.iter().min().unwrap_or(&0),
                    bytes.iter().max().unwrap_or(&0)
                )
            };
            let vs = |peer: Option<Duration>| match (peer, *method) {
                (Some(p), Method::Ours) => ratio(m, p),
                _ => "–".into(),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {bytes_text} | {:.0} | {} | {} |",
                command,
                method.label(),
                runs.len(),
                secs(m),
                secs(min),
                secs(max),
                median_u64(&bytes) as f64 / 1e6 / m.as_secs_f64(),
                vs(reader),
                vs(tmux),
            );
            if *method == Method::Ours {
                let ended: Vec<Duration> = runs.iter().filter_map(|r| r.ended).collect();
                if !ended.is_empty() {
                    let (min, max) = min_max(&ended);
                    let _ = writeln!(
                        out,
                        "| `{}` | of which: `sessions new` → `sessions wait` returned | {} | {} | {} | {} | – | – | – | – |",
                        command,
                        ended.len(),
                        secs(median(&ended)),
                        secs(min),
                        secs(max),
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "| `{}` ({}) | expected: {} bytes plain, {} bytes through a PTY (\\n → \\r\\n) | | | | | | | | |",
            command, t.name, t.plain_bytes, t.pty_bytes
        );
    }
    out
}

/// The session against the minimal PTY reader repetition by repetition (methods rotate, so a
/// repetition's two runs were close in time): elapsed time and the copier's on-CPU time, the
/// monitor's against the reader thread's.
fn pump_table(results: &[Throughput]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| command | repetition | session ÷ PTY reader, elapsed | monitor on-CPU | reader thread on-CPU | monitor ÷ reader, on-CPU |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for t in results {
        let command = t.command.replace('|', "\\|");
        let runs_of = |m: Method| {
            t.methods
                .iter()
                .find(|(method, _)| *method == m)
                .map(|(_, runs)| runs.as_slice())
                .unwrap_or_default()
        };
        let (ours, reader) = (runs_of(Method::Ours), runs_of(Method::PtyReader));
        let mut elapsed = Vec::new();
        let mut cpu = Vec::new();
        for (i, (o, r)) in ours.iter().zip(reader).enumerate() {
            let (Some(oc), Some(rc)) = (o.copier_cpu, r.copier_cpu) else {
                continue;
            };
            elapsed.push(o.took.as_secs_f64() / r.took.as_secs_f64());
            cpu.push(oc.as_secs_f64() / rc.as_secs_f64());
            let _ = writeln!(
                out,
                "| `{command}` | {} | {:.2}× | {} | {} | {:.2}× |",
                i + 1,
                elapsed[i],
                secs(oc),
                secs(rc),
                cpu[i],
            );
        }
        if elapsed.is_empty() {
            continue;
        }
        let spread = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            format!(
                "{:.2}× ({:.2}–{:.2}×)",
                v[v.len() / 2],
                v[0],
                v[v.len() - 1]
            )
        };
        let _ = writeln!(
            out,
            "| `{command}` | median (min–max) | {} | | | {} |",
            spread(&mut elapsed),
            spread(&mut cpu)
        );
    }
    out
}

fn idle_table(i: &IdleReport, place: &str) -> String {
    let mut out = String::new();
    let n = i.monitor_pss_kb.len();
    let tmux = i.tmux.as_ref();
    let _ = writeln!(
        out,
        "| With {n} idle sessions (`sleep 1000`) | aifactoryd, panes on {place} | tmux server (peer) | target |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|");
    let t = |f: &dyn Fn(&TmuxIdle) -> String| {
        tmux.map(|t| format!("{}, {} sessions", f(t), t.sessions))
            .unwrap_or_else(|| "–".into())
    };
    let monitors_pss: u64 = i.monitor_pss_kb.iter().sum();
    let zygote_pss = i.zygote.as_ref().map_or(0, |z| z.pss_kb);
    let _ = writeln!(
        out,
        "| daemon VmRSS | {} | {} | < 10 MB |",
        mb(i.daemon_rss_kb),
        t(&|t| mb(t.rss_kb))
    );
    let _ = writeln!(
        out,
        "| daemon PSS (private) | {} ({}) | {} | – |",
        mb(i.daemon_pss_kb),
        mb(i.daemon_private_kb),
        t(&|t| mb(t.pss_kb))
    );
    let _ = writeln!(
        out,
        "| PSS per monitor: median / max (private median; RSS median) | {} / {} ({}; RSS {}) | – | < 1 MB |",
        mb(median_u64(&i.monitor_pss_kb)),
        mb(i.monitor_pss_kb.iter().copied().max().unwrap_or(0)),
        mb(median_u64(&i.monitor_private_kb)),
        mb(median_u64(&i.monitor_rss_kb)),
    );
    match &i.zygote {
        Some(z) => {
            let _ = writeln!(
                out,
                "| monitor zygote (`aifactory-pane --zygote`, pid {}) and the monitors waiting for sessions, with their program processes ({} processes): PSS (private) | {} ({}) | – | – |",
                z.zygote,
                z.processes,
                mb(z.pss_kb),
                mb(z.private_kb)
            );
        }
        None => {
            let _ = writeln!(out, "| monitor zygote | none found | – | – |");
        }
    }
    let _ = writeln!(
        out,
        "| PSS of the daemon + zygote and waiting monitors + all {n} session monitors | {} | {} | – |",
        mb(i.daemon_pss_kb + zygote_pss + monitors_pss),
        t(&|t| mb(t.pss_kb))
    );
    let _ = writeln!(
        out,
        "| idle {} s: CPU (utime+stime), daemon / zygote and waiting monitors / all session monitors | {:.0} ms / {} / {:.0} ms | {} | 0 |",
        IDLE_WINDOW.as_secs(),
        i.daemon_cpu_ms,
        i.zygote
            .as_ref()
            .map_or("–".into(), |z| format!("{:.0} ms", z.cpu_ms)),
        i.monitors_cpu_ms,
        t(&|t| format!("{:.0} ms", t.cpu_ms))
    );
    let _ = writeln!(
        out,
        "| idle {} s: wakeups (context switches), daemon ({} threads) / zygote and waiting monitors / all session monitors ({} threads; monitors that woke) | {} / {} / {} ({}) | {} | 0 |",
        IDLE_WINDOW.as_secs(),
        i.daemon_threads,
        i.monitors_threads,
        i.daemon_switches,
        i.zygote
            .as_ref()
            .map_or("–".into(), |z| z.switches.to_string()),
        i.monitors_switches,
        i.monitors_woken,
        t(&|t| t.switches.to_string())
    );
    out
}
