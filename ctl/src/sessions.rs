//! `aifactoryctl sessions ...`: terminal sessions.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use aifactory_common::Client;
use aifactory_common::pane::ExitInfo;
use aifactory_common::protocol::{
    ProcessEntry, Request, SessionInfo, SessionKillReport, SessionSpec, StreamItem,
};
use tokio::io::AsyncReadExt;

use crate::cli::{Cli, SessionsCommand};
use crate::connect::connect;
use crate::exit::{FAILED, Failure};

/// Ctrl-\ detaches from `attach`, as it would quit in a plain terminal.
const DETACH_KEY: u8 = 0x1c;

pub async fn run(cli: &Cli, command: &SessionsCommand) -> Result<(), Failure> {
    let client = connect(cli).await?;
    match command {
        SessionsCommand::New {
            name,
            cwd,
            env,
            size,
            command,
        } => {
            let cwd = match (cwd, crate::connect::remote_host(cli)?) {
                (Some(dir), _) => crate::connect::absolute_on_target(cli, dir)?,
                (None, Some(host)) => {
                    return Err(Failure {
                        code: FAILED,
                        message: format!(
                            "a session on {host} needs --cwd: this machine's working directory is not a directory there"
                        ),
                    });
                }
                (None, None) => std::env::current_dir().map_err(|e| Failure {
                    code: FAILED,
                    message: format!("cannot resolve the working directory: {e}"),
                })?,
            };
            let spec = SessionSpec {
                name: name.clone(),
                command: command.clone(),
                cwd,
                env: env.clone(),
                cols: size.map(|s| s.0),
                rows: size.map(|s| s.1),
            };
            let session = client.session_new(spec).await?;
            if cli.json {
                println!("{}", session_json(&session));
            } else {
                println!("{}", session.id);
            }
        }
        SessionsCommand::List => print_list(cli.json, &client.session_list().await?),
        SessionsCommand::Show { session } => {
            let s = client.session_show(session).await?;
            print_session(cli.json, &s);
        }
        SessionsCommand::Send {
            session,
            text,
            enter,
        } => {
            let mut data = text.clone().into_bytes();
            if *enter {
                // A terminal's Enter key sends a carriage return.
                data.push(b'\r');
            }
            client.session_input(session, data).await?;
        }
        SessionsCommand::Resize { session, size } => {
            client.session_resize(session, size.0, size.1).await?;
        }
        SessionsCommand::Kill {
            session,
            ignore_missing,
            grace,
        } => {
            let grace_ms = (grace.max(0.0) * 1000.0) as u64;
            let report = client
                .session_kill(session, grace_ms, *ignore_missing)
                .await?;
            return print_kill(cli.json, session, &report);
        }
        SessionsCommand::Wait { session } => {
            let s = client.session_wait(session).await?;
            print_session(cli.json, &s);
            if s.exit.is_none() {
                return Err(Failure {
                    code: FAILED,
                    message: format!("session {} {}", s.id, ended_text(&s)),
                });
            }
            return exit_with(s.exit.as_ref());
        }
        SessionsCommand::Remove { session } => {
            let s = client.session_remove(session).await?;
            if !cli.json {
                println!("removed session {} and its output", s.id);
            }
        }
        SessionsCommand::Tail {
            session,
            from,
            follow,
        } => {
            let request = Request::SessionTail {
                key: session.clone(),
                from: *from,
                follow: *follow,
            };
            let exit = stream_output(&client, request, |_| true).await?;
            if *follow {
                return exit_with(exit.as_ref());
            }
        }
        SessionsCommand::Attach { session } => {
            return crate::sessions::attach(&client, session).await;
        }
    }
    Ok(())
}

