//! Issue 18's transport figures, measured in one run on hosts in network namespaces
//! (`aifactory_tests::hosts`: a real sshd and daemon per host, over a veth link):
//!
//! 1. `aifactoryctl status` round trip, interleaved run by run: against the local socket of a
//!    daemon of the same build; `--host ssh://…` with the multiplexed master up; `--host
//!    ssh://…` with no master (the master is ended with `ssh -O exit` before each run, so each
//!    run pays a whole ssh login and leaves a new master behind);
//! 2. 100 `status` commands in a row over one master: the total, and sshd's login count after
//!    them (one).
//! 3. The shim's merged event stream over three hosts: the time from a `TaskCreate` sent to a
//!    host's daemon (on its socket, from this process) until its `TaskCreated` arrives on the
//!    `GET /api/v1/events` stream of an `aifactory-http` serving the three hosts over ssh,
//!    hosts in turn; beside the same through a shim serving only a local daemon over
//!    `unix://` (the peer), interleaved run by run. The floor is each daemon's own event
//!    subscription on its socket, which sees the same events: per event, the shim's arrival
//!    minus the floor's is what the shim (and ssh) add (clamped at zero: both readers are
//!    tasks of this process, so the shim's may be stamped first when it is scheduled first).
//! 4. Console throughput through the shim: a finished session's output (the same
//!    [`CONSOLE_BYTES`] of a fixed pattern, no newline) replayed to one client through the
//!    console WebSocket (`?from=0`, until the close frame), for a session on a remote host
//!    (ssh://) and one on the local daemon (unix://), both served by one shim, alternating;
//!    every replay's bytes are checked against the session's `output.log`.
//!
//! Needs root and openssh-server (skips otherwise). Run with `cargo build --release
//! --workspace --bins && cargo bench -p aifactory-tests --bench hosts`.

use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aifactory_common::Client;
use aifactory_common::pane::OUTPUT_LOG;
use aifactory_common::protocol::{Event, EventKind, Reply, Request, StreamItem, TaskCreate};
use aifactory_tests::Http;
use aifactory_tests::bench::{
    Latency, RunClock, checked, fmt_duration, print_report, sized, time_run, warn_if_stale,
};
use aifactory_tests::console_ws::{self, FNV_START, drain, fnv};
use aifactory_tests::git::committed_repo;
use aifactory_tests::hosts::{Hosts, ShimHost};
use aifactory_tests::session::new_session;
use aifactory_tests::sse::SseReader;
use aifactory_tests::{Sandbox, skip};
use tokio::sync::mpsc;

