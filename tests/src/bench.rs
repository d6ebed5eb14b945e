//! What the benchmarks share: sample statistics, machine load, finding tools, the warning
//! that the release binaries are older than their sources (`cargo bench` builds neither), and
//! the smoke mode ([`SMOKE_ENV`]) in which every bench runs its whole path with tiny counts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aifactory_common::Client;
use aifactory_common::procfs;
use aifactory_common::protocol::{Reply, Request, TaskCreate, TaskInfo};

use crate::{Daemon, bin, bin_dir};

/// Set to `1` to run a bench with tiny counts: every part runs and every check holds, but the
/// figures mean nothing. CI runs each bench so once (`tests/bench/run-all --smoke`), so a bench
/// cannot rot between the runs that measure.
pub const SMOKE_ENV: &str = "AIFACTORY_BENCH_SMOKE";

/// Whether this run is a smoke run ([`SMOKE_ENV`] is `1`).
pub fn smoke() -> bool {
    std::env::var_os(SMOKE_ENV).is_some_and(|v| v == "1")
}

/// `full` for a measuring run, `tiny` for a smoke run.
pub fn sized<T>(full: T, tiny: T) -> T {
    if smoke() { tiny } else { full }
}

/// Sorted samples.
#[derive(Clone)]
pub struct Latency {
    samples: Vec<Duration>,
}

impl Latency {
    pub fn new(mut samples: Vec<Duration>) -> Latency {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        Latency { samples }
    }

    pub fn median(&self) -> Duration {
        let s = &self.samples;
        let n = s.len();
        if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2
        }
    }

    /// Nearest-rank 99th percentile.
    pub fn p99(&self) -> Duration {
        let n = self.samples.len();
        self.samples[(n * 99).div_ceil(100) - 1]
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn min(&self) -> Duration {
        self.samples[0]
    }

    pub fn max(&self) -> Duration {
        self.samples[self.samples.len() - 1]
    }

    /// A Markdown table row `| label | count | median | p99 | min | max |`, with its newline.
    pub fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {} | {} | {} | {} |\n",
            self.len(),
            fmt_duration(self.median()),
            fmt_duration(self.p99()),
            fmt_duration(self.min()),
            fmt_duration(self.max()),
        )
    }
}

/// The 1, 5 and 15 minute load averages, for the report.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
}

/// Warns when one of `binaries` is older than a source file it is built from.
pub fn warn_if_stale(binaries: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for name in binaries {
        // Cargo relinks a binary only when its own crates changed.
        let crates: &[&str] = match *name {
            "aifactoryd" => &["common", "daemon"],
            "aifactoryctl" => &["common", "ctl"],
            _ => &["common", "daemon", "ctl"],
        };
        let newest_source = crates
            .iter()
            .filter_map(|krate| newest_mtime(&root.join(krate)))
            .max();
        let path = bin(name);
        let built = fs::metadata(&path).and_then(|m| m.modified()).ok();
        if let (Some(built), Some(source)) = (built, newest_source)
            && built < source
        {
            eprintln!(
                "WARNING: {} is older than the newest source: rebuild with `cargo build --release -p aifactoryd -p aifactory-pane -p aifactoryctl`",
                path.display()
            );
        }
    }
    eprintln!("binaries from {}", bin_dir().display());
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                newest_mtime(&path)
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "toml" || e == "sql")
            {
                meta.modified().ok()
            } else {
                None
            }
        })
        .max()
}

// ---------------------------------------------------------------------------------------------
// What /proc says of a process: CPU time, context switches, memory.

/// Clock ticks per second, the unit of utime and stime in `/proc/<pid>/stat`.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

pub fn read_status(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"))
}

/// The first number of a `Key:  value ...` line of a /proc status file.
pub fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Memory of one process from `/proc/<pid>/smaps_rollup`, in KiB.
pub struct Smaps {
    pub rss_kb: u64,
    pub pss_kb: u64,
    /// Private_Clean + Private_Dirty: what the process alone holds (USS).
    pub private_kb: u64,
}

impl Smaps {
    pub fn read(pid: u32) -> Smaps {
        let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/smaps_rollup: {e}"));
        let field = |key| status_field(&text, key).unwrap_or(0);
        Smaps {
            rss_kb: field("Rss"),
            pss_kb: field("Pss"),
            private_kb: field("Private_Clean") + field("Private_Dirty"),
        }
    }
}

/// CPU ticks (utime+stime, the whole process) and, summed over the live threads, context
/// switches and on-CPU time.
pub struct Usage {
    pub ticks: u64,
    pub switches: u64,
    pub threads: usize,
    /// On-CPU time from each live thread's schedstat, in ns (0 when the kernel has none):
    /// finer than the ticks, but blind to threads that exited.
    pub on_cpu_ns: u64,
}

impl Usage {
    pub fn read(pid: u32) -> Usage {
        let ticks = procfs::stat(pid)
            .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"))
            .cpu_ticks;
        let mut switches = 0;
        let mut threads = 0;
        let mut on_cpu_ns = 0;
        if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let Ok(status) = fs::read_to_string(task.path().join("status")) else {
                    continue;
                };
                threads += 1;
                switches += status_field(&status, "voluntary_ctxt_switches").unwrap_or(0)
                    + status_field(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
                on_cpu_ns += fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Usage {
            ticks,
            switches,
            threads,
            on_cpu_ns,
        }
    }

    /// utime+stime spent since `before`, in ms.
    pub fn cpu_ms_since(&self, before: &Usage) -> f64 {
        self.ticks.saturating_sub(before.ticks) as f64 * 1000.0 / clock_ticks()
    }

    /// On-CPU time (schedstat) since `before`, in ms.
    pub fn on_cpu_ms_since(&self, before: &Usage) -> f64 {
        self.on_cpu_ns.saturating_sub(before.on_cpu_ns) as f64 / 1e6
    }
}

// ---------------------------------------------------------------------------------------------
// The run as a whole.

/// When a benchmark began and the machine's load then, for the line that opens its report.
pub struct RunClock {
    began: Instant,
    load_before: String,
}

impl RunClock {
    pub fn start() -> RunClock {
        RunClock {
            began: Instant::now(),
            load_before: loadavg(),
        }
    }

