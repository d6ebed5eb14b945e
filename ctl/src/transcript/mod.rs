//! `aifactoryctl tasks transcript`: what the task's agent did, from the daemon's stored
//! transcript, and with `--follow` live from the event stream until the agent's run ends.

mod render;

use std::io::Write as _;

use aifactory_common::Client;
use aifactory_common::pane::ExitInfo;
use aifactory_common::protocol::{EventKind, Request, SessionState, StreamItem, TranscriptEntry};

use crate::exit::{FAILED, Failure};
use crate::sessions::exit_with;
use render::Renderer;
pub use render::{cost_text, one_line_summary, usage_text};

/// Prints entries as text or JSON lines, each once: `last` is the highest `seq` printed.
struct Printer {
    json: bool,
    renderer: Renderer,
    last: Option<u64>,
    /// stdout was closed (e.g. piped into `head`): the reader has what it wanted.
    closed: bool,
}

impl Printer {
    fn write(&mut self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            self.closed = true;
        }
    }

    fn dropped(&mut self, dropped: u64) {
        let Some(note) = Renderer::dropped(dropped) else {
            return;
        };
        if self.json {
            // stdout stays one entry per line.
            eprint!("aifactoryctl: {note}");
        } else {
            self.write(&note);
        }
    }

    /// The stored entries, each result folded under its call.
    fn stored(&mut self, entries: &[TranscriptEntry]) {
        let fresh: Vec<TranscriptEntry> = entries
            .iter()
            .filter(|e| self.last.is_none_or(|last| e.seq > last))
            .cloned()
            .collect();
        let Some(newest) = fresh.iter().map(|e| e.seq).max() else {
            return;
        };
        self.last = Some(newest);
        let text = if self.json {
            fresh.iter().map(json_line).collect()
        } else {
            self.renderer.render_all(&fresh)
        };
        self.write(&text);
    }

    /// A live entry, unless it was printed already.
    fn live(&mut self, entry: &TranscriptEntry) {
        if self.last.is_some_and(|last| entry.seq <= last) {
            return;
        }
        self.last = Some(entry.seq);
        let text = if self.json {
            json_line(entry)
        } else {
            self.renderer.entry(entry)
        };
        self.write(&text);
    }
}

fn json_line(entry: &TranscriptEntry) -> String {
    format!("{}\n", serde_json::to_value(entry).unwrap_or_default())
}

pub async fn run(client: &Client, key: &str, json: bool, follow: bool) -> Result<(), Failure> {
    let mut printer = Printer {
        json,
        renderer: Renderer::new(crate::tasks::terminal_width()),
        last: None,
        closed: false,
    };
    if !follow {
        let transcript = client.task_transcript(key, None).await?;
        if transcript.entries.is_empty() && !json {
            eprintln!(
                "aifactoryctl: task {} has no transcript yet: its agent has not run, or its CLI writes no structured output (a `custom` profile); `aifactoryctl tasks logs {}` shows its terminal",
                transcript.task_id, transcript.task_id
            );
        }
        printer.dropped(transcript.dropped);
        printer.stored(&transcript.entries);
        return Ok(());
    }
    // Subscribed before reading what is stored, so that no entry falls between the two: one
    // seen twice is printed once (by its seq).
    let mut stream = client
        .subscribe(Request::SubscribeEvents { after: None })
        .await?;
    let task = client.task_show(key).await?;
    let transcript = client.task_transcript(&task.id, None).await?;
    printer.dropped(transcript.dropped);
    printer.stored(&transcript.entries);
    if let Some(exit) = ended(client, &task).await {
        return exit_with(exit.as_ref());
    }
    while let Some(item) = stream.next().await {
        if printer.closed {
            return Ok(());
        }
        let event = match item {
            StreamItem::Event(event) => event,
            StreamItem::Lagged { .. } => {
                // Events were dropped for this reader; the store still has the entries.
                let rest = client.task_transcript(&task.id, printer.last).await?;
                printer.stored(&rest.entries);
                continue;
            }
            _ => continue,
        };
        match event.kind {
            EventKind::TaskAgent { task_id, entry } if task_id == task.id => printer.live(&entry),
            // The run's end (not an attempt the restart policy follows with another).
            EventKind::TaskExited {
                task_id,
                exit,
                restart_in_ms: None,
                ..
            } if task_id == task.id => {
                let rest = client.task_transcript(&task.id, printer.last).await?;
                printer.stored(&rest.entries);
                return exit_with(exit.as_ref());
            }
            _ => {}
        }
    }
    Err(Failure {
        code: FAILED,
        message: "the event stream ended before the task's agent did: the daemon closed the connection; run the command again to resume".into(),
    })
}

/// When the task's agent is not running (it ended, or never ran): how its last run ended.
async fn ended(
    client: &Client,
    task: &aifactory_common::protocol::TaskInfo,
) -> Option<Option<ExitInfo>> {
    let session = match &task.session_id {
        Some(id) => client.session_show(id.clone()).await.ok(),
        None => None,
    };
    let running = session
        .as_ref()
        .is_some_and(|s| matches!(s.state, SessionState::Starting | SessionState::Running));
    // An agent may report `done` before its process ends: follow it until it does.
    if task.phase.is_active() || running {
        return None;
    }
    Some(session.and_then(|s| s.exit))
}
