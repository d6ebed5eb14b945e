//! The daemon's life against real signals, a real socket and a fake `NOTIFY_SOCKET`: start,
//! refusing a second instance, reclaiming a stale socket, reload, connection limits, the
//! handshake timeout, and a clean stop.
//!
//! One file past 600 lines on purpose: it is one feature's end-to-end suite, built as one test
//! binary; what its tests share beyond this file lives in the harness (`tests/src`).

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use aifactory_common::handshake;
use aifactory_common::protocol::{
    ClientFrame, ErrorCode, EventKind, PROTOCOL_VERSION, Request, ServerFrame, StreamItem,
};
use aifactory_common::{Client, Subscription};
use aifactory_tests::notify::Notification;
use aifactory_tests::raw::{RawConn, next_server_frame, send_client_frame};
use aifactory_tests::wait::wait_until_async;
use aifactory_tests::{Daemon, NotifyListener, READY_TIMEOUT, Sandbox};
use nix::sys::signal::Signal;

/// How long a daemon may take to exit once it has decided to.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn has_line(note: &Notification, line: &str) -> bool {
    note.text.lines().any(|l| l == line)
}

fn line_value<'a>(note: &'a Notification, key: &str) -> Option<&'a str> {
    note.text.lines().find_map(|l| l.strip_prefix(key))
}

/// Everything received so far, for failure messages.
fn dump(notes: &[Notification]) -> String {
    notes
        .iter()
        .map(|n| format!("{:?}", n.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects notifications until `done` holds for everything received, or fails.
fn wait_notes(
    notify: &NotifyListener,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[Notification]) -> bool,
) -> Vec<Notification> {
    let deadline = Instant::now() + timeout;
    loop {
        let notes = notify.collect_for(Duration::from_millis(20));
        if done(&notes) {
            return notes;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {timeout:?}; received:\n{}",
            dump(&notes)
        );
    }
}

/// CLOCK_MONOTONIC in microseconds, as systemd's `MONOTONIC_USEC=` counts it.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

async fn next_event(events: &mut Subscription, daemon: &Daemon) -> EventKind {
    match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
        Ok(Some(StreamItem::Event(event))) => event.kind,
        other => panic!(
            "expected an event, got {other:?}; daemon log:\n{}",
            daemon.logs()
        ),
    }
}

/// Waits until the daemon has accepted `n` connections (the connect of a raw peer returns
/// before the daemon's accept).
async fn wait_connections(client: &Client, n: u32) {
    wait_until_async(
        &format!("{n} open connections"),
        Duration::from_secs(5),
        async || client.status().await.unwrap().connections == n,
    )
    .await;
}

fn status_json(sandbox: &Sandbox) -> serde_json::Value {
    sandbox.ctl(&["status", "--json"]).assert_ok().json()
}

/// Sends SIGTERM and waits for a clean exit (status 0); how long it took is printed, not
/// asserted (speed is measured in the benches).
fn sigterm_and_wait(daemon: &mut Daemon) {
    let sent = Instant::now();
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "aifactoryd still runs {EXIT_TIMEOUT:?} after SIGTERM:\n{}",
            daemon.logs()
        )
    });
    let took = sent.elapsed();
    eprintln!("stopped {took:?} after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status}:\n{}", daemon.logs());
}

#[tokio::test]
async fn sigterm_stops_cleanly_without_waiting_for_idle_clients() {
    let sandbox = Sandbox::new();
    let mut daemon = sandbox.daemon().start();
    let idle = daemon.client().await;
    let subscriber = daemon.client().await;
    let mut events = subscriber
        .subscribe(Request::SubscribeEvents { after: None })
        .await
        .unwrap();
    assert_eq!(idle.status().await.unwrap().connections, 2);
    assert!(
        fs::symlink_metadata(&daemon.socket)
            .unwrap()
            .file_type()
            .is_socket()
    );

    sigterm_and_wait(&mut daemon);
    // Idle connections have nothing in flight: they must not hold the stop up to the drain
    // timeout (5 s), which the daemon would log. A condition, not a stopwatch.
    assert!(
        !daemon.logs().contains("did not finish within"),
        "idle connections held the stop up:\n{}",
        daemon.logs()
    );
    assert!(
        !daemon.socket.exists(),
        "the socket file outlived the daemon:\n{}",
        daemon.logs()
    );
    assert!(
        daemon
            .notify
            .wait_for("STOPPING=1", Duration::from_secs(2))
            .is_some(),
        "no STOPPING=1; received:\n{}",
        dump(&daemon.notify.all())
    );
    assert!(daemon.logs().contains("stopped"), "{}", daemon.logs());

    // The subscriber gets the Stopping event (already published when the stream closes),
    // then both clients learn that the connection is gone instead of hanging.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut stopping = 0;
        while let Some(item) = events.next().await {
            match &item {
                StreamItem::Event(event) if event.kind == EventKind::Stopping => stopping += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        stopping
    })
    .await;
    assert_eq!(
        ended,
        Ok(1),
        "the event stream must deliver Stopping once and then end with the daemon"
    );
    assert!(
        idle.status().await.is_err(),
        "a request succeeded after the daemon stopped"
    );
}

