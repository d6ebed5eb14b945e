//! Issue 17's figures for the web page, measured in Debian's headless Chromium (the tests'
//! driver, `tests/src/browser.rs`) against the release `aifactory-http` and `aifactoryd`, each
//! beside a peer measured in the same run on the same (shared, noisy) machine:
//!
//! 1. **First board paint** with 200 tasks: a load of `/` until every card is in the board
//!    and the frame that shows them has run (timed in the page from its navigation start,
//!    `performance.now()`, by a script injected before the page's own), beside fetching the
//!    same list as JSON (`fetch('/api/v1/tasks')` and `.json()`, in the same page, with the
//!    same cookie). Loads and fetches alternate; the bundle is in the browser's cache after
//!    the first load (its assets are immutable), as for a person who comes back.
//! 2. **Event to card moved**: a running task's progress file gets `phase: X` (X cycling
//!    planning, coding, qa), timed from just before the append until its card is in column X
//!    (a MutationObserver's timestamp in the page), beside the same `TaskPhase` event read by a
//!    plain SSE client of `/api/v1/events` in this process, both listening at once. The page's
//!    clock is mapped onto this process's by the eval with the shortest round trip out of 41
//!    (its half round trip bounds the error; Chromium also coarsens `performance.now()` to
//!    0.1 ms).
//! 3. **Console throughput**: a finished session's ~50 MB of base64 lines through the Live
//!    Console until xterm.js has parsed all of it (`received` is the size of output.log and
//!    `pending` is 0), from the page's navigation start, beside `aifactoryctl sessions tail`
//!    of the same session read to EOF.
//! 4. **Page memory after a long console**: one Live Console page on a session that prints
//!    ~20 MB, waits, then prints the rest of ~200 MB (an hour-long console approximated by
//!    volume), measured once xterm has parsed each part: the JS heap after a forced GC
//!    (`HeapProfiler.collectGarbage`, then `Runtime.getHeapUsage`). xterm's scrollback (10,000
//!    lines) bounds what the page keeps, so the two should be about equal.
//!
//! Run with `cargo build --release -p aifactoryd -p aifactory-pane -p aifactoryctl -p
//! aifactory-http && cargo bench -p aifactory-tests --bench web` (or `tests/bench/run-all
//! web`). Without chromium it prints `SKIPPED` and exits 0 (it fails under
//! `AIFACTORY_REQUIRE_ALL=1`). The markdown tables printed at the end are ready for
//! BENCHMARKS.md.
//!
//! One file past 600 lines on purpose: one bench binary, its four parts sharing one browser,
//! one page and one daemon.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aifactory_common::Client;
use aifactory_common::pane::OUTPUT_LOG;
use aifactory_common::protocol::{Reply, Request, SessionInfo};
use aifactory_tests::bench::{
    Latency, RunClock, create_task, fmt_duration, print_report, sized, start_task, tail_bytes,
    warn_if_stale,
};
use aifactory_tests::browser::{Browser, Page, TIMEOUT};
use aifactory_tests::session::new_session;
use aifactory_tests::web_page::{console_path, only_host};
use aifactory_tests::{Http, Sandbox, skip};
use chromiumoxide::cdp::browser_protocol::page::RemoveScriptToEvaluateOnNewDocumentParams;
use chromiumoxide::cdp::js_protocol::heap_profiler::CollectGarbageParams;
use chromiumoxide::cdp::js_protocol::runtime::GetHeapUsageParams;
use tokio::sync::mpsc;

static TASKS: LazyLock<usize> = LazyLock::new(|| sized(200, 3));
static LOAD_REPS: LazyLock<usize> = LazyLock::new(|| sized(21, 2));
static MOVES: LazyLock<usize> = LazyLock::new(|| sized(300, 3));
/// Random bytes base64'd into 76-column lines: the PTY's `\r\n` makes ~1.368× as many bytes.
static CONSOLE_RAW: LazyLock<u64> = LazyLock::new(|| sized(36_540_000, 150_000));
static CONSOLE_REPS: LazyLock<usize> = LazyLock::new(|| sized(3, 1));
static MEMORY_SMALL_RAW: LazyLock<u64> = LazyLock::new(|| sized(14_616_000, 15_000));
static MEMORY_BIG_RAW: LazyLock<u64> = LazyLock::new(|| sized(146_160_000, 150_000));
/// Calibrations of the page's clock; the one with the shortest round trip counts.
const CLOCK_PROBES: usize = 41;
/// A liveness bound for a loaded 2-core machine, not a target.
const SLOW: Duration = Duration::from_secs(300);

