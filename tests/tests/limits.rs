//! Each task's agent in a cgroup of its own (issue 16, the limits half), on the real kernel and
//! the daemon run as the tests run it (no systemd: its own cgroup, which root may write): a
//! memory hog is killed at its profile's `memory_max` and reported as `oom` with its peak while
//! a neighbour task runs on; a fork bomb stops at `tasks_max` while the daemon answers `status`
//! at once; a stop leaves no process of the task's cgroup and removes it; the accounting is on
//! `tasks show`; `cpu_max` holds a spinning agent to its share of a CPU; the doctor reports each working task's cage and limits. A daemon that may make
//! no cgroup says so in status, in each start and in the doctor. The same under the packaged
//! units and systemd is `systemd_e2e.rs`'s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aifactory_tests::git::committed_repo;
use aifactory_tests::limit_profiles::agent_profiles;
use aifactory_tests::wait::wait_for;
use aifactory_tests::{Daemon, Sandbox, chown_tree, is_root, skip};

const MIB: u64 = 1 << 20;

/// Whether this daemon gives tasks cgroups; the reason to skip when it does not.
fn limits_available(name: &str, sandbox: &Sandbox) -> bool {
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    if status["limits_available"] == true {
        return true;
    }
    skip(
        name,
        &format!(
            "this daemon gives tasks no cgroups here ({}): the limits tests need root or a delegated cgroup",
            status["limits"]
        ),
    );
    false
}

/// Profiles `idle` (the default), `hog`, `spin` and `bomb`.
fn config(sandbox: &Sandbox) {
    sandbox.write_config(&format!(
        "default_agent = \"idle\"\n[limits]\ntasks_max = 64\n{}",
        agent_profiles(7771, 7772)
    ));
}

/// Starts this file's daemon in `sandbox` with project `demo`; `None` (the test skipped)
/// when it gives tasks no cgroups here.
fn limited_daemon(name: &str, sandbox: &Sandbox) -> Option<Daemon> {
    config(sandbox);
    let daemon = sandbox.daemon().start();
    if !limits_available(name, sandbox) {
        return None;
    }
    sandbox.add_project("demo");
    Some(daemon)
}

/// Creates task `spec` of project `demo` with profile `agent` and starts it; its id.
fn start(sandbox: &Sandbox, spec: &str, agent: &str) -> String {
    let id = sandbox.create_task("demo", spec, &["--agent", agent]);
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    id
}

/// The doctor's `task-sandbox` check (the shim is not asked: nothing listens on port 9).
fn task_sandbox_check(sandbox: &Sandbox) -> serde_json::Value {
    let doctor = sandbox
        .ctl(&["doctor", "--json", "--http", "127.0.0.1:9"])
        .json();
    doctor
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "task-sandbox"))
        .unwrap_or_else(|| panic!("no task-sandbox check: {doctor:#}"))
        .clone()
}

fn wait_task(
    sandbox: &Sandbox,
    id: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(
        &format!("task {id}: {what}"),
        Duration::from_secs(60),
        || {
            let task = sandbox.show_task(id);
            if done(&task) {
                Ok(task)
            } else {
                Err(format!("{task:#}"))
            }
        },
    )
}

/// The pid of the program of task `task`'s session.
fn agent_pid(sandbox: &Sandbox, task: &serde_json::Value) -> u32 {
    let sid = task["session_id"].as_str().expect("a session");
    let session = sandbox
        .ctl(&["sessions", "show", sid, "--json"])
        .assert_ok()
        .json();
    session["pid"].as_u64().expect("the session's pid") as u32
}

/// The directories of `pid`'s cgroups that hold `needle`, on this machine's cgroup mounts.
fn cgroup_dirs(pid: u32, needle: &str) -> Vec<PathBuf> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    own.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let point = mounts.lines().find_map(|m| {
                let (left, right) = m.split_once(" - ")?;
                let point = left.split_whitespace().nth(4)?;
                let mut r = right.split_whitespace();
                let (fstype, _, options) = (r.next()?, r.next()?, r.next()?);
                let fits = match controllers {
                    "" => fstype == "cgroup2",
                    list => {
                        fstype == "cgroup"
                            && list.split(',').all(|c| options.split(',').any(|o| o == c))
                    }
                };
                fits.then(|| point.to_string())
            })?;
            Some(PathBuf::from(point).join(path.trim_start_matches('/')))
        })
        .collect()
}

