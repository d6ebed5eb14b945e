//! The pane monitor with real processes on a real PTY: what it records, what it serves, how
//! it treats signals, orphans and slow subscribers, and when it goes away.
//!
//! One file past 600 lines on purpose: every test drives the same binary through the same few
//! helpers (`start`, `Monitor::client`, `eventually`, the `/proc` readers), which a split would
//! only move into a shared module.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic with its message is the failure report"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aifactory_common::pane::{
    EXIT_FILE, ExitInfo, META_FILE, MONITOR_SOCKET, MonitorFrame, MonitorInfo, OUTPUT_LOG,
    OUTPUT_LOG_OLD, ROTATION_FILE,
};
use aifactory_common::procfs;
use aifactory_pane::client::{MonitorClient, MonitorError, MonitorStream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Bound on every wait, so a broken monitor fails a test instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);

struct Monitor {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    info: MonitorInfo,
    process: tokio::process::Child,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // A failed test must not leave its program running (the monitor itself is killed on
        // drop). Once the monitor exited the group is gone, and its id may be reused.
        if matches!(self.process.try_wait(), Ok(None)) {
            unsafe {
                libc::kill(-(self.info.pgid as i32), libc::SIGKILL);
            }
        }
    }
}

fn monitor_command(
    dir: &Path,
    cwd: &Path,
    log_max: u64,
    program: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_aifactory-pane"));
    cmd.arg("--dir")
        .arg(dir)
        .args(["--session", "s-test", "--name", "test pane"])
        .arg("--cwd")
        .arg(cwd)
        .args(["--cols", "80", "--rows", "24"])
        .args(["--log-max", &log_max.to_string(), "--"])
        .args(program)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts a monitor on a fresh 0700 pane directory and reads its readiness line.
async fn start_with(program: &[&str], log_max: u64) -> Monitor {
    start_in(program, log_max, 0o700).await
}

/// As [`start_with`], with the program's working directory in mode `cwd_mode`.
async fn start_in(program: &[&str], log_max: u64, cwd_mode: u32) -> Monitor {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(cwd_mode)).unwrap();
    let dir = tmp.path().join("pane");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut process = monitor_command(&dir, tmp.path(), log_max, program)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(process.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(WAIT, stdout.read_line(&mut line))
        .await
        .expect("no readiness line in time")
        .unwrap();
    if line.is_empty() {
        let mut err = String::new();
        let _ = process
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await;
        panic!("the monitor did not start: {err}");
    }
    let info: MonitorInfo = serde_json::from_str(&line).unwrap();
    // Exactly one line, then EOF.
    let mut rest = String::new();
    tokio::time::timeout(WAIT, stdout.read_to_string(&mut rest))
        .await
        .expect("stdout not closed after readiness")
        .unwrap();
    assert_eq!(rest, "", "more than one line on stdout");
    Monitor {
        _tmp: tmp,
        dir,
        info,
        process,
    }
}

async fn start(program: &[&str]) -> Monitor {
    start_with(program, 64 << 20).await
}

impl Monitor {
    async fn client(&self) -> MonitorClient {
        tokio::time::timeout(WAIT, MonitorClient::connect(&self.dir))
            .await
            .unwrap()
            .unwrap()
    }

    async fn subscribe(&self, from: u64) -> MonitorStream {
        self.client().await.subscribe(from).await.unwrap()
    }

    /// Waits for the monitor to exit; returns its status code.
    async fn wait(&mut self) -> Option<i32> {
        tokio::time::timeout(WAIT, self.process.wait())
            .await
            .expect("the monitor did not exit in time")
            .unwrap()
            .code()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Everything a subscription delivers up to `Exited`, checking that offsets are contiguous:
/// (first offset, bytes, lags as (requested, resumed), exit).
async fn collect(stream: &mut MonitorStream) -> (u64, Vec<u8>, Vec<(u64, u64)>, ExitInfo) {
    let mut start = None;
    let mut pos = None;
    let mut bytes = Vec::new();
    let mut lags = Vec::new();
    loop {
        let frame = tokio::time::timeout(WAIT, stream.next_frame())
            .await
            .expect("no frame in time")
            .expect("stream ended before Exited")
            .unwrap();
        match frame {
            MonitorFrame::Output { offset, data } => {
                if let Some(pos) = pos {
                    assert_eq!(offset, pos, "gap or overlap in the output");
                } else {
                    start = Some(offset);
                }
                assert!(data.len() <= 64 << 10, "chunk of {} bytes", data.len());
                assert!(!data.is_empty());
                pos = Some(offset + data.len() as u64);
                bytes.extend_from_slice(&data);
            }
            MonitorFrame::Lagged {
                requested,
                resume_from,
            } => {
                assert!(resume_from > requested);
                if let Some(p) = pos {
                    assert_eq!(requested, p);
                }
                lags.push((requested, resume_from));
                pos = Some(resume_from);
                start.get_or_insert(resume_from);
            }
            MonitorFrame::Exited(exit) => {
                assert!(
                    tokio::time::timeout(WAIT, stream.next_frame())
                        .await
                        .unwrap()
                        .is_none(),
                    "frames after Exited"
                );
                return (start.unwrap_or(0), bytes, lags, exit);
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads output into `seen` until `needle` appears in it.
async fn read_until(stream: &mut MonitorStream, seen: &mut Vec<u8>, needle: &str) {
    while !String::from_utf8_lossy(seen).contains(needle) {
        let frame = tokio::time::timeout(WAIT, stream.next_frame())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{needle:?} not seen in time; got {:?}",
                    String::from_utf8_lossy(seen)
                )
            })
            .expect("stream ended")
            .unwrap();
        match frame {
            MonitorFrame::Output { data, .. } => seen.extend_from_slice(&data),
            other => panic!("unexpected frame {other:?} while waiting for {needle:?}"),
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// (state, ppid, pgrp, session) from /proc/<pid>/stat, or None once the process is gone.
fn proc_stat(pid: u32) -> Option<(char, u32, u32, u32)> {
    let stat = procfs::stat(pid).ok()?;
    Some((stat.state, stat.ppid, stat.pgid, stat.session))
}

/// Waits until `cond` holds, checking every 20 ms (test-side only).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            let ps = std::process::Command::new("ps")
                .args(["-eo", "pid,ppid,pgid,sid,stat,args"])
                .output()
                .unwrap();
            panic!("timed out: {what}\n{}", String::from_utf8_lossy(&ps.stdout));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Processes (pid, comm) whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((_, parent, _, _)) = proc_stat(pid)
            && parent == ppid
        {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out
}

fn processes_in_group(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(
            |pid| matches!(proc_stat(*pid), Some((state, _, pg, _)) if pg == pgid && state != 'Z'),
        )
        .collect()
}

#[tokio::test]
async fn records_exact_bytes_and_serves_them() {
    // The program waits for a line, so nothing ends before the test looks.
    let mut m = start(&["sh", "-c", "read x; printf 'a\\nb\\tc\\001\\377'"]).await;
    let info = &m.info;
    assert_eq!(info.session_id, "s-test");
    assert_eq!(info.name.as_deref(), Some("test pane"));
    assert_eq!(info.pgid, info.pid);
    assert_eq!((info.cols, info.rows), (80, 24));
    assert!(info.start_time > 0 && info.monitor_start_time > 0);
    assert_eq!(info.monitor_pid, m.process.id().unwrap());
    // The monitor left the test's session.
    let (_, _, _, sid) = proc_stat(info.monitor_pid).unwrap();
    assert_eq!(sid, info.monitor_pid);

    // meta.json is written right after the readiness report, off the path of `sessions new`.
    eventually("meta.json is written", || m.file(META_FILE).exists()).await;
    let meta: MonitorInfo =
        serde_json::from_str(&std::fs::read_to_string(m.file(META_FILE)).unwrap()).unwrap();
    assert_eq!(meta.pid, info.pid);
    assert_eq!(mode(&m.file(META_FILE)), 0o600);
    assert_eq!(mode(&m.file(MONITOR_SOCKET)), 0o600);
    assert_eq!(mode(&m.file(OUTPUT_LOG)), 0o600);

    // The PTY echoes the typed line and turns \n into \r\n (ONLCR); everything else passes
    // unchanged.
    let expected = b"\r\na\r\nb\tc\x01\xff".to_vec();
    let mut stream = m.subscribe(0).await;
    m.client().await.input(b"\n", WAIT).await.unwrap();
    let (start, bytes, lags, exit) = collect(&mut stream).await;
    assert_eq!((start, lags), (0, vec![]));
    assert_eq!(bytes, expected);
    assert_eq!(std::fs::read(m.file(OUTPUT_LOG)).unwrap(), expected);
    assert_eq!((exit.code, exit.signal), (Some(0), None));
    drop(stream);

    assert_eq!(m.wait().await, Some(0));
    assert!(!m.file(MONITOR_SOCKET).exists());
    let meta: MonitorInfo =
        serde_json::from_str(&std::fs::read_to_string(m.file(META_FILE)).unwrap()).unwrap();
    assert_eq!(meta.output_end, expected.len() as u64);
    assert_eq!(meta.exit, Some(exit));
}

/// In a group-writable directory (a project shared through its group) the program gets umask
/// 002: git in a group-shared repository then needs no chmod keeping a setgid bit, which the
/// packaged service refuses (issue 15, item 9).
#[tokio::test]
async fn the_program_in_a_group_writable_directory_gets_umask_002() {
    let mut m = start_in(&["sleep", "1000"], 64 << 20, 0o2775).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", m.info.pid)).unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    assert!(line.ends_with("0002"), "{line}");
    m.client().await.signal(libc::SIGKILL).await.unwrap();
    assert_eq!(m.wait().await, Some(0));
}

#[tokio::test]
async fn the_program_gets_a_session_a_terminal_and_nothing_else() {
    let mut m = start(&["sleep", "1000"]).await;
    let pid = m.info.pid;
    let stat = procfs::stat(pid).unwrap();
    assert_eq!(stat.session, pid, "its own session");
    assert_ne!(stat.tty_nr, 0, "a controlling terminal");
    assert_eq!(stat.tpgid, pid as i32, "in the terminal's foreground");
    // `sleep` itself may still be opening its locale files right after the exec: what must
    // not be there for good is anything of the monitor's.
    let fds = || {
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        fds
    };
    eventually("the program holds no descriptor beyond 0-2", || {
        fds() == ["0", "1", "2"]
    })
    .await;
    let terminal = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
    assert!(terminal.starts_with("/dev/pts/"), "{}", terminal.display());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for (key, want) in [
        ("SigIgn", "0000000000000000"),
        ("SigBlk", "0000000000000000"),
        ("Umask", "0022"),
    ] {
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap();
        assert!(line.ends_with(want), "{line}");
    }
    m.client().await.signal(libc::SIGKILL).await.unwrap();
    let mut stream = m.subscribe(0).await;
    let (_, _, _, exit) = collect(&mut stream).await;
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    drop(stream);
    assert_eq!(m.wait().await, Some(0));
}

#[tokio::test]
async fn input_reaches_the_program() {
    let m = start(&["sh", "-c", "read x; echo got:$x"]).await;
    let mut stream = m.subscribe(0).await;
    m.client().await.input(b"hello\n", WAIT).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "got:hello\r\n").await;
}

#[tokio::test]
async fn input_pending_when_the_terminal_closes_is_refused_and_the_end_still_recorded() {
    // Raw mode, and nothing reads: the input queue fills up. Then the program ends while the
    // rest of the input still waits to be written.
    let mut m = start(&[
        "sh",
        "-c",
        "stty raw -echo; echo ready; while [ ! -e end ]; do sleep 0.05; done",
    ])
    .await;
    let mut stream = m.subscribe(0).await;
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "ready").await;
    let mut writer = m.client().await;
    let pending = tokio::spawn(async move {
        writer
            .input(&vec![b'x'; 100_000], Duration::from_secs(60))
            .await
    });
    // Other requests are served while that input waits.
    let mut client = m.client().await;
    client.resize(81, 25).await.unwrap();
    assert!(client.info().await.unwrap().exit.is_none());
    assert!(!pending.is_finished(), "the input did not wait");
    std::fs::write(m._tmp.path().join("end"), "").unwrap();
    let (sent, refused) = tokio::time::timeout(WAIT, pending)
        .await
        .expect("the pending input was never answered")
        .unwrap()
        .unwrap_err();
    assert_eq!(sent, 0);
    assert!(
        matches!(refused, MonitorError::Refused { ref message, .. } if message.contains("terminal is closed")),
        "{refused}"
    );
    let (_, _, _, exit) = collect(&mut stream).await;
    assert_eq!(exit.code, Some(0));
    drop((client, stream));
    assert_eq!(m.wait().await, Some(0));
}

#[tokio::test]
async fn input_whose_requester_hung_up_is_not_written_further_and_frees_the_turn() {
    // Nothing reads until `go` exists; then `cat` keeps exactly what the terminal took.
    let m = start(&[
        "sh",
        "-c",
        "stty raw -echo; echo ready; while [ ! -e go ]; do sleep 0.05; done; exec cat > got",
    ])
    .await;
    let mut stream = m.subscribe(0).await;
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "ready").await;
    const SENT: usize = 100_000;
    let mut writer = m.client().await;
    let pending = tokio::spawn(async move { writer.input(&vec![b'x'; SENT], WAIT).await });
    // Give it time to fill the queue, then hang up, as a daemon that stops waiting does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "the input did not wait");
    pending.abort();
    let _ = pending.await;
    // The monitor runs on one thread and saw the hang-up before it answers this.
    let mut client = m.client().await;
    assert!(client.info().await.unwrap().exit.is_none());
    let tmp = m._tmp.path();
    std::fs::write(tmp.join("go"), "").unwrap();
    // The turn is free at once: this is not queued behind the abandoned rest.
    tokio::time::timeout(Duration::from_secs(5), client.input(b"MARKER", WAIT))
        .await
        .expect("the abandoned input still held the turn")
        .unwrap();
    let got = tmp.join("got");
    eventually("cat got the marker", || {
        std::fs::read(&got).is_ok_and(|b| b.ends_with(b"MARKER"))
    })
    .await;
    let bytes = std::fs::read(&got).unwrap();
    let taken = bytes.len() - "MARKER".len();
    assert!(taken > 0 && taken < SENT, "{taken} bytes of x arrived");
    assert!(bytes[..taken].iter().all(|&b| b == b'x'));
    client.signal(libc::SIGKILL).await.unwrap();
}

#[tokio::test]
async fn resize_reaches_the_program_with_sigwinch() {
    let m = start(&[
        "sh",
        "-c",
        "trap 'echo winched; stty size' WINCH; echo ready; while :; do sleep 0.05; done",
    ])
    .await;
    let mut stream = m.subscribe(0).await;
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "ready").await;
    let mut client = m.client().await;
    client.resize(100, 40).await.unwrap();
    read_until(&mut stream, &mut seen, "winched\r\n40 100\r\n").await;
    let info = client.info().await.unwrap();
    assert_eq!((info.cols, info.rows), (100, 40));
    let meta: MonitorInfo =
        serde_json::from_str(&std::fs::read_to_string(m.file(META_FILE)).unwrap()).unwrap();
    assert_eq!((meta.cols, meta.rows), (100, 40));
    let refused = client.resize(0, 10).await.unwrap_err();
    assert!(matches!(refused, MonitorError::Refused { .. }), "{refused}");
}

#[tokio::test]
async fn replay_then_live_has_no_gap_and_no_duplicate() {
    let m = start(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); [ $((i % 100)) = 0 ] && sleep 0.05; done; exit 0",
    ])
    .await;
    let mut client = m.client().await;
    let mut info = client.info().await.unwrap();
    while info.output_end < 2000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        info = client.info().await.unwrap();
    }
    assert!(info.exit.is_none(), "the program should still be running");
    let from = info.output_end / 2 + 3;
    let mut stream = m.subscribe(from).await;
    let (start, bytes, lags, exit) = collect(&mut stream).await;
    assert_eq!(exit.code, Some(0));
    assert!(lags.is_empty());
    assert_eq!(start, from);
    let file = std::fs::read(m.file(OUTPUT_LOG)).unwrap();
    assert!(String::from_utf8_lossy(&file).ends_with("line 2999\r\n"));
    assert_eq!(
        bytes,
        file[from as usize..],
        "replay+live differs from the file"
    );
}