#[tokio::test]
async fn sigterm_is_not_held_up_by_a_silent_connection() {
    let sandbox = Sandbox::new();
    let mut daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    // A peer that connected but never says hello: its connection is still in the handshake.
    let mut silent = RawConn::connect(&sandbox.socket()).await;
    wait_connections(&client, 2).await;

    sigterm_and_wait(&mut daemon);
    // The handshake gives way to shutdown: a silent peer does not hold the stop up until its
    // handshake timeout (5 s), which the daemon would log.
    assert!(
        !daemon.logs().contains("sent no handshake within"),
        "a silent connection held the stop up:\n{}",
        daemon.logs()
    );
    assert!(
        !daemon.socket.exists(),
        "the socket file outlived the daemon"
    );
    assert!(
        daemon
            .notify
            .wait_for("STOPPING=1", Duration::from_secs(2))
            .is_some(),
        "no STOPPING=1; received:\n{}",
        dump(&daemon.notify.all())
    );
    // The silent peer got the daemon's hello and then EOF, not a hang.
    let got = tokio::time::timeout(Duration::from_secs(2), silent.read_to_end())
        .await
        .expect("the silent connection was not closed");
    assert_eq!(got, handshake::hello(PROTOCOL_VERSION));
}

#[tokio::test]
async fn second_daemon_on_the_same_socket_refuses_and_names_the_first() {
    let sandbox = Sandbox::new();
    let first = sandbox.daemon().start();
    let mut second = sandbox.daemon().log_name("second").spawn();
    let status = second
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|| panic!("the second daemon did not exit:\n{}", second.logs()));
    let log = second.logs();
    assert_eq!(status.code(), Some(1), "{status}:\n{log}");
    assert!(log.contains("already serves"), "{log}");
    assert!(log.contains(&format!("pid {}", first.pid())), "{log}");
    assert!(
        log.contains(&sandbox.socket().display().to_string()),
        "{log}"
    );
    assert!(
        second.notify.wait_for("READY=1", Duration::ZERO).is_none(),
        "the refused daemon said READY=1"
    );

    // The first one is untouched and still serves.
    let json = status_json(&sandbox);
    assert_eq!(json["pid"], first.pid());
    assert!(
        fs::symlink_metadata(sandbox.socket())
            .unwrap()
            .file_type()
            .is_socket()
    );
}

/// The first daemon holds the socket but cannot answer on it (stopped, as while it is still
/// starting up): the second still names it, from the pid the holder wrote into the lock.
#[tokio::test]
async fn second_daemon_names_a_first_that_does_not_answer() {
    let sandbox = Sandbox::new();
    let first = sandbox.daemon().start();
    first.signal(Signal::SIGSTOP);
    let mut second = sandbox.daemon().log_name("second").spawn();
    let status = second
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|| panic!("the second daemon did not exit:\n{}", second.logs()));
    first.signal(Signal::SIGCONT);
    let log = second.logs();
    assert_eq!(status.code(), Some(1), "{status}:\n{log}");
    assert!(
        log.contains(&format!(
            "another aifactoryd (pid {}) already serves",
            first.pid()
        )),
        "{log}"
    );
    assert!(log.contains(&format!("`kill {}`", first.pid())), "{log}");
    assert_eq!(status_json(&sandbox)["pid"], first.pid());
}

#[tokio::test]
async fn stale_socket_file_is_reclaimed() {
    let sandbox = Sandbox::new();
    drop(std::os::unix::net::UnixListener::bind(sandbox.socket()).unwrap());
    let meta = fs::symlink_metadata(sandbox.socket()).expect("the stale socket file remains");
    assert!(meta.file_type().is_socket());

    let daemon = sandbox.daemon().start();
    assert_eq!(status_json(&sandbox)["pid"], daemon.pid());
    assert!(
        daemon.logs().contains("removed a stale socket"),
        "{}",
        daemon.logs()
    );
}