/// Copies a session's output to stdout until the stream ends; returns the exit, if it ended.
/// `keep_going` is asked before each chunk (attach stops on detach).
pub(crate) async fn stream_output(
    client: &Client,
    request: Request,
    mut keep_going: impl FnMut(&[u8]) -> bool,
) -> Result<Option<ExitInfo>, Failure> {
    let mut stream = client.subscribe(request).await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(item) = stream.next().await {
        match item {
            StreamItem::Output { data, .. } => {
                if !keep_going(&data) {
                    return Ok(None);
                }
                if stdout
                    .write_all(&data)
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    // stdout closed (e.g. piped into `head`): the reader has what it wanted.
                    return Ok(None);
                }
            }
            StreamItem::OutputLagged {
                requested,
                resume_from,
            } => eprintln!(
                "aifactoryctl: output before byte {resume_from} was rotated away (asked from {requested})"
            ),
            StreamItem::OutputEnd { exit, .. } => return Ok(exit),
            StreamItem::Event(_) | StreamItem::Lagged { .. } => {}
        }
    }
    Err(Failure {
        code: FAILED,
        message: "the output stream ended without its end marker: the daemon closed the connection"
            .into(),
    })
}

/// Exit status of the CLI for a session that ended: its code, or 128 + signal.
pub(crate) fn exit_with(exit: Option<&ExitInfo>) -> Result<(), Failure> {
    let code = match exit {
        None => return Ok(()),
        Some(ExitInfo { code: Some(c), .. }) => *c,
        Some(ExitInfo {
            signal: Some(s), ..
        }) => 128 + *s,
        Some(_) => 1,
    };
    if code == 0 {
        return Ok(());
    }
    std::process::exit(code.clamp(1, 255));
}

fn ended_text(s: &SessionInfo) -> String {
    // A lost session also has an `exit` (its end time, no status): its reason says more.
    match (&s.exit, &s.lost_reason) {
        (_, Some(reason)) => format!("lost: {reason}"),
        (Some(exit), None) => exit.describe(),
        (None, None) => s.state.as_str().to_string(),
    }
}

/// A kill's outcome: the session as it ended, with the processes signalled and the
/// survivors (`--json`: the session's fields plus `signalled` and `survivors`). Survivors make
/// the command fail.
fn print_kill(json: bool, key: &str, report: &SessionKillReport) -> Result<(), Failure> {
    let processes = |list: &[ProcessEntry]| serde_json::to_value(list).unwrap_or_default();
    match (&report.session, json) {
        (Some(s), true) => {
            let mut value = session_json(s);
            if let Some(fields) = value.as_object_mut() {
                fields.insert("signalled".into(), processes(&report.signalled));
                fields.insert("survivors".into(), processes(&report.survivors));
            }
            println!("{value}");
        }
        (Some(s), false) => {
            println!("{} {}", s.id, ended_text(s));
            for p in &report.signalled {
                println!("  stopped {:>7}  {}", p.pid, p.command);
            }
        }
        (None, true) => println!("null"),
        (None, false) => println!("no session `{key}`: nothing to kill"),
    }
    Failure::survivors(&format!("session `{key}`"), &report.survivors)
}

pub fn session_json(s: &SessionInfo) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

fn print_session(json: bool, s: &SessionInfo) {
    if json {
        println!("{}", session_json(s));
        return;
    }
    println!("id        {}", s.id);
    println!("name      {}", s.name.as_deref().unwrap_or("-"));
    println!("state     {}", s.state.as_str());
    println!("command   {}", s.command.join(" "));
    println!("cwd       {}", s.cwd.display());
    println!(
        "pid       {}",
        s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
    );
    println!("size      {}x{}", s.cols, s.rows);
    println!("pane      {}", s.pane_dir.display());
    if s.exit.is_some() || s.lost_reason.is_some() {
        println!("ended     {}", ended_text(s));
    }
    if let Some(blocked) = &s.output_blocked {
        println!(
            "output    blocked since {}: {} (the program is held until its output can be written; nothing is lost)",
            blocked.since, blocked.reason
        );
    }
    println!("created   {}", s.created_at);
}