    /// "Run took N s; load average before: …, after: …", with the load `between` the run's
    /// parts if given.
    pub fn summary(&self, between: Option<&str>) -> String {
        let between = between
            .map(|load| format!(", between the parts: {load}"))
            .unwrap_or_default();
        format!(
            "Run took {:.0} s; load average before: {}{between}, after: {}",
            self.began.elapsed().as_secs_f64(),
            self.load_before,
            loadavg()
        )
    }
}

/// Prints a benchmark's report: its summary line, then each table, a blank line before each.
pub fn print_report(summary: &str, tables: &[String]) {
    println!();
    if smoke() {
        println!("SMOKE RUN ({SMOKE_ENV}=1): tiny counts, the figures below mean nothing.");
    }
    println!("{summary}");
    for table in tables {
        println!();
        print!("{table}");
    }
}

/// The tmux binary a benchmark compares with, or `None` (reported as a skip of `bench`'s
/// tmux comparison) when it is not installed.
pub fn tmux_or_skip(bench: &str) -> Option<PathBuf> {
    let found = find_in_path("tmux");
    if found.is_none() {
        crate::skip(
            &format!("{bench} bench: tmux comparison"),
            "tmux is not installed (not found on PATH)",
        );
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Timing commands.

/// Runs `cmd` to completion, checks that it worked and printed `expect`; returns how long it
/// took and its stdout.
pub fn run_ok(cmd: &mut Command, expect: &str) -> (Duration, String) {
    cmd.stdin(Stdio::null());
    let start = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains(expect),
        "{cmd:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (took, stdout)
}

/// Checks `cmd` once, then returns it ready for timing with its output discarded (as fast as
/// a terminal could take it).
pub fn checked(mut cmd: Command, expect: &str) -> Command {
    run_ok(&mut cmd, expect);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

/// How long one run of `cmd` takes; fails naming `label` unless it succeeds.
pub fn time_run(cmd: &mut Command, label: &str) -> Duration {
    let start = Instant::now();
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("run {label} ({cmd:?}): {e}"));
    let took = start.elapsed();
    assert!(status.success(), "{label} failed ({status}): {cmd:?}");
    took
}

/// Runs `cmd` (e.g. `aifactoryctl sessions tail ID` of a finished session) reading its stdout
/// to EOF as fast as a pipe takes it; returns how many bytes it printed. Fails unless it
/// succeeds.
pub async fn tail_bytes(mut cmd: Command) -> u64 {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let Some(mut stdout) = child.stdout.take() else {
        panic!("{cmd:?} started without its stdout");
    };
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0u64;
        loop {
            match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) => panic!("reading {cmd:?}: {e}"),
            }
        }
        let status = child.wait().unwrap_or_else(|e| panic!("wait {cmd:?}: {e}"));
        assert!(status.success(), "{cmd:?}: {status}");
        n
    })
    .await
    .unwrap_or_else(|e| panic!("the reader: {e}"))
}

/// A latency for the report: µs below a millisecond, ms above.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// KiB as MB with two decimals, for the report.
pub fn mb(kb: u64) -> String {
    format!("{:.2} MB", kb as f64 / 1024.0)
}

/// The upper median of counts (0 when there are none).
pub fn median_u64(samples: &[u64]) -> u64 {
    let mut s = samples.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Tasks through the client, for the benches that start them.

/// Sends `request`; the daemon's log in the panic when it fails.
pub async fn request(daemon: &Daemon, client: &Client, request: Request) -> Reply {
    let what = format!("{request:?}");
    client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("{what} failed: {e}\n{}", daemon.logs()))
}

/// Creates a task of project `demo` for `spec` with `agent`.
pub async fn create_task(daemon: &Daemon, client: &Client, spec: &str, agent: &str) -> TaskInfo {
    let reply = request(
        daemon,
        client,
        Request::TaskCreate(TaskCreate {
            project: "demo".into(),
            spec_id: spec.into(),
            title: None,
            agent: Some(agent.into()),
        }),
    )
    .await;
    match reply {
        Reply::Task(task) => *task,
        other => panic!("TaskCreate: unexpected reply {other:?}"),
    }
}

pub async fn start_task(daemon: &Daemon, client: &Client, id: &str) -> TaskInfo {
    match request(daemon, client, Request::TaskStart { key: id.into() }).await {
        Reply::Task(task) => *task,
        other => panic!("TaskStart: unexpected reply {other:?}"),
    }
}

/// Stops task `id` (1 s grace); no process may survive.
pub async fn stop_task(daemon: &Daemon, client: &Client, id: &str) {
    let reply = request(
        daemon,
        client,
        Request::TaskStop {
            key: id.into(),
            grace_ms: 1000,
        },
    )
    .await;
    match reply {
        Reply::TaskStopped(report) => assert!(
            report.survivors.is_empty(),
            "task {id}: processes survived the stop: {:?}",
            report.survivors
        ),
        other => panic!("TaskStop: unexpected reply {other:?}"),
    }
}