#[tokio::test]
async fn socket_left_by_a_killed_daemon_is_reclaimed() {
    let sandbox = Sandbox::new();
    let mut killed = sandbox.daemon().log_name("killed").start();
    killed.signal(Signal::SIGKILL);
    killed.wait_exit(EXIT_TIMEOUT).expect("SIGKILL");
    assert!(
        sandbox.socket().exists(),
        "SIGKILL cannot have removed the socket"
    );

    let daemon = sandbox.daemon().start();
    assert_eq!(status_json(&sandbox)["pid"], daemon.pid());
    assert!(
        daemon.logs().contains("removed a stale socket"),
        "{}",
        daemon.logs()
    );
}

#[tokio::test]
async fn live_socket_of_another_program_is_not_stolen() {
    let sandbox = Sandbox::new();
    // Listens but never answers: not an aifactoryd, and it holds no lock.
    let _other = std::os::unix::net::UnixListener::bind(sandbox.socket()).unwrap();
    let mut daemon = sandbox.daemon().spawn();
    let status = daemon
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|| panic!("the daemon did not refuse:\n{}", daemon.logs()));
    let log = daemon.logs();
    assert_eq!(status.code(), Some(1), "{status}:\n{log}");
    assert!(
        log.contains("something that is not this aifactoryd answers"),
        "{log}"
    );
    assert!(
        fs::symlink_metadata(sandbox.socket())
            .unwrap()
            .file_type()
            .is_socket()
    );
}

#[tokio::test]
async fn path_that_is_not_a_socket_is_refused() {
    let sandbox = Sandbox::new();
    fs::write(sandbox.socket(), "precious\n").unwrap();
    let mut daemon = sandbox.daemon().spawn();
    let status = daemon
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|| panic!("the daemon did not refuse:\n{}", daemon.logs()));
    let log = daemon.logs();
    assert_eq!(status.code(), Some(1), "{status}:\n{log}");
    assert!(
        log.contains(&format!(
            "{} exists and is not a socket",
            sandbox.socket().display()
        )),
        "{log}"
    );
    assert_eq!(fs::read_to_string(sandbox.socket()).unwrap(), "precious\n");
    assert!(daemon.notify.wait_for("READY=1", Duration::ZERO).is_none());
}

/// A service manager that stops reading its notify socket fills the socket's small queue; the
/// daemon's sends must not block on it, or its runtime (and every client) stops with them.
#[tokio::test]
async fn a_notify_socket_nobody_reads_never_wedges_the_daemon() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    // Put a socket that is never read where the daemon sends its notifications.
    fs::remove_file(daemon.notify.path()).unwrap();
    let deaf = UnixDatagram::bind(daemon.notify.path()).unwrap();
    // Each reload sends two datagrams (RELOADING=1, READY=1); the kernel queues about ten.
    const RELOADS: usize = 12;
    for done in 1..=RELOADS {
        daemon.signal(Signal::SIGHUP);
        wait_until_async(
            &format!("reload {done} of {RELOADS} logged"),
            Duration::from_secs(20),
            async || daemon.logs().matches("config reloaded").count() >= done,
        )
        .await;
    }
    tokio::time::timeout(Duration::from_secs(10), client.status())
        .await
        .expect("status answers once the notify queue is full")
        .unwrap();
    assert!(
        daemon
            .logs()
            .contains("does not read its notifications (NOTIFY_SOCKET's queue is full)"),
        "{}",
        daemon.logs()
    );
    drop(deaf);
}