fn print_list(json: bool, list: &[SessionInfo]) {
    if json {
        let items: Vec<_> = list.iter().map(session_json).collect();
        println!("{}", serde_json::Value::Array(items));
        return;
    }
    if list.is_empty() {
        println!("no sessions: start one with `aifactoryctl sessions new -- CMD`");
        return;
    }
    println!(
        "{:<10}  {:<16}  {:<8}  {:>7}  COMMAND",
        "ID", "NAME", "STATE", "PID"
    );
    for s in list {
        println!(
            "{:<10}  {:<16}  {:<8}  {:>7}  {}",
            s.id,
            s.name.as_deref().unwrap_or("-"),
            // Still running, but held: the one thing a list reader must not miss.
            if s.output_blocked.is_some() {
                "blocked"
            } else {
                s.state.as_str()
            },
            s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            s.command.join(" ")
        );
    }
}

/// Puts the terminal in raw mode and restores it when dropped (also on error paths).
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Result<RawMode, Failure> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).map_err(|e| Failure {
            code: FAILED,
            message: format!("attach needs a terminal on stdin ({e}): use `sessions tail --follow` and `sessions send` instead"),
        })?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSAFLUSH, &raw).map_err(|e| Failure {
            code: FAILED,
            message: format!("cannot put the terminal in raw mode: {e}"),
        })?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, tcsetattr};
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSAFLUSH, &self.saved);
    }
}

fn terminal_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// `sessions attach`: output to the screen, keys to the session, window size following this
/// terminal, until the session ends (exit with its status) or Ctrl-\ detaches.
pub async fn attach(client: &Client, key: &str) -> Result<(), Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let session = client.session_show(key).await?;
    let key = session.id.clone();
    let signal_failure = |e: std::io::Error| Failure {
        code: FAILED,
        message: format!("cannot watch signals: {e}"),
    };
    let mut winch = signal(SignalKind::window_change()).map_err(signal_failure)?;
    let mut term = signal(SignalKind::terminate()).map_err(signal_failure)?;
    let mut hup = signal(SignalKind::hangup()).map_err(signal_failure)?;
    let raw = RawMode::enter()?;
    let resize = |size: Option<(u16, u16)>| {
        let key = key.clone();
        async move {
            if let Some((cols, rows)) = size {
                let _ = client.session_resize(key, cols, rows).await;
            }
        }
    };
    // The program redraws for the new size, which shows the screen without a replay.
    resize(terminal_size()).await;
    let output = stream_output(
        client,
        Request::SessionTail {
            key: key.clone(),
            from: Some(u64::MAX),
            follow: true,
        },
        |_| true,
    );
    tokio::pin!(output);
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 4096];
    let outcome = loop {
        tokio::select! {
            ended = &mut output => break ended.map(Some),
            read = stdin.read(&mut buf) => match read {
                Ok(0) | Err(_) => break Ok(None),
                Ok(n) => {
                    let keys = &buf[..n];
                    let (keys, detach) = match keys.iter().position(|b| *b == DETACH_KEY) {
                        Some(i) => (&keys[..i], true),
                        None => (keys, false),
                    };
                    if !keys.is_empty() {
                        client.session_input(key.as_str(), keys).await?;
                    }
                    if detach {
                        break Ok(None);
                    }
                }
            },
            _ = winch.recv() => resize(terminal_size()).await,
            _ = term.recv() => break Ok(None),
            _ = hup.recv() => break Ok(None),
        }
    };
    drop(raw);
    match outcome? {
        Some(Some(exit)) => {
            eprintln!("\r\n[session {key} {}]", exit.describe());
            exit_with(Some(&exit))
        }
        Some(None) => Err(Failure {
            code: FAILED,
            message: format!(
                "session {key} ended without an exit status (its monitor is gone): see `aifactoryctl sessions show {key}`"
            ),
        }),
        None => {
            eprintln!("\r\n[detached from session {key}; it keeps running]");
            // Give the terminal a moment to print before the process exits.
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        }
    }
}
