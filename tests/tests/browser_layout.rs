//! Every page of the web app at a phone's width (390x844) and a laptop's (1280x800), in a
//! real browser (Debian's headless Chromium against the real `aifactory-http` and
//! `aifactoryd`): the board (and its new-task form), a task, the sessions, a Live Console and
//! the doctor never scroll sideways. Saves `NAME-phone.png` screenshots under
//! `target/screenshots/`.

use aifactory_tests::browser::{Page, TIMEOUT, screenshots};
use aifactory_tests::session::new_session;
use aifactory_tests::web_page::{
    TERMINAL_TEXT, assert_no_csp_refusal, assert_no_sideways_scroll, card, click, console_path,
    logged_in, only_host, task_path,
};
use aifactory_tests::{Http, Sandbox};

/// An agent that does nothing for five minutes.
const IDLE_AGENT: &str =
    "default_agent = \"idle\"\n[agents.idle]\nkind = \"custom\"\ncommand = [\"sleep\", \"300\"]\n";

/// Visits `path` at 390x844 (a phone) and 1280x800, waiting for `ready` each time, and fails if
/// the page scrolls sideways at either; saves `NAME-phone.png`.
async fn check_widths(page: &Page, shim: &Http, path: &str, ready: &str, name: &str) {
    for (width, height) in [(390, 844), (1280, 800)] {
        page.set_viewport(width, height).await;
        page.goto(&shim.url(path)).await;
        page.wait_until(
            &format!("window.innerWidth === {width} && ({ready})"),
            &format!("{path} at {width}x{height}"),
            TIMEOUT,
        )
        .await;
        // The layout after the page's own reaction to the size (the console refits on the
        // next frame).
        page.eval::<()>(
            "new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => resolve())))",
        )
        .await;
        assert_no_sideways_scroll(page, &format!("{path} at {width}x{height}")).await;
        if width == 390 {
            page.screenshot(&screenshots().join(format!("{name}-phone.png")))
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_scrolls_sideways_on_a_phone_or_a_laptop() {
    const TEST: &str = "no_page_scrolls_sideways_on_a_phone_or_a_laptop";
    let sandbox = Sandbox::new();
    sandbox.write_config(IDLE_AGENT);
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    sandbox.add_project("demo");
    let long = sandbox.create_task(
        "demo",
        "001-a-rather-long-spec-id-that-names-the-whole-feature-in-detail",
        &[
            "--title",
            "A title long enough to need more than one line on any phone: the login page, with \
             its form, its errors and a link to reset a forgotten password",
        ],
    );
    let started = sandbox.create_task("demo", "002-running", &[]);
    sandbox.ctl(&["tasks", "start", &started]).assert_ok();
    let client = daemon.client().await;
    let s = new_session(
        &client,
        &sandbox,
        "printf 'a line longer than a phone is wide: %s\\n' $(seq 1 60); echo console-ready; exec sleep 300",
    )
    .await;
    drop(client);
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    let host = only_host(&page).await;
    check_widths(
        &page,
        &shim,
        "/",
        &format!("{} !== null && {} !== null", card(&long), card(&started)),
        "board",
    )
    .await;
    // The new-task form open over the board.
    page.set_viewport(390, 844).await;
    page.goto(&shim.url("/")).await;
    click(&page, "document.querySelector('#new-task summary')").await;
    page.wait_until(
        "document.querySelector('#new-task').open && document.querySelector('#new-task-spec').checkVisibility()",
        "the new-task form open",
        TIMEOUT,
    )
    .await;
    assert_no_sideways_scroll(&page, "the new-task form at 390x844").await;
    page.screenshot(&screenshots().join("new-task-phone.png"))
        .await;
    check_widths(
        &page,
        &shim,
        &task_path(&host, &long),
        "document.querySelector('#task-info dl') !== null",
        "task",
    )
    .await;
    check_widths(
        &page,
        &shim,
        "/sessions",
        &format!(
            "document.querySelector('tr[data-session-id=\"{}\"]') !== null",
            s.id
        ),
        "sessions",
    )
    .await;
    check_widths(
        &page,
        &shim,
        "/hosts",
        &format!(
            "document.querySelector('#hosts-table tr[data-host={host:?}][data-state=up] .host-load')
               ?.textContent.includes('CPU')"
        ),
        "hosts",
    )
    .await;
    check_widths(
        &page,
        &shim,
        &console_path(&host, &s.id),
        &format!(
            "document.querySelector('#console-status')?.dataset.state === 'live'
             && {}.includes('console-ready')",
            TERMINAL_TEXT
        ),
        "console",
    )
    .await;
    check_widths(
        &page,
        &shim,
        "/doctor",
        "document.querySelector('#doctor-checks li.check') !== null",
        "doctor",
    )
    .await;
    assert_no_csp_refusal(&page);
    browser.close();
}
