//! Issue 7's figures for the HTTP shim, measured against the release binaries in one run, each
//! beside a peer on the same (shared, noisy) machine:
//!
//! 1. 100 MB of a finished session's output (`head -c 75000000 /dev/urandom | base64 -w 0`,
//!    exactly 100,000,000 bytes, no rotation) replayed to one client through the console
//!    WebSocket (`?from=0`, until the close frame), beside the same bytes through `aifactoryctl
//!    sessions tail ID` (a process, stdout read by the bench) and through the `aifactory-common`
//!    client's `SessionTail` in this process (the floor the shim itself stands on). 3
//!    repetitions, methods rotating.
//! 2. 200 console clients on one session, all connected before it prints 10,000,000 bytes
//!    (`read x` gates it; then `head -c 7500000 /dev/urandom | base64 -w 0`): each reads to the
//!    close; the time from the input that starts it until each client has everything. With the
//!    200 alone, with a 201st client that connected and never reads, and with 1 reader alone
//!    (the baseline); 3 runs each, configurations rotating. Every client's bytes are checked
//!    against `output.log`, the stalled one's too once it is finally read.
//! 3. `GET /api/v1/status` latency over one keep-alive connection (2000 sequential requests
//!    after 100 warm-ups), beside what the shim does for each (a new daemon connection and a
//!    `Status` request through the common client) and a `Status` on one open connection.
//!
//! Run with `cargo build --release -p aifactoryd -p aifactoryctl -p aifactory-http && cargo
//! bench -p aifactory-tests --bench http`: `cargo bench` builds none of the binaries. The
//! markdown tables printed at the end are ready for BENCHMARKS.md.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aifactory_common::pane::OUTPUT_LOG;
use aifactory_common::protocol::{Reply, Request, StreamItem};
use aifactory_common::{Client, ClientOptions};
use aifactory_tests::bench::{Latency, RunClock, print_report, sized, tail_bytes, warn_if_stale};
use aifactory_tests::console_ws::{self, FNV_START, drain, fnv};
use aifactory_tests::process::cpu_time;
use aifactory_tests::session::new_session;
use aifactory_tests::{Http, Sandbox};

static PAYLOAD: LazyLock<u64> = LazyLock::new(|| sized(100_000_000, 1_000_000));
static THROUGHPUT_REPS: LazyLock<usize> = LazyLock::new(|| sized(3, 1));
static CLIENTS: LazyLock<usize> = LazyLock::new(|| sized(200, 3));
static FANOUT_BYTES: LazyLock<u64> = LazyLock::new(|| sized(10_000_000, 100_000));
/// Repetitions of each fan-out configuration, alternating.
static FANOUT_REPS: LazyLock<usize> = LazyLock::new(|| sized(3, 1));
static STATUS_WARMUP: LazyLock<usize> = LazyLock::new(|| sized(100, 2));
static STATUS_SAMPLES: LazyLock<usize> = LazyLock::new(|| sized(2000, 5));
/// A liveness bound, not a target.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd", "aifactoryctl", "aifactory-http"]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the bench's tokio runtime");
    let report = runtime.block_on(run());
    print_report(&clock.summary(None), &[report]);
}

async fn wait_session(client: &Client, id: &str) {
    match client
        .request(Request::SessionWait { key: id.into() })
        .await
    {
        Ok(Reply::Session(_)) => {}
        other => panic!("sessions wait failed: {other:?}"),
    }
}

/// A session's console from its first byte (the one host's, without `/hosts/{host}`).
fn console_path(id: &str) -> String {
    format!("/api/v1/sessions/{id}/console?from=0")
}

/// CPU used during a fan-out run by the daemon, the shim and the clients (this process). The
/// session's monitor is left out: it has exited by the end of a run, and its time then counts
/// as the daemon's children's.
#[derive(Default, Clone, Copy)]
struct FanoutCpu {
    daemon: Duration,
    shim: Duration,
    clients: Duration,
}

