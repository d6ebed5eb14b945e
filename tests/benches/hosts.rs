//! Issue 18's transport figures, measured in one run on hosts in network namespaces
//! (`aifactory_tests::hosts`: a real sshd and daemon per host, over a veth link):
//!
//! 1. `aifactoryctl status` round trip, interleaved run by run: against the local socket of a
//!    daemon of the same build; `--host ssh://…` with the multiplexed master up; `--host
//!    ssh://…` with no master (the master is ended with `ssh -O exit` before each run, so each
//!    run pays a whole ssh login and leaves a new master behind);
//! 2. 100 `status` commands in a row over one master: the total, and sshd's login count after
//!    them (one).
//!
//! Needs root and openssh-server (skips otherwise). Run with `cargo build --release
//! --workspace --bins && cargo bench -p aifactory-tests --bench hosts`.

use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aifactory_tests::bench::{
    Latency, RunClock, checked, fmt_duration, print_report, sized, time_run, warn_if_stale,
};
use aifactory_tests::hosts::Hosts;
use aifactory_tests::{Sandbox, skip};

/// Timed runs per series, interleaved, after [`WARMUP`] untimed ones each.
static RUNS: LazyLock<usize> = LazyLock::new(|| sized(100, 3));
static WARMUP: LazyLock<usize> = LazyLock::new(|| sized(5, 1));
/// Commands in a row over one master.
static IN_A_ROW: LazyLock<usize> = LazyLock::new(|| sized(100, 5));

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd", "aifactoryctl"]);
    let hosts = match Hosts::start(1, "") {
        Ok(hosts) => hosts,
        Err(why) => {
            skip("hosts bench", &why);
            println!("hosts bench skipped: {why}");
            return;
        }
    };
    let host = &hosts.hosts[0];
    let local = Sandbox::new();
    let _local_daemon = local.daemon().start();

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
        let l = Latency::new(samples);
        table.push_str(&format!(
            "| {label} | {} | {} | {} | {} | {} |\n",
            l.len(),
            fmt_duration(l.median()),
            fmt_duration(l.p99()),
            fmt_duration(l.min()),
            fmt_duration(l.max()),
        ));
    }
    let row = format!(
        "| commands in a row over one master | total | per command | sshd logins |\n| ---: | ---: | ---: | ---: |\n| {} | {} | {} | {logins} |\n",
        *IN_A_ROW,
        fmt_duration(in_a_row),
        fmt_duration(in_a_row / *IN_A_ROW as u32),
    );
    print_report(&clock.summary(None), &[table, row]);
}
