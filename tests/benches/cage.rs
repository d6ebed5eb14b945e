//! Issue 16's figure: what the cage costs a task's start, measured against the release
//! binaries in one run. Two agent profiles run the same program, an agent that appends
//! `progress: 1` to its progress file and then sleeps; `caged` is confined (Landlock, every
//! rule the daemon builds for a task: worktree, git dirs, its own home, cache and tmp, the
//! system, PATH, the project) and `open` has `sandbox = "off"`. Each sample creates a task
//! (untimed: the worktree), then times from just before the `TaskStart` request until the
//! subscribed client holds that task's `TaskProgress` event, that is until the agent's
//! program has run. The daemon's planning of the cage (its directories and rules), the
//! monitor's spawn, the stub's Landlock calls and the exec are all inside. The task is then
//! stopped (untimed). The two kinds alternate, who goes first switching at each
//! pair, so both see the same machine.
//!
//! Run with `cargo build --release -p aifactoryd -p aifactoryctl && cargo bench -p aifactory-tests
//! --bench cage` (or through `tests/bench/run-all cage`). About a minute.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aifactory_common::protocol::{EventKind, Request, StreamItem};
use aifactory_common::{Client, Subscription};
use aifactory_tests::bench::{
    Latency, RunClock, create_task, fmt_duration, loadavg, print_report, sized, start_task,
    stop_task, warn_if_stale,
};
use aifactory_tests::git::committed_repo;
use aifactory_tests::{Daemon, Sandbox};

/// Timed starts of each kind.
static STARTS: LazyLock<usize> = LazyLock::new(|| sized(100, 2));
/// Untimed starts of each kind first.
static WARMUP: LazyLock<usize> = LazyLock::new(|| sized(5, 1));
/// A liveness bound for one start on a loaded machine, not a speed target.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The agent: says it ran through its progress file, then waits to be stopped.
const AGENT: &str = r#"echo "progress: 1" >> "$AIFACTORY_PROGRESS_FILE"; exec sleep 1000"#;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Caged,
    Open,
}

impl Kind {
    fn agent(self) -> &'static str {
        match self {
            Kind::Caged => "caged",
            Kind::Open => "open",
        }
    }
}

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd", "aifactoryctl"]);
    let sandbox = Sandbox::new();
    sandbox.write_config(&format!(
        "default_agent = \"open\"\n\
         [agents.caged]\nkind = \"custom\"\ncommand = [\"sh\", \"-c\", {AGENT:?}]\nsandbox = \"required\"\n\
         [agents.open]\nkind = \"custom\"\ncommand = [\"sh\", \"-c\", {AGENT:?}]\nsandbox = \"off\"\n"
    ));
    let daemon = sandbox.daemon().start();
    let repo = committed_repo(&sandbox.path().join("demo"));
    sandbox
        .ctl(&[
            "projects",
            "add",
            repo.to_str().expect("a UTF-8 sandbox path"),
            "--name",
            "demo",
        ])
        .assert_ok();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (caged, open) = runtime.block_on(measure(&daemon));
    assert!(
        daemon.logs().contains("confined by Landlock ABI"),
        "the caged starts were not confined: {}",
        daemon.logs()
    );
    let load = loadavg();
    print_report(&clock.summary(Some(&load)), &[table(&caged, &open)]);
}

async fn measure(daemon: &Daemon) -> (Latency, Latency) {
    let client = daemon.client().await;
    let mut sub = client
        .subscribe(Request::SubscribeEvents { after: None })
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let (mut caged, mut open) = (Vec::new(), Vec::new());
    let mut n = 0;
    for round in 0..*WARMUP + *STARTS {
        let order = if round % 2 == 0 {
            [Kind::Caged, Kind::Open]
        } else {
            [Kind::Open, Kind::Caged]
        };
        for kind in order {
            n += 1;
            let took = start_once(daemon, &client, &mut sub, kind, n).await;
            if round >= *WARMUP {
                match kind {
                    Kind::Caged => caged.push(took),
                    Kind::Open => open.push(took),
                }
            }
        }
        if round % 10 == 0 {
            eprintln!("cage bench: round {} of {}", round + 1, *WARMUP + *STARTS);
        }
    }
    (Latency::new(caged), Latency::new(open))
}

/// Creates a task of `kind`, times its start until its agent's progress event, stops it.
async fn start_once(
    daemon: &Daemon,
    client: &Client,
    sub: &mut Subscription,
    kind: Kind,
    n: usize,
) -> Duration {
    let spec = format!("{n:03}-{}", kind.agent());
    let task = create_task(daemon, client, &spec, kind.agent()).await;
    let start = Instant::now();
    start_task(daemon, client, &task.id).await;
    wait_progress(daemon, sub, &task.id).await;
    let took = start.elapsed();
    stop_task(daemon, client, &task.id).await;
    took
}

/// Until the subscribed client has task `id`'s first `TaskProgress` event.
async fn wait_progress(daemon: &Daemon, sub: &mut Subscription, id: &str) {
    loop {
        let item = tokio::time::timeout(START_TIMEOUT, sub.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "task {id}: no progress event within {START_TIMEOUT:?}:\n{}",
                    daemon.logs()
                )
            })
            .unwrap_or_else(|| panic!("the event stream ended:\n{}", daemon.logs()));
        match item {
            StreamItem::Lagged { missed } => panic!("the subscription fell behind by {missed}"),
            StreamItem::Event(event) => {
                if let EventKind::TaskProgress { task_id, .. } = &event.kind
                    && task_id == id
                {
                    return;
                }
            }
            _ => {}
        }
    }
}

fn table(caged: &Latency, open: &Latency) -> String {
    let row = |name: &str, l: &Latency| {
        format!(
            "| {name} | {} | {} | {} | {} | {} |\n",
            l.len(),
            fmt_duration(l.median()),
            fmt_duration(l.p99()),
            fmt_duration(l.min()),
            fmt_duration(l.max()),
        )
    };
    let diff_ms = caged.median().as_secs_f64() * 1e3 - open.median().as_secs_f64() * 1e3;
    format!(
        "Task start until its agent has run (TaskStart request → the agent's first TaskProgress event), alternating:\n\n\
         | agent profile | starts | median | p99 | min | max |\n\
         |---|---|---|---|---|---|\n\
         {}{}\n\
         Caged / open (medians): {:.2}× ({diff_ms:+.1} ms per start).\n",
        row("caged (Landlock, sandbox = \"required\")", caged),
        row("open (sandbox = \"off\")", open),
        caged.median().as_secs_f64() / open.median().as_secs_f64(),
    )
}
