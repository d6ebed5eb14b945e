//! The web page in a real browser: Debian's headless Chromium (tests/src/browser.rs) against the
//! real `aifactory-http` and `aifactoryd`. Logging in, the board following a task's agent, the
//! Live Console (typing, colours, resizing, a daemon SIGKILL during output) and the status line
//! saying why the page is not live, the doctor's checks, and the check that the page's CSP
//! refused nothing (which every browser test makes at its end). Each test saves a screenshot
//! under `target/screenshots/` (README shows them). The board's actions are in
//! `browser_board.rs`, the sessions page and the console's ends and gaps in
//! `browser_console.rs`, every page at phone and laptop widths in `browser_layout.rs`; their
//! helpers in `tests/src/web_page.rs`.

use std::time::Duration;

use aifactory_tests::browser::{Browser, CookieSameSite, TIMEOUT, screenshots};
use aifactory_tests::web_page::{
    OnConsole, SLOW, assert_no_csp_refusal, assert_terminal_shows, csp_refusals, logged_in,
    on_console, only_host, output_log_lines, task_path, wait_terminal,
};
use aifactory_tests::{Daemon, Sandbox};
use nix::sys::signal::Signal;

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
    assert_no_csp_refusal(&page);
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
    assert_no_csp_refusal(&page);
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
    assert_no_csp_refusal(&page);
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

    // What the attempt used, from its cgroup, on the card (nothing when it had no cgroup).
    let shown = sandbox.show_task(&id);
    eprintln!("{TEST}: the task's resources: {}", shown["resources"]);
    match shown["resources"]["processes"].as_u64() {
        Some(processes) => {
            page.wait_until(
                &format!(
                    "({card}?.querySelector('.card-resources')?.textContent || '')
                       .match(/^\\d+\\.\\d s CPU · [\\d.]+ [KMG]?i?B · {processes} proc$/) != null"
                ),
                &format!("the card's CPU, memory and {processes} processes from its cgroup"),
                TIMEOUT,
            )
            .await
        }
        None => {
            let none: bool = page
                .eval(&format!("{card}.querySelector('.card-resources') === null"))
                .await;
            assert!(none, "a card without a cgroup shows no resources: {shown}");
        }
    }

    // The task page: its progress notes and its console one click away.
    page.eval::<()>(&format!("{card}.querySelector('a.card-spec').click()"))
        .await;
    page.wait_until(
        &format!(
            "location.pathname === {:?}",
            task_path(&only_host(&page).await, &id)
        ),
        "the task page",
        TIMEOUT,
    )
    .await;
    // Its attempts, from the daemon's record: one, ended with its exit.
    page.wait_until(
        "document.querySelectorAll('#attempts li[data-attempt]').length === 1
         && document.querySelector('#attempts li[data-attempt=\"1\"][data-state=ended]')
              ?.textContent.includes('exited 0')
         && document.querySelector('#attempts li[data-attempt=\"1\"] time[datetime]') !== null
         && !document.querySelector('#attempts').textContent.includes('[object')",
        "attempt #1 listed as ended with exit 0",
        TIMEOUT,
    )
    .await;
    page.screenshot(&screenshots().join("task.png")).await;
    assert_no_csp_refusal(&page);
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
    assert_no_csp_refusal(&page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_types_renders_colours_and_resizes_the_pty() {
    const TEST: &str = "the_console_types_renders_colours_and_resizes_the_pty";
    let sandbox = Sandbox::new();
    let script = "printf 'plain \\033[31mRED\\033[0m \\033[1;32mGREEN\\033[0m\\n'; exec sh -i";
    let Some(OnConsole {
        page,
        browser,
        shim: _shim,
        daemon: _daemon,
        ..
    }) = on_console(TEST, &sandbox, script).await
    else {
        return;
    };
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

    // A full-screen program's moves, as vim or htop make them: the alternate screen, a clear,
    // text placed by cursor addressing, the cursor parked at the top; then back to the shell.
    page.type_text(
        "printf '\\033[?1049h\\033[2J\\033[3;5HTOP\\033[6;12HMID\\033[1;1H'; read x; printf '\\033[?1049l'\n",
    )
    .await;
    page.wait_until(
        "(() => { const b = window.aifactory.console.term.buffer.active;
           return b.type === 'alternate'
             && b.getLine(b.viewportY + 2)?.translateToString(true) === '    TOP'
             && b.getLine(b.viewportY + 5)?.translateToString(true) === '           MID'
             && b.cursorX === 0 && b.cursorY === 0; })()",
        "TOP at row 3 column 5 and MID at row 6 column 12 of the alternate screen, the cursor home",
        TIMEOUT,
    )
    .await;
    page.type_text("\n").await;
    page.wait_until(
        "window.aifactory.console.term.buffer.active.type === 'normal'",
        "the shell's screen back",
        TIMEOUT,
    )
    .await;
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
    assert_no_csp_refusal(&page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_sigkill_during_output_loses_no_byte_of_the_console() {
    const TEST: &str = "a_daemon_sigkill_during_output_loses_no_byte_of_the_console";
    let sandbox = Sandbox::new();
    let script = "i=0; while [ $i -lt 4000 ]; do echo line-$i; i=$((i+1)); \
         if [ $((i % 40)) = 0 ]; then sleep 0.02; fi; done; echo all-done; sleep 300";
    let Some(OnConsole {
        page,
        browser,
        session: s,
        shim: _shim,
        mut daemon,
    }) = on_console(TEST, &sandbox, script).await
    else {
        return;
    };
    wait_terminal(&page, "line-300\n", SLOW).await;
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(SLOW).expect("the daemon is killed");
    let _daemon = sandbox.daemon().start();
    wait_terminal(&page, "all-done", SLOW).await;

    let expected = output_log_lines(&s.pane_dir);
    assert_terminal_shows(&page, &expected, "output.log's").await;
    assert_eq!(expected.last().map(String::as_str), Some("all-done"));
    assert_no_csp_refusal(&page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csp_check_catches_what_the_policy_refuses() {
    const TEST: &str = "the_csp_check_catches_what_the_policy_refuses";
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    assert_no_csp_refusal(&page);
    // What xterm would do without src/xterm-csp.js: an inline <style> element.
    page.eval::<()>(
        "document.head.append(Object.assign(document.createElement('style'), {textContent: 'body { color: red }'}))",
    )
    .await;
    page.wait_for_console("the refused inline style", TIMEOUT, |line| {
        line.contains("Content Security Policy")
    })
    .await;
    assert!(!csp_refusals(&page).is_empty(), "{:#?}", page.console());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_no_csp_refusal(&page)
    }));
    assert!(caught.is_err(), "assert_no_csp_refusal fails on a refusal");
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_page_shows_aifactoryctl_doctors_checks_in_order_with_each_fix() {
    const TEST: &str = "the_doctor_page_shows_aifactoryctl_doctors_checks_in_order_with_each_fix";
    let sandbox = Sandbox::new();
    // A profile past its end of life: deprecated-providers fails, with its fix.
    sandbox.write_config(
        "default_agent = \"g\"\n[agents.g]\nkind = \"gemini-cli\"\ncommand = [\"sleep\", \"300\"]\n",
    );
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    sandbox.add_project("app");
    let listen = shim.base.trim_start_matches("http://").to_string();
    let cli = sandbox.ctl(&["doctor", "--json", "--http", &listen]);
    let cli = cli.json();
    let cli = cli
        .as_array()
        .unwrap_or_else(|| panic!("doctor --json is not a list: {cli}"));
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    page.goto(&shim.url("/doctor")).await;
    page.wait_until(
        "window.aifactory.doctor?.checks !== null && document.querySelector('#doctor-checks li.check') !== null",
        "the doctor's checks",
        TIMEOUT,
    )
    .await;
    // Per check as shown: name, status, the fix's text (null without one), and the fix the
    // page was given.
    let shown: Vec<(String, String, Option<String>, Option<String>)> = page
        .eval(
            "[...document.querySelectorAll('#doctor-checks li.check[data-check]')].map((li, i) => [
               li.dataset.check, li.dataset.status,
               li.querySelector('.check-fix')?.textContent ?? null,
               window.aifactory.doctor.checks[i].fix ?? null])",
        )
        .await;
    let names = |checks: Vec<&str>| checks.into_iter().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        names(shown.iter().map(|(name, ..)| name.as_str()).collect()),
        names(
            cli.iter()
                .map(|c| c["check"].as_str().unwrap_or_default())
                .collect()
        ),
        "the page's checks are aifactoryctl doctor's, in its order"
    );
    let mut failing = 0;
    for ((name, status, fix_text, fix), c) in shown.iter().zip(cli) {
        assert_eq!(
            status,
            c["status"].as_str().unwrap_or_default(),
            "{name}: {c:#}"
        );
        if status == "warn" || status == "fail" {
            failing += 1;
            let fix = fix
                .as_deref()
                .unwrap_or_else(|| panic!("a {status} comes with a fix: {name}"));
            assert_eq!(
                fix_text.as_deref(),
                Some(format!("Fix: {fix}").as_str()),
                "{name}'s fix is shown"
            );
            if !aifactory_doctor::CALLER_DEPENDENT.contains(&name.as_str()) {
                assert_eq!(c["fix"].as_str(), Some(fix), "{name}: the CLI's fix");
            }
        }
    }
    let eol = shown
        .iter()
        .find(|(name, ..)| name == "deprecated-providers")
        .expect("the deprecated-providers check");
    assert_eq!(eol.1, "fail", "{eol:?}");
    assert!(failing >= 1);
    page.screenshot(&screenshots().join("doctor.png")).await;
    assert_no_csp_refusal(&page);
    browser.close();
}
