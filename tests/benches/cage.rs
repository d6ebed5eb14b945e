//! Issue 16's figure: what confinement costs a task's start, measured against the release
//! binaries in one run. Three kinds of start run the same program, an agent that appends
//! `progress: 1` to its progress file and then sleeps:
//! - `caged`: Landlock (every rule the daemon builds for a task: worktree, git dirs, its own
//!   home, cache and tmp, the system, PATH, the project) and the task's own cgroup with its
//!   limits (`memory_max`, `tasks_max`), from a daemon run as root, which may make cgroups;
//! - `open`: the same daemon, `sandbox = "off"`: the cgroup without the cage;
//! - `bare`: `sandbox = "off"` from a second daemon run as nobody, which may make no cgroup:
//!   neither.
//!
//! Each sample creates a task (untimed: the worktree), then times from just before the
//! `TaskStart` request until the subscribed client holds that task's `TaskProgress` event,
//! that is until the agent's program has run. The daemon's planning of the cage (its
//! directories and rules) and the making of the cgroup, the monitor's spawn, the move into
//! the cgroup, the stub's Landlock calls and the exec are all inside. The task is then stopped
//! (untimed). The kinds take turns, who goes first rotating each round, so all see the same
//! machine.
//!
//! Run with `cargo build --release -p aifactoryd -p aifactoryctl && cargo bench -p aifactory-tests
//! --bench cage` (or through `tests/bench/run-all cage`). About a minute.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aifactory_common::protocol::{EventKind, Request, StreamItem};
use aifactory_common::{Client, Subscription};
use aifactory_tests::bench::{
    Latency, RunClock, create_task, loadavg, print_report, sized, start_task, stop_task,
    warn_if_stale,
};
use aifactory_tests::git::committed_repo;
use aifactory_tests::{Daemon, Sandbox, chown_tree};

/// Timed starts of each kind.
static STARTS: LazyLock<usize> = LazyLock::new(|| sized(100, 2));
/// Untimed starts of each kind first.
static WARMUP: LazyLock<usize> = LazyLock::new(|| sized(5, 1));
/// A liveness bound for one start on a loaded machine, not a speed target.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The agent: says it ran through its progress file, then waits to be stopped.
const AGENT: &str = r#"echo "progress: 1" >> "$AIFACTORY_PROGRESS_FILE"; exec sleep 1000"#;

/// The uid and gid of the second daemon, which may make no cgroup.
const NOBODY: u32 = 65534;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Caged,
    Open,
    Bare,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Caged, Kind::Open, Kind::Bare];

    fn agent(self) -> &'static str {
        match self {
            Kind::Caged => "caged",
            Kind::Open | Kind::Bare => "open",
        }
    }
}

/// A daemon, and its client subscribed to its events.
struct Target<'a> {
    daemon: &'a Daemon,
    client: Client,
    sub: Subscription,
}