/// Timed runs per series, interleaved, after [`WARMUP`] untimed ones each.
static RUNS: LazyLock<usize> = LazyLock::new(|| sized(100, 3));
static WARMUP: LazyLock<usize> = LazyLock::new(|| sized(5, 1));
/// Commands in a row over one master.
static IN_A_ROW: LazyLock<usize> = LazyLock::new(|| sized(100, 5));
/// Events timed per host (and on the peer), interleaved, after [`EVENT_WARMUP`] untimed ones.
static EVENTS: LazyLock<usize> = LazyLock::new(|| sized(200, 3));
static EVENT_WARMUP: LazyLock<usize> = LazyLock::new(|| sized(10, 1));
/// What each console replay carries.
static CONSOLE_BYTES: LazyLock<u64> = LazyLock::new(|| sized(50_000_000, 1_000_000));
/// Replays of each session, alternating.
static CONSOLE_REPS: LazyLock<usize> = LazyLock::new(|| sized(5, 1));
/// A liveness bound, not a target.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// The daemons' default agent: tasks are created, never started.
const CONFIG: &str =
    "default_agent = \"idle\"\n[agents.idle]\nkind = \"custom\"\ncommand = [\"sleep\", \"300\"]\n";

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd", "aifactoryctl", "aifactory-http"]);
    let hosts = match Hosts::start(3, CONFIG) {
        Ok(hosts) => hosts,
        Err(why) => {
            skip("hosts bench", &why);
            println!("hosts bench skipped: {why}");
            return;
        }
    };
    let host = &hosts.hosts[0];
    let local = Sandbox::new();
    local.write_config(CONFIG);
    let local_daemon = local.daemon().start();

    let url = host.url();
    let mut series: Vec<(&str, Command, Vec<Duration>)> = vec![
        (
            "local socket",
            checked(local.ctl_command(&["status"]), "aifactoryd"),
            Vec::new(),
        ),
        (
            "--host ssh://, master up",
            checked(hosts.ctl_command(&["--host", &url, "status"]), "aifactoryd"),
            Vec::new(),
        ),
        (
            "--host ssh://, no master (a whole ssh login)",
            checked(hosts.ctl_command(&["--host", &url, "status"]), "aifactoryd"),
            Vec::new(),
        ),
    ];
    eprintln!("status round trips: local, over a master, without one");
    for run in 0..(*WARMUP + *RUNS) {
        for (label, cmd, samples) in series.iter_mut() {
            if label.contains("no master") {
                hosts.end_master(host, "root");
            }
            let took = time_run(cmd, label);
            if run >= *WARMUP {
                samples.push(took);
            }
        }
    }

    eprintln!("{} status commands in a row over one master", *IN_A_ROW);
    hosts.end_master(host, "root");
    let logins_before = host.accepted_logins();
    let mut cmd = hosts.ctl_command(&["--host", &url, "status"]);
    cmd.stdout(Stdio::null());
    let start = Instant::now();
    for _ in 0..*IN_A_ROW {
        time_run(&mut cmd, "status over the master");
    }
    let in_a_row = start.elapsed();
    let logins = host.accepted_logins() - logins_before;
    assert_eq!(logins, 1, "the commands in a row shared one master");

    let mut table = String::from(
        "| `aifactoryctl status` | runs | median | p99 | min | max |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (label, _, samples) in series {
        table.push_str(&Latency::new(samples).row(label));
    }
    let row = format!(
        "| commands in a row over one master | total | per command | sshd logins |\n| ---: | ---: | ---: | ---: |\n| {} | {} | {} | {logins} |\n",
        *IN_A_ROW,
        fmt_duration(in_a_row),
        fmt_duration(in_a_row / *IN_A_ROW as u32),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the bench's tokio runtime");
    let (events, console) = runtime.block_on(through_the_shim(&hosts, &local, &local_daemon));
    print_report(&clock.summary(None), &[table, row, events, console]);
}

