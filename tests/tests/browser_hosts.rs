//! One board for several hosts, in a real browser (Debian's headless Chromium against the real
//! `aifactory-http` serving two real `aifactoryd`s as hosts `b1` and `b2`, each a sandbox's
//! daemon reached through `unix://` in the shim's `[[hosts]]`): each card with its host, the
//! host filter, a task made on a chosen host, and a host that goes down: its cards kept but
//! marked stale under a notice naming it and why, while the other host's cards go on moving;
//! back, it rejoins by itself. The hosts page and b2's task page follow along without being
//! reloaded; the sessions page lists b2's session, whose Live Console goes through b2. And a
//! host that came back while the shim restarted (so no notice of it ever comes) is not left
//! marked down. Each step saves a screenshot under `target/screenshots/`.

use aifactory_tests::browser::{Page, TIMEOUT, screenshots};
use aifactory_tests::http::host_entry;
use aifactory_tests::session::new_session;
use aifactory_tests::web_page::{
    SLOW, assert_no_csp_refusal, assert_no_page_error, card_action_on, card_on, click,
    console_path, logged_in, wait_column, wait_console_state, wait_terminal,
};
use aifactory_tests::{Daemon, Sandbox};
use nix::sys::signal::Signal;

/// An agent that does nothing for five minutes.
const IDLE_AGENT: &str = "default_agent = \"idle\"
[agents.idle]
kind = \"custom\"
command = [\"sleep\", \"300\"]
";

/// A sandbox with its daemon running the idle agent.
fn host_sandbox() -> (Sandbox, Daemon) {
    let sandbox = Sandbox::new();
    sandbox.write_config(IDLE_AGENT);
    let daemon = sandbox.daemon().start();
    (sandbox, daemon)
}

/// Sets a `<select>` (a CSS selector) as a person choosing from it does.
async fn choose(page: &Page, select: &str, value: &str) {
    page.eval::<()>(&format!(
        "(() => {{ const s = document.querySelector({select:?}); s.value = {value:?};
           s.dispatchEvent(new Event('change', {{bubbles: true}})); }})()"
    ))
    .await;
}

/// Waits until the card of task `id` on `host` is (`stale`) or is not marked stale: its class,
/// its badge naming the host, its buttons off.
async fn wait_stale(page: &Page, host: &str, id: &str, stale: bool) {
    let card = card_on(host, id);
    let condition = if stale {
        format!(
            "{card}?.classList.contains('stale')
             && {card}.querySelector('.badge-stale')?.textContent === 'stale: {host} is down'
             && [...{card}.querySelectorAll('button[data-action]')].every((b) => b.disabled)"
        )
    } else {
        format!(
            "{card} !== null && !{card}.classList.contains('stale')
             && {card}.querySelector('.badge-stale') === null
             && [...{card}.querySelectorAll('button[data-action]')].every((b) => !b.disabled)"
        )
    };
    let what = if stale { "stale" } else { "fresh" };
    page.wait_until(
        &condition,
        &format!("the card of {id} on {host} {what}"),
        SLOW,
    )
    .await;
}