fn main() {
    let clock = RunClock::start();
    warn_if_stale(&["aifactoryd", "aifactoryctl", "aifactory-http"]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the bench's tokio runtime");
    if let Some(tables) = runtime.block_on(run()) {
        print_report(&clock.summary(None), &tables);
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
        * 1e3
}

fn ms(d: f64) -> Duration {
    Duration::from_secs_f64(d.max(0.0) / 1e3)
}

async fn run() -> Option<Vec<String>> {
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "pane_log_max = 1073741824\ndefault_agent = \"idle\"\n\
         [agents.idle]\nkind = \"custom\"\ncommand = [\"sleep\", \"1000\"]\n",
    );
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    sandbox.add_project("demo");
    let client = daemon.client().await;
    let browser = match Browser::launch(sandbox.path()).await {
        Ok(browser) => browser,
        Err(why) => {
            skip("web bench", &why.0);
            return None;
        }
    };
    let page = browser.new_page().await;
    page.set_viewport(1280, 800).await;

    let mut ids = Vec::new();
    for i in 0..*TASKS {
        let task = create_task(&daemon, &client, &format!("{i:03}-task"), "idle").await;
        ids.push(task.id);
    }
    eprintln!("{} tasks created", ids.len());
    page.goto(&shim.login_url()).await;
    page.wait_until(
        "location.pathname === '/' && document.querySelector('#board') !== null",
        "the board after the login link",
        TIMEOUT,
    )
    .await;

    // The console's own URL (the page's host-less one would look the host up first).
    let host = only_host(&page).await;
    let mut tables = vec![first_paint(&page, &shim).await];
    tables.push(card_moves(&daemon, &client, &page, &shim, &host, &ids[0]).await);
    tables.push(console_throughput(&client, &sandbox, &page, &shim, &host).await);
    tables.push(console_memory(&client, &sandbox, &page, &shim, &host).await);
    drop(page);
    browser.close();
    Some(tables)
}

// ---------------------------------------------------------------------------------------------
// 1. First board paint.

async fn first_paint(page: &Page, shim: &Http) -> String {
    let tasks = *TASKS;
    // Before the page's own scripts: the moment every card is in the board, then the end of
    // the frame that paints them (a task queued from its animation frame callback runs after
    // that frame).
    let probe = format!(
        "window.__board = null;
         new MutationObserver((_, observer) => {{
           if (document.querySelectorAll('#board .card').length < {tasks}) return;
           observer.disconnect();
           window.__board = {{present: performance.now(), paint: null}};
           requestAnimationFrame(() => setTimeout(() => {{ window.__board.paint = performance.now(); }}, 0));
         }}).observe(document, {{subtree: true, childList: true}});"
    );
    let script = page
        .cdp()
        .evaluate_on_new_document(probe)
        .await
        .expect("add the paint probe");
    let mut paints = Vec::new();
    let mut fetches = Vec::new();
    for rep in 0..*LOAD_REPS {
        page.goto(&shim.url("/")).await;
        page.wait_until(
            "window.__board !== null && window.__board.paint !== null",
            "every card painted",
            SLOW,
        )
        .await;
        let (present, paint): (f64, f64) = page
            .eval("[window.__board.present, window.__board.paint]")
            .await;
        let cards: usize = page
            .eval("document.querySelectorAll('#board .card').length")
            .await;
        assert_eq!(cards, tasks, "one card per task");
        let (took, listed): (f64, usize) = page
            .eval(
                "(async () => {
                   const t = performance.now();
                   const r = await fetch('/api/v1/tasks', {credentials: 'same-origin', cache: 'no-store'});
                   if (!r.ok) throw new Error('GET /api/v1/tasks: ' + r.status);
                   const j = await r.json();
                   return [performance.now() - t, Array.isArray(j) ? j.length : (j.tasks || []).length];
                 })()",
            )
            .await;
        assert_eq!(listed, tasks, "the JSON lists every task");
        eprintln!(
            "first paint rep {rep}: cards present {present:.1} ms, painted {paint:.1} ms; JSON {took:.2} ms"
        );
        // The first load fills the browser's cache; it is not counted.
        if rep > 0 || *LOAD_REPS == 1 {
            paints.push(ms(paint));
            fetches.push(ms(took));
        }
    }
    page.cdp()
        .execute(RemoveScriptToEvaluateOnNewDocumentParams::new(script))
        .await
        .expect("remove the paint probe");
    let paints = Latency::new(paints);
    let fetches = Latency::new(fetches);
    let mut out = String::new();
    writeln!(
        out,
        "| {tasks} tasks on the board | loads | median | min | max | ÷ JSON (median) |"
    )
    .unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|").unwrap();
    for (name, l) in [
        (
            "page load of `/` to the frame that paints every card (from navigation start, bundle cached)",
            &paints,
        ),
        (
            "`fetch('/api/v1/tasks')` + `.json()` in the same page (the peer)",
            &fetches,
        ),
    ] {
        writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {:.1}× |",
            l.len(),
            fmt_duration(l.median()),
            fmt_duration(l.min()),
            fmt_duration(l.max()),
            l.median().as_secs_f64() / fetches.median().as_secs_f64()
        )
        .unwrap();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 2. Event to card moved.