#[tokio::test]
async fn rotation_keeps_offsets_absolute() {
    const MAX: u64 = 16 << 10;
    let mut m = start_with(&["sh", "-c", "read x; seq 1 30000; exit 3"], MAX).await;
    // A subscriber from the start, live during the rotations: it may lag, but every byte it
    // gets sits at its absolute offset and nothing is skipped without a Lagged.
    let mut live = m.subscribe(0).await;
    m.client().await.input(b"go\n", WAIT).await.unwrap();
    let (live_start, live_bytes, live_lags, exit) = collect(&mut live).await;
    assert_eq!(exit.code, Some(3));
    assert_eq!(live_start, 0);

    let mut client = m.client().await;
    let info = client.info().await.unwrap();
    let end = info.output_end;
    let skipped: u64 = live_lags.iter().map(|(r, s)| s - r).sum();
    assert_eq!(live_bytes.len() as u64 + skipped, end);

    // Everything `seq` printed (plus the echoed "go") went through, so `end` is the real total.
    let seq: String = (1..=30000).map(|i| format!("{i}\r\n")).collect();
    assert_eq!(end, (b"go\r\n".len() + seq.len()) as u64);

    let rotation: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(m.file(ROTATION_FILE)).unwrap()).unwrap();
    let base = rotation["base"].as_u64().unwrap();
    let old = std::fs::read(m.file(OUTPUT_LOG_OLD)).unwrap();
    let current = std::fs::read(m.file(OUTPUT_LOG)).unwrap();
    assert_eq!(
        old.len() as u64,
        MAX,
        "segments are cut exactly at the limit"
    );
    assert_eq!(base % MAX, 0);
    assert_eq!(base + current.len() as u64, end);
    let oldest = base - MAX;
    let mut on_disk = old.clone();
    on_disk.extend_from_slice(&current);
    let full = format!("go\r\n{seq}").into_bytes();
    assert_eq!(on_disk, full[oldest as usize..]);
    // What the live subscriber got matches the program's output at the same offsets.
    let mut pos = 0u64;
    let mut got = &live_bytes[..];
    let mut lags = live_lags.iter().peekable();
    while !got.is_empty() {
        let stop = lags.peek().map_or(end, |(requested, _)| *requested);
        let n = (stop - pos) as usize;
        assert_eq!(got[..n], full[pos as usize..stop as usize]);
        got = &got[n..];
        if let Some((_, resume)) = lags.next() {
            pos = *resume;
        } else {
            pos = stop;
        }
    }

    // From 0 after the fact: Lagged to the oldest retained byte, then the rest.
    let mut stream = m.subscribe(0).await;
    let (start, bytes, lags, _) = collect(&mut stream).await;
    assert_eq!(lags, vec![(0, oldest)]);
    assert_eq!(start, oldest);
    assert_eq!(bytes, on_disk);
    // From the rotation base: straight from output.log.
    let mut stream = m.subscribe(base).await;
    let (start, bytes, lags, _) = collect(&mut stream).await;
    assert!(lags.is_empty());
    assert_eq!((start, bytes), (base, current.clone()));
    // From beyond the end: nothing but Exited.
    let mut stream = m.subscribe(end + 1000).await;
    let (_, bytes, lags, _) = collect(&mut stream).await;
    assert!(bytes.is_empty() && lags.is_empty());

    drop((client, stream));
    assert_eq!(m.wait().await, Some(0));
}