#[tokio::test]
async fn notify_ready_reloading_and_stopping() {
    let sandbox = Sandbox::new();
    let mut daemon = sandbox.daemon().start();

    let ready = daemon.notify.wait_for("READY=1", Duration::ZERO).unwrap();
    let status = line_value(&ready, "STATUS=")
        .unwrap_or_else(|| panic!("READY=1 came without STATUS=: {:?}", ready.text));
    assert!(
        status.contains(&sandbox.socket().display().to_string()),
        "{status}"
    );

    // SIGHUP: RELOADING=1 with the monotonic time of the reload, then READY=1 again.
    let before = monotonic_usec();
    let seen = daemon.notify.all().len();
    daemon.signal(Signal::SIGHUP);
    let notes = wait_notes(
        &daemon.notify,
        Duration::from_secs(10),
        "RELOADING=1 then READY=1",
        |notes| {
            notes[seen..]
                .iter()
                .position(|n| has_line(n, "RELOADING=1"))
                .is_some_and(|r| notes[seen + r + 1..].iter().any(|n| has_line(n, "READY=1")))
        },
    );
    let after = monotonic_usec();
    let reloading = notes[seen..]
        .iter()
        .find(|n| has_line(n, "RELOADING=1"))
        .unwrap();
    let usec: u64 = line_value(reloading, "MONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC=: {:?}", reloading.text))
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} is not between {before} and {after}"
    );
    assert!(
        !notes[seen..].iter().any(|n| has_line(n, "STOPPING=1")),
        "{}",
        dump(&notes)
    );
    assert!(
        daemon.try_exit().is_none(),
        "SIGHUP stopped the daemon:\n{}",
        daemon.logs()
    );
    // No watchdog was asked for, so none is pinged.
    assert!(
        !notes.iter().any(|n| has_line(n, "WATCHDOG=1")),
        "{}",
        dump(&notes)
    );

    let seen = notes.len();
    daemon.signal(Signal::SIGTERM);
    assert_eq!(
        daemon.wait_exit(EXIT_TIMEOUT).and_then(|s| s.code()),
        Some(0)
    );
    let notes = wait_notes(
        &daemon.notify,
        Duration::from_secs(5),
        "STOPPING=1",
        |notes| notes[seen..].iter().any(|n| has_line(n, "STOPPING=1")),
    );
    assert!(
        !notes[seen..].iter().any(|n| has_line(n, "READY=1")),
        "READY=1 after SIGTERM: {}",
        dump(&notes)
    );
}

/// Starts a daemon whose `NOTIFY_SOCKET` is watched by a busy loop that sends `signal` the
/// instant `READY=1` arrives, as closely as systemd could; returns the daemon and that socket.
fn signal_on_ready(sandbox: &Sandbox, signal: Signal) -> (Daemon, UnixDatagram) {
    let path = sandbox.path().join("fast.notify");
    let notify = UnixDatagram::bind(&path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let mut daemon = sandbox.daemon().spawn_with(|cmd| {
        cmd.env("NOTIFY_SOCKET", &path);
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        match notify.recv(&mut buf) {
            Ok(n) if buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1") => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(exit) = daemon.try_exit() {
                    panic!("exited ({exit}) before READY=1:\n{}", daemon.logs());
                }
                assert!(Instant::now() < deadline, "no READY=1:\n{}", daemon.logs());
            }
            Err(e) => panic!("notify socket: {e}"),
        }
    }
    daemon.signal(signal);
    notify.set_nonblocking(false).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    (daemon, notify)
}

/// Reads datagrams until one has `line`; false if the daemon exits or 10 s pass first.
fn recv_line(notify: &UnixDatagram, line: &str, daemon: &mut Daemon) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match notify.recv(&mut buf) {
            Ok(n)
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == line) =>
            {
                return true;
            }
            Ok(_) => {}
            // A datagram sent before the exit is still queued, so look once more after it.
            Err(_) if daemon.try_exit().is_some() => {
                return matches!(notify.recv(&mut buf), Ok(n) if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == line));
            }
            Err(_) => {}
        }
    }
    false
}

/// READY=1 tells systemd it may send SIGHUP (reload) or SIGTERM (stop) at once: by then the
/// daemon must handle them, not die of their default action.
#[tokio::test]
async fn signals_sent_right_after_ready_are_handled() {
    for round in 0..8 {
        let sandbox = Sandbox::new();
        let (mut daemon, notify) = signal_on_ready(&sandbox, Signal::SIGHUP);
        assert!(
            recv_line(&notify, "RELOADING=1", &mut daemon),
            "round {round}: no RELOADING=1 after a SIGHUP right after READY=1; exit {:?}:\n{}",
            daemon.try_exit(),
            daemon.logs()
        );
        assert!(recv_line(&notify, "READY=1", &mut daemon), "round {round}");
        assert!(
            daemon.try_exit().is_none(),
            "round {round}: SIGHUP stopped the daemon"
        );
        daemon.signal(Signal::SIGTERM);
        assert_eq!(
            daemon.wait_exit(EXIT_TIMEOUT).and_then(|s| s.code()),
            Some(0)
        );

        let sandbox = Sandbox::new();
        let (mut daemon, notify) = signal_on_ready(&sandbox, Signal::SIGTERM);
        let exit = daemon.wait_exit(EXIT_TIMEOUT).expect("exit after SIGTERM");
        assert_eq!(
            exit.code(),
            Some(0),
            "round {round}: SIGTERM right after READY=1: {exit}:\n{}",
            daemon.logs()
        );
        assert!(
            recv_line(&notify, "STOPPING=1", &mut daemon),
            "round {round}"
        );
        assert!(
            !sandbox.socket().exists(),
            "round {round}: socket left behind"
        );
    }
}

