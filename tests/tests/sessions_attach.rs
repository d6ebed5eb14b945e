//! `aifactoryctl sessions attach` on a real terminal: a private tmux server runs a shell in
//! which the test types, as a person would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aifactory_tests::tmux::Tmux;
use aifactory_tests::wait::{wait_for, wait_until};
use aifactory_tests::{Sandbox, bin, skip};

/// Types `text` and Enter into the pane.
fn type_line(tmux: &Tmux, text: &str) {
    tmux.ok(&["send-keys", "-t", "t", "-l", text]);
    tmux.ok(&["send-keys", "-t", "t", "Enter"]);
}

/// The pane's whole history and screen, wrapped lines joined.
fn screen(tmux: &Tmux) -> String {
    tmux.ok_text(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])
}

fn wait_screen(tmux: &Tmux, what: &str, pred: impl Fn(&str) -> bool) -> String {
    wait_for(what, TIMEOUT, || {
        let screen = screen(tmux);
        if pred(&screen) {
            Ok(screen)
        } else {
            Err(screen)
        }
    })
}

/// `(cols, rows)` of the pane.
fn pane_size(tmux: &Tmux) -> (u64, u64) {
    let text = tmux.ok_text(&[
        "display-message",
        "-p",
        "-t",
        "t",
        "#{pane_width} #{pane_height}",
    ]);
    let mut it = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn log_text(pane_dir: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(pane_dir.join("output.log")).unwrap_or_default())
        .into_owned()
}

fn session_size(sandbox: &Sandbox, id: &str) -> (u64, u64) {
    let s = sandbox
        .ctl(&["sessions", "show", id, "--json"])
        .assert_ok()
        .json();
    (s["cols"].as_u64().unwrap(), s["rows"].as_u64().unwrap())
}

#[test]
fn attach_types_resizes_detaches_and_exits_with_the_sessions_status() {
    let name = "attach_types_resizes_detaches_and_exits_with_the_sessions_status";
    if Command::new("tmux").arg("-V").output().is_err() {
        return skip(name, "tmux is not installed");
    }
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    // A small line-driven program: echoes lines, reports its terminal size, exits 3 on `quit`.
    let script = "echo ready; while IFS= read -r line; do case \"$line\" in \
                  size) echo \"size:$(stty size)\";; quit) exit 3;; *) echo \"got:$line\";; esac; done";
    let s = sandbox
        .ctl(&[
            "sessions", "new", "--json", "--size", "50x10", "--", "sh", "-c", script,
        ])
        .assert_ok()
        .json();
    let id = s["id"].as_str().unwrap().to_string();
    let pane_dir = PathBuf::from(s["pane_dir"].as_str().unwrap());
    wait_until("the session is ready", TIMEOUT, || {
        log_text(&pane_dir).contains("ready")
    });

    let socket = format!("AIFACTORY_SOCKET={}", sandbox.socket().display());
    let tmux = Tmux::start(
        Path::new("tmux"),
        &[
            "-s", "t", "-x", "100", "-y", "30", "env", &socket, "PS1=$ ", "sh",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ctl = bin("aifactoryctl").display().to_string();
    let attach = format!("{ctl} sessions attach {id}; echo \"rc=$?\"");

    // Attach: it takes the pane's size at once.
    type_line(&tmux, &attach);
    let size = pane_size(&tmux);
    wait_until(
        "attach sets the session to the pane's size",
        TIMEOUT,
        || session_size(&sandbox, &id) == size,
    );

    // Keys reach the program; its answer reaches the screen.
    type_line(&tmux, "hello from tmux");
    wait_until("the typed line reaches the program", TIMEOUT, || {
        log_text(&pane_dir).contains("got:hello from tmux")
    });
    wait_screen(&tmux, "the program's answer", |s| {
        s.contains("got:hello from tmux")
    });

    // A window resize reaches the program.
    tmux.ok(&["resize-window", "-t", "t", "-x", "80", "-y", "20"]);
    let resized = pane_size(&tmux);
    assert_ne!(resized, size, "tmux resized the pane");
    wait_until("the resize reaches the session", TIMEOUT, || {
        session_size(&sandbox, &id) == resized
    });
    type_line(&tmux, "size");
    let expected = format!("size:{} {}", resized.1, resized.0);
    wait_until("the program sees the new size", TIMEOUT, || {
        log_text(&pane_dir).contains(&expected)
    });
    wait_screen(&tmux, "the new size", |s| s.contains(&expected));

    // Ctrl-\ detaches: the message, status 0, the session still running.
    tmux.ok(&["send-keys", "-t", "t", "-H", "1c"]);
    let screen = wait_screen(&tmux, "the detach", |s| {
        s.lines().any(|l| l.starts_with("rc="))
    });
    assert!(
        screen.contains(&format!("[detached from session {id}; it keeps running]")),
        "{screen}"
    );
    assert!(screen.lines().any(|l| l.trim() == "rc=0"), "{screen}");
    let shown = sandbox
        .ctl(&["sessions", "show", &id, "--json"])
        .assert_ok()
        .json();
    assert_eq!(shown["state"], "running", "{shown}");
    sandbox
        .ctl(&["sessions", "send", &id, "still there", "--enter"])
        .assert_ok();
    wait_until("the detached session still answers", TIMEOUT, || {
        log_text(&pane_dir).contains("got:still there")
    });

    // The terminal is back in cooked mode, echo included: the shell's line is seen as typed
    // and its answer says canonical mode.
    type_line(
        &tmux,
        "echo \"mode:$(stty -a | tr ' ;' '\\n\\n' | grep -x -- '-\\{0,1\\}icanon') $(stty -a | tr ' ;' '\\n\\n' | grep -x -- '-\\{0,1\\}echo')\"",
    );
    let screen = wait_screen(&tmux, "the terminal mode", |s| {
        s.lines().any(|l| l.starts_with("mode:"))
    });
    let line = screen
        .lines()
        .find(|l| l.starts_with("mode:"))
        .unwrap_or_else(|| panic!("no mode line in:\n{screen}"));
    assert_eq!(line.trim(), "mode:icanon echo", "{screen}");
    assert!(
        screen.contains("$ echo \"mode:"),
        "typed text echoes: {screen}"
    );

    // Attach again; the program exits 3, so does attach.
    sandbox
        .ctl(&["sessions", "resize", &id, "33x11"])
        .assert_ok();
    type_line(&tmux, &attach);
    wait_until("the second attach sets the pane's size", TIMEOUT, || {
        session_size(&sandbox, &id) == resized
    });
    type_line(&tmux, "quit");
    let screen = wait_screen(&tmux, "attach's exit status", |s| {
        s.lines().filter(|l| l.starts_with("rc=")).count() == 2
    });
    assert_eq!(
        screen.lines().rfind(|l| l.starts_with("rc=")),
        Some("rc=3"),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("[session {id} exited 3]")),
        "{screen}"
    );
    let shown = sandbox
        .ctl(&["sessions", "show", &id, "--json"])
        .assert_ok()
        .json();
    assert_eq!(shown["state"], "exited", "{shown}");
    assert_eq!(shown["exit"]["code"], 3, "{shown}");
}