/// One fan-out run: `readers` clients (and one that never reads, when `stalled`) on a session
/// that prints once they are all connected; each reader's time until it has every byte.
async fn fanout(
    client: &Client,
    daemon_pid: u32,
    sandbox: &Sandbox,
    shim: &Http,
    readers_n: usize,
    stalled: bool,
) -> (Vec<Duration>, FanoutCpu) {
    let s = new_session(
        client,
        sandbox,
        &format!(
            "stty -echo; read x; head -c {} /dev/urandom | base64 -w 0",
            *FANOUT_BYTES / 4 * 3
        ),
    )
    .await;
    let mut sockets = Vec::new();
    for _ in 0..readers_n {
        sockets.push(console_ws::open(shim, &console_path(&s.id)).await);
    }
    let mut idle = if stalled {
        Some(console_ws::open(shim, &console_path(&s.id)).await)
    } else {
        None
    };
    let mut readers = Vec::new();
    let t0 = std::sync::Arc::new(std::sync::OnceLock::<Instant>::new());
    for mut ws in sockets {
        let t0 = t0.clone();
        readers.push(tokio::spawn(async move {
            let (bytes, print, reason) = drain(&mut ws).await;
            let done = Instant::now();
            // Set before the input that makes the session print anything.
            let t0 = t0.get().copied().unwrap_or(done);
            (bytes, print, reason, done.duration_since(t0))
        }));
    }
    let me = std::process::id();
    let before = [cpu_time(daemon_pid), cpu_time(shim.pid()), cpu_time(me)];
    t0.set(Instant::now()).unwrap();
    match client
        .request(Request::SessionInput {
            key: s.id.clone(),
            data: b"\n".to_vec(),
        })
        .await
    {
        Ok(Reply::Done) => {}
        other => panic!("input failed: {other:?}"),
    }
    let mut times = Vec::new();
    let mut got = Vec::new();
    for reader in readers {
        let (bytes, print, reason, took) = tokio::time::timeout(RUN_TIMEOUT, reader)
            .await
            .expect("fan-out in time")
            .unwrap();
        assert_eq!(reason, "exited 0");
        got.push((bytes, print));
        times.push(took);
    }
    let after = [cpu_time(daemon_pid), cpu_time(shim.pid()), cpu_time(me)];
    let used = FanoutCpu {
        daemon: after[0].saturating_sub(before[0]),
        shim: after[1].saturating_sub(before[1]),
        clients: after[2].saturating_sub(before[2]),
    };
    // 10,000,000 bytes, plus the echo of the newline when it beat `stty -echo`.
    let on_disk = std::fs::read(s.pane_dir.join(OUTPUT_LOG)).unwrap();
    assert!(on_disk.len() as u64 >= *FANOUT_BYTES);
    let want = (on_disk.len() as u64, fnv(FNV_START, &on_disk));
    assert!(got.iter().all(|g| *g == want), "a client got other bytes");
    if let Some(ws) = idle.as_mut() {
        let (bytes, print, _) = tokio::time::timeout(RUN_TIMEOUT, drain(ws))
            .await
            .expect("the stalled client, read at last");
        assert_eq!((bytes, print), want, "the stalled client lost nothing");
    }
    (times, used)
}