#[tokio::test]
async fn watchdog_is_pinged_at_half_its_interval() {
    const INTERVAL: Duration = Duration::from_millis(200);
    const PINGS: usize = 20;
    let sandbox = Sandbox::new();
    let daemon = sandbox
        .daemon()
        .env("WATCHDOG_USEC", &INTERVAL.as_micros().to_string())
        .start();
    assert!(
        daemon.wait_log("watchdog enabled", Duration::from_secs(5)),
        "{}",
        daemon.logs()
    );
    // The period it chose: half the interval systemd gave it.
    assert!(
        daemon.logs().contains("ping_every_ms=100"),
        "{}",
        daemon.logs()
    );
    // It keeps pinging: a condition, however slow the machine.
    let pings = daemon
        .notify
        .wait_for_count("WATCHDOG=1", PINGS, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("fewer than {PINGS} pings:\n{}", daemon.logs()));
    // And never much faster than that period: 20 pings at 100 ms span 1.9 s, pinging ten
    // times too often 0.19 s. Only a lower bound, a quarter of the ideal span, which a busy
    // machine cannot break (it delays pings, it does not bring them closer).
    let span = pings[PINGS - 1].at - pings[0].at;
    assert!(
        span >= INTERVAL / 2 * (PINGS as u32 - 1) / 4,
        "{PINGS} pings within {span:?}"
    );
}

/// The test hook the systemd suite uses to wedge the daemon (`aifactoryd-hooked` only): after
/// SIGUSR2 no worker runs any more, so the watchdog pings stop and nobody is served.
#[tokio::test]
async fn the_wedge_hook_stops_the_watchdog_pings() {
    const INTERVAL: Duration = Duration::from_millis(200);
    let sandbox = Sandbox::new();
    let mut daemon = sandbox
        .daemon()
        .hooked()
        .env("WATCHDOG_USEC", &INTERVAL.as_micros().to_string())
        .start();
    assert!(
        daemon
            .notify
            .wait_for("WATCHDOG=1", Duration::from_secs(5))
            .is_some(),
        "{}",
        daemon.logs()
    );
    daemon.signal(Signal::SIGUSR2);
    assert!(
        daemon.wait_log("wedging every runtime worker", Duration::from_secs(5)),
        "{}",
        daemon.logs()
    );
    // A ping already on its way may still arrive just after the log line.
    let wedged = Instant::now() + INTERVAL;
    let notes = daemon.notify.collect_for(INTERVAL * 10);
    let late: Vec<&Notification> = notes
        .iter()
        .filter(|n| has_line(n, "WATCHDOG=1") && n.at > wedged)
        .collect();
    assert!(late.is_empty(), "pings after the wedge: {late:?}");
    let mut opts = daemon.client_options();
    opts.handshake_timeout = Duration::from_secs(1);
    assert!(
        Client::connect(&opts).await.is_err(),
        "a wedged daemon completed a handshake"
    );
    assert!(
        daemon.try_exit().is_none(),
        "the wedge must not end the daemon"
    );
}

