//! The web page in a real browser: Debian's headless Chromium (tests/src/browser.rs) against the
//! real `aifactory-http` and `aifactoryd`. Logging in, the board following a task's agent, the
//! Live Console (typing, colours, resizing, a daemon SIGKILL during output, output far beyond
//! xterm's write buffer in a background tab) and the status line
//! saying why the page is not live. Each test saves a screenshot under
//! `target/screenshots/` (README shows them).

use std::time::Duration;

use aifactory_tests::browser::{Browser, CookieSameSite, Page, TIMEOUT, screenshots};
use aifactory_tests::session::new_session;
use aifactory_tests::{Daemon, Http, Sandbox};
use nix::sys::signal::Signal;

/// A liveness bound for a loaded 2-core machine, not a speed target.
const SLOW: Duration = Duration::from_secs(120);

/// A browser logged in to `shim` through a one-time link, on the board.
async fn logged_in(test: &str, sandbox: &Sandbox, shim: &Http) -> Option<(Browser, Page)> {
    let browser = Browser::launch_or_skip(test, sandbox.path()).await?;
    let page = browser.new_page().await;
    page.set_viewport(1280, 800).await;
    page.goto(&shim.login_url()).await;
    page.wait_until(
        "location.pathname === '/' && document.querySelector('#board') !== null",
        "the board after the login link",
        TIMEOUT,
    )
    .await;
    Some((browser, page))
}

/// The Live Console's whole buffer (scrollback and screen), one string per line, trailing
/// blank lines dropped.
async fn terminal_lines(page: &Page) -> Vec<String> {
    let mut lines: Vec<String> = page
        .eval(
            "(() => { const b = window.aifactory.console.term.buffer.active; const out = [];
               for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
               return out; })()",
        )
        .await;
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

const TERMINAL_TEXT: &str =
    "(() => { const c = window.aifactory && window.aifactory.console; if (!c || !c.term) return '';
  const b = c.term.buffer.active; let s = '';
  for (let i = 0; i < b.length; i++) s += b.getLine(i).translateToString(true) + '\\n';
  return s; })()";

/// Waits until the console's buffer holds `needle`.
async fn wait_terminal(page: &Page, needle: &str, timeout: Duration) {
    page.wait_until(
        &format!("{TERMINAL_TEXT}.includes({needle:?})"),
        &format!("{needle:?} in the terminal"),
        timeout,
    )
    .await;
}

