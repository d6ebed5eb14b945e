//! The aifactory-http web page as the browser tests drive it, on top of [`crate::browser`]: a
//! browser logged in through a one-time link, the board's cards and the confirmation dialog,
//! the Live Console's terminal buffer against the session's `output.log`, the page's layout at
//! a given width, and the checks that the page's Content-Security-Policy refused nothing and
//! that it threw nothing.
//!
//! The page's DOM hooks and its `window.aifactory` handle are listed in
//! `ctl/http/web/README.md`.

use std::path::Path;
use std::time::Duration;

use aifactory_common::protocol::SessionInfo;

use crate::browser::{Browser, Page, TIMEOUT};
use crate::session::new_session;
use crate::{Daemon, Http, Sandbox};

/// A liveness bound for a loaded 2-core machine, not a speed target.
pub const SLOW: Duration = Duration::from_secs(120);

/// A browser logged in to `shim` through a one-time link, on the board; `None` when the test
/// was skipped (no chromium).
pub async fn logged_in(test: &str, sandbox: &Sandbox, shim: &Http) -> Option<(Browser, Page)> {
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

/// A daemon and its shim on `sandbox` (configured by the test), one session running `script`,
/// and a logged-in page on that session's live console. Fields drop in order: the page and its
/// browser before the shim, the shim before the daemon.
pub struct OnConsole {
    pub page: Page,
    pub browser: Browser,
    pub session: SessionInfo,
    pub shim: Http,
    pub daemon: Daemon,
}

/// Starts [`OnConsole`]'s parts and waits until the console is live; `None` when the test was
/// skipped (no chromium).
pub async fn on_console(test: &str, sandbox: &Sandbox, script: &str) -> Option<OnConsole> {
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let session = new_session(&daemon.client().await, sandbox, script).await;
    let (browser, page) = logged_in(test, sandbox, &shim).await?;
    open_console(&page, &shim, &session.id).await;
    Some(OnConsole {
        page,
        browser,
        session,
        shim,
        daemon,
    })
}

/// The board's card of task `id`, as a JavaScript expression (`null` when not shown); for a
/// shim with one host, or ids no two hosts share.
pub fn card(id: &str) -> String {
    format!("document.querySelector('.card[data-task-id=\"{id}\"]')")
}

/// The board's card of task `id` on `host`, as a JavaScript expression (`null` when not shown).
pub fn card_on(host: &str, id: &str) -> String {
    format!("document.querySelector('.card[data-host=\"{host}\"][data-task-id=\"{id}\"]')")
}

/// The name of the one host a shim without `[[hosts]]` serves (this machine's daemon, named
/// after the machine), as the page's API answers it.
pub async fn only_host(page: &Page) -> String {
    page.eval(
        "window.aifactory.api.hosts().then((hosts) => hosts.length === 1 ? hosts[0].name
           : Promise.reject(new Error(`${hosts.length} hosts, not one: ${JSON.stringify(hosts)}`)))",
    )
    .await
}

/// The page's URL path of task `id` on `host`.
pub fn task_path(host: &str, id: &str) -> String {
    format!("/hosts/{host}/tasks/{id}")
}

/// The page's URL path of the Live Console of session `id` on `host`.
pub fn console_path(host: &str, id: &str) -> String {
    format!("/hosts/{host}/sessions/{id}/console")
}

/// Clicks an element of the page, found by the JavaScript expression `element`.
pub async fn click(page: &Page, element: &str) {
    page.eval::<()>(&format!("{element}.click()")).await;
}

/// Clicks the card's `action` button (`start`, `stop`, `restart`, `remove`).
pub async fn card_action(page: &Page, id: &str, action: &str) {
    press(page, &card(id), id, action).await;
}

/// [`card_action`] on the card of task `id` on `host`.
pub async fn card_action_on(page: &Page, host: &str, id: &str, action: &str) {
    press(page, &card_on(host, id), id, action).await;
}

/// Clicks the `action` button of the card `card` (an expression) shows for task `id`, once it
/// is there.
async fn press(page: &Page, card: &str, id: &str, action: &str) {
    let button = format!("{card}.querySelector('button[data-action={action}]')");
    page.wait_until(
        &format!("{button} !== null"),
        &format!("the {action} button of task {id}"),
        TIMEOUT,
    )
    .await;
    click(page, &button).await;
}

/// Waits for the confirmation dialog asking about `spec` and answers it with the button whose
/// `data-value` is `value` (`""` is Cancel); waits until it is gone.
pub async fn answer_dialog(page: &Page, spec: &str, value: &str) {
    page.wait_until(
        &format!(
            "document.querySelector('#confirm-dialog')?.open === true
             && document.querySelector('#confirm-title').textContent.includes({spec:?})"
        ),
        &format!("the confirmation dialog about {spec}"),
        TIMEOUT,
    )
    .await;
    click(
        page,
        &format!("document.querySelector('#confirm-dialog [data-value={value:?}]')"),
    )
    .await;
    page.wait_until(
        "document.querySelector('#confirm-dialog') === null",
        "the dialog to close",
        TIMEOUT,
    )
    .await;
}