#[tokio::test]
async fn stalled_subscriber_slows_nobody() {
    let mut m = start(&["sh", "-c", "yes | head -c 20000000"]).await;
    // Subscribes and then never reads a byte.
    let stalled = m.subscribe(0).await;
    let mut reader = m.subscribe(0).await;
    let (start, bytes, lags, exit) =
        tokio::time::timeout(Duration::from_secs(60), collect(&mut reader))
            .await
            .expect("the reading subscriber was held up");
    assert_eq!((start, lags, exit.code), (0, vec![], Some(0)));
    // 10 million "y\n", each turned into "y\r\n" by the PTY.
    assert_eq!(bytes.len(), 30_000_000);
    assert!(bytes.chunks(3).all(|c| c == b"y\r\n"));
    let info = m.client().await.info().await.unwrap();
    assert_eq!(info.output_end, 30_000_000);
    assert!(info.exit.is_some());
    // The stalled subscriber keeps the monitor serving; once it leaves, the monitor exits.
    assert!(m.file(MONITOR_SOCKET).exists());
    drop(stalled);
    assert_eq!(m.wait().await, Some(0));
}

#[tokio::test]
async fn exit_code_is_recorded_and_the_monitor_goes_away() {
    let mut m = start(&["sh", "-c", "read x; exit 7"]).await;
    let mut stream = m.subscribe(0).await;
    m.client().await.input(b"\n", WAIT).await.unwrap();
    let (_, _, _, exit) = collect(&mut stream).await;
    assert_eq!((exit.code, exit.signal), (Some(7), None));
    assert_eq!(exit.describe(), "exited 7");
    let on_disk: ExitInfo =
        serde_json::from_str(&std::fs::read_to_string(m.file(EXIT_FILE)).unwrap()).unwrap();
    assert_eq!(on_disk, exit);
    assert_eq!(mode(&m.file(EXIT_FILE)), 0o600);
    assert!(exit.ended_at.ends_with('Z') && exit.ended_at.len() == 20);
    // Late Info requests are still answered for a moment.
    let info = m.client().await.info().await.unwrap();
    assert_eq!(info.exit, Some(exit));
    drop(stream);
    assert_eq!(m.wait().await, Some(0));
    assert!(!m.file(MONITOR_SOCKET).exists());
    let gone = MonitorClient::connect(&m.dir).await.err().unwrap();
    assert!(matches!(gone, MonitorError::Unreachable { .. }), "{gone}");
    assert!(gone.to_string().contains(MONITOR_SOCKET), "{gone}");
}