/// Opens a session's Live Console and waits until it is live.
async fn open_console(page: &Page, shim: &Http, session: &str) {
    page.goto(&shim.url(&format!("/sessions/{session}"))).await;
    page.wait_until(
        "document.querySelector('#console-status')?.dataset.state === 'live'",
        "the console to be live",
        TIMEOUT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_link_logs_in_once_and_a_wrong_token_says_why() {
    const TEST: &str = "a_login_link_logs_in_once_and_a_wrong_token_says_why";
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    let hash: String = page.eval("location.hash").await;
    assert_eq!(hash, "", "the code is gone from the address bar");
    let cookies = page.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c.name == "aifactory_session")
        .unwrap_or_else(|| panic!("the session cookie: {cookies:#?}"));
    assert!(session.http_only, "{session:#?}");
    assert_eq!(session.same_site, Some(CookieSameSite::Strict));
    let readable: String = page.eval("document.cookie").await;
    assert!(
        !readable.contains("aifactory_session"),
        "the page's script cannot read it"
    );
    let html: String = page.eval("document.documentElement.outerHTML").await;
    assert!(!html.contains(&shim.token), "no token in the page");

    // A fresh browser: the same link again is refused; a wrong token says why.
    drop(page);
    browser.close();
    let Some(browser) = Browser::launch_or_skip(TEST, &sandbox.path().join("second")).await else {
        return;
    };
    let page = browser.new_page().await;
    page.goto(&shim.url("/")).await;
    page.wait_until(
        "location.pathname === '/login' && document.querySelector('#login-token') !== null",
        "the login form, without a cookie",
        TIMEOUT,
    )
    .await;
    page.eval::<()>("document.querySelector('#login-token').focus()")
        .await;
    page.type_text(&"0".repeat(64)).await;
    page.press("Enter").await;
    page.wait_until(
        "(document.querySelector('#login-error')?.textContent || '').includes('not this shim')",
        "the wrong token's reason",
        TIMEOUT,
    )
    .await;
    page.eval::<()>("void (document.querySelector('#login-token').value = '')")
        .await;
    page.eval::<()>("document.querySelector('#login-token').focus()")
        .await;
    page.type_text(&shim.token).await;
    page.press("Enter").await;
    page.wait_until(
        "document.querySelector('#board') !== null",
        "the board after the right token",
        TIMEOUT,
    )
    .await;
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_the_daemon_is_down_naming_its_socket_and_recovers_by_itself() {
    const TEST: &str = "the_page_says_the_daemon_is_down_naming_its_socket_and_recovers_by_itself";
    let sandbox = Sandbox::new();
    let mut daemon: Daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    page.wait_until(
        "document.querySelector('#status')?.dataset.state === 'open'",
        "the page to be live",
        TIMEOUT,
    )
    .await;
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(SLOW).expect("the daemon stops");
    let socket = sandbox.socket().display().to_string();
    page.wait_until(
        &format!(
            "document.querySelector('#status')?.dataset.state === 'daemon_unavailable'
             && document.querySelector('#status').textContent.includes({socket:?})"
        ),
        "the status line naming the daemon's socket",
        SLOW,
    )
    .await;
    let status: String = page
        .eval("document.querySelector('#status').textContent")
        .await;
    assert!(status.contains("unavailable"), "{status}");
    page.screenshot(&screenshots().join("daemon-down.png"))
        .await;

    let _daemon = sandbox.daemon().start();
    page.wait_until(
        "document.querySelector('#status')?.dataset.state === 'open'",
        "the page live again, by itself",
        SLOW,
    )
    .await;
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_card_moves_across_the_columns_in_order_and_its_bar_reaches_100() {
    const TEST: &str = "a_tasks_card_moves_across_the_columns_in_order_and_its_bar_reaches_100";
    let sandbox = Sandbox::new();
    let project = sandbox.path().join("demo");
    let gate = project.join(".aifactory/worktrees/tasks/001-login-page/.gate");
    // Each phase waits for the test to open its gate, so every column is seen.
    let script = format!(
        "g={gate:?}; p=\"$AIFACTORY_PROGRESS_FILE\"; mkfifo \"$g\"
         # A read that opened while the last writer was closing sees only its EOF: wait again.
         pass() {{ x=; while [ \"$x\" != go ]; do read x < \"$g\"; done; }}
         printf 'phase: planning\\nprogress: 10\\nsubtask: 1/4\\n' >> \"$p\"; pass
         printf 'phase: coding\\nprogress: 50\\nsubtask: 2/4\\n' >> \"$p\"; pass
         printf 'phase: qa\\nprogress: 90\\nsubtask: 3/4\\n' >> \"$p\"; pass
         printf 'progress: 100\\nsubtask: 4/4\\n' >> \"$p\"; pass",
        gate = gate.display().to_string()
    );
    sandbox.write_config(&format!(
        "default_agent = \"gated\"\n[agents.gated]\nkind = \"custom\"\ncommand = [\"sh\", \"-c\", {script:?}]\n"
    ));
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    sandbox.add_project("demo");
    let id = sandbox.create_task("demo", "001-login-page", &["--title", "Login page"]);
    sandbox.create_task("demo", "002-rate-limit", &["--title", "Rate limit the API"]);
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    let card = format!("document.querySelector('.card[data-task-id=\"{id}\"]')");
    page.wait_until(
        &format!("{card}?.closest('#column-backlog') != null"),
        "the new task's card in backlog",
        TIMEOUT,
    )
    .await;
    // Every phase the card shows, in order, as the page's own DOM changes say.
    page.eval::<()>(&format!(
        "window.phasesSeen = [{card}.dataset.phase];
         new MutationObserver(() => {{
           const c = {card}; const last = window.phasesSeen[window.phasesSeen.length - 1];
           if (c && c.dataset.phase !== last) window.phasesSeen.push(c.dataset.phase);
         }}).observe(document.querySelector('#board'), {{subtree: true, childList: true, attributes: true}})"
    ))
    .await;
    page.eval::<()>(&format!(
        "{card}.querySelector('button[data-action=start]').click()"
    ))
    .await;

    // The agent waits in `read < gate`; a writer that finds no reader fails at once (ENXIO)
    // instead of blocking, so a stuck agent fails the test rather than hanging it.
    let open_gate = || {
        let gate = gate.clone();
        async move {
            let deadline = std::time::Instant::now() + SLOW;
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                loop {
                    match std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(nix::libc::O_NONBLOCK)
                        .open(&gate)
                    {
                        Ok(mut fifo) => return fifo.write_all(b"go\n").unwrap(),
                        Err(e)
                            if std::time::Instant::now() < deadline
                                && matches!(
                                    e.raw_os_error(),
                                    Some(nix::libc::ENXIO) | Some(nix::libc::ENOENT)
                                ) =>
                        {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            panic!("the agent never waited at its gate {}: {e}", gate.display())
                        }
                    }
                }
            })
            .await
            .unwrap()
        }
    };
    for (phase, percent, subtasks) in [
        ("planning", 10, "1/4"),
        ("coding", 50, "2/4"),
        ("qa", 90, "3/4"),
    ] {
        page.wait_until(
            &format!(
                "{card}?.closest('#column-{phase}') != null
                 && {card}.querySelector('progress')?.value === {percent}
                 && {card}.querySelector('.card-subtasks')?.textContent.includes('{subtasks}')"
            ),
            &format!("the card in {phase} at {percent}% with subtask {subtasks}"),
            SLOW,
        )
        .await;
        if phase == "coding" {
            page.screenshot(&screenshots().join("board.png")).await;
        }
        open_gate().await;
    }
    page.wait_until(
        &format!("{card}?.querySelector('progress')?.value === 100"),
        "the bar at 100",
        SLOW,
    )
    .await;
    open_gate().await;
    page.wait_until(
        &format!("{card}?.closest('#column-done') != null"),
        "the card in done",
        SLOW,
    )
    .await;
    let seen: Vec<String> = page.eval("window.phasesSeen").await;
    assert_eq!(
        seen,
        ["backlog", "planning", "coding", "qa", "done"],
        "the card's columns, in order"
    );

    // The task page: its progress notes and its console one click away.
    page.eval::<()>(&format!("{card}.querySelector('a.card-spec').click()"))
        .await;
    page.wait_until(
        &format!("location.pathname === '/tasks/{id}'"),
        "the task page",
        TIMEOUT,
    )
    .await;
    page.screenshot(&screenshots().join("task.png")).await;
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_task_shows_its_badge_with_the_evidence() {
    const TEST: &str = "a_stalled_task_shows_its_badge_with_the_evidence";
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "default_agent = \"quiet\"\nstall_after = 1\n[agents.quiet]\nkind = \"custom\"\ncommand = [\"sleep\", \"300\"]\n",
    );
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    sandbox.add_project("demo");
    let id = sandbox.create_task("demo", "001-quiet", &[]);
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    sandbox.ctl(&["tasks", "start", &id]).assert_ok();
    let card = format!("document.querySelector('.card[data-task-id=\"{id}\"]')");
    page.wait_until(
        &format!(
            "({card}?.querySelector('.badge-stalled')?.title || '').includes('stalled since')"
        ),
        "the stalled badge with its evidence",
        SLOW,
    )
    .await;
    let evidence: String = page
        .eval(&format!("{card}.querySelector('.badge-stalled').title"))
        .await;
    let shown = sandbox.show_task(&id);
    let pid = shown["stall"]["pid"]
        .as_u64()
        .expect("the daemon's evidence names the pid");
    assert!(
        evidence.contains("no sign of life for 1 s") && evidence.contains(&format!("pid {pid}")),
        "the badge's title is the daemon's evidence: {evidence}"
    );
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_types_renders_colours_and_resizes_the_pty() {
    const TEST: &str = "the_console_types_renders_colours_and_resizes_the_pty";
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let client = daemon.client().await;
    let s = new_session(
        &client,
        &sandbox,
        "printf 'plain \\033[31mRED\\033[0m \\033[1;32mGREEN\\033[0m\\n'; exec sh -i",
    )
    .await;
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    open_console(&page, &shim, &s.id).await;
    wait_terminal(&page, "plain RED GREEN", TIMEOUT).await;

    // Colours are cells' attributes in xterm's buffer, not pixels.
    let colours: Vec<(String, String, bool)> = page
        .eval(
            "(() => { const b = window.aifactory.console.term.buffer.active; const out = [];
               for (let y = 0; y < b.length; y++) {
                 const line = b.getLine(y); const text = line.translateToString(true);
                 const at = text.indexOf('plain RED');
                 if (at < 0) continue;
                 for (const [word, x] of [['plain', at], ['RED', at + 6], ['GREEN', at + 10]]) {
                   const cell = line.getCell(x);
                   const fg = cell.isFgDefault() ? 'default'
                     : cell.isFgPalette() ? `palette ${cell.getFgColor()}` : `rgb ${cell.getFgColor()}`;
                   out.push([word, fg, cell.isBold() !== 0]);
                 }
                 break;
               }
               return out; })()",
        )
        .await;
    assert_eq!(
        colours,
        [
            ("plain".into(), "default".into(), false),
            ("RED".into(), "palette 1".into(), false),
            ("GREEN".into(), "palette 2".into(), true),
        ],
        "default, red and bold green cells"
    );

    // Typing reaches the shell; its echo and its answer come back.
    page.eval::<()>("window.aifactory.console.term.focus()")
        .await;
    page.type_text("echo typed-$((6*7))\n").await;
    wait_terminal(&page, "typed-42", TIMEOUT).await;

    // The window's size reaches the PTY.
    let mut size: (u32, u32) = page
        .eval("[window.aifactory.console.term.cols, window.aifactory.console.term.rows]")
        .await;
    for (width, height) in [(1000, 700), (640, 420)] {
        page.set_viewport(width, height).await;
        // The terminal refits on the next frame; its resize goes out before what is typed next.
        page.wait_until(
            &format!(
                "(() => {{ const t = window.aifactory.console.term;
                   return window.innerWidth === {width} && (t.cols !== {} || t.rows !== {}); }})()",
                size.0, size.1
            ),
            &format!("the terminal refitted to {width}x{height}"),
            TIMEOUT,
        )
        .await;
        size = page
            .eval(
                "new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() =>
                   resolve([window.aifactory.console.term.cols, window.aifactory.console.term.rows]))))",
            )
            .await;
        let marker = format!("size-{width}");
        page.type_text(&format!("echo {marker} $(stty size)\n"))
            .await;
        wait_terminal(&page, &format!("{marker} {} {}", size.1, size.0), TIMEOUT).await;
    }
    page.set_viewport(1280, 800).await;
    page.screenshot(&screenshots().join("console.png")).await;
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_sigkill_during_output_loses_no_byte_of_the_console() {
    const TEST: &str = "a_daemon_sigkill_during_output_loses_no_byte_of_the_console";
    let sandbox = Sandbox::new();
    let mut daemon: Daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let client = daemon.client().await;
    let s = new_session(
        &client,
        &sandbox,
        "i=0; while [ $i -lt 4000 ]; do echo line-$i; i=$((i+1)); \
         if [ $((i % 40)) = 0 ]; then sleep 0.02; fi; done; echo all-done; sleep 300",
    )
    .await;
    drop(client);
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    open_console(&page, &shim, &s.id).await;
    wait_terminal(&page, "line-300\n", SLOW).await;
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(SLOW).expect("the daemon is killed");
    let _daemon = sandbox.daemon().start();
    wait_terminal(&page, "all-done", SLOW).await;

    let log = std::fs::read(s.pane_dir.join(aifactory_common::pane::OUTPUT_LOG)).unwrap();
    let log = String::from_utf8(log).unwrap();
    let mut expected: Vec<String> = log.split("\r\n").map(str::to_string).collect();
    while expected.last().is_some_and(|l| l.is_empty()) {
        expected.pop();
    }
    let shown = terminal_lines(&page).await;
    assert_eq!(shown.len(), expected.len(), "as many lines as output.log");
    assert!(
        shown == expected,
        "the terminal's text is output.log's, line for line (first difference at {:?})",
        shown.iter().zip(&expected).position(|(a, b)| a != b)
    );
    assert_eq!(shown.last().map(String::as_str), Some("all-done"));
    browser.close();
}