/// A row of the hosts page, as a JavaScript expression.
fn host_row(host: &str) -> String {
    format!("document.querySelector('#hosts-table tr[data-host=\"{host}\"]')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_the_board_and_one_that_goes_down_is_stale_until_it_rejoins() {
    const TEST: &str = "two_hosts_share_the_board_and_one_that_goes_down_is_stale_until_it_rejoins";
    let (one, _daemon_one) = host_sandbox();
    let (two, mut daemon_two) = host_sandbox();
    one.add_project("alpha");
    two.add_project("beta");
    let on_one = one.create_task("alpha", "001-on-b1", &[]);
    let on_two = two.create_task("beta", "001-on-b2", &[]);
    let session = new_session(
        &daemon_two.client().await,
        &two,
        "echo console-on-b2; exec sleep 300",
    )
    .await;
    let unix = |sandbox: &Sandbox| format!("unix://{}", sandbox.socket().display());
    let shim = one
        .http()
        .hosts(&(host_entry("b1", &unix(&one)) + &host_entry("b2", &unix(&two))))
        .start();
    let Some((browser, page)) = logged_in(TEST, &one, &shim).await else {
        return;
    };

    // Both hosts' cards on one board, each labelled with its host.
    for (host, id) in [("b1", &on_one), ("b2", &on_two)] {
        page.wait_until(
            &format!(
                "{card}?.closest('#column-backlog') != null
                 && {card}.querySelector('.card-host')?.textContent === {host:?}
                 && {card}.querySelector('a.card-spec').getAttribute('href') === '/hosts/{host}/tasks/{id}'",
                card = card_on(host, id)
            ),
            &format!("task {id}'s card, labelled {host}"),
            TIMEOUT,
        )
        .await;
    }
    page.screenshot(&screenshots().join("hosts-board.png"))
        .await;

    // The host filter: only b2's cards, kept in the address and over a reload.
    choose(&page, "#host-filter", "b2").await;
    page.wait_until(
        &format!(
            "{} === null && {} !== null && new URLSearchParams(location.search).get('host') === 'b2'",
            card_on("b1", &on_one),
            card_on("b2", &on_two)
        ),
        "only b2's card, and the filter in the address",
        TIMEOUT,
    )
    .await;
    page.goto(&page.eval::<String>("location.href").await).await;
    page.wait_until(
        &format!(
            "window.aifactory.board?.loaded && document.querySelector('#host-filter').value === 'b2'
             && document.querySelectorAll('.card').length === 1 && {} !== null",
            card_on("b2", &on_two)
        ),
        "the host filter after a reload",
        TIMEOUT,
    )
    .await;
    page.screenshot(&screenshots().join("hosts-board-filtered.png"))
        .await;

    // A task made on the page goes to the host chosen in the form, with that host's project.
    click(&page, "document.querySelector('#new-task summary')").await;
    page.wait_until(
        "document.querySelector('#new-task').open
         && document.querySelector('#new-task-host').value === 'b2'
         && [...document.querySelector('#new-task-project').options].some((o) => o.text === 'beta')
         && ![...document.querySelector('#new-task-project').options].some((o) => o.text === 'alpha')",
        "the form on b2 (the filter's host), offering b2's projects only",
        TIMEOUT,
    )
    .await;
    let beta: String = page
        .eval("[...document.querySelector('#new-task-project').options].find((o) => o.text === 'beta').value")
        .await;
    choose(&page, "#new-task-project", &beta).await;
    page.eval::<()>(
        "(() => { const f = document.querySelector('#new-task-spec'); f.value = ''; f.focus(); })()",
    )
    .await;
    page.type_text("002-from-page").await;
    click(&page, "document.querySelector('#new-task-submit')").await;
    let by_spec = "[...document.querySelectorAll('.card')].find((c) =>
                     c.querySelector('.card-spec')?.textContent === '002-from-page')";
    page.wait_until(
        &format!("{by_spec}?.dataset.host === 'b2'"),
        "the new task's card, on b2",
        TIMEOUT,
    )
    .await;
    let made: String = page.eval(&format!("{by_spec}.dataset.taskId")).await;
    assert_eq!(two.show_task(&made)["spec_id"], "002-from-page");
    let on_b1 = one.ctl(&["tasks", "list", "--json"]).assert_ok().json();
    assert_eq!(
        on_b1.as_array().map(Vec::len),
        Some(1),
        "nothing was made on b1: {on_b1:#}"
    );
    choose(&page, "#host-filter", "").await;
    page.wait_until(
        "document.querySelectorAll('.card').length === 3 && location.search === ''",
        "every host's cards again",
        TIMEOUT,
    )
    .await;

    // The hosts page, in a second tab: both up, each daemon's version and load.
    let hosts = browser.new_page().await;
    hosts.set_viewport(1280, 800).await;
    hosts.goto(&shim.url("/hosts")).await;
    let version = one.ctl(&["status", "--json"]).assert_ok().json()["version"]
        .as_str()
        .map(str::to_string)
        .expect("the daemon's version in its status");
    for host in ["b1", "b2"] {
        hosts
            .wait_until(
                &format!(
                    "{row}?.dataset.state === 'up'
                     && {row}.querySelector('.host-daemon').textContent.includes({version:?})
                     && /^0 tasks running · \\d+ CPUs? · load [\\d.]+ [\\d.]+ [\\d.]+ · [\\d.]+ [KMGT]?i?B of [\\d.]+ [KMGT]?i?B memory available$/
                          .test({row}.querySelector('.host-load').textContent)",
                    row = host_row(host)
                ),
                &format!("host {host} up, with its daemon's version and load"),
                TIMEOUT,
            )
            .await;
    }
    let url: String = hosts
        .eval(&format!(
            "{}.querySelector('.host-url').textContent",
            host_row("b2")
        ))
        .await;
    assert_eq!(url, format!("unix://{}", two.socket().display()));
    hosts
        .screenshot(&screenshots().join("hosts-page.png"))
        .await;

    // b2's session on the sessions page, and its Live Console through b2.
    hosts.goto(&shim.url("/sessions")).await;
    let row = format!(
        "document.querySelector('#sessions-table tr[data-host=b2][data-session-id=\"{}\"]')",
        session.id
    );
    let console = console_path("b2", &session.id);
    hosts
        .wait_until(
            &format!(
                "{row}?.querySelector('.session-host')?.textContent === 'b2'
                 && {row}.querySelector('.console-link').getAttribute('href') === {console:?}"
            ),
            "b2's session listed with its host and its console link",
            TIMEOUT,
        )
        .await;
    click(&hosts, &format!("{row}.querySelector('.console-link')")).await;
    wait_console_state(&hosts, "live", TIMEOUT).await;
    wait_terminal(&hosts, "console-on-b2", TIMEOUT).await;
    let path: String = hosts.eval("location.pathname").await;
    assert_eq!(path, console);
    hosts.goto(&shim.url("/hosts")).await;

    // The stream's id is every host's position, kept as the shim wrote it.
    let last_id: String = page.eval("window.aifactory.events.lastEventId").await;
    assert!(
        last_id
            .split(',')
            .all(|part| part.split_once(':').is_some_and(|(host, seq)| {
                ["b1", "b2"].contains(&host) && seq.parse::<u64>().is_ok()
            })),
        "the event stream's id {last_id:?} is HOST:SEQ,..."
    );

    // b2's task on its own page, in a third tab, while b2 goes down and comes back.
    let task = browser.new_page().await;
    task.set_viewport(1280, 800).await;
    task.goto(&shim.url(&format!("/hosts/b2/tasks/{on_two}")))
        .await;
    let task_buttons = "[...document.querySelectorAll('.task-actions button[data-action]')]";
    task.wait_until(
        &format!(
            "document.querySelector('#task-host')?.textContent === 'b2'
             && document.querySelector('.task-header .phase')?.dataset.phase === 'backlog'
             && {task_buttons}.length > 0 && {task_buttons}.every((b) => !b.disabled)"
        ),
        "b2's task on its page",
        TIMEOUT,
    )
    .await;

    // b2's daemon stops: its card stays, stale, under a notice naming it and why.
    daemon_two.signal(Signal::SIGTERM);
    daemon_two
        .wait_exit(SLOW)
        .expect("b2's daemon stops on SIGTERM");
    let socket = two.socket().display().to_string();
    page.wait_until(
        &format!(
            "(document.querySelector('#host-notices .host-notice[data-host=b2]')?.textContent || '')
               .startsWith('Host b2 is down: ')
             && document.querySelector('#host-notices .host-notice[data-host=b2]').textContent.includes({socket:?})
             && document.querySelector('#host-notices .host-notice[data-host=b1]') === null"
        ),
        "the notice naming b2 and its daemon's socket",
        SLOW,
    )
    .await;
    wait_stale(&page, "b2", &on_two, true).await;
    wait_stale(&page, "b2", &made, true).await;
    wait_stale(&page, "b1", &on_one, false).await;
    // The other host goes on: its task starts from the board and its card moves.
    card_action_on(&page, "b1", &on_one, "start").await;
    wait_column(&page, &on_one, "planning", SLOW).await;
    assert_eq!(one.show_task(&on_one)["phase"], "planning");
    page.screenshot(&screenshots().join("hosts-board-one-down.png"))
        .await;

    // The hosts page followed by itself: b2 down with the reason, b1 up running one task.
    hosts
        .wait_until(
            &format!(
                "{two}?.dataset.state === 'down'
                 && ({two}.querySelector('.host-reason')?.textContent || '').includes({socket:?})
                 && {one}?.dataset.state === 'up'
                 && {one}.querySelector('.host-load').textContent.startsWith('1 task running')",
                two = host_row("b2"),
                one = host_row("b1"),
            ),
            "the hosts page: b2 down with why, b1 running one task",
            SLOW,
        )
        .await;
    hosts
        .screenshot(&screenshots().join("hosts-page-one-down.png"))
        .await;

    // A board opened while b2 is down says so from the start (b2 is left out of the lists),
    // and an older host-less task link finds the task's host.
    hosts.goto(&shim.url("/")).await;
    hosts
        .wait_until(
            &format!(
                "window.aifactory.board?.loaded
                 && (document.querySelector('.host-notice[data-host=b2]')?.textContent || '').includes({socket:?})
                 && document.querySelector('#status').dataset.state === 'daemon_unavailable'
                 && {} !== null && {} === null",
                card_on("b1", &on_one),
                card_on("b2", &on_two)
            ),
            "a fresh board: b2's notice, b1's card",
            TIMEOUT,
        )
        .await;
    hosts.goto(&shim.url(&format!("/tasks/{on_one}"))).await;
    hosts
        .wait_until(
            &format!(
                "location.pathname === '/hosts/b1/tasks/{on_one}'
                 && document.querySelector('#task-title')?.textContent.includes('001-on-b1')
                 && document.querySelector('#task-host')?.textContent === 'b1'"
            ),
            "the host-less link on b1's task page",
            TIMEOUT,
        )
        .await;
    hosts.goto(&shim.url("/hosts")).await;
    hosts
        .wait_until(
            &format!("{}?.dataset.state === 'down'", host_row("b2")),
            "the hosts page again, b2 down",
            TIMEOUT,
        )
        .await;

    // b2 comes back: the notice goes, its tasks are fetched again, its cards fresh and live.
    page.eval::<()>(
        "window.fetched = []; const fetchOf = window.fetch;
         window.fetch = (url, init) => { window.fetched.push(String(url)); return fetchOf(url, init); };
         undefined",
    )
    .await;
    task.wait_until(
        &format!(
            "(document.querySelector('#task-error')?.textContent || '').startsWith('Host b2 is down: ')
             && {task_buttons}.every((b) => b.disabled)"
        ),
        "the task page saying b2 is down, its actions off",
        TIMEOUT,
    )
    .await;
    task.screenshot(&screenshots().join("hosts-task-down.png"))
        .await;
    let _daemon_two = two.daemon().start();
    page.wait_until(
        "document.querySelector('#host-notices').children.length === 0
         && window.fetched.some((u) => u.startsWith('/api/v1/tasks?') && new URL(u, location.href).searchParams.get('host') === 'b2')",
        "the notice gone and b2's tasks fetched again",
        SLOW,
    )
    .await;
    wait_stale(&page, "b2", &on_two, false).await;
    wait_stale(&page, "b2", &made, false).await;
    card_action_on(&page, "b2", &on_two, "start").await;
    wait_column(&page, &on_two, "planning", SLOW).await;
    assert_eq!(two.show_task(&on_two)["phase"], "planning");
    page.screenshot(&screenshots().join("hosts-board-rejoined.png"))
        .await;
    task.wait_until(
        &format!(
            "document.querySelector('#task-error')?.textContent === ''
             && document.querySelector('.task-header .phase')?.dataset.phase === 'planning'
             && {task_buttons}.every((b) => !b.disabled)"
        ),
        "the task page live again: no notice, the task planning, its actions on",
        SLOW,
    )
    .await;
    hosts
        .wait_until(
            &format!(
                "{row}?.dataset.state === 'up' && {row}.querySelector('.host-reason') === null
                 && {row}.querySelector('.host-load').textContent.startsWith('1 task running')",
                row = host_row("b2")
            ),
            "the hosts page: b2 up again, running its task",
            SLOW,
        )
        .await;

    // A page put away (the back-forward cache) closes its event stream, which would hold one
    // of the browser's six connections to the shim; shown again, it reopens from its last id.
    let before: String = hosts.eval("window.aifactory.events.lastEventId").await;
    hosts
        .eval::<()>(
            "void window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}))",
        )
        .await;
    let (state, source): (String, bool) = hosts
        .eval("[window.aifactory.events.state, window.aifactory.events.source === null]")
        .await;
    assert_eq!((state.as_str(), source), ("stopped", true));
    hosts
        .eval::<()>(
            "void window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))",
        )
        .await;
    hosts
        .wait_until(
            &format!(
                "window.aifactory.events.state === 'open'
                 && window.aifactory.events.source.url.endsWith('/api/v1/events?after=' + encodeURIComponent({before:?}))"
            ),
            "the event stream open again, from its last id",
            TIMEOUT,
        )
        .await;

    for page in [&page, &hosts, &task] {
        assert_no_csp_refusal(page);
        assert_no_page_error(page);
    }
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_back_while_the_shim_restarted_is_not_left_marked_down() {
    const TEST: &str = "a_host_back_while_the_shim_restarted_is_not_left_marked_down";
    let (one, _daemon_one) = host_sandbox();
    let (two, mut daemon_two) = host_sandbox();
    one.add_project("alpha");
    two.add_project("beta");
    let on_two = two.create_task("beta", "001-on-b2", &[]);
    let unix = |sandbox: &Sandbox| format!("unix://{}", sandbox.socket().display());
    let hosts = host_entry("b1", &unix(&one)) + &host_entry("b2", &unix(&two));
    let shim = one.http().hosts(&hosts).start();
    let listen = shim.base.trim_start_matches("http://").to_string();
    let Some((browser, page)) = logged_in(TEST, &one, &shim).await else {
        return;
    };
    page.wait_until(
        &format!("{} !== null", card_on("b2", &on_two)),
        "b2's card",
        TIMEOUT,
    )
    .await;
    daemon_two.signal(Signal::SIGTERM);
    daemon_two
        .wait_exit(SLOW)
        .expect("b2's daemon stops on SIGTERM");
    wait_stale(&page, "b2", &on_two, true).await;

    // The shim stops; b2 comes back meanwhile; the shim starts again at the same address, with
    // b2 up from the start, so no notice of its return ever comes.
    shim.signal(Signal::SIGTERM);
    let mut shim = shim;
    shim.wait_exit(SLOW).expect("the shim stops");
    drop(shim);
    let _daemon_two = two.daemon().start();
    let shim = one
        .http()
        .hosts(&hosts)
        .arg("--listen")
        .arg(&listen)
        .log_name("http-again")
        .start();
    assert_eq!(shim.base, format!("http://{listen}"));
    page.wait_until(
        "document.querySelector('#status')?.dataset.state === 'open'
         && document.querySelector('#host-notices').children.length === 0",
        "the page live again, b2's notice gone",
        SLOW,
    )
    .await;
    wait_stale(&page, "b2", &on_two, false).await;
    page.screenshot(&screenshots().join("hosts-after-shim-restart.png"))
        .await;
    assert_no_csp_refusal(&page);
    assert_no_page_error(&page);
    browser.close();
}