/// Waits until task `id`'s card is in the column of `phase`.
pub async fn wait_column(page: &Page, id: &str, phase: &str, timeout: Duration) {
    page.wait_until(
        &format!("{}?.closest('#column-{phase}') != null", card(id)),
        &format!("task {id}'s card in {phase}"),
        timeout,
    )
    .await;
}

/// The Live Console's whole buffer (scrollback and screen) as text, a `\n` after each line.
pub const TERMINAL_TEXT: &str =
    "(() => { const c = window.aifactory && window.aifactory.console; if (!c || !c.term) return '';
  const b = c.term.buffer.active; let s = '';
  for (let i = 0; i < b.length; i++) s += b.getLine(i).translateToString(true) + '\\n';
  return s; })()";

/// The Live Console's whole buffer, one string per line, trailing blank lines dropped.
pub async fn terminal_lines(page: &Page) -> Vec<String> {
    let text: String = page.eval(TERMINAL_TEXT).await;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Waits until the console's buffer holds `needle`.
pub async fn wait_terminal(page: &Page, needle: &str, timeout: Duration) {
    page.wait_until(
        &format!("{TERMINAL_TEXT}.includes({needle:?})"),
        &format!("{needle:?} in the terminal"),
        timeout,
    )
    .await;
}

/// Waits until the Live Console's status line is in `state` (`data-state`).
pub async fn wait_console_state(page: &Page, state: &str, timeout: Duration) {
    page.wait_until(
        &format!("document.querySelector('#console-status')?.dataset.state === {state:?}"),
        &format!("the console to be {state}"),
        timeout,
    )
    .await;
}

/// Opens a session's Live Console (of a one-host shim) and waits until it is live.
pub async fn open_console(page: &Page, shim: &Http, session: &str) {
    let host = only_host(page).await;
    page.goto(&shim.url(&console_path(&host, session))).await;
    wait_console_state(page, "live", TIMEOUT).await;
}

/// The lines of `bytes` as a terminal shows them: split at `\r\n`, trailing blank lines
/// dropped. Only for output without cursor movement, and with lines that fit the terminal.
pub fn terminal_text_of(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<String> = text.split("\r\n").map(str::to_string).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// A session's `output.log` (in its pane directory), as [`terminal_text_of`] shows it.
pub fn output_log_lines(pane_dir: &Path) -> Vec<String> {
    let path = pane_dir.join(aifactory_common::pane::OUTPUT_LOG);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    terminal_text_of(&bytes)
}

/// Fails unless the console's buffer is `expected`, line for line: no byte lost or shown twice.
pub async fn assert_terminal_shows(page: &Page, expected: &[String], what: &str) {
    let shown = terminal_lines(page).await;
    let first_difference = shown.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        shown == expected,
        "the terminal's text is {what}, line for line: {} lines shown, {} expected, first \
         difference at {first_difference:?} (shown {:?}, expected {:?})",
        shown.len(),
        expected.len(),
        first_difference.map(|i| &shown[i]),
        first_difference.map(|i| &expected[i]),
    );
}

/// The page's log lines that report a Content-Security-Policy violation (Chromium logs each
/// refusal as "Refused to ... because it violates the following Content Security Policy
/// directive").
pub fn csp_refusals(page: &Page) -> Vec<String> {
    page.console()
        .into_iter()
        .filter(|line| {
            line.contains("Content Security Policy") || line.contains("Content-Security-Policy")
        })
        .collect()
}

/// Fails if the page's CSP refused anything so far: the page needs nothing the policy forbids.
pub fn assert_no_csp_refusal(page: &Page) {
    let refused = csp_refusals(page);
    assert!(
        refused.is_empty(),
        "the page's Content-Security-Policy refused something:\n{}",
        refused.join("\n")
    );
}

/// The page's log lines that report an uncaught exception or a `console.error` (a listener or
/// a page that failed).
pub fn page_errors(page: &Page) -> Vec<String> {
    page.console()
        .into_iter()
        .filter(|line| line.starts_with("[exception]") || line.starts_with("[console.error]"))
        .collect()
}

/// Fails if the page threw or logged an error so far.
pub fn assert_no_page_error(page: &Page) {
    let errors = page_errors(page);
    assert!(
        errors.is_empty(),
        "the page threw or logged errors:\n{}",
        errors.join("\n")
    );
}

/// Fails if the page scrolls sideways at its current viewport: the document is no wider than
/// the window.
pub async fn assert_no_sideways_scroll(page: &Page, what: &str) {
    let (scroll, inner, widest): (u32, u32, String) = page
        .eval(
            "(() => {
               const w = window.innerWidth; let widest = '';
               for (const el of document.querySelectorAll('body *')) {
                 const r = el.getBoundingClientRect();
                 if (r.right > w + 0.5 && !widest) widest = `${el.tagName.toLowerCase()}#${el.id}.${el.className} right=${r.right}`;
               }
               return [document.documentElement.scrollWidth, w, widest]; })()",
        )
        .await;
    assert!(
        scroll <= inner,
        "{what} scrolls sideways: the document is {scroll} px wide in a {inner} px window (the \
         first element past the edge: {widest})"
    );
}