/// Parts 3 and 4.
async fn through_the_shim(
    hosts: &Hosts,
    local: &Sandbox,
    local_daemon: &aifactory_tests::Daemon,
) -> (String, String) {
    let local_host = ShimHost::unix("local", &local.socket());
    let merged = hosts.shim_for_all();
    let peer = hosts.shim(std::slice::from_ref(&local_host));
    wait_up(&merged, 3).await;
    wait_up(&peer, 1).await;

    // Part 3: a project on every daemon, then tasks created on each in turn.
    let mut targets: Vec<(String, &Sandbox, Client)> = Vec::new();
    for host in &hosts.hosts {
        targets.push((
            host.name.clone(),
            &host.sandbox,
            host.daemon().client().await,
        ));
    }
    targets.push(("local".into(), local, local_daemon.client().await));
    for (name, sandbox, _) in &targets {
        let repo = committed_repo(&sandbox.path().join("bench-repo"));
        sandbox
            .ctl(&[
                "projects",
                "add",
                &repo.display().to_string(),
                "--name",
                "demo",
            ])
            .assert_ok();
        eprintln!("{name}: project demo added");
    }
    let mut merged_arrivals = arrivals(&merged).await;
    let mut peer_arrivals = arrivals(&peer).await;
    // Each daemon's own subscription on its socket sees the same events: the floor.
    let mut direct = Vec::new();
    for (_, _, client) in &targets {
        direct.push(direct_arrivals(client).await);
    }
    eprintln!(
        "event latency: {} task creations per host, three hosts over ssh and the local peer",
        *EVENTS
    );
    let mut through_shim: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let mut floor: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for run in 0..(*EVENT_WARMUP + *EVENTS) {
        for (i, (name, _, client)) in targets.iter().enumerate() {
            let stream = if name == "local" {
                &mut peer_arrivals.0
            } else {
                &mut merged_arrivals.0
            };
            let spec = format!("r{run}-bench");
            let start = Instant::now();
            create(client, name, &spec).await;
            let on_socket = arrival(&mut direct[i].0, name, &spec).await;
            let on_shim = arrival(stream, name, &spec).await;
            if run >= *EVENT_WARMUP {
                floor[i].push(on_socket - start);
                through_shim[i].push(on_shim - start);
            }
        }
    }
    let mut events = String::from(
        "| `TaskCreate` sent to a daemon until its `TaskCreated` arrives | events | median | p99 | min | max |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let row = |label: &str, samples: Vec<Duration>| Latency::new(samples).row(label);
    for (i, host) in hosts.hosts.iter().enumerate() {
        events.push_str(&row(
            &format!(
                "{}, one of three hosts over ssh://, on the shim's `GET /api/v1/events`",
                host.name
            ),
            through_shim[i].clone(),
        ));
    }
    let flat =
        |series: &[Vec<Duration>]| -> Vec<Duration> { series.iter().flatten().copied().collect() };
    events.push_str(&row(
        "the three hosts over ssh:// together, on the shim's stream",
        flat(&through_shim[..3]),
    ));
    events.push_str(&row(
        "the local daemon over unix://, on the stream of a shim serving only it (peer)",
        through_shim[3].clone(),
    ));
    events.push_str(&row(
        "floor: the same events on each daemon's own subscription on its socket (four daemons)",
        flat(&floor),
    ));
    let added = |range: std::ops::Range<usize>| -> Vec<Duration> {
        range
            .flat_map(|i| {
                through_shim[i]
                    .iter()
                    .zip(&floor[i])
                    .map(|(shim, own)| shim.saturating_sub(*own))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    events.push_str(&row(
        "what the shim adds over ssh:// (each event: the shim's arrival minus the daemon's own)",
        added(0..3),
    ));
    events.push_str(&row(
        "what the shim adds over unix:// (the same, for the peer)",
        added(3..4),
    ));
    for (_, reader) in direct.iter().chain([&merged_arrivals, &peer_arrivals]) {
        reader.abort();
    }
    drop(merged);
    drop(peer);

    // Part 4: one shim over host0 (ssh) and the local daemon (unix).
    let shim = hosts.shim(&[hosts.shim_hosts()[0].clone(), local_host]);
    wait_up(&shim, 2).await;
    let script = format!(
        "yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | tr -d '\\n' | head -c {}",
        *CONSOLE_BYTES
    );
    let mut sessions = Vec::new();
    for (name, sandbox, client) in [&targets[0], &targets[3]] {
        let s = new_session(client, sandbox, &script).await;
        match client
            .request(Request::SessionWait { key: s.id.clone() })
            .await
        {
            Ok(Reply::Session(_)) => {}
            other => panic!("{name}: sessions wait failed: {other:?}"),
        }
        let log = std::fs::read(s.pane_dir.join(OUTPUT_LOG)).expect("the session's output.log");
        assert_eq!(log.len() as u64, *CONSOLE_BYTES, "{name}: output.log");
        sessions.push((name.clone(), s.id, fnv(FNV_START, &log)));
    }
    assert_eq!(
        sessions[0].2, sessions[1].2,
        "both sessions printed the same bytes"
    );
    eprintln!(
        "console replays: {} bytes, {} times each, remote and local alternating",
        *CONSOLE_BYTES, *CONSOLE_REPS
    );
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new()];
    for _ in 0..*CONSOLE_REPS {
        for (i, (name, id, print)) in sessions.iter().enumerate() {
            let start = Instant::now();
            let mut ws = console_ws::open(
                &shim,
                &format!("/api/v1/hosts/{name}/sessions/{id}/console?from=0"),
            )
            .await;
            let (bytes, got, reason) = tokio::time::timeout(RUN_TIMEOUT, drain(&mut ws))
                .await
                .unwrap_or_else(|_| panic!("{name}: the replay took over {RUN_TIMEOUT:?}"));
            times[i].push(start.elapsed());
            assert_eq!(bytes, *CONSOLE_BYTES, "{name}: every byte");
            assert_eq!(got, *print, "{name}: the bytes of output.log");
            assert_eq!(reason, "exited 0", "{name}: closed with the status");
        }
    }
    let mb = *CONSOLE_BYTES as f64 / 1e6;
    let mut console = format!(
        "| console replay of {mb:.0} MB through the shim (`?from=0` to the close) | runs | median | MB/s at the median | min | max |\n| --- | ---: | ---: | ---: | ---: | ---: |\n"
    );
    let mut medians = Vec::new();
    for (label, samples) in [
        ("a session on a remote host (ssh://)", &times[0]),
        ("a session on the local daemon (unix://)", &times[1]),
    ] {
        let l = Latency::new(samples.clone());
        medians.push(l.median());
        console.push_str(&format!(
            "| {label} | {} | {} | {:.1} | {} | {} |\n",
            l.len(),
            fmt_duration(l.median()),
            mb / l.median().as_secs_f64(),
            fmt_duration(l.min()),
            fmt_duration(l.max()),
        ));
    }
    console.push_str(&format!(
        "\nRemote over local, median time: {:.2}x\n",
        medians[0].as_secs_f64() / medians[1].as_secs_f64()
    ));
    (events, console)
}

/// Waits until the shim says its `n` hosts are up.
async fn wait_up(shim: &Http, n: usize) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let list: serde_json::Value = http
            .get(shim.url("/api/v1/hosts"))
            .bearer_auth(&shim.token)
            .send()
            .await
            .expect("GET /api/v1/hosts")
            .json()
            .await
            .expect("a JSON host list");
        let up = list
            .as_array()
            .is_some_and(|l| l.len() == n && l.iter().all(|h| h["state"] == "up"));
        if up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the shim's hosts were not up within {RUN_TIMEOUT:?}: {list}\n{}",
            shim.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a reader task saw: `(host, spec_id, when it arrived)` of every `TaskCreated`, and the
/// task (aborted before its shim or daemon goes away).
type Arrivals = (
    mpsc::UnboundedReceiver<(String, String, Instant)>,
    tokio::task::JoinHandle<()>,
);

/// Every `TaskCreated` on the shim's merged stream, stamped by a reader task as it is read.
async fn arrivals(shim: &Http) -> Arrivals {
    let mut reader = SseReader::open(shim, None).await;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let event = reader.next().await;
            let now = Instant::now();
            if let Some(spec) = event.data["kind"]["TaskCreated"]["spec_id"].as_str()
                && tx
                    .send((event.host().to_string(), spec.to_string(), now))
                    .is_err()
            {
                return;
            }
        }
    });
    (rx, task)
}

