//! The sessions page and the Live Console's ends and gaps in a real browser (Debian's headless
//! Chromium against the real `aifactory-http` and `aifactoryd`): the sessions table, a killed
//! session (ended, naming the signal), a lost one (its monitor SIGKILLed), an id that does not
//! exist (gone, and no retrying), a signed-out console (a link to sign in), output rotated away
//! before it was shown (the `lagged` notice, then exactly what is left), and a shim restart in
//! the middle of the output (the page reconnects by itself, losing and doubling nothing), and
//! output far beyond xterm.js's write buffer in a background tab (flow control: all shown). Each
//! test saves a screenshot under `target/screenshots/`.

use std::path::Path;

use aifactory_common::pane::OUTPUT_LOG;
use aifactory_tests::browser::{Page, TIMEOUT, screenshots};
use aifactory_tests::session::new_session;
use aifactory_tests::wait::wait_until_async;
use aifactory_tests::web_page::{
    OnConsole, SLOW, assert_no_csp_refusal, assert_terminal_shows, console_path, logged_in,
    on_console, only_host, open_console, output_log_lines, terminal_lines, terminal_text_of,
    wait_console_state, wait_terminal,
};
use aifactory_tests::{Http, Sandbox};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The console's status line.
async fn console_status(page: &Page) -> String {
    page.eval("document.querySelector('#console-status').textContent")
        .await
}

/// Session `id` as `aifactoryctl sessions show ID --json` prints it.
fn show_session(sandbox: &Sandbox, id: &str) -> serde_json::Value {
    sandbox
        .ctl(&["sessions", "show", id, "--json"])
        .assert_ok()
        .json()
}

