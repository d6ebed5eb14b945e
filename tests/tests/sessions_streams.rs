//! rmux session output streams and session ends, end to end: replay-then-live tails, rotation
//! with absolute offsets, subscribers that never read, monitors that die, and `remove`.
//!
//! One file past 600 lines on purpose: it is one feature's end-to-end suite, built as one test
//! binary; what its tests share beyond this file lives in the harness (`tests/src`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aifactory_common::Client;
use aifactory_common::pane::ExitInfo;
use aifactory_common::protocol::{
    ClientFrame, Reply, Request, SessionInfo, SessionState, StreamItem,
};
use aifactory_common::{Subscription, pane::OUTPUT_LOG};
use aifactory_tests::Sandbox;
use aifactory_tests::process::has_ended;
use aifactory_tests::raw::{RawConn, send_client_frame};
use aifactory_tests::session::new_session;
use aifactory_tests::wait::wait_until_async;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

async fn show(client: &Client, id: &str) -> SessionInfo {
    match client
        .request(Request::SessionShow { key: id.into() })
        .await
    {
        Ok(Reply::Session(s)) => s,
        other => panic!("sessions show {id} failed: {other:?}"),
    }
}

async fn kill_session(client: &Client, id: &str) -> SessionInfo {
    match client
        .request(Request::SessionKill {
            key: id.into(),
            grace_ms: 2000,
            ignore_missing: false,
        })
        .await
    {
        Ok(Reply::SessionKilled(report)) => report.session.expect("the killed session"),
        other => panic!("sessions kill {id} failed: {other:?}"),
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn output_log(s: &SessionInfo) -> PathBuf {
    s.pane_dir.join(OUTPUT_LOG)
}

/// The CLI's exit status for a session that ended this way.
fn expected_status(exit: &ExitInfo) -> i32 {
    match (exit.code, exit.signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// What one tail delivered.
#[derive(Debug, Default)]
struct Tail {
    lagged: Vec<(u64, u64)>,
    data: Vec<u8>,
    /// The first Output frame's offset.
    first: Option<u64>,
    next: u64,
    exit: Option<ExitInfo>,
}

/// Reads a tail to its `OutputEnd`, checking that every frame starts exactly where the previous
/// one ended (a resume after `OutputLagged` starts at its `resume_from`).
async fn collect(mut sub: Subscription, from: u64) -> Tail {
    let mut tail = Tail::default();
    let mut expect = from;
    loop {
        match sub.next().await {
            Some(StreamItem::Output { offset, data }) => {
                assert_eq!(
                    offset,
                    expect,
                    "a frame of {} bytes starts at {offset}, but the previous one ended at {expect}: {}",
                    data.len(),
                    if offset > expect {
                        "a gap"
                    } else {
                        "a duplicate"
                    }
                );
                tail.first.get_or_insert(offset);
                expect = offset + data.len() as u64;
                tail.data.extend_from_slice(&data);
            }
            Some(StreamItem::OutputLagged {
                requested,
                resume_from,
            }) => {
                assert!(
                    tail.data.is_empty(),
                    "OutputLagged after output: {requested} -> {resume_from}"
                );
                tail.lagged.push((requested, resume_from));
                expect = resume_from;
            }
            Some(StreamItem::OutputEnd { next, exit }) => {
                tail.next = next;
                tail.exit = exit;
                assert_eq!(next, expect, "OutputEnd.next is not where the output ended");
                return tail;
            }
            Some(other) => panic!("unexpected stream item in a tail: {other:?}"),
            None => panic!(
                "the tail ended without OutputEnd after {} bytes",
                tail.data.len()
            ),
        }
    }
}

async fn subscribe_tail(
    client: &Client,
    id: &str,
    from: Option<u64>,
    follow: bool,
) -> Subscription {
    client
        .subscribe(Request::SessionTail {
            key: id.into(),
            from,
            follow,
        })
        .await
        .unwrap_or_else(|e| panic!("tail {id} refused: {e}"))
}

/// Where the first differing byte is, for readable failures on megabytes.
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let show = |b: &[u8]| {
        String::from_utf8_lossy(&b[at.min(b.len())..(at + 40).min(b.len())]).into_owned()
    };
    panic!(
        "{what}: got {} bytes, want {}; first difference at {at}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}

/// Runs the real `aifactoryctl` in the background with its raw stdout captured.
fn spawn_ctl(sandbox: &Sandbox, args: &[&str]) -> std::process::Child {
    sandbox
        .ctl_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aifactoryctl")
}

async fn ctl_output(child: std::process::Child, timeout: Duration) -> std::process::Output {
    let pid = child.id();
    let waited = tokio::time::timeout(
        timeout,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    match waited {
        Ok(out) => out.expect("join").expect("wait aifactoryctl"),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("aifactoryctl (pid {pid}) did not finish within {timeout:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_started_mid_flow_replays_then_follows_without_gap_or_duplicate() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    // Numbered lines without end, a little throttled so the log stays small.
    let s = new_session(
        &client,
        &sandbox,
        "i=0; while :; do i=$((i+1)); echo line$i; if [ $((i % 50)) = 0 ]; then sleep 0.01; fi; done",
    )
    .await;
    let log = output_log(&s);
    wait_until_async(
        "20000 bytes of output",
        Duration::from_secs(30),
        async || file_len(&log) >= 20_000,
    )
    .await;
    // Mid-flow and not on a line boundary on purpose: half of what is there now is replayed
    // from the disk, the rest arrives live.
    let from = file_len(&log) / 2 + 1;
    let sub = subscribe_tail(&client, &s.id, Some(from), true).await;
    let reader = tokio::spawn(collect(sub, from));
    let cli = spawn_ctl(
        &sandbox,
        &[
            "sessions",
            "tail",
            &s.id,
            "--from",
            &from.to_string(),
            "--follow",
        ],
    );
    let at_subscribe = file_len(&log);
    wait_until_async(
        "50000 more bytes after subscribing",
        Duration::from_secs(60),
        async || file_len(&log) >= at_subscribe + 50_000,
    )
    .await;
    assert_eq!(
        show(&client, &s.id).await.state,
        SessionState::Running,
        "output must still flow while the tails run"
    );
    let ended = kill_session(&client, &s.id).await;
    let exit = ended.exit.clone().expect("a killed session has an exit");

    let tail = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the tail ends once the session ended")
        .expect("tail reader");
    let on_disk = std::fs::read(&log).unwrap();
    assert!(
        tail.lagged.is_empty(),
        "nothing was rotated: {:?}",
        tail.lagged
    );
    assert_eq!(
        tail.first,
        Some(from),
        "the first frame starts at the offset asked for"
    );
    assert_same_bytes(
        &tail.data,
        &on_disk[from as usize..],
        "client tail --follow",
    );
    assert_eq!(tail.next, on_disk.len() as u64);
    assert_eq!(
        tail.exit.as_ref(),
        Some(&exit),
        "OutputEnd carries the exit"
    );
    assert!(
        tail.data.len() as u64 > at_subscribe - from + 50_000 - 1,
        "live output after the subscription was received too"
    );

    let out = ctl_output(cli, Duration::from_secs(60)).await;
    assert_same_bytes(
        &out.stdout,
        &on_disk[from as usize..],
        "aifactoryctl tail --follow",
    );
    assert_eq!(
        out.status.code(),
        Some(expected_status(&exit)),
        "tail --follow exits with the session's status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The exact bytes `seq 1 N; echo DONE` prints on a terminal (\n becomes \r\n).
fn seq_output(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.extend_from_slice(format!("{i}\r\n").as_bytes());
    }
    out.extend_from_slice(b"DONE\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_absolute_offsets_for_live_and_disk_tails() {
    let sandbox = Sandbox::new();
    sandbox.write_config("pane_log_max = 65536\n");
    let daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    let expected = seq_output(50_000);
    assert!(
        expected.len() > 5 * 65536,
        "enough output for several rotations"
    );
    let s = new_session(&client, &sandbox, "seq 1 50000; echo DONE; exec sleep 1000").await;
    let pane = s.pane_dir.clone();
    let log = output_log(&s);
    wait_until_async(
        "DONE at the end of output.log",
        Duration::from_secs(60),
        async || {
            std::fs::read(&log)
                .unwrap_or_default()
                .ends_with(b"\r\nDONE\r\n")
        },
    )
    .await;

    let old = std::fs::read(pane.join("output.log.1")).expect("output.log.1 after rotations");
    let new = std::fs::read(&log).unwrap();
    let rotation: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pane.join("rotation.json")).unwrap())
            .expect("rotation.json is JSON");
    let base = rotation["base"].as_u64().expect("rotation.json has a base");
    assert_eq!(
        old.len(),
        65536,
        "a rotated segment holds exactly pane_log_max bytes"
    );
    assert!(new.len() <= 65536, "output.log is {} bytes", new.len());
    assert_eq!(
        base + new.len() as u64,
        expected.len() as u64,
        "absolute offsets: output.log's base plus its length is everything ever printed"
    );
    assert_eq!(base % 65536, 0, "every segment before output.log was full");
    let old_base = base - old.len() as u64;
    let mut kept = old.clone();
    kept.extend_from_slice(&new);
    assert_same_bytes(
        &kept,
        &expected[old_base as usize..],
        "the segments on disk",
    );

    // While the session runs, tails go through its monitor.
    let from0 = collect(subscribe_tail(&client, &s.id, Some(0), false).await, 0).await;
    assert_eq!(
        from0.lagged,
        vec![(0, old_base)],
        "tail --from 0 says where it resumes"
    );
    assert_eq!(from0.first, Some(old_base));
    assert_same_bytes(&from0.data, &kept, "live tail --from 0");
    assert_eq!(from0.next, expected.len() as u64);
    assert_eq!(from0.exit, None, "the session still runs");
    let at_base = collect(
        subscribe_tail(&client, &s.id, Some(base), false).await,
        base,
    )
    .await;
    assert!(at_base.lagged.is_empty(), "{:?}", at_base.lagged);
    assert_eq!(at_base.first, Some(base));
    assert_same_bytes(&at_base.data, &new, "live tail --from <rotation base>");

    // Once it ended, tails read the pane directory; the CLI shows the same.
    let ended = kill_session(&client, &s.id).await;
    assert_ne!(ended.state, SessionState::Running);
    let old_after = std::fs::read(pane.join("output.log.1")).unwrap();
    let new_after = std::fs::read(&log).unwrap();
    assert_eq!(
        (old_after.len(), new_after.len()),
        (old.len(), new.len()),
        "no output after the kill"
    );
    let from0 = collect(subscribe_tail(&client, &s.id, Some(0), false).await, 0).await;
    assert_eq!(from0.lagged, vec![(0, old_base)]);
    assert_same_bytes(&from0.data, &kept, "disk tail --from 0");
    assert_eq!(from0.exit, ended.exit);

    let cli = ctl_output(
        spawn_ctl(&sandbox, &["sessions", "tail", &s.id, "--from", "0"]),
        Duration::from_secs(60),
    )
    .await;
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(0), "{stderr}");
    assert_same_bytes(&cli.stdout, &kept, "aifactoryctl tail --from 0");
    assert!(
        stderr.contains(&format!("before byte {old_base} was rotated away")),
        "{stderr}"
    );
    let cli = ctl_output(
        spawn_ctl(
            &sandbox,
            &["sessions", "tail", &s.id, "--from", &base.to_string()],
        ),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(cli.status.code(), Some(0));
    assert_same_bytes(
        &cli.stdout,
        &new,
        "aifactoryctl tail --from <rotation base>",
    );
    assert!(
        cli.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_slows_no_one() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    // 20 MB of "y\n", 30 MB on the terminal; it starts once everyone subscribed.
    let s = new_session(
        &client,
        &sandbox,
        "read go; yes | head -c 20000000; echo FINISHED",
    )
    .await;

    // A client subscription that is never polled, on its own connection...
    let stalled_client = daemon.client().await;
    let _stalled = subscribe_tail(&stalled_client, &s.id, Some(0), true).await;
    // ...and a connection that asks for a tail and then never reads a byte again.
    let mut raw = RawConn::connect(&daemon.socket).await;
    raw.send_hello(aifactory_common::protocol::PROTOCOL_VERSION)
        .await;
    raw.read_hello().await.expect("daemon hello");
    let mut raw = raw.framed();
    send_client_frame(
        &mut raw,
        &ClientFrame {
            id: 1,
            request: Request::SessionTail {
                key: s.id.clone(),
                from: Some(0),
                follow: true,
            },
        },
    )
    .await
    .expect("send the raw tail request");

    let reader_client = daemon.client().await;
    let sub = subscribe_tail(&reader_client, &s.id, Some(0), true).await;
    let reader = tokio::spawn(collect(sub, 0));
    let started = Instant::now();
    client
        .request(Request::SessionInput {
            key: s.id.clone(),
            data: b"go\r".to_vec(),
        })
        .await
        .expect("input");

    let waited = tokio::time::timeout(
        Duration::from_secs(240),
        client.request(Request::SessionWait { key: s.id.clone() }),
    )
    .await
    .unwrap_or_else(|_| panic!("the session did not end within 240 s with a stalled subscriber"));
    let ended = match waited {
        Ok(Reply::Session(s)) => s,
        other => panic!("wait failed: {other:?}"),
    };
    eprintln!("the session ran {:?}", started.elapsed());
    assert_eq!(ended.state, SessionState::Exited);
    assert_eq!(
        ended.exit.as_ref().and_then(|e| e.code),
        Some(0),
        "{ended:?}"
    );

    let tail = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("the reading subscriber got everything despite the stalled ones")
        .expect("tail reader");
    let on_disk = std::fs::read(output_log(&s)).unwrap();
    assert!(
        on_disk.len() >= 30_000_000 && on_disk.ends_with(b"FINISHED\r\n"),
        "output.log holds {} bytes",
        on_disk.len()
    );
    assert_eq!(tail.first, Some(0));
    assert_same_bytes(&tail.data, &on_disk, "the reading subscriber");
    assert_eq!(tail.exit, ended.exit);

    // The daemon still serves, on the busy connection and on a new one.
    let status = tokio::time::timeout(Duration::from_secs(10), client.status())
        .await
        .expect("status answered within 10 s")
        .expect("status");
    assert_eq!(status.sessions_running, 0);
    let fresh = daemon.client().await;
    tokio::time::timeout(Duration::from_secs(10), fresh.status())
        .await
        .expect("a new connection is served within 10 s")
        .expect("status");
    drop(_stalled);
    drop(raw);
}

/// `trap '' HUP`: the program outlives its monitor (whose end hangs up the terminal), so only
/// the daemon's clean-up can end it.
const HUP_PROOF: &str = "trap '' HUP; echo ready; while :; do sleep 0.2; done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_killed_while_the_daemon_is_down_makes_the_session_lost_and_its_group_killed() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    let s = new_session(&client, &sandbox, HUP_PROOF).await;
    let pid = s.pid.expect("pid");
    let monitor = s.monitor_pid.expect("monitor pid");
    assert_ne!(pid, monitor);
    let log = output_log(&s);
    wait_until_async("ready", Duration::from_secs(20), async || {
        std::fs::read(&log)
            .unwrap_or_default()
            .ends_with(b"ready\r\n")
    })
    .await;
    drop(client);

    daemon.signal(Signal::SIGKILL);
    drop(daemon);
    kill(Pid::from_raw(monitor as i32), Signal::SIGKILL).expect("SIGKILL the monitor");
    wait_until_async("the monitor is gone", Duration::from_secs(10), async || {
        has_ended(monitor)
    })
    .await;
    // The program itself survived its monitor: whatever ends it below is the daemon.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !has_ended(pid),
        "the program {pid} should outlive its monitor here"
    );

    let daemon = sandbox.daemon().log_name("again").start();
    let client = daemon.client().await;
    let now = show(&client, &s.id).await;
    assert_eq!(now.state, SessionState::Lost, "{now:?}");
    let reason = now.lost_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("monitor"),
        "the reason names the monitor: {reason}"
    );
    assert!(
        now.exit
            .as_ref()
            .is_none_or(|e| e.code.is_none() && e.signal.is_none()),
        "a lost session has no exit status: {now:?}"
    );
    // The CLI says it is lost and why, not merely that it ended.
    let shown = sandbox
        .ctl(&["sessions", "show", &s.id])
        .assert_ok()
        .stdout
        .clone();
    assert!(shown.contains("lost: its pane monitor"), "{shown}");
    wait_until_async(
        &format!("the program {pid} of the lost session is killed"),
        Duration::from_secs(10),
        async || has_ended(pid),
    )
    .await;
    let logs = daemon.logs();
    assert!(logs.contains("killed the process group"), "{logs}");
    // A lost session is not running: nothing to kill, nothing counted.
    assert_eq!(client.status().await.unwrap().sessions_running, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_killed_while_the_daemon_runs_ends_the_session_and_wakes_waiters() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    let s = new_session(&client, &sandbox, HUP_PROOF).await;
    let pid = s.pid.expect("pid");
    let monitor = s.monitor_pid.expect("monitor pid");
    let log = output_log(&s);
    wait_until_async("ready", Duration::from_secs(20), async || {
        std::fs::read(&log)
            .unwrap_or_default()
            .ends_with(b"ready\r\n")
    })
    .await;
    let waiter = spawn_ctl(&sandbox, &["sessions", "wait", &s.id, "--json"]);
    // A follower that already got the output when the monitor dies: its tail must end, and
    // must not repeat what it already sent when it finishes from the disk.
    let mut follower = subscribe_tail(&client, &s.id, Some(0), true).await;
    let mut got = Vec::new();
    while !got.ends_with(b"ready\r\n") {
        match tokio::time::timeout(Duration::from_secs(20), follower.next()).await {
            Ok(Some(StreamItem::Output { offset, data })) => {
                assert_eq!(offset, got.len() as u64);
                got.extend(data);
            }
            other => panic!("expected output, got {other:?}"),
        }
    }
    let rest = tokio::spawn(collect(follower, got.len() as u64));
    // The waiter is connected (this client's connection and its own) before the monitor dies.
    wait_until_async(
        "the waiter to connect",
        Duration::from_secs(20),
        async || client.status().await.expect("status").connections >= 2,
    )
    .await;

    kill(Pid::from_raw(monitor as i32), Signal::SIGKILL).expect("SIGKILL the monitor");
    let out = ctl_output(waiter, Duration::from_secs(30)).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "wait fails for a lost session: {out:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let waited: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "wait printed no JSON ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(waited["id"], s.id.as_str());
    assert_eq!(waited["state"], "lost", "{waited}");
    assert!(
        waited["lost_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("monitor"),
        "{waited}"
    );
    let now = show(&client, &s.id).await;
    assert_eq!(now.state, SessionState::Lost, "{now:?}");
    wait_until_async(
        &format!("the program {pid} of the lost session is killed"),
        Duration::from_secs(10),
        async || has_ended(pid),
    )
    .await;
    let rest = tokio::time::timeout(Duration::from_secs(30), rest)
        .await
        .expect("a follower's tail ends when the monitor dies")
        .expect("follower");
    got.extend(rest.data);
    assert_same_bytes(
        &got,
        &std::fs::read(&log).unwrap(),
        "the follower across the monitor's death",
    );
    // Requests that need the monitor now say the session is not running.
    let input = client
        .request(Request::SessionInput {
            key: s.id.clone(),
            data: b"x".to_vec(),
        })
        .await;
    let message = format!("{input:?}");
    assert!(message.contains("lost, not running"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_refuses_a_running_session_and_forgets_an_ended_one() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    let s = new_session(&client, &sandbox, "echo hello; exec sleep 1000").await;
    let keep = new_session(&client, &sandbox, "echo other; exit 0").await;
    let log = output_log(&s);
    wait_until_async("hello", Duration::from_secs(20), async || {
        std::fs::read(&log)
            .unwrap_or_default()
            .starts_with(b"hello")
    })
    .await;

    let refused = sandbox.ctl(&["sessions", "remove", &s.id]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("kill it first"), "{refused:?}");
    assert!(s.pane_dir.is_dir(), "a refused remove deletes nothing");
    assert_eq!(show(&client, &s.id).await.state, SessionState::Running);

    kill_session(&client, &s.id).await;
    let removed = sandbox.ctl(&["sessions", "remove", &s.id]);
    assert_eq!(removed.code, Some(0), "{removed:?}");
    assert!(removed.stdout.contains(&s.id), "{removed:?}");
    assert!(
        !s.pane_dir.exists(),
        "{} still exists",
        s.pane_dir.display()
    );
    let gone = sandbox.ctl(&["sessions", "show", &s.id]);
    assert_eq!(gone.code, Some(4), "{gone:?}");
    let list = sandbox
        .ctl(&["sessions", "list", "--json"])
        .assert_ok()
        .json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["id"].as_str())
        .collect();
    assert!(!ids.contains(&s.id.as_str()), "{ids:?}");
    assert!(
        ids.contains(&keep.id.as_str()),
        "other sessions stay: {ids:?}"
    );
    assert!(keep.pane_dir.is_dir(), "other pane directories stay");
    let again = sandbox.ctl(&["sessions", "remove", &s.id]);
    assert_eq!(again.code, Some(4), "{again:?}");
}