async fn run() -> String {
    let sandbox = Sandbox::new();
    sandbox.write_config("pane_log_max = 1073741824\n");
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let client = daemon.client().await;
    let mut out = String::new();

    // 1. Throughput.
    let big = new_session(
        &client,
        &sandbox,
        // base64 makes 4 bytes of every 3: exactly PAYLOAD bytes.
        &format!("head -c {} /dev/urandom | base64 -w 0", *PAYLOAD / 4 * 3),
    )
    .await;
    wait_session(&client, &big.id).await;
    let log_len = std::fs::metadata(big.pane_dir.join(OUTPUT_LOG))
        .unwrap()
        .len();
    assert_eq!(
        log_len, *PAYLOAD,
        "the session printed exactly PAYLOAD bytes"
    );
    let methods = [
        "console WebSocket `?from=0`, to the close frame",
        "`aifactoryctl sessions tail ID` (process, stdout read to EOF)",
        "common client `SessionTail` in this process (the shim's own source)",
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); methods.len()];
    for rep in 0..*THROUGHPUT_REPS {
        for k in 0..methods.len() {
            let method = (rep + k) % methods.len();
            let started = Instant::now();
            let bytes = match method {
                0 => {
                    let mut ws = console_ws::open(&shim, &console_path(&big.id)).await;
                    let (bytes, _, reason) = tokio::time::timeout(RUN_TIMEOUT, drain(&mut ws))
                        .await
                        .expect("console replay in time");
                    assert_eq!(reason, "exited 0");
                    bytes
                }
                1 => tail_bytes(sandbox.ctl_command(&["sessions", "tail", &big.id])).await,
                _ => {
                    let tail_client = Client::connect(&daemon.client_options()).await.unwrap();
                    let mut sub = tail_client
                        .subscribe(Request::SessionTail {
                            key: big.id.clone(),
                            from: Some(0),
                            follow: false,
                        })
                        .await
                        .unwrap();
                    let mut n = 0u64;
                    loop {
                        match sub.next().await {
                            Some(StreamItem::Output { data, .. }) => n += data.len() as u64,
                            Some(StreamItem::OutputEnd { .. }) | None => break,
                            Some(_) => {}
                        }
                    }
                    n
                }
            };
            let took = started.elapsed();
            assert_eq!(bytes, *PAYLOAD, "{}: every byte", methods[method]);
            eprintln!(
                "throughput rep {rep}: {} {:.3} s",
                methods[method],
                took.as_secs_f64()
            );
            samples[method].push(took);
        }
    }
    let ctl_median = Latency::new(samples[1].clone()).median();
    writeln!(out, "| {} bytes of a finished session, replayed | reps | median | min | max | MB/s (median) | ÷ `aifactoryctl sessions tail` |", *PAYLOAD).unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|").unwrap();
    for (i, name) in methods.iter().enumerate() {
        let l = Latency::new(samples[i].clone());
        writeln!(
            out,
            "| {name} | {} | {:.3} s | {:.3} s | {:.3} s | {:.0} | {:.2}× |",
            l.len(),
            l.median().as_secs_f64(),
            l.min().as_secs_f64(),
            l.max().as_secs_f64(),
            *PAYLOAD as f64 / 1e6 / l.median().as_secs_f64(),
            l.median().as_secs_f64() / ctl_median.as_secs_f64()
        )
        .unwrap();
    }
    out.push('\n');

    // 2. Fan-out, configurations rotating run by run.
    let configs = [(1, false), (*CLIENTS, false), (*CLIENTS, true)];
    let mut per_client: Vec<Vec<Duration>> = vec![Vec::new(); configs.len()];
    let mut last_client: Vec<Vec<Duration>> = vec![Vec::new(); configs.len()];
    let mut cpus: Vec<Vec<FanoutCpu>> = vec![Vec::new(); configs.len()];
    for rep in 0..*FANOUT_REPS {
        for k in 0..configs.len() {
            let c = (rep + k) % configs.len();
            let (readers_n, stalled) = configs[c];
            let (times, used) =
                fanout(&client, daemon.pid(), &sandbox, &shim, readers_n, stalled).await;
            cpus[c].push(used);
            let slowest = times.iter().max().copied().unwrap_or_default();
            eprintln!(
                "fan-out rep {rep}: {readers_n} readers, stalled client: {stalled}: last done after {:.3} s",
                slowest.as_secs_f64()
            );
            last_client[c].push(slowest);
            per_client[c].extend(times);
        }
    }
    let base = Latency::new(last_client[1].clone()).median();
    writeln!(out, "| console clients on one session, {} bytes live, every client checked against `output.log` | runs | until the last client has everything: median (min–max) | per client: median | p99 | ÷ {} readers alone | CPU per run (median): daemon / shim / clients |", *FANOUT_BYTES, *CLIENTS).unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|---|").unwrap();
    for (c, (readers_n, stalled)) in configs.iter().enumerate() {
        let last = Latency::new(last_client[c].clone());
        let each = Latency::new(per_client[c].clone());
        let label = if *stalled {
            format!(
                "{readers_n} readers + 1 client that never reads (it too gets every byte once read)"
            )
        } else {
            format!("{readers_n} reader(s) alone")
        };
        let median_of = |pick: fn(&FanoutCpu) -> Duration| {
            Latency::new(cpus[c].iter().map(pick).collect())
                .median()
                .as_secs_f64()
        };
        writeln!(
            out,
            "| {label} | {} | {:.3} s ({:.3}–{:.3}) | {:.3} s | {:.3} s | {:.2}× | {:.2} / {:.2} / {:.2} s |",
            last.len(),
            last.median().as_secs_f64(),
            last.min().as_secs_f64(),
            last.max().as_secs_f64(),
            each.median().as_secs_f64(),
            each.p99().as_secs_f64(),
            last.median().as_secs_f64() / base.as_secs_f64(),
            median_of(|c| c.daemon),
            median_of(|c| c.shim),
            median_of(|c| c.clients),
        )
        .unwrap();
    }
    out.push('\n');

    // 3. REST latency.
    let http = reqwest::Client::new();
    let url = shim.url("/api/v1/status");
    let mut rest = Vec::new();
    for i in 0..*STATUS_WARMUP + *STATUS_SAMPLES {
        let started = Instant::now();
        let response = http
            .get(&url)
            .bearer_auth(&shim.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        if i >= *STATUS_WARMUP {
            rest.push(started.elapsed());
        }
    }
    let opts = ClientOptions::new(&daemon.socket, "aifactory-bench");
    let mut fresh = Vec::new();
    for i in 0..*STATUS_WARMUP + *STATUS_SAMPLES {
        let started = Instant::now();
        let c = Client::connect(&opts).await.unwrap();
        c.status().await.unwrap();
        if i >= *STATUS_WARMUP {
            fresh.push(started.elapsed());
        }
    }
    let open = Client::connect(&opts).await.unwrap();
    let mut kept = Vec::new();
    for i in 0..*STATUS_WARMUP + *STATUS_SAMPLES {
        let started = Instant::now();
        open.status().await.unwrap();
        if i >= *STATUS_WARMUP {
            kept.push(started.elapsed());
        }
    }
    let rest = Latency::new(rest);
    let fresh = Latency::new(fresh);
    writeln!(out, "| status round trip ({} sequential, after {} warm-ups) | median | p99 | max | ÷ new connection + Status (median) |", *STATUS_SAMPLES, *STATUS_WARMUP).unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|").unwrap();
    for (name, l) in [
        (
            "`GET /api/v1/status` through aifactory-http (keep-alive HTTP/1.1)",
            &rest,
        ),
        (
            "common client: new daemon connection + `Status` (what the shim does per request)",
            &fresh,
        ),
        (
            "common client: `Status` on one open connection",
            &Latency::new(kept),
        ),
    ] {
        writeln!(
            out,
            "| {name} | {:.0} µs | {:.0} µs | {:.0} µs | {:.2}× |",
            l.median().as_secs_f64() * 1e6,
            l.p99().as_secs_f64() * 1e6,
            l.max().as_secs_f64() * 1e6,
            l.median().as_secs_f64() / fresh.median().as_secs_f64()
        )
        .unwrap();
    }
    out
}