/// `(spec_id, when it arrived)` of every `TaskCreated` on a subscription of `client`'s
/// daemon, stamped by a reader task.
async fn direct_arrivals(client: &Client) -> Arrivals {
    let mut sub = client
        .subscribe(Request::SubscribeEvents { after: None })
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(item) = sub.next().await {
            let now = Instant::now();
            if let StreamItem::Event(Event {
                kind: EventKind::TaskCreated { spec_id, .. },
                ..
            }) = item
                && tx.send((String::new(), spec_id, now)).is_err()
            {
                return;
            }
        }
    });
    (rx, task)
}

/// Creates task `spec` on `host`'s daemon through `client`.
async fn create(client: &Client, host: &str, spec: &str) {
    let reply = client
        .request(Request::TaskCreate(TaskCreate {
            project: "demo".into(),
            spec_id: spec.into(),
            title: None,
            agent: None,
        }))
        .await;
    assert!(
        matches!(reply, Ok(Reply::Task(_))),
        "{host}: TaskCreate: {reply:?}"
    );
}

/// When `spec`'s `TaskCreated` arrived on `stream` (from `host`, for a shim's stream; a
/// daemon's own subscription names no host).
async fn arrival(
    stream: &mut mpsc::UnboundedReceiver<(String, String, Instant)>,
    host: &str,
    spec: &str,
) -> Instant {
    loop {
        let (from, created, at) = tokio::time::timeout(RUN_TIMEOUT, stream.recv())
            .await
            .unwrap_or_else(|_| panic!("{host}: no TaskCreated {spec} within {RUN_TIMEOUT:?}"))
            .expect("the event stream ended");
        if (from.is_empty() || from == host) && created == spec {
            return at;
        }
    }
}