#[tokio::test]
async fn death_by_signal_is_recorded() {
    let mut m = start(&["sh", "-c", "read x; kill -9 $$"]).await;
    let mut stream = m.subscribe(0).await;
    m.client().await.input(b"\n", WAIT).await.unwrap();
    let (_, _, _, exit) = collect(&mut stream).await;
    assert_eq!((exit.code, exit.signal), (None, Some(9)));
    let on_disk: ExitInfo =
        serde_json::from_str(&std::fs::read_to_string(m.file(EXIT_FILE)).unwrap()).unwrap();
    assert_eq!(on_disk, exit);
    drop(stream);
    assert_eq!(m.wait().await, Some(0));
}

#[tokio::test]
async fn signal_reaches_the_whole_process_group() {
    let mut m = start(&["sh", "-c", "sleep 1000 & sleep 1000"]).await;
    let pgid = m.info.pgid;
    eventually("both sleeps run", || processes_in_group(pgid).len() == 3).await;
    let mut client = m.client().await;
    client.signal(libc::SIGTERM).await.unwrap();
    eventually("the group is gone", || processes_in_group(pgid).is_empty()).await;
    let mut stream = m.subscribe(0).await;
    let (_, _, _, exit) = collect(&mut stream).await;
    assert_eq!(exit.signal, Some(libc::SIGTERM));
    // A group that is gone is not an error; a bad signal number is.
    client.signal(libc::SIGTERM).await.unwrap();
    let bad = client.signal(1000).await.unwrap_err();
    assert!(matches!(bad, MonitorError::Refused { .. }), "{bad}");
    drop((client, stream));
    assert_eq!(m.wait().await, Some(0));
}