/// The offset of the page's clock (`performance.timeOrigin + performance.now()`) from this
/// process's (ms since the epoch), and the round trip of the probe it comes from.
async fn page_clock(page: &Page) -> (f64, f64) {
    let mut best = (0.0, f64::INFINITY);
    for _ in 0..CLOCK_PROBES {
        let before = now_ms();
        let theirs: f64 = page
            .eval("performance.timeOrigin + performance.now()")
            .await;
        let after = now_ms();
        let rtt = after - before;
        if rtt < best.1 {
            best = (theirs - (before + after) / 2.0, rtt);
        }
    }
    best
}

/// A plain SSE client: each `TaskPhase` event of `task` as (its new phase, when it was read).
async fn sse_phases(shim: &Http, task: &str) -> mpsc::UnboundedReceiver<(String, f64)> {
    let response = reqwest::Client::new()
        .get(shim.url("/api/v1/events"))
        .bearer_auth(&shim.token)
        .send()
        .await
        .expect("GET /api/v1/events");
    assert_eq!(response.status(), 200, "the event stream");
    let (tx, rx) = mpsc::unbounded_channel();
    let task = task.to_string();
    tokio::spawn(async move {
        let mut response = response;
        let mut text = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let at = now_ms();
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find('\n') {
                let line: String = text.drain(..=end).collect();
                let Some(data) = line.trim_end().strip_prefix("data:") else {
                    continue;
                };
                let Ok(event) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                    continue;
                };
                let moved = &event["kind"]["TaskPhase"];
                if moved["task_id"] == task.as_str()
                    && let Some(to) = moved["to"].as_str()
                    && tx.send((to.to_string(), at)).is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

async fn card_moves(
    daemon: &aifactory_tests::Daemon,
    client: &Client,
    page: &Page,
    shim: &Http,
    host: &str,
    id: &str,
) -> String {
    let task = start_task(daemon, client, id).await;
    let mut sse = sse_phases(shim, id).await;
    page.goto(&shim.url("/")).await;
    // The page's id of a card: `card-HOST-TASK`.
    let card = format!("document.getElementById('card-{host}-{id}')");
    page.wait_until(&format!("{card} !== null"), "the started task's card", SLOW)
        .await;
    page.eval::<()>(&format!(
        "window.__moves = [];
         window.__last = {card}?.closest('.column')?.dataset.phase;
         new MutationObserver(() => {{
           const phase = {card}?.closest('.column')?.dataset.phase;
           if (phase && phase !== window.__last) {{
             window.__last = phase;
             window.__moves.push({{phase, at: performance.timeOrigin + performance.now()}});
           }}
         }}).observe(document.querySelector('#board'), {{subtree: true, childList: true, attributes: true}})"
    ))
    .await;
    let (offset, rtt) = page_clock(page).await;
    eprintln!("page clock: offset {offset:.3} ms, probe round trip {rtt:.3} ms");
    // A started task may already be in planning: the cycle starts after the card's column.
    let current: Option<String> = page.eval("window.__last").await;
    let phases = ["planning", "coding", "qa"];
    let first = phases
        .iter()
        .position(|p| Some(*p) == current.as_deref())
        .map_or(0, |i| i + 1);
    let warmup = 3;
    let mut on_page = Vec::new();
    let mut on_sse = Vec::new();
    for i in 0..warmup + *MOVES {
        let phase = phases[(first + i) % phases.len()];
        let began = now_ms();
        append(&task.progress_file, &format!("phase: {phase}\n"));
        let sse_at = loop {
            let (to, at) = tokio::time::timeout(TIMEOUT, sse.recv())
                .await
                .expect("the TaskPhase event in time")
                .expect("the event stream open");
            if to == phase {
                break at;
            }
        };
        page.wait_until(
            &format!(
                "window.__moves.length === {} && window.__moves[{i}].phase === '{phase}'",
                i + 1
            ),
            &format!("the card in {phase}"),
            SLOW,
        )
        .await;
        let page_at: f64 = page.eval(&format!("window.__moves[{i}].at")).await;
        if i >= warmup {
            on_page.push(ms(page_at - offset - began));
            on_sse.push(ms(sse_at - began));
        }
    }
    let (offset_after, rtt_after) = page_clock(page).await;
    eprintln!("page clock after: offset {offset_after:.3} ms, probe round trip {rtt_after:.3} ms");
    let page_l = Latency::new(on_page);
    let sse_l = Latency::new(on_sse);
    let mut out = String::new();
    writeln!(out, "| `phase: X` appended to a running task's progress file → seen ({} moves, both at once) | p50 | p99 | max | ÷ SSE (p50) | ÷ SSE (p99) |", page_l.len()).unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|").unwrap();
    for (name, l) in [
        (
            "the card in the new column (MutationObserver in the page)",
            &page_l,
        ),
        (
            "the `TaskPhase` event on a plain SSE client of `/api/v1/events` (the peer)",
            &sse_l,
        ),
    ] {
        writeln!(
            out,
            "| {name} | {} | {} | {} | {:.1}× | {:.1}× |",
            fmt_duration(l.median()),
            fmt_duration(l.p99()),
            fmt_duration(l.max()),
            l.median().as_secs_f64() / sse_l.median().as_secs_f64(),
            l.p99().as_secs_f64() / sse_l.p99().as_secs_f64()
        )
        .unwrap();
    }
    writeln!(
        out,
        "\nThe page's clock was mapped onto the bench's by a probe with a {rtt:.2} ms round trip (so within ±{:.2} ms); the offset moved by {:.3} ms over the run.",
        rtt / 2.0,
        offset_after - offset
    )
    .unwrap();
    out
}

/// Opens for appending, writes, closes: what an agent's `echo ... >> file` does.
fn append(file: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap_or_else(|e| panic!("open {}: {e}", file.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", file.display()));
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. The Live Console.

/// A finished session that printed `raw` random bytes as base64 lines; its output.log's size.
async fn printed(client: &Client, sandbox: &Sandbox, raw: u64) -> (SessionInfo, u64) {
    let s = new_session(
        client,
        sandbox,
        &format!("head -c {raw} /dev/urandom | base64"),
    )
    .await;
    match client
        .request(Request::SessionWait { key: s.id.clone() })
        .await
    {
        Ok(Reply::Session(_)) => {}
        other => panic!("sessions wait failed: {other:?}"),
    }
    let size = std::fs::metadata(s.pane_dir.join(OUTPUT_LOG))
        .expect("the session's output.log")
        .len();
    (s, size)
}

/// Opens the session's Live Console and waits until xterm has parsed all `size` bytes; the
/// time from the navigation's start, in ms.
async fn console_to_end(page: &Page, shim: &Http, host: &str, session: &str, size: u64) -> f64 {
    page.goto(&shim.url(&console_path(host, session))).await;
    let done = format!(
        "(() => {{ const c = window.aifactory && window.aifactory.console;
           if (!c || c.received !== {size} || c.pending !== 0) return false;
           window.__consumedAt ??= performance.now(); return true; }})()"
    );
    page.wait_until(&done, "the terminal to consume everything", SLOW)
        .await;
    page.eval("window.__consumedAt").await
}

async fn console_throughput(
    client: &Client,
    sandbox: &Sandbox,
    page: &Page,
    shim: &Http,
    host: &str,
) -> String {
    let (s, size) = printed(client, sandbox, *CONSOLE_RAW).await;
    let mut browser_times = Vec::new();
    let mut tail_times = Vec::new();
    for rep in 0..*CONSOLE_REPS {
        for k in 0..2 {
            if (rep + k) % 2 == 0 {
                let took = console_to_end(page, shim, host, &s.id, size).await;
                eprintln!("console rep {rep}: browser {took:.0} ms for {size} bytes");
                browser_times.push(ms(took));
            } else {
                let started = std::time::Instant::now();
                let n = tail_bytes(sandbox.ctl_command(&["sessions", "tail", &s.id])).await;
                let took = started.elapsed();
                assert_eq!(n, size, "sessions tail: every byte");
                eprintln!(
                    "console rep {rep}: sessions tail {:.0} ms",
                    took.as_secs_f64() * 1e3
                );
                tail_times.push(took);
            }
        }
    }
    let browser_l = Latency::new(browser_times);
    let tail_l = Latency::new(tail_times);
    let mbps = |l: &Latency| size as f64 / 1e6 / l.median().as_secs_f64();
    let mut out = String::new();
    writeln!(out, "| {size} bytes of a finished session (base64 lines) | reps | median | min | max | MB/s (median) | ÷ `sessions tail` (time) |").unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|").unwrap();
    for (name, l) in [
        (
            "Live Console: page load until xterm.js has parsed every byte",
            &browser_l,
        ),
        (
            "`aifactoryctl sessions tail ID`, stdout read to EOF (the peer)",
            &tail_l,
        ),
    ] {
        writeln!(
            out,
            "| {name} | {} | {:.3} s | {:.3} s | {:.3} s | {:.1} | {:.2}× |",
            l.len(),
            l.median().as_secs_f64(),
            l.min().as_secs_f64(),
            l.max().as_secs_f64(),
            mbps(l),
            l.median().as_secs_f64() / tail_l.median().as_secs_f64()
        )
        .unwrap();
    }
    out
}

/// The page's JS heap after a forced GC: (used, backing stores of array buffers), bytes.
async fn heap(page: &Page) -> (f64, f64) {
    page.cdp()
        .execute(CollectGarbageParams::default())
        .await
        .expect("HeapProfiler.collectGarbage");
    let usage = page
        .cdp()
        .execute(GetHeapUsageParams::default())
        .await
        .expect("Runtime.getHeapUsage");
    (usage.result.used_size, usage.result.backing_storage_size)
}

async fn console_memory(
    client: &Client,
    sandbox: &Sandbox,
    page: &Page,
    shim: &Http,
    host: &str,
) -> String {
    // One page through the whole session: the first part, a pause, then the rest.
    let small = *MEMORY_SMALL_RAW;
    let rest = *MEMORY_BIG_RAW - small;
    let s = new_session(
        client,
        sandbox,
        &format!(
            "stty -echo; head -c {small} /dev/urandom | base64; echo part-one-done; read x; \
             head -c {rest} /dev/urandom | base64"
        ),
    )
    .await;
    page.goto(&shim.url(&console_path(host, &s.id))).await;
    // The session waits after the first part, so this is all of it.
    page.wait_until(
        "(() => { const c = window.aifactory && window.aifactory.console;
           if (!c || c.received === 0 || c.pending !== 0) return false;
           const b = c.term.buffer.active;
           for (let i = b.length - 1; i >= 0; i--) {
             const line = b.getLine(i).translateToString(true);
             if (line !== '') return line === 'part-one-done';
           }
           return false; })()",
        "the first part in the terminal",
        SLOW,
    )
    .await;
    let mut rows = Vec::new();
    let first: u64 = page.eval("window.aifactory.console.received").await;
    rows.push((first, memory_now(page).await));
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
    match client
        .request(Request::SessionWait { key: s.id.clone() })
        .await
    {
        Ok(Reply::Session(_)) => {}
        other => panic!("sessions wait failed: {other:?}"),
    }
    let size = std::fs::metadata(s.pane_dir.join(OUTPUT_LOG))
        .expect("the session's output.log")
        .len();
    page.wait_until(
        &format!(
            "window.aifactory.console.received === {size} && window.aifactory.console.pending === 0"
        ),
        "the whole output in the terminal",
        SLOW,
    )
    .await;
    rows.push((size, memory_now(page).await));
    let base = rows[0].1.1;
    let mut out = String::new();
    writeln!(out, "| one Live Console page, after this much of a session's output | lines kept by xterm | JS heap after GC (used) | array buffer backing stores | ÷ after the first part (heap) |").unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|").unwrap();
    for (size, (lines, used, backing)) in rows {
        writeln!(
            out,
            "| {:.1} MB | {lines} | {:.2} MB | {:.2} MB | {:.2}× |",
            size as f64 / 1e6,
            used / 1e6,
            backing / 1e6,
            used / base
        )
        .unwrap();
    }
    out
}

/// The console's lines kept and the page's heap: (lines, used, backing stores).
async fn memory_now(page: &Page) -> (usize, f64, f64) {
    let lines: usize = page
        .eval("window.aifactory.console.term.buffer.active.length")
        .await;
    let (used, backing) = heap(page).await;
    eprintln!("memory: {lines} lines kept; heap {used:.0} B, backing stores {backing:.0} B");
    (lines, used, backing)
}