// ---------------------------------------------------------------------------------------------
// The Live Console's flow control: far more output than xterm.js buffers, all of it shown.

/// xterm.js 6 throws a write away ("write data discarded, use flow control to avoid losing
/// data") once more than 50 MB waits in its write buffer. 15,000,000 numbered lines (133.9 MB
/// with the PTY's `\r\n`), printed at full speed while the console's tab is in the background,
/// must all reach the terminal: every line feed parsed, the last lines output.log's,
/// `received` its size, and no discard in the page's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_every_byte_of_output_far_beyond_xterms_write_buffer() {
    const TEST: &str = "the_console_shows_every_byte_of_output_far_beyond_xterms_write_buffer";
    const LINES: u64 = 15_000_000;
    let sandbox = Sandbox::new();
    // No rotation: every byte stays in output.log, to compare with.
    sandbox.write_config("pane_log_max = 1073741824\n");
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let client = daemon.client().await;
    // The output waits for a newline, so the page counts line feeds from the first byte; it
    // is written to a file first so that it then comes as fast as the PTY takes it.
    let s = new_session(
        &client,
        &sandbox,
        &format!("seq 1 {LINES} > lines.txt; stty -echo; read x; cat lines.txt"),
    )
    .await;
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    open_console(&page, &shim, &s.id).await;
    page.eval::<()>(
        "window.lineFeeds = 0;
         void window.aifactory.console.term.onLineFeed(() => { window.lineFeeds++; })",
    )
    .await;
    // A background tab (the user looks elsewhere): the browser throttles xterm's timers, so
    // it parses slowly, while the WebSocket's messages keep arriving at full speed.
    let other = browser.new_page().await;
    other.cdp().bring_to_front().await.unwrap();
    let visibility: String = page.eval("document.visibilityState").await;
    assert_eq!(
        visibility, "hidden",
        "the console's tab is in the background"
    );
    match client
        .request(aifactory_common::protocol::Request::SessionInput {
            key: s.id.clone(),
            data: b"\n".to_vec(),
        })
        .await
    {
        Ok(aifactory_common::protocol::Reply::Done) => {}
        other => panic!("input failed: {other:?}"),
    }
    match client
        .request(aifactory_common::protocol::Request::SessionWait { key: s.id.clone() })
        .await
    {
        Ok(aifactory_common::protocol::Reply::Session(_)) => {}
        other => panic!("sessions wait failed: {other:?}"),
    }
    let log = std::fs::read(s.pane_dir.join(aifactory_common::pane::OUTPUT_LOG)).unwrap();
    let feeds = log.iter().filter(|b| **b == b'\n').count() as u64;
    assert_eq!(feeds, LINES, "output.log holds the whole of seq's output");
    page.wait_until(
        &format!(
            "window.aifactory.console.received === {} && window.aifactory.console.state === 'ended'",
            log.len()
        ),
        "every byte received and the session ended",
        SLOW * 2,
    )
    .await;
    page.cdp().bring_to_front().await.unwrap();
    // Whatever the page still holds back, then whatever xterm has not parsed yet.
    page.wait_until(
        "(window.aifactory.console.pending ?? 0) === 0",
        "the page to hand xterm everything",
        SLOW * 2,
    )
    .await;
    let parsed: u64 = page
        .eval("new Promise((r) => window.aifactory.console.term.write('', () => r(window.lineFeeds)))")
        .await;
    let discarded: Vec<String> = page
        .console()
        .into_iter()
        .filter(|l| l.contains("discarded"))
        .collect();
    assert!(
        discarded.is_empty(),
        "xterm discarded output: {discarded:?}"
    );
    assert_eq!(
        parsed, LINES,
        "every line feed of output.log reached xterm's parser"
    );
    let text = String::from_utf8(log).unwrap();
    let expected: Vec<&str> = text.trim_end().split("\r\n").collect();
    let shown = terminal_lines(&page).await;
    let tail = 50;
    assert_eq!(
        shown[shown.len() - tail..],
        expected[expected.len() - tail..],
        "the terminal's last lines are output.log's"
    );
    assert_eq!(
        shown.last().map(String::as_str),
        Some(LINES.to_string().as_str())
    );
    browser.close();
}