#[tokio::test]
async fn sighup_applies_a_valid_config_and_rejects_an_invalid_one() {
    let sandbox = Sandbox::new();
    sandbox.write_config("max_connections = 5\n");
    let daemon = sandbox.daemon().start();
    assert_eq!(status_json(&sandbox)["max_connections"], 5);
    let client = daemon.client().await;
    let mut events = client
        .subscribe(Request::SubscribeEvents { after: None })
        .await
        .unwrap();

    sandbox.write_config("max_connections = 7\n");
    daemon.signal(Signal::SIGHUP);
    assert_eq!(
        next_event(&mut events, &daemon).await,
        EventKind::ConfigReloaded
    );
    assert_eq!(status_json(&sandbox)["max_connections"], 7);
    assert!(
        daemon.logs().contains("config reloaded"),
        "{}",
        daemon.logs()
    );

    // An unknown key rejects the whole file: max_connections = 9 must not leak through.
    sandbox.write_config("max_connections = 9\nmax_clients = 9\n");
    daemon.signal(Signal::SIGHUP);
    match next_event(&mut events, &daemon).await {
        EventKind::ConfigRejected { reason } => {
            assert!(reason.contains("max_clients"), "{reason}");
            assert!(
                reason.contains(&sandbox.config_file().display().to_string()),
                "{reason}"
            );
        }
        other => panic!("expected ConfigRejected, got {other:?}"),
    }
    let mut daemon = daemon;
    assert!(
        daemon.try_exit().is_none(),
        "a bad config stopped the daemon:\n{}",
        daemon.logs()
    );
    assert_eq!(status_json(&sandbox)["max_connections"], 7);
    let log = daemon.logs();
    // The entry may span lines (the TOML error quotes the file), so look at what follows it.
    let at = log
        .find("config reload rejected")
        .unwrap_or_else(|| panic!("no rejection in the log:\n{log}"));
    assert!(log[at..].contains("max_clients"), "{log}");
}

#[tokio::test]
async fn connection_limit_refuses_the_extra_client_until_one_leaves() {
    let sandbox = Sandbox::new();
    sandbox.write_config("max_connections = 3\n");
    let daemon = sandbox.daemon().start();
    let mut held: Vec<Client> = Vec::new();
    for _ in 0..3 {
        let client = daemon.client().await;
        client
            .status()
            .await
            .expect("a client within the limit is served");
        held.push(client);
    }
    assert_eq!(held[0].status().await.unwrap().connections, 3);

    // Several times: the refusal must reach the client every time, not sometimes lose to a
    // "broken pipe" as its request meets the closing socket.
    for _ in 0..5 {
        let out = sandbox.ctl(&["status"]);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(out.stderr.contains("limit of 3 connections"), "{out:?}");
        assert!(out.stderr.contains("max_connections"), "{out:?}");
    }
    assert!(
        daemon.logs().contains("refused a connection"),
        "{}",
        daemon.logs()
    );
    // Why the refusal always reaches the client: after its goodbye the daemon shuts only its
    // sending side and keeps reading until the client hangs up, so a request the client sends
    // meanwhile (it cannot know yet) is not met by EPIPE, which would hide the reason.
    let mut raw = RawConn::connect(&sandbox.socket()).await;
    raw.send_hello(PROTOCOL_VERSION).await;
    raw.read_hello().await.unwrap();
    let mut raw = raw.framed();
    match next_server_frame(&mut raw).await {
        Some(ServerFrame::Goodbye(reply)) => {
            assert_eq!(reply.code, ErrorCode::TooManyConnections, "{reply:?}")
        }
        other => panic!("expected a goodbye, got {other:?}"),
    }
    assert!(
        next_server_frame(&mut raw).await.is_none(),
        "EOF after the goodbye"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = ClientFrame {
        id: 1,
        request: Request::Status,
    };
    send_client_frame(&mut raw, &late)
        .await
        .expect("a request sent after the goodbye must not fail with EPIPE");
    drop(raw);

    // The held clients are unaffected.
    held[1].status().await.unwrap();

    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = sandbox.ctl(&["status", "--json"]);
        if out.code == Some(0) {
            assert_eq!(out.json()["connections"], 3);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after a client left: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connection_without_handshake_is_closed_after_two_seconds() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let started = Instant::now();
    let mut silent = RawConn::connect(&sandbox.socket()).await;
    let got = tokio::time::timeout(Duration::from_secs(8), silent.read_to_end())
        .await
        .unwrap_or_else(|_| panic!("not closed within 8 s:\n{}", daemon.logs()));
    let took = started.elapsed();
    eprintln!("silent connection closed after {took:?}");
    assert_eq!(
        got,
        handshake::hello(PROTOCOL_VERSION),
        "the daemon says hello first"
    );
    // A lower bound only: the daemon waits its handshake timeout (2 s) before closing.
    assert!(
        took >= Duration::from_millis(1500),
        "closed after only {took:?}"
    );
    assert!(
        daemon.wait_log("sent no handshake within 2 s", Duration::from_secs(2)),
        "{}",
        daemon.logs()
    );
    // Others are still served.
    daemon.client().await.status().await.unwrap();
}