#[tokio::test]
async fn escaped_orphans_are_adopted_and_reaped() {
    // Double fork: the subshell starts the escapee and exits at once. The program waits until
    // the escapee runs in its own session, or its exit would SIGHUP it (same session still).
    let mut m = start(&[
        "sh",
        "-c",
        "(setsid sh -c 'echo escaped; exec sleep 30' &); read x; exit 0",
    ])
    .await;
    let mut output = m.subscribe(0).await;
    let mut seen = Vec::new();
    read_until(&mut output, &mut seen, "escaped").await;
    m.client().await.input(b"\n", WAIT).await.unwrap();
    let monitor = m.info.monitor_pid;
    let mut orphans = Vec::new();
    eventually("the orphan is re-parented to the monitor", || {
        orphans = children_of(monitor);
        orphans.iter().any(|(_, comm)| comm == "sleep")
    })
    .await;
    let (orphan, _) = orphans.iter().find(|(_, c)| c == "sleep").unwrap().clone();
    let (_, ppid, _, sid) = proc_stat(orphan).unwrap();
    assert_eq!(ppid, monitor);
    assert_eq!(sid, orphan, "the orphan left the program's session");
    // The program exited, but the orphan still holds the terminal: exited, not finished.
    let mut client = m.client().await;
    eventually("the program's exit is recorded", || {
        m.file(EXIT_FILE).exists()
    })
    .await;
    assert_eq!(client.info().await.unwrap().exit.unwrap().code, Some(0));
    unsafe {
        libc::kill(orphan as i32, libc::SIGKILL);
    }
    // Reaped by the monitor: gone from /proc, never left as a zombie.
    eventually("the orphan is reaped", || proc_stat(orphan).is_none()).await;
    let mut stream = m.subscribe(0).await;
    let (_, _, _, exit) = collect(&mut stream).await;
    assert_eq!(exit.code, Some(0));
    drop((client, stream, output));
    assert_eq!(m.wait().await, Some(0));
}