/// Python processes whose command line has `marker` (not the pane monitor that carries it).
fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.starts_with(b"python3\0") && String::from_utf8_lossy(&c).contains(marker)
            })
        })
        .collect()
}

#[test]
fn a_memory_hog_is_killed_at_memory_max_and_reported_as_oom_while_its_neighbour_runs_on() {
    const NAME: &str =
        "a_memory_hog_is_killed_at_memory_max_and_reported_as_oom_while_its_neighbour_runs_on";
    let sandbox = Sandbox::new();
    let Some(_daemon) = limited_daemon(NAME, &sandbox) else {
        return;
    };
    let neighbour = start(&sandbox, "001-idle", "idle");
    let running = wait_task(&sandbox, &neighbour, "its agent runs in its cgroup", |t| {
        t["resources"]["processes"].as_u64() >= Some(1)
    });
    // The agent's process is in a cgroup named after its task.
    let pid = agent_pid(&sandbox, &running);
    assert!(
        !cgroup_dirs(pid, &format!("task-{neighbour}")).is_empty(),
        "{}",
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
    );

    let hog = start(&sandbox, "002-hog", "hog");
    let failed = wait_task(&sandbox, &hog, "failed", |t| t["phase"] == "failed");
    assert_eq!(failed["failure"]["kind"], "oom", "{failed:#}");
    let message = failed["failure"]["message"].as_str().unwrap();
    assert!(message.contains("memory_max = 64 MiB"), "{message}");
    let used = &failed["resources"];
    assert!(used["oom_kills"].as_u64() >= Some(1), "{used:#}");
    assert_eq!(used["memory_max"], 64 * MIB);
    let peak = used["memory_peak_bytes"].as_u64().expect("a peak");
    assert!(
        (48 * MIB..=64 * MIB).contains(&peak),
        "peak {peak}: {used:#}"
    );
    assert!(used["cpu_usec"].as_u64() > Some(0), "{used:#}");
    let show = sandbox
        .ctl(&["tasks", "show", &hog])
        .assert_ok()
        .stdout
        .clone();
    assert!(
        show.contains("1 OOM kill(s)") && show.contains("of 64M"),
        "{show}"
    );

    // The doctor reports each working task's cage and limits.
    let check = task_sandbox_check(&sandbox);
    let message = check["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&neighbour) && message.contains("limits: tasks_max = 64"),
        "{check:#}"
    );

    // The neighbour and the daemon are untouched.
    let neighbour_now = sandbox.show_task(&neighbour);
    assert_eq!(neighbour_now["phase"], "planning", "{neighbour_now:#}");
    assert_eq!(agent_pid(&sandbox, &neighbour_now), pid);
    sandbox.ctl(&["status"]).assert_ok();
    sandbox.ctl(&["tasks", "stop", &neighbour]).assert_ok();
}

