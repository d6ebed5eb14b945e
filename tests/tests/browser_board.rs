//! The board in a real browser (Debian's headless Chromium against the real `aifactory-http`
//! and `aifactoryd`): making a task from its form, the project filter, the keyboard, the card
//! actions (start, stop, remove with or without the worktree, each confirmed as the page asks and refused with the daemon's
//! words, and an answer that comes after the agent moved on). Each test saves a screenshot
//! under `target/screenshots/`.

use std::path::PathBuf;

use aifactory_tests::Sandbox;
use aifactory_tests::browser::{Page, TIMEOUT, screenshots};
use aifactory_tests::git::git;
use aifactory_tests::web_page::{
    SLOW, answer_dialog, assert_no_csp_refusal, card, card_action, click, logged_in, only_host,
    task_path, wait_column,
};
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, DisableParams as FetchDisableParams, EnableParams as FetchEnableParams,
    EventRequestPaused, RequestPattern, RequestStage,
};
use futures::StreamExt;

/// An agent that does nothing for five minutes (the default), and one past its provider's end
/// of life, which the daemon refuses to start.
const AGENTS: &str = "default_agent = \"idle\"
[agents.idle]
kind = \"custom\"
command = [\"sleep\", \"300\"]
[agents.eol]
kind = \"gemini-cli\"
command = [\"sleep\", \"300\"]
";

/// The id of the option named `name` in the select `select` (a CSS selector).
async fn option_value(page: &Page, select: &str, name: &str) -> String {
    page.eval(&format!(
        "[...document.querySelector({select:?}).options].find((o) => o.text === {name:?}).value"
    ))
    .await
}

/// The ids of every task `aifactoryctl tasks list --json` lists.
fn listed(sandbox: &Sandbox) -> Vec<String> {
    let list = sandbox.ctl(&["tasks", "list", "--json"]).assert_ok().json();
    list.as_array()
        .unwrap_or_else(|| panic!("tasks list --json is not a list: {list}"))
        .iter()
        .map(|t| t["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Fills the new-task form (opening it first if it is closed) and submits it.
async fn submit_new_task(page: &Page, project: Option<&str>, spec: &str, title: &str) {
    let open: bool = page.eval("document.querySelector('#new-task').open").await;
    if !open {
        click(page, "document.querySelector('#new-task summary')").await;
    }
    page.wait_until(
        "document.querySelector('#new-task').open && document.querySelector('#new-task-spec').checkVisibility()",
        "the new-task form to open",
        TIMEOUT,
    )
    .await;
    if let Some(project) = project {
        let id = option_value(page, "#new-task-project", project).await;
        page.eval::<()>(&format!(
            "(() => {{ const s = document.querySelector('#new-task-project'); s.value = {id:?};
               s.dispatchEvent(new Event('change', {{bubbles: true}})); }})()"
        ))
        .await;
    }
    for (field, text) in [("#new-task-spec", spec), ("#new-task-title", title)] {
        page.eval::<()>(&format!(
            "(() => {{ const f = document.querySelector({field:?}); f.value = ''; f.focus(); }})()"
        ))
        .await;
        page.type_text(text).await;
    }
    click(page, "document.querySelector('#new-task-submit')").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_made_on_the_boards_form_gets_its_worktree_and_a_taken_spec_shows_the_daemons_refusal()
 {
    const TEST: &str = "a_task_made_on_the_boards_form_gets_its_worktree_and_a_taken_spec_shows_the_daemons_refusal";
    let sandbox = Sandbox::new();
    sandbox.write_config(AGENTS);
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    sandbox.add_project("demo");
    sandbox.add_project("other");
    // Made by the CLI, to compare with what the page makes.
    let by_cli = sandbox.create_task("other", "001-by-cli", &[]);
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    page.wait_until(
        &format!("{} !== null", card(&by_cli)),
        "the board loaded",
        TIMEOUT,
    )
    .await;

    // The second project, so that the form's default (its first option) cannot pass for it.
    submit_new_task(&page, Some("other"), "002-from-page", "Made on the page").await;
    let by_spec = "[...document.querySelectorAll('.card')].find((c) =>
                     c.querySelector('.card-spec')?.textContent === '002-from-page')";
    page.wait_until(
        &format!("{by_spec}?.closest('#column-backlog') != null"),
        "the new task's card in backlog",
        TIMEOUT,
    )
    .await;
    let id: String = page.eval(&format!("{by_spec}.dataset.taskId")).await;
    let other = option_value(&page, "#new-task-project", "other").await;
    page.wait_until(
        &format!(
            "!document.querySelector('#new-task').open
             && document.querySelector('#new-task-project').value === {other:?}
             && document.querySelector('#new-task-spec').value === ''
             && document.activeElement === {}",
            card(&id)
        ),
        "the form closed, keeping the project, and the new card focused",
        TIMEOUT,
    )
    .await;
    page.screenshot(&screenshots().join("board-new-task.png"))
        .await;

    // The task is the daemon's, with its worktree made as the CLI makes one.
    let made = sandbox.show_task(&id);
    let cli = sandbox.show_task(&by_cli);
    assert_eq!(made["spec_id"], "002-from-page", "{made:#}");
    assert_eq!(made["title"], "Made on the page", "{made:#}");
    assert_eq!(made["project_name"], "other", "{made:#}");
    assert_eq!(made["phase"], "backlog", "{made:#}");
    let path = |task: &serde_json::Value, field: &str| {
        PathBuf::from(
            task[field]
                .as_str()
                .unwrap_or_else(|| panic!("no {field}: {task:#}")),
        )
    };
    let (worktree, cli_worktree) = (path(&made, "worktree"), path(&cli, "worktree"));
    assert_eq!(
        worktree,
        cli_worktree.with_file_name("002-from-page"),
        "beside the CLI's task's worktree"
    );
    assert!(
        worktree.join(".git").is_file(),
        "{} is a git worktree",
        worktree.display()
    );
    let branch = made["branch"].as_str().unwrap_or_default();
    assert_eq!(
        branch,
        cli["branch"]
            .as_str()
            .unwrap_or_default()
            .replace("001-by-cli", "002-from-page"),
        "named as the CLI names its branches"
    );
    assert_eq!(
        git(&["rev-parse", "--abbrev-ref", "HEAD"], &worktree),
        branch
    );
    assert!(path(&made, "spec_dir").is_dir(), "{made:#}");

    // The same spec again in the same project: the form stays open with the daemon's words.
    let refused_before = sandbox.ctl(&["tasks", "list", "--json"]).stdout;
    submit_new_task(&page, None, "002-from-page", "Again").await;
    page.wait_until(
        "document.querySelector('#new-task-error').textContent !== ''",
        "the refusal under the form",
        TIMEOUT,
    )
    .await;
    let error: String = page
        .eval("document.querySelector('#new-task-error').textContent")
        .await;
    let open: bool = page.eval("document.querySelector('#new-task').open").await;
    assert!(open, "the form stays open to fix the spec");
    let cli_refusal = sandbox.ctl(&[
        "tasks",
        "create",
        "--project",
        "other",
        "--spec",
        "002-from-page",
    ]);
    assert_ne!(cli_refusal.code, Some(0), "{cli_refusal:?}");
    assert!(
        error.contains("002-from-page") && cli_refusal.stderr.contains(&error),
        "the page shows the daemon's refusal, as the CLI does: page {error:?}, CLI {cli_refusal:?}"
    );
    assert_eq!(
        sandbox.ctl(&["tasks", "list", "--json"]).stdout,
        refused_before,
        "nothing was made"
    );
    let cards: u32 = page
        .eval(
            "[...document.querySelectorAll('.card .card-spec')]
               .filter((s) => s.textContent === '002-from-page').length",
        )
        .await;
    assert_eq!(cards, 1);
    page.screenshot(&screenshots().join("board-new-task-refused.png"))
        .await;
    assert_no_csp_refusal(&page);
    browser.close();
}

/// The ids of the cards in a column, top to bottom.
async fn column_cards(page: &Page, phase: &str) -> Vec<String> {
    page.eval(&format!(
        "[...document.querySelectorAll('#column-{phase} .card')].map((c) => c.dataset.taskId)"
    ))
    .await
}

/// Presses `key` and waits until task `id`'s card has the focus.
async fn press_to(page: &Page, key: &str, id: &str) {
    page.press(key).await;
    page.wait_until(
        &format!("document.activeElement === {}", card(id)),
        &format!("{key} to focus task {id}'s card"),
        TIMEOUT,
    )
    .await;
}

/// Sets the project filter as a person choosing from it does.
async fn filter(page: &Page, value: &str) {
    page.eval::<()>(&format!(
        "(() => {{ const f = document.querySelector('#project-filter'); f.value = {value:?};
           f.dispatchEvent(new Event('change', {{bubbles: true}})); }})()"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_filter_hides_other_projects_and_the_keys_move_between_cards_and_open_one() {
    const TEST: &str =
        "the_project_filter_hides_other_projects_and_the_keys_move_between_cards_and_open_one";
    let sandbox = Sandbox::new();
    sandbox.write_config(AGENTS);
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    sandbox.add_project("demo");
    sandbox.add_project("other");
    let a = sandbox.create_task("demo", "001-a", &[]);
    let x = sandbox.create_task("other", "001-x", &[]);
    let b = sandbox.create_task("demo", "002-b", &[]);
    // One card in a column further right: started, then stopped.
    let d = sandbox.create_task("demo", "003-d", &[]);
    sandbox.ctl(&["tasks", "start", &d]).assert_ok();
    sandbox.ctl(&["tasks", "stop", &d]).assert_ok();
    assert_eq!(sandbox.show_task(&d)["phase"], "stopped");
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    wait_column(&page, &d, "stopped", TIMEOUT).await;
    page.wait_until(
        "document.querySelectorAll('#column-backlog .card').length === 3",
        "the backlog's three cards",
        TIMEOUT,
    )
    .await;
    // Oldest first, as the daemon made them.
    assert_eq!(
        column_cards(&page, "backlog").await,
        [a.clone(), x.clone(), b.clone()]
    );

    // The arrows follow the columns as shown; Home and End go to a column's ends.
    page.eval::<()>(&format!("{}.focus()", card(&a))).await;
    press_to(&page, "ArrowDown", &x).await;
    press_to(&page, "ArrowDown", &b).await;
    press_to(&page, "ArrowDown", &b).await; // the last card stays
    press_to(&page, "ArrowUp", &x).await;
    press_to(&page, "Home", &a).await;
    press_to(&page, "End", &b).await;
    // Right skips the empty columns to the stopped one; left comes back to the same row.
    press_to(&page, "ArrowUp", &x).await;
    press_to(&page, "ArrowRight", &d).await;
    press_to(&page, "ArrowLeft", &a).await;
    page.screenshot(&screenshots().join("board-keyboard.png"))
        .await;
    page.press("Enter").await;
    let host = only_host(&page).await;
    page.wait_until(
        &format!(
            "location.pathname === {:?}
             && document.querySelector('#task-title')?.textContent.includes('001-a')",
            task_path(&host, &a)
        ),
        "Enter to open the focused card's task",
        TIMEOUT,
    )
    .await;

    // The filter: only the chosen project's cards are on the board, and the keys skip the rest.
    page.goto(&shim.url("/")).await;
    wait_column(&page, &x, "backlog", TIMEOUT).await;
    let demo = option_value(&page, "#project-filter", "demo").await;
    filter(&page, &demo).await;
    page.wait_until(
        &format!(
            "{} === null && {} !== null && {} !== null && {} !== null
             && new URLSearchParams(location.search).get('project') === {demo:?}",
            card(&x),
            card(&a),
            card(&b),
            card(&d)
        ),
        "only demo's cards, and the filter in the address",
        TIMEOUT,
    )
    .await;
    page.eval::<()>(&format!("{}.focus()", card(&a))).await;
    press_to(&page, "ArrowDown", &b).await;
    page.screenshot(&screenshots().join("board-filtered.png"))
        .await;
    let other = option_value(&page, "#project-filter", "other").await;
    filter(&page, &other).await;
    page.wait_until(
        &format!(
            "document.querySelectorAll('.card').length === 1 && {} !== null",
            card(&x)
        ),
        "only other's card",
        TIMEOUT,
    )
    .await;
    // A reload keeps the filter (it is in the address).
    page.goto(&page.eval::<String>("location.href").await).await;
    page.wait_until(
        &format!(
            "window.aifactory.board?.loaded && document.querySelector('#project-filter').value === {other:?}
             && document.querySelectorAll('.card').length === 1 && {} !== null",
            card(&x)
        ),
        "the filter after a reload",
        TIMEOUT,
    )
    .await;
    filter(&page, "").await;
    page.wait_until(
        "document.querySelectorAll('.card').length === 4 && location.search === ''",
        "every card again",
        TIMEOUT,
    )
    .await;
    assert_no_csp_refusal(&page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stop_and_remove_go_through_the_daemon_asking_first_and_a_refusal_shows_its_words() {
    const TEST: &str =
        "start_stop_and_remove_go_through_the_daemon_asking_first_and_a_refusal_shows_its_words";
    let sandbox = Sandbox::new();
    sandbox.write_config(AGENTS);
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let project = sandbox.add_project("demo");
    let run = sandbox.create_task("demo", "001-run", &[]);
    let eol = sandbox.create_task("demo", "002-eol", &["--agent", "eol"]);
    let pruned = sandbox.create_task("demo", "003-prune", &[]);
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    wait_column(&page, &eol, "backlog", TIMEOUT).await;

    // A start the daemon refuses: its reason, as the CLI shows it, on the board.
    card_action(&page, &eol, "start").await;
    page.wait_until(
        "document.querySelector('#board-error').textContent.startsWith('start 002-eol: ')",
        "the refused start's reason",
        TIMEOUT,
    )
    .await;
    let shown: String = page
        .eval("document.querySelector('#board-error').textContent")
        .await;
    let reason = shown.trim_start_matches("start 002-eol: ");
    let cli = sandbox.ctl(&["tasks", "start", &eol]);
    assert_ne!(cli.code, Some(0), "{cli:?}");
    assert!(
        reason.contains("cannot run") && cli.stderr.contains(reason),
        "the page shows the daemon's words, as the CLI does: page {shown:?}, CLI {cli:?}"
    );
    assert_eq!(sandbox.show_task(&eol)["phase"], "backlog");
    page.screenshot(&screenshots().join("board-start-refused.png"))
        .await;

    // Start, then stop (asked first).
    card_action(&page, &run, "start").await;
    wait_column(&page, &run, "planning", SLOW).await;
    assert_eq!(sandbox.show_task(&run)["phase"], "planning");
    card_action(&page, &run, "stop").await;
    answer_dialog(&page, "001-run", "").await;
    assert_eq!(
        sandbox.show_task(&run)["phase"],
        "planning",
        "cancelled: still running"
    );
    card_action(&page, &run, "stop").await;
    answer_dialog(&page, "001-run", "stop").await;
    wait_column(&page, &run, "stopped", SLOW).await;
    assert_eq!(sandbox.show_task(&run)["phase"], "stopped");
    let run_worktree = PathBuf::from(
        sandbox.show_task(&run)["worktree"]
            .as_str()
            .unwrap_or_default(),
    );

    // Remove: asked first; cancelled, nothing happens.
    card_action(&page, &run, "remove").await;
    answer_dialog(&page, "001-run", "").await;
    assert!(listed(&sandbox).contains(&run), "cancelled: still there");
    let shown: bool = page.eval(&format!("{} !== null", card(&run))).await;
    assert!(shown, "cancelled: the card stays");
    card_action(&page, &run, "remove").await;
    answer_dialog(&page, "001-run", "remove").await;
    page.wait_until(
        &format!("{} === null", card(&run)),
        "the removed task's card to go",
        TIMEOUT,
    )
    .await;
    let left = listed(&sandbox);
    assert_eq!(
        left,
        [eol.clone(), pruned.clone()],
        "the removed task is gone from tasks list"
    );
    assert!(run_worktree.is_dir(), "a plain remove keeps the worktree");
    page.screenshot(&screenshots().join("board-removed.png"))
        .await;

    // Remove with the worktree, which has a file git does not know: git refuses, the page
    // asks whether to delete it too; declined, task and worktree stay; accepted, both go and
    // the branch (the agent's commits) stays.
    let task = sandbox.show_task(&pruned);
    let worktree = PathBuf::from(task["worktree"].as_str().unwrap_or_default());
    let branch = task["branch"].as_str().unwrap_or_default().to_string();
    std::fs::write(worktree.join("notes.txt"), "not committed\n").unwrap();
    card_action(&page, &pruned, "remove").await;
    answer_dialog(&page, "003-prune", "prune").await;
    answer_dialog(&page, "Delete the uncommitted changes of 003-prune", "").await;
    assert!(
        listed(&sandbox).contains(&pruned),
        "declined: the task stays"
    );
    assert!(
        worktree.join("notes.txt").is_file(),
        "declined: the worktree stays"
    );
    card_action(&page, &pruned, "remove").await;
    answer_dialog(&page, "003-prune", "prune").await;
    page.wait_until(
        "document.querySelector('#confirm-message')?.textContent.includes('not committed')",
        "the question saying what deleting the worktree loses",
        TIMEOUT,
    )
    .await;
    page.screenshot(&screenshots().join("board-prune-asks.png"))
        .await;
    answer_dialog(
        &page,
        "Delete the uncommitted changes of 003-prune",
        "force",
    )
    .await;
    page.wait_until(
        &format!("{} === null", card(&pruned)),
        "the pruned task's card to go",
        TIMEOUT,
    )
    .await;
    assert_eq!(listed(&sandbox), std::slice::from_ref(&eol));
    assert!(!worktree.exists(), "the worktree went with the task");
    let branches = git(&["branch", "--list", &branch], &project);
    assert!(branches.contains(&branch), "the branch stays: {branches:?}");
    assert_no_csp_refusal(&page);
    browser.close();
}

/// Starts task `id` from the page (its start button is `button`, a JavaScript expression) while
/// the browser holds the daemon's answer (CDP Fetch interception) until the agent has moved
/// the task on to coding (`phase` reads the phase the page shows); then fails if the page,
/// taking the older answer, showed the task back in an earlier phase.
async fn start_with_a_late_answer(
    sandbox: &Sandbox,
    page: &Page,
    id: &str,
    button: &str,
    phase: &str,
) {
    page.wait_until(
        &format!("{phase} === 'backlog'"),
        &format!("task {id} shown in backlog"),
        TIMEOUT,
    )
    .await;
    // Every phase shown, in order; and when the page has taken the start's answer (a task
    // after the one that took it, so the answer's handling is over).
    page.eval::<()>(&format!(
        "window.phasesSeen = [{phase}];
         new MutationObserver(() => {{
           const now = {phase}; const last = window.phasesSeen[window.phasesSeen.length - 1];
           if (now && now !== last) window.phasesSeen.push(now);
         }}).observe(document.querySelector('#main'), {{subtree: true, childList: true, attributes: true}});
         window.startAnswered = false;
         const fetchOf = window.fetch;
         window.fetch = (url, init) => fetchOf(url, init).then((r) => {{
           if (!String(url).endsWith('/start')) return r;
           const text = r.text.bind(r);
           r.text = () => text().then((t) => {{ setTimeout(() => {{ window.startAnswered = true; }}); return t; }});
           return r;
         }});
         undefined"
    ))
    .await;

    let cdp = page.cdp();
    let mut paused = cdp
        .event_listener::<EventRequestPaused>()
        .await
        .expect("listen for paused requests");
    cdp.execute(
        FetchEnableParams::builder()
            .pattern(
                RequestPattern::builder()
                    .url_pattern("*/api/v1/hosts/*/tasks/*/start")
                    .request_stage(RequestStage::Response)
                    .build(),
            )
            .build(),
    )
    .await
    .expect("Fetch.enable");
    click(page, button).await;
    let held = tokio::time::timeout(TIMEOUT, paused.next())
        .await
        .expect("the start's answer within the timeout")
        .expect("a paused request");
    assert_eq!(held.response_status_code, Some(200), "{held:?}");
    let wait_phase = async |want: &str| {
        page.wait_until(
            &format!("{phase} === {want:?}"),
            &format!("task {id} shown in {want}"),
            SLOW,
        )
        .await
    };
    wait_phase("planning").await;
    // The agent waits for this file in its worktree before it reports coding.
    let worktree = sandbox.show_task(id)["worktree"]
        .as_str()
        .map(PathBuf::from)
        .expect("the task's worktree");
    std::fs::write(worktree.join(".gate"), "").expect("open the gate");
    wait_phase("coding").await;
    cdp.execute(ContinueRequestParams::new(held.request_id.clone()))
        .await
        .expect("let the answer through");
    cdp.execute(FetchDisableParams::default())
        .await
        .expect("Fetch.disable");
    page.wait_until(
        "window.startAnswered",
        "the page to take the start's answer",
        TIMEOUT,
    )
    .await;
    let seen: Vec<String> = page.eval("window.phasesSeen").await;
    assert_eq!(
        seen,
        ["backlog", "planning", "coding"],
        "the older answer did not step task {id} back"
    );
    assert_eq!(sandbox.show_task(id)["phase"], "coding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_answered_after_the_agent_moved_on_steps_back_neither_the_card_nor_the_task_page() {
    const TEST: &str =
        "a_start_answered_after_the_agent_moved_on_steps_back_neither_the_card_nor_the_task_page";
    let sandbox = Sandbox::new();
    let script = "while [ ! -e .gate ]; do sleep 0.05; done
         printf 'phase: coding\\n' >> \"$AIFACTORY_PROGRESS_FILE\"; exec sleep 300";
    sandbox.write_config(&format!(
        "default_agent = \"gated\"\n[agents.gated]\nkind = \"custom\"\ncommand = [\"sh\", \"-c\", {script:?}]\n"
    ));
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    sandbox.add_project("demo");
    let on_board = sandbox.create_task("demo", "001-on-the-board", &[]);
    let on_page = sandbox.create_task("demo", "002-on-its-page", &[]);
    let Some((browser, page)) = logged_in(TEST, &sandbox, &shim).await else {
        return;
    };
    let board_card = card(&on_board);
    start_with_a_late_answer(
        &sandbox,
        &page,
        &on_board,
        &format!("{board_card}.querySelector('button[data-action=start]')"),
        &format!("{board_card}?.dataset.phase"),
    )
    .await;
    page.screenshot(&screenshots().join("board-late-answer.png"))
        .await;

    let host = only_host(&page).await;
    page.goto(&shim.url(&task_path(&host, &on_page))).await;
    start_with_a_late_answer(
        &sandbox,
        &page,
        &on_page,
        "document.querySelector('.task-actions button[data-action=start]')",
        "document.querySelector('.task-header .phase')?.dataset.phase",
    )
    .await;
    assert_no_csp_refusal(&page);
    browser.close();
}