#[tokio::test]
async fn survives_sigterm_and_sighup() {
    let mut m = start(&["sh", "-c", "read x; echo got:$x"]).await;
    let monitor = m.info.monitor_pid as i32;
    unsafe {
        libc::kill(monitor, libc::SIGTERM);
        libc::kill(monitor, libc::SIGHUP);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(m.process.try_wait().unwrap().is_none(), "the monitor died");
    let mut client = m.client().await;
    let info = client.info().await.unwrap();
    assert!(info.exit.is_none(), "the program died");
    let mut stream = m.subscribe(0).await;
    client.input(b"still\n", WAIT).await.unwrap();
    let (_, bytes, _, exit) = collect(&mut stream).await;
    assert!(String::from_utf8_lossy(&bytes).contains("got:still"));
    assert_eq!(exit.code, Some(0));
    drop((client, stream));
    assert_eq!(m.wait().await, Some(0));
}

#[tokio::test]
async fn a_subscribed_connection_refuses_other_requests_and_bad_frames_close_only_their_connection()
{
    let m = start(&["sh", "-c", "read x"]).await;
    // A raw connection: handshake, then a frame that is no request.
    let socket = m.file(MONITOR_SOCKET);
    let mut raw = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let mut hello = [0u8; aifactory_common::handshake::HELLO_LEN];
    raw.read_exact(&mut hello).await.unwrap();
    raw.write_all(&hello).await.unwrap();
    raw.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let frame: MonitorFrame = aifactory_common::codec::decode(&reply[4..]).unwrap();
    assert!(
        matches!(frame, MonitorFrame::Error(ref m) if m.contains("malformed")),
        "{frame:?}"
    );

    // Others are unaffected.
    let mut client = m.client().await;
    assert!(client.info().await.unwrap().exit.is_none());

    // A second request on a subscribed connection is refused; the stream goes on.
    let mut sub = tokio::net::UnixStream::connect(&socket).await.unwrap();
    sub.read_exact(&mut hello).await.unwrap();
    sub.write_all(&hello).await.unwrap();
    for request in [
        aifactory_common::pane::MonitorRequest::Subscribe { from: 0 },
        aifactory_common::pane::MonitorRequest::Info,
    ] {
        let bytes = aifactory_common::codec::encode(&request).unwrap();
        aifactory_common::frame::write_frame(&mut sub, &bytes)
            .await
            .unwrap();
    }
    let mut len = [0u8; 4];
    sub.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    sub.read_exact(&mut body).await.unwrap();
    let frame: MonitorFrame = aifactory_common::codec::decode(&body).unwrap();
    assert!(
        matches!(frame, MonitorFrame::Error(ref m) if m.contains("subscription")),
        "{frame:?}"
    );
    client.input(b"\n", WAIT).await.unwrap();
}

#[tokio::test]
async fn a_failed_start_says_why_on_stderr_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pane");
    std::fs::create_dir(&dir).unwrap();
    let out = monitor_command(&dir, tmp.path(), 1 << 20, &["/nonexistent/agent", "--x"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/agent"), "{err}");
    assert!(err.contains("No such file"), "{err}");
    assert!(!dir.join(MONITOR_SOCKET).exists());

    let missing = tmp.path().join("missing");
    let out = monitor_command(&missing, tmp.path(), 1 << 20, &["true"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[tokio::test]
async fn bad_arguments_are_refused_by_name_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pane");
    std::fs::create_dir(&dir).unwrap();
    let run = |args: Vec<&str>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_aifactory-pane"))
            .args(args)
            .output()
            .unwrap()
    };
    let dir_arg = dir.to_str().unwrap();
    let cwd = tmp.path().to_str().unwrap();
    for (args, needle) in [
        (vec![], "--dir is required"),
        (
            vec![
                "--dir",
                dir_arg,
                "--session",
                "s",
                "--cwd",
                cwd,
                "--cols",
                "80",
            ],
            "--rows is required",
        ),
        (
            vec![
                "--dir",
                dir_arg,
                "--session",
                "s",
                "--cwd",
                cwd,
                "--cols",
                "80",
                "--rows",
                "24",
                "--log-max",
                "9",
            ],
            "no program given",
        ),
        (
            vec![
                "--dir",
                dir_arg,
                "--session",
                "s",
                "--cwd",
                cwd,
                "--cols",
                "wide",
                "--rows",
                "24",
                "--log-max",
                "9",
                "--",
                "true",
            ],
            "--cols `wide` is not a width",
        ),
        (
            vec!["pane-monitor", "--dir", dir_arg],
            "unknown argument `pane-monitor`",
        ),
    ] {
        let out = run(args.clone());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("aifactory-pane: "), "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.contains("started by aifactoryd"), "{err}");
    }
    // Nothing was created.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

mod zygote {
    //! `aifactory-pane --zygote`: forks monitors on request.

    use std::ffi::OsString;
    use std::io::{IoSlice, Read};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::process::{Command, Stdio};

    use aifactory_pane::MonitorArgs;
    use aifactory_pane::zygote::encode;
    use nix::sys::socket::{
        AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recv, sendmsg, socketpair,
    };

    use super::*;

    struct Zygote {
        socket: OwnedFd,
        process: std::process::Child,
    }

    fn start_zygote() -> Zygote {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let process = Command::new(env!("CARGO_BIN_EXE_aifactory-pane"))
            .arg("--zygote")
            .env_clear()
            .env("ZYGOTE_OWN", "not for the program")
            .stdin(Stdio::from(theirs))
            .spawn()
            .unwrap();
        Zygote {
            socket: ours,
            process,
        }
    }

    /// Sends one request with fresh report and stderr pipes; returns the answer and the read
    /// ends.
    fn request(z: &Zygote, bytes: &[u8], fds: usize) -> (Vec<u8>, std::fs::File, std::fs::File) {
        let (report_r, report_w) = nix::unistd::pipe().unwrap();
        let (err_r, err_w) = nix::unistd::pipe().unwrap();
        let raw = [report_w.as_raw_fd(), err_w.as_raw_fd()];
        sendmsg::<()>(
            z.socket.as_raw_fd(),
            &[IoSlice::new(bytes)],
            &[ControlMessage::ScmRights(&raw[..fds])],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop((report_w, err_w));
        let mut answer = [0u8; 4096];
        let n = recv(z.socket.as_raw_fd(), &mut answer, MsgFlags::empty()).unwrap();
        (
            answer[..n].to_vec(),
            std::fs::File::from(report_r),
            std::fs::File::from(err_r),
        )
    }

    #[tokio::test]
    async fn forks_monitors_that_run_their_program_with_exactly_the_given_environment() {
        let mut z = start_zygote();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pane");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let args = MonitorArgs {
            dir: dir.clone(),
            session: "s-zygote".into(),
            name: None,
            cwd: tmp.path().to_path_buf(),
            cols: 80,
            rows: 24,
            log_max: 1 << 20,
            command: vec!["sh".into(), "-c".into(), "read x; env | sort".into()],
            cage: None,
            cgroups: Vec::new(),
        };
        let env = vec![
            (OsString::from("PATH"), OsString::from("/usr/bin:/bin")),
            (OsString::from("ODD"), OsString::from("a=b c")),
        ];
        let (answer, mut report, _err) = request(&z, &encode(&args.to_args(), &env), 2);
        assert_eq!(answer[0], b'P', "{}", String::from_utf8_lossy(&answer));
        let pid = u32::from_le_bytes(answer[1..5].try_into().unwrap());
        let mut line = String::new();
        report.read_to_string(&mut line).unwrap();
        let info: MonitorInfo = serde_json::from_str(&line).unwrap();
        assert_eq!(info.monitor_pid, pid);
        assert_eq!(info.session_id, "s-zygote");
        // Forked by the zygote, in a session of its own.
        let (_, ppid, _, sid) = proc_stat(pid).unwrap();
        assert_eq!(ppid, z.process.id());
        assert_eq!(sid, pid);

        let mut client = tokio::time::timeout(WAIT, MonitorClient::connect(&dir))
            .await
            .unwrap()
            .unwrap();
        let mut stream = MonitorClient::connect(&dir)
            .await
            .unwrap()
            .subscribe(0)
            .await
            .unwrap();
        client.input(b"\n", WAIT).await.unwrap();
        let (_, bytes, _, exit) = collect(&mut stream).await;
        assert_eq!(exit.code, Some(0));
        let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
        let vars: Vec<&str> = text
            .lines()
            .filter(|l| l.contains('='))
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .collect();
        assert_eq!(vars, ["ODD=a=b c", "PATH=/usr/bin:/bin"], "{text}");
        drop((client, stream));

        // The monitor ends on its own, and the zygote leaves no zombie of it.
        eventually("the monitor is gone and reaped", || {
            proc_stat(pid).is_none()
        })
        .await;

        // A bad request is refused with the reason, and the zygote serves on.
        let (answer, _, _) = request(&z, b"2\0--dir\0", 2);
        assert_eq!(answer[0], b'E');
        let (answer, _, _) = request(&z, &encode(&args.to_args(), &env), 1);
        assert!(
            String::from_utf8_lossy(&answer).contains("descriptors"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let mut bad = args.to_args();
        bad.retain(|a| a != "--cwd");
        let (answer, _, _) = request(&z, &encode(&bad, &env), 2);
        assert!(
            String::from_utf8_lossy(&answer).contains("--cwd"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        assert!(z.process.try_wait().unwrap().is_none());

        // Only the daemon's end closing ends the zygote: not a stop signal meant for both.
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            unsafe {
                libc::kill(z.process.id() as i32, signal);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(z.process.try_wait().unwrap().is_none(), "a signal ended it");

        // Monitors wait, prepared for the next sessions, each with its program's process. The
        // zygote refills its pool in the background: on a busy machine one snapshot may catch it
        // short, so wait for the pool to be full (a pool that never is fails at the timeout).
        let zygote = z.process.id();
        let mut waiting: Vec<u32> = Vec::new();
        let mut stubs: Vec<u32> = Vec::new();
        eventually("4 monitors wait, each with its program's process", || {
            waiting = children_of(zygote).iter().map(|(pid, _)| *pid).collect();
            stubs = waiting
                .iter()
                .flat_map(|&m| children_of(m))
                .map(|(pid, _)| pid)
                .collect();
            waiting.len() == 4 && stubs.len() == 4
        })
        .await;

        // The daemon's end closing ends the zygote, and the monitors that waited in vain.
        drop(z.socket);
        let status = z.process.wait().unwrap();
        assert!(status.success(), "{status}");
        for pid in waiting.iter().chain(&stubs) {
            eventually("a waiting monitor or its program's process ends", || {
                proc_stat(*pid).is_none_or(|(state, ..)| state == 'Z')
            })
            .await;
        }
    }
}