#[test]
fn a_fork_bomb_stops_at_tasks_max_and_a_stop_leaves_nothing_of_its_cgroup() {
    const NAME: &str = "a_fork_bomb_stops_at_tasks_max_and_a_stop_leaves_nothing_of_its_cgroup";
    let sandbox = Sandbox::new();
    let Some(_daemon) = limited_daemon(NAME, &sandbox) else {
        return;
    };
    let bomb = start(&sandbox, "001-bomb", "bomb");
    let full = wait_task(&sandbox, &bomb, "at tasks_max", |t| {
        t["resources"]["processes"].as_u64() == Some(40)
    });
    assert_eq!(full["resources"]["tasks_max"], 40);
    let pid = agent_pid(&sandbox, &full);
    let dirs = cgroup_dirs(pid, &format!("task-{bomb}"));
    assert!(!dirs.is_empty());

    // While the bomb keeps trying, the daemon answers at once (the bound: 100 ms).
    let mut took: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            sandbox.ctl(&["status", "--json"]).assert_ok();
            start.elapsed()
        })
        .collect();
    took.sort();
    assert!(
        took[2] < Duration::from_millis(100),
        "status took {took:?} during the fork bomb"
    );
    assert!(processes_with("bomb7772").len() <= 40);

    let stopped = sandbox
        .ctl(&["tasks", "stop", &bomb, "--json"])
        .assert_ok()
        .json();
    assert_eq!(stopped["survivors"], serde_json::json!([]), "{stopped:#}");
    assert_eq!(processes_with("bomb7772"), Vec::<u32>::new());
    for dir in &dirs {
        assert!(!dir.exists(), "{} is left after the stop", dir.display());
    }
    let after = sandbox.show_task(&bomb);
    assert_eq!(after["phase"], "stopped");
    assert!(
        after["resources"]["cpu_usec"].as_u64() > Some(0),
        "{after:#}"
    );
}

#[test]
fn without_a_writable_cgroup_the_limits_are_reported_unavailable_never_ignored() {
    let sandbox = Sandbox::new();
    config(&sandbox);
    let repo = committed_repo(&sandbox.path().join("demo"));
    // Root may write its own cgroup: as nobody, the daemon may not (as any other user too).
    let _daemon = if is_root() {
        sandbox.open_to_others();
        chown_tree(sandbox.path(), 65534, 65534);
        sandbox.daemon().as_user(65534, 65534).start()
    } else {
        sandbox.daemon().start()
    };
    let status = sandbox.ctl(&["status", "--json"]).assert_ok().json();
    assert_eq!(status["limits_available"], false, "{status:#}");
    let why = status["limits"].as_str().unwrap_or_default();
    assert!(why.starts_with("unavailable: "), "{why}");
    let text = sandbox.ctl(&["status"]).assert_ok().stdout.clone();
    assert!(text.contains(&format!("limits       {why}")), "{text}");

    // A task still runs, and its start, its record and the doctor say it has no limits.
    sandbox
        .ctl(&["projects", "add", repo.to_str().unwrap(), "--name", "demo"])
        .assert_ok();
    let id = start(&sandbox, "001-idle", "idle");
    let task = sandbox.show_task(&id);
    assert_eq!(task["resources"], serde_json::Value::Null, "{task:#}");
    let confinement = task["confinement"].as_str().unwrap_or_default();
    assert!(
        confinement.contains(&format!(
            "limits: unavailable ({})",
            &why["unavailable: ".len()..]
        )),
        "{confinement}"
    );
    let check = task_sandbox_check(&sandbox);
    assert_eq!(check["status"], "warn", "{check:#}");
    assert!(
        check["message"].as_str().unwrap_or_default().contains(&id),
        "{check:#}"
    );
    sandbox.ctl(&["tasks", "stop", &id]).assert_ok();
}

#[test]
fn cpu_max_holds_a_busy_agent_to_its_share_of_a_cpu() {
    const NAME: &str = "cpu_max_holds_a_busy_agent_to_its_share_of_a_cpu";
    let sandbox = Sandbox::new();
    let Some(_daemon) = limited_daemon(NAME, &sandbox) else {
        return;
    };
    let spin = start(&sandbox, "001-spin", "spin");
    let done = wait_task(&sandbox, &spin, "done", |t| t["phase"] == "done");
    // 2 s of wall time spinning at cpu_max = 20%: 0.4 s of CPU, and never much more whatever
    // the machine's load (one period of 100 ms and the interpreter's start as slack).
    let cpu = done["resources"]["cpu_usec"].as_u64().expect("CPU time");
    assert!(
        (100_000..=700_000).contains(&cpu),
        "{cpu} µs of CPU in 2 s at cpu_max = 20%: {done:#}"
    );
}