impl<'a> Target<'a> {
    async fn new(daemon: &'a Daemon) -> Target<'a> {
        let client = daemon.client().await;
        let sub = client
            .subscribe(Request::SubscribeEvents { after: None })
            .await
            .unwrap_or_else(|e| panic!("subscribe: {e}"));
        Target {
            daemon,
            client,
            sub,
        }
    }
}

/// A sandbox with the agent profiles and project `demo`, its daemon started (as `user`).
fn start(sandbox: &Sandbox, user: Option<(u32, u32)>) -> Daemon {
    sandbox.write_config(&format!(
        "default_agent = \"open\"\n\
         [limits]\nmemory_max = \"1G\"\ntasks_max = 512\n\
         [agents.caged]\nkind = \"custom\"\ncommand = [\"sh\", \"-c\", {AGENT:?}]\nsandbox = \"required\"\n\
         [agents.open]\nkind = \"custom\"\ncommand = [\"sh\", \"-c\", {AGENT:?}]\nsandbox = \"off\"\n"
    ));
    let repo = committed_repo(&sandbox.path().join("demo"));
    let daemon = match user {
        Some((uid, gid)) => {
            sandbox.open_to_others();
            chown_tree(sandbox.path(), uid, gid);
            sandbox.daemon().as_user(uid, gid).start()
        }
        None => sandbox.daemon().start(),
    };
    sandbox
        .ctl(&[
            "projects",
            "add",
            repo.to_str().expect("a UTF-8 sandbox path"),
            "--name",
            "demo",
        ])
        .assert_ok();
    daemon
}

fn limits_available(sandbox: &Sandbox) -> bool {
    sandbox.ctl(&["status", "--json"]).assert_ok().json()["limits_available"] == true
}

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd", "aifactoryctl"]);
    let sandbox = Sandbox::new();
    let daemon = start(&sandbox, None);
    let bare_sandbox = Sandbox::new();
    let bare = start(&bare_sandbox, Some((NOBODY, NOBODY)));
    assert!(
        limits_available(&sandbox),
        "the root daemon makes no cgroups here, so `caged` and `open` would not have one: {}",
        sandbox.ctl(&["status"]).assert_ok().stdout
    );
    assert!(
        !limits_available(&bare_sandbox),
        "the daemon run as nobody makes cgroups here, so `bare` would have one"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let [caged, open, bare_starts] = runtime.block_on(measure(&daemon, &bare));
    assert!(
        daemon.logs().contains("confined by Landlock ABI"),
        "the caged starts were not confined: {}",
        daemon.logs()
    );
    let load = loadavg();
    print_report(
        &clock.summary(Some(&load)),
        &[table(&caged, &open, &bare_starts)],
    );
}

async fn measure(daemon: &Daemon, bare: &Daemon) -> [Latency; 3] {
    let mut root = Target::new(daemon).await;
    let mut nobody = Target::new(bare).await;
    let mut samples: [Vec<Duration>; 3] = Default::default();
    let mut n = 0;
    for round in 0..*WARMUP + *STARTS {
        for i in 0..Kind::ALL.len() {
            let kind = Kind::ALL[(round + i) % Kind::ALL.len()];
            n += 1;
            let target = match kind {
                Kind::Bare => &mut nobody,
                _ => &mut root,
            };
            let took = start_once(target, kind, n).await;
            if round >= *WARMUP {
                samples[kind as usize].push(took);
            }
        }
        if round % 10 == 0 {
            eprintln!("cage bench: round {} of {}", round + 1, *WARMUP + *STARTS);
        }
    }
    samples.map(Latency::new)
}

/// Creates a task of `kind`, times its start until its agent's progress event, stops it.
async fn start_once(target: &mut Target<'_>, kind: Kind, n: usize) -> Duration {
    let Target {
        daemon,
        client,
        sub,
    } = target;
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

fn table(caged: &Latency, open: &Latency, bare: &Latency) -> String {
    let compare = |a: &Latency, b: &Latency| {
        let ms = |l: &Latency| l.median().as_secs_f64() * 1e3;
        format!("{:.2}× ({:+.1} ms per start)", ms(a) / ms(b), ms(a) - ms(b))
    };
    format!(
        "Task start until its agent has run (TaskStart request → the agent's first TaskProgress event), in turns:\n\n\
         | start | starts | median | p99 | min | max |\n\
         |---|---|---|---|---|---|\n\
         {}{}{}\n\
         Medians: caged / bare (all of the confinement) {}; open / bare (the cgroup) {}; caged / open (the cage) {}.\n",
        caged.row("caged (Landlock `required` + its cgroup, limits set)"),
        open.row("open (`sandbox = \"off\"`, its cgroup, limits set)"),
        bare.row("bare (`sandbox = \"off\"`, no cgroup: daemon as nobody)"),
        compare(caged, bare),
        compare(open, bare),
        compare(caged, open),
    )
}