/// Waits until the session's `output.log` holds `needle`.
async fn wait_output(pane_dir: &Path, needle: &str) {
    let log = pane_dir.join(OUTPUT_LOG);
    wait_until_async(
        &format!("{needle:?} in {}", log.display()),
        SLOW,
        async || String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).contains(needle),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_page_lists_every_session_with_its_state_and_command_and_opens_its_console() {
    const TEST: &str =
        "the_sessions_page_lists_every_session_with_its_state_and_command_and_opens_its_console";
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let client = daemon.client().await;
    let running = new_session(&client, &sandbox, "echo running-one; exec sleep 300").await;
    let exited = new_session(&client, &sandbox, "echo exiting; exit 3").await;
    let waited = sandbox.ctl(&["sessions", "wait", &exited.id]);
    assert_eq!(waited.code, Some(3), "{waited:?}");
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    page.goto(&shim.url("/sessions")).await;
    let rows = "document.querySelectorAll('#sessions-table tr[data-session-id]')";
    page.wait_until(&format!("{rows}.length === 2"), "both sessions", TIMEOUT)
        .await;

    // While the page is open, a new session appears by itself (the event stream).
    let later = new_session(&client, &sandbox, "echo later; exec sleep 300").await;
    page.wait_until(
        &format!(
            "document.querySelector('#sessions-table tr[data-session-id=\"{}\"]') !== null",
            later.id
        ),
        "the session started while the page was open",
        TIMEOUT,
    )
    .await;

    // Each row is what the CLI lists: every session, its state and its command.
    let shown: Vec<(String, String, String, String)> = page
        .eval(&format!(
            "[...{rows}].map((r) => [r.dataset.sessionId, r.dataset.state,
               r.querySelector('.state').textContent, r.querySelector('.command').textContent])"
        ))
        .await;
    let listed = sandbox
        .ctl(&["sessions", "list", "--json"])
        .assert_ok()
        .json();
    let listed = listed
        .as_array()
        .unwrap_or_else(|| panic!("sessions list --json is not a list: {listed}"));
    assert_eq!(shown.len(), listed.len(), "{shown:?}\n{listed:#?}");
    for session in listed {
        let id = session["id"].as_str().unwrap_or_default();
        let (_, state, state_text, command) = shown
            .iter()
            .find(|(shown_id, ..)| shown_id == id)
            .unwrap_or_else(|| panic!("no row for session {id}: {shown:?}"));
        assert_eq!(state, session["state"].as_str().unwrap_or_default(), "{id}");
        let words: Vec<&str> = session["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{session:#}"))
            .iter()
            .map(|w| w.as_str().unwrap_or_default())
            .collect();
        assert_eq!(command, &words.join(" "), "{id}'s command");
        if id == exited.id {
            assert_eq!(state_text, "exited (exited 3)", "the exit status is shown");
        } else {
            assert_eq!(state_text, "running", "{id}");
        }
    }
    assert!(shown.iter().any(|(id, ..)| id == &running.id), "{shown:?}");
    page.screenshot(&screenshots().join("sessions.png")).await;

    // Its console link opens its Live Console, with its output.
    page.eval::<()>(&format!(
        "document.querySelector('#sessions-table tr[data-session-id=\"{}\"] .console-link').click()",
        running.id
    ))
    .await;
    let host = only_host(&page).await;
    page.wait_until(
        &format!(
            "location.pathname === {:?}",
            console_path(&host, &running.id)
        ),
        "the console's address",
        TIMEOUT,
    )
    .await;
    wait_console_state(&page, "live", TIMEOUT).await;
    wait_terminal(&page, "running-one", TIMEOUT).await;
    assert_no_csp_refusal(&page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sessions_console_says_it_ended_and_names_the_signal() {
    const TEST: &str = "a_killed_sessions_console_says_it_ended_and_names_the_signal";
    let sandbox = Sandbox::new();
    let Some(OnConsole {
        page,
        browser,
        session: s,
        shim: _shim,
        daemon: _daemon,
    }) = on_console(TEST, &sandbox, "echo ready; exec sleep 300").await
    else {
        return;
    };
    wait_terminal(&page, "ready", TIMEOUT).await;

    sandbox.ctl(&["sessions", "kill", &s.id]).assert_ok();
    let shown = show_session(&sandbox, &s.id);
    let signal = shown["exit"]["signal"]
        .as_u64()
        .unwrap_or_else(|| panic!("killed, so ended by a signal: {shown:#}"));
    wait_console_state(&page, "ended", SLOW).await;
    let status = console_status(&page).await;
    assert!(
        status.contains("ended") && status.contains(&format!("signal {signal}")),
        "the status line says it ended and names signal {signal}: {status}"
    );
    let typing: bool = page
        .eval("window.aifactory.console.term.options.disableStdin")
        .await;
    assert!(typing, "an ended session takes no typing");
    page.screenshot(&screenshots().join("console-ended.png"))
        .await;
    assert_no_csp_refusal(&page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_monitor_was_sigkilled_shows_lost_with_the_reason() {
    const TEST: &str = "a_session_whose_monitor_was_sigkilled_shows_lost_with_the_reason";
    let sandbox = Sandbox::new();
    // Outlives its monitor (whose end hangs up the terminal): only the daemon's clean-up ends it.
    let script = "trap '' HUP; echo ready; while :; do sleep 0.2; done";
    let Some(OnConsole {
        page,
        browser,
        session: s,
        shim: _shim,
        daemon: _daemon,
    }) = on_console(TEST, &sandbox, script).await
    else {
        return;
    };
    let monitor = s.monitor_pid.expect("the session's monitor pid");
    wait_terminal(&page, "ready", TIMEOUT).await;

    kill(Pid::from_raw(monitor as i32), Signal::SIGKILL).expect("SIGKILL the monitor");
    wait_console_state(&page, "lost", SLOW).await;
    let shown = show_session(&sandbox, &s.id);
    assert_eq!(shown["state"], "lost", "{shown:#}");
    let reason = shown["lost_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("monitor"), "{shown:#}");
    // The whole reason (the close frame's is cut to 120 bytes), said once.
    let whole = format!("Session lost: {reason}.");
    page.wait_until(
        &format!("document.querySelector('#console-status').textContent === {whole:?}"),
        "the status line saying lost and why",
        TIMEOUT,
    )
    .await;
    page.screenshot(&screenshots().join("console-lost.png"))
        .await;
    assert_no_csp_refusal(&page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_does_not_exist_is_gone_and_the_console_does_not_retry() {
    const TEST: &str = "a_session_that_does_not_exist_is_gone_and_the_console_does_not_retry";
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    let host = only_host(&page).await;
    page.goto(&shim.url(&console_path(&host, "s-00000000")))
        .await;
    wait_console_state(&page, "gone", TIMEOUT).await;
    let status = console_status(&page).await;
    assert!(status.contains("gone"), "{status}");
    // Nothing to wait for: a retry would be the page's own timer, its first after 250 ms. Give
    // it several times that, then check that none ran.
    let (state, connects, socket, status): (String, u32, bool, String) = page
        .eval(
            "new Promise((resolve) => setTimeout(() => { const c = window.aifactory.console;
               resolve([c.state, c.connects, c.socket !== null, c.status]); }, 2000))",
        )
        .await;
    assert_eq!(
        (state.as_str(), connects, socket),
        ("gone", 1, false),
        "one connection, no retry: {status}"
    );
    assert!(!status.contains("Reconnecting"), "{status}");
    page.screenshot(&screenshots().join("console-gone.png"))
        .await;
    assert_no_csp_refusal(&page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_signing_out_the_console_says_unauthorized_and_links_to_sign_in() {
    const TEST: &str = "after_signing_out_the_console_says_unauthorized_and_links_to_sign_in";
    let sandbox = Sandbox::new();
    let Some(OnConsole {
        page,
        browser,
        session: s,
        shim: _shim,
        daemon: _daemon,
    }) = on_console(TEST, &sandbox, "echo ready; exec sleep 300").await
    else {
        return;
    };
    wait_terminal(&page, "ready", TIMEOUT).await;
    let path = console_path(&only_host(&page).await, &s.id);
    page.eval::<()>("document.querySelector('#logout').click()")
        .await;
    page.wait_until(
        "location.pathname === '/login' && document.querySelector('#login-token') !== null",
        "the sign-in page after signing out",
        TIMEOUT,
    )
    .await;

    // Back to the console: it stays (its page is still worth reading) and says why it is not live.
    page.eval::<()>("history.back()").await;
    wait_console_state(&page, "unauthorized", TIMEOUT).await;
    let (pathname, href): (String, String) = page
        .eval("[location.pathname, document.querySelector('#console-login-link')?.getAttribute('href')]")
        .await;
    assert_eq!(pathname, path, "the console stays");
    assert_eq!(
        href,
        format!("/login?next={}", path.replace('/', "%2F")),
        "the link signs in and comes back"
    );
    let status = console_status(&page).await;
    assert!(status.contains("Not signed in"), "{status}");
    page.screenshot(&screenshots().join("console-unauthorized.png"))
        .await;
    page.eval::<()>("document.querySelector('#console-login-link').click()")
        .await;
    page.wait_until(
        "location.pathname === '/login' && document.querySelector('#login-token') !== null",
        "the sign-in page from the console's link",
        TIMEOUT,
    )
    .await;
    assert_no_csp_refusal(&page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_rotated_away_before_it_was_shown_gives_the_lagged_notice_and_then_exactly_the_rest()
{
    const TEST: &str =
        "output_rotated_away_before_it_was_shown_gives_the_lagged_notice_and_then_exactly_the_rest";
    let sandbox = Sandbox::new();
    // The smallest rotation: output.log and one older segment of 4 KiB are kept.
    sandbox.write_config("pane_log_max = 4096\n");
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let client = daemon.client().await;
    let s = new_session(&client, &sandbox, "seq 1 3000; echo DONE; exec sleep 300").await;
    drop(client);
    wait_output(&s.pane_dir, "\r\nDONE\r\n").await;
    let older = std::fs::read(s.pane_dir.join("output.log.1")).expect("a rotated segment");
    let newer = std::fs::read(s.pane_dir.join(OUTPUT_LOG)).expect("output.log");
    let rotation: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.pane_dir.join("rotation.json")).expect("rotation.json"),
    )
    .expect("rotation.json is JSON");
    let base = rotation["base"].as_u64().expect("rotation.json's base");
    let kept_from = base - older.len() as u64;
    assert!(kept_from > 0, "some output was rotated away");
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };

    // The console asks for everything from byte 0: what is gone is said, the rest shown.
    open_console(&page, &shim, &s.id).await;
    wait_terminal(&page, "DONE", TIMEOUT).await;
    let lagged: Vec<(u64, u64)> = page
        .eval("window.aifactory.console.lagged.map((l) => [l.requested, l.resume_from])")
        .await;
    assert_eq!(
        lagged,
        [(0, kept_from)],
        "one lagged notice, from 0 to the oldest byte kept"
    );
    let notice: String = page
        .eval(
            "(() => { const n = document.querySelector('#console-notice');
               return n.hidden ? '' : n.textContent; })()",
        )
        .await;
    assert!(
        notice.starts_with("Lagged: ")
            && notice.contains(&format!("{kept_from} bytes"))
            && notice.contains(&format!("from byte 0 to {kept_from}")),
        "the notice says what was lost: {notice}"
    );
    let (offset, received): (u64, u64) = page
        .eval("[window.aifactory.console.offset, window.aifactory.console.received]")
        .await;
    assert_eq!(
        received,
        (older.len() + newer.len()) as u64,
        "every byte kept, once"
    );
    assert_eq!(
        offset,
        base + newer.len() as u64,
        "the next offset is the end"
    );
    let mut kept = older;
    kept.extend_from_slice(&newer);
    assert_terminal_shows(&page, &terminal_text_of(&kept), "the kept segments'").await;
    page.screenshot(&screenshots().join("console-lagged.png"))
        .await;
    assert_no_csp_refusal(&page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reconnects_by_itself_across_a_shim_restart_losing_and_doubling_nothing() {
    const TEST: &str =
        "the_console_reconnects_by_itself_across_a_shim_restart_losing_and_doubling_nothing";
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let mut shim: Http = sandbox.http().start();
    let listen = shim.base.trim_start_matches("http://").to_string();
    let gate = sandbox.path().join("gate");
    // Numbered lines, then more once the gate exists (while the shim is down), then one line
    // read from the terminal.
    let script = format!(
        "i=0; while [ $i -lt 500 ]; do echo early-$i; i=$((i+1)); done
         while [ ! -e {gate:?} ]; do sleep 0.05; done
         i=0; while [ $i -lt 3000 ]; do echo late-$i; i=$((i+1));
           if [ $((i % 50)) = 0 ]; then sleep 0.01; fi; done
         echo all-done; read line; echo \"got:$line\"; exec sleep 300",
        gate = gate.display().to_string()
    );
    let client = daemon.client().await;
    let s = new_session(&client, &sandbox, &script).await;
    drop(client);
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    open_console(&page, &shim, &s.id).await;
    wait_terminal(&page, "early-499\n", SLOW).await;
    let before: u32 = page.eval("window.aifactory.console.connects").await;

    // The shim stops; the session goes on printing while nothing serves the page.
    shim.signal(Signal::SIGTERM);
    shim.wait_exit(SLOW).expect("the shim stops");
    drop(shim);
    page.wait_until(
        "window.aifactory.console.state !== 'live'",
        "the console to notice",
        TIMEOUT,
    )
    .await;
    page.screenshot(&screenshots().join("console-reconnecting.png"))
        .await;
    std::fs::write(&gate, "").expect("open the gate");
    wait_output(&s.pane_dir, "late-100\r\n").await;

    // The same address again: the page finds it by itself.
    let shim = sandbox
        .http()
        .arg("--listen")
        .arg(&listen)
        .log_name("http-again")
        .start();
    assert_eq!(shim.base, format!("http://{listen}"));
    page.wait_until(
        &format!(
            "window.aifactory.console.state === 'live' && window.aifactory.console.connects > {before}"
        ),
        "the console live again, by itself",
        SLOW,
    )
    .await;
    wait_terminal(&page, "all-done", SLOW).await;
    let expected = output_log_lines(&s.pane_dir);
    assert_eq!(expected.last().map(String::as_str), Some("all-done"));
    assert_terminal_shows(&page, &expected, "output.log's").await;
    let (start, offset, received, lagged): (u64, u64, u64, usize) = page
        .eval(
            "(() => { const c = window.aifactory.console;
               return [c.start, c.offset, c.received, c.lagged.length]; })()",
        )
        .await;
    assert_eq!(lagged, 0);
    assert_eq!(offset, start + received, "every byte received once");

    // Typing after the reconnect reaches the session.
    page.eval::<()>("window.aifactory.console.term.focus()")
        .await;
    page.type_text("typed-after\n").await;
    wait_terminal(&page, "got:typed-after", SLOW).await;
    wait_output(&s.pane_dir, "got:typed-after\r\n").await;
    assert_terminal_shows(&page, &output_log_lines(&s.pane_dir), "output.log's").await;
    page.screenshot(&screenshots().join("console-reconnected.png"))
        .await;
    assert_no_csp_refusal(&page);
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
    client
        .session_input(s.id.as_str(), b"\n".as_slice())
        .await
        .expect("the newline that lets the output go");
    client
        .session_wait(s.id.as_str())
        .await
        .expect("the session to end");
    let log = std::fs::read(s.pane_dir.join(OUTPUT_LOG)).unwrap();
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
    assert_no_csp_refusal(&page);
    browser.close();
}
