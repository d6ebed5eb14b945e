//! `aifactoryctl tasks ...`: tasks on the board and their agents.

use std::fmt::Write as _;

use aifactory_common::protocol::{
    AttemptInfo, Event, EventKind, Request, ResourceUsage, StopReport, StreamItem, TaskCreate,
    TaskInfo, TaskPhase,
};

use crate::cli::{Cli, TasksCommand};
use crate::connect::connect;
use crate::exit::{FAILED, Failure};
use crate::sessions::{exit_with, stream_output};
use crate::transcript;

fn grace_ms(grace: f64) -> u64 {
    (grace.max(0.0) * 1000.0) as u64
}

pub async fn run(cli: &Cli, command: &TasksCommand) -> Result<(), Failure> {
    let client = connect(cli).await?;
    match command {
        TasksCommand::Create {
            project,
            spec,
            title,
            agent,
        } => {
            let create = TaskCreate {
                project: project.clone(),
                spec_id: spec.clone(),
                title: title.clone(),
                agent: agent.clone(),
            };
            print_task(cli.json, &client.task_create(create).await?);
        }
        TasksCommand::List { project } => {
            print_list(cli.json, &client.task_list(project.clone()).await?);
        }
        TasksCommand::Board { project } => {
            print_board(cli.json, &client.task_list(project.clone()).await?);
        }
        TasksCommand::Show { task } => print_task(cli.json, &client.task_show(task).await?),
        TasksCommand::Start { task } => print_task(cli.json, &client.task_start(task).await?),
        TasksCommand::Stop { task, grace } => {
            print_stop(cli.json, &client.task_stop(task, grace_ms(*grace)).await?)?;
        }
        TasksCommand::Restart { task, grace, fresh } => {
            print_task(
                cli.json,
                &client.task_restart(task, grace_ms(*grace), *fresh).await?,
            );
        }
        TasksCommand::Attempts { task } => {
            print_attempts(cli.json, &client.task_attempts(task).await?)
        }
        TasksCommand::Transcript { task, follow } => {
            return transcript::run(&client, task, cli.json, *follow).await;
        }
        TasksCommand::Remove { task, prune, force } => {
            let t = client.task_remove(task, *prune, *force).await?;
            if cli.json {
                println!("{}", task_json(&t));
            } else if *prune {
                println!(
                    "removed task {} and its worktree {}; branch {} keeps its commits",
                    t.id,
                    t.worktree.display(),
                    t.branch
                );
            } else {
                println!(
                    "removed task {}; its worktree {} stays (remove it with --prune)",
                    t.id,
                    t.worktree.display()
                );
            }
        }
        TasksCommand::Logs { task, follow, from } => {
            let t = client.task_show(task).await?;
            let Some(session) = t.session_id else {
                return Err(Failure {
                    code: FAILED,
                    message: format!(
                        "task {} has not run yet: start it with `aifactoryctl tasks start {}`",
                        t.id, t.id
                    ),
                });
            };
            let exit = stream_output(
                &client,
                Request::SessionTail {
                    key: session,
                    from: *from,
                    follow: *follow,
                },
                |_| true,
            )
            .await?;
            if *follow {
                return exit_with(exit.as_ref());
            }
        }
        TasksCommand::Watch { task, after, until } => {
            let id = match task {
                Some(key) => Some(client.task_show(key).await?.id),
                None => None,
            };
            return watch(cli, &client, id.as_deref(), *after, *until).await;
        }
    }
    Ok(())
}

pub fn task_json(t: &TaskInfo) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or_default()
}

fn progress_text(t: &TaskInfo) -> String {
    let mut text = String::new();
    if let Some(p) = t.progress.percent {
        let _ = write!(text, "{p}%");
    }
    if let (Some(d), Some(n)) = (t.progress.subtasks_done, t.progress.subtasks_total) {
        if !text.is_empty() {
            text.push(' ');
        }
        let _ = write!(text, "{d}/{n}");
    }
    if text.is_empty() { "-".into() } else { text }
}

fn print_task(json: bool, t: &TaskInfo) {
    if json {
        println!("{}", task_json(t));
        return;
    }
    println!("id          {}", t.id);
    println!("spec        {}", t.spec_id);
    println!("title       {}", t.title);
    println!("project     {} ({})", t.project_name, t.project_id);
    println!("agent       {}", t.agent);
    println!("phase       {}", t.phase.as_str());
    println!("progress    {}", progress_text(t));
    println!("session     {}", t.session_id.as_deref().unwrap_or("-"));
    println!("attempts    {}", t.attempts);
    println!("worktree    {} (branch {})", t.worktree.display(), t.branch);
    println!("progress    {}", t.progress_file.display());
    if let Some(prompt) = &t.waiting_input {
        println!("waiting     for input: {prompt}");
    }
    if let Some(stall) = &t.stall {
        println!(
            "stalled     since {} (no output since {}, no progress since {}, process {})",
            stall.detected_at,
            stall.last_output_at.as_deref().unwrap_or("start"),
            stall.last_progress_at.as_deref().unwrap_or("start"),
            stall.process_state.as_deref().unwrap_or("gone")
        );
    }
    println!(
        "agent sess  {}",
        t.agent_session_id.as_deref().unwrap_or("-")
    );
    if t.usage.is_empty() {
        println!("usage       -");
    } else {
        println!("usage       {}", transcript::usage_text(&t.usage));
    }
    println!(
        "turns       {}",
        t.turns.map_or_else(|| "-".into(), |n| n.to_string())
    );
    println!("last tool   {}", t.last_tool.as_deref().unwrap_or("-"));
    match &t.resources {
        Some(r) => println!("resources   {}", resources_text(r)),
        None => println!("resources   - (no cgroup of its own: see `aifactoryctl status`, limits)"),
    }
    if let Some(f) = &t.failure {
        println!("failure     {}: {}", f.kind, f.message);
        println!("fix         {}", f.fix);
    }
    if let Some(e) = &t.last_error {
        println!("last error  {e}");
    }
    for note in &t.notes {
        println!("note        {note}");
    }
    println!("updated     {}", t.updated_at);
}

fn print_attempts(json: bool, list: &[AttemptInfo]) {
    if json {
        println!("{}", serde_json::to_value(list).unwrap_or_default());
        return;
    }
    if list.is_empty() {
        println!("no attempts yet: start the task with `aifactoryctl tasks start ID`");
        return;
    }
    for a in list {
        let how = match (&a.ended_at, &a.exit) {
            (None, _) => "running".to_string(),
            (Some(_), Some(exit)) => exit.describe(),
            (Some(_), None) => "ended without an exit status".to_string(),
        };
        println!(
            "#{} (attempt {} of its run)  {}  {}  started {}{}",
            a.n,
            a.attempt,
            a.session_id,
            how,
            a.started_at,
            a.ended_at
                .as_deref()
                .map_or(String::new(), |t| format!(", ended {t}"))
        );
        if let Some(f) = &a.failure {
            println!("    failure   {}: {}", f.kind, f.message);
            println!("    fix       {}", f.fix);
        }
        if let Some(r) = &a.resources {
            println!("    resources {}", resources_text(r));
        }
        if let Some(reason) = &a.reason {
            println!("    why       {reason}");
        }
    }
}

fn print_list(json: bool, list: &[TaskInfo]) {
    if json {
        let items: Vec<_> = list.iter().map(task_json).collect();
        println!("{}", serde_json::Value::Array(items));
        return;
    }
    if list.is_empty() {
        println!(
            "no tasks: create one with `aifactoryctl tasks create --project P --spec SPEC-ID`"
        );
        return;
    }
    println!(
        "{:<10}  {:<24}  {:<9}  {:<10}  {:<12}  SESSION",
        "ID", "SPEC", "PHASE", "PROGRESS", "PROJECT"
    );
    for t in list {
        println!(
            "{:<10}  {:<24}  {:<9}  {:<10}  {:<12}  {}",
            t.id,
            t.spec_id,
            t.phase.as_str(),
            progress_text(t),
            t.project_name,
            t.session_id.as_deref().unwrap_or("-")
        );
    }
}

pub(crate) fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col >= 40 {
        size.ws_col as usize
    } else {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(120)
    }
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        format!("{text:<width$}")
    } else {
        let cut: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// A card's second line: progress, the cost when known, and why it failed.
fn card_detail(t: &TaskInfo) -> String {
    let mut text = progress_text(t);
    if let Some(cost) = t.usage.cost_usd {
        let _ = write!(text, " {}", transcript::cost_text(cost));
    }
    if let Some(r) = &t.resources {
        let _ = write!(
            text,
            " {}",
            mib(r.memory_peak_bytes.unwrap_or(r.memory_bytes))
        );
    }
    if let Some(f) = &t.failure {
        let _ = write!(text, " [{}]", f.kind);
    }
    text
}

fn mib(bytes: u64) -> String {
    format!("{}M", bytes.div_ceil(1 << 20))
}

/// `cpu 1.20 s, memory 120M (peak 300M of 512M), 12 processes (of 4096), wrote 3M`.
fn resources_text(r: &ResourceUsage) -> String {
    let mut text = format!(
        "cpu {:.2} s, memory {}",
        r.cpu_usec as f64 / 1e6,
        mib(r.memory_bytes)
    );
    match (r.memory_peak_bytes, r.memory_max) {
        (Some(peak), Some(max)) => {
            let _ = write!(text, " (peak {} of {})", mib(peak), mib(max));
        }
        (Some(peak), None) => {
            let _ = write!(text, " (peak {})", mib(peak));
        }
        (None, Some(max)) => {
            let _ = write!(text, " (of {})", mib(max));
        }
        (None, None) => {}
    }
    let _ = write!(text, ", {} processes", r.processes);
    if let Some(max) = r.tasks_max {
        let _ = write!(text, " (of {max})");
    }
    if let Some(w) = r.io_write_bytes {
        let _ = write!(text, ", wrote {}", mib(w));
    }
    if r.oom_kills > 0 {
        let _ = write!(text, ", {} OOM kill(s)", r.oom_kills);
    }
    text
}

/// One column per phase, each task a card of its spec id, progress, cost and failure kind.
fn print_board(json: bool, list: &[TaskInfo]) {
    if json {
        let board: serde_json::Map<String, serde_json::Value> = TaskPhase::ALL
            .iter()
            .map(|phase| {
                let cards = list
                    .iter()
                    .filter(|t| t.phase == *phase)
                    .map(task_json)
                    .collect();
                (phase.as_str().to_string(), serde_json::Value::Array(cards))
            })
            .collect();
        println!("{}", serde_json::Value::Object(board));
        return;
    }
    let columns = TaskPhase::ALL.len();
    let width = (terminal_width() / columns).saturating_sub(1).max(8);
    let mut header = String::new();
    for phase in TaskPhase::ALL {
        let count = list.iter().filter(|t| t.phase == phase).count();
        header.push_str(&clip(
            &format!("{} ({count})", phase.as_str().to_uppercase()),
            width,
        ));
        header.push(' ');
    }
    println!("{}", header.trim_end());
    println!("{}", "-".repeat((width + 1) * columns - 1));
    let by_phase: Vec<Vec<&TaskInfo>> = TaskPhase::ALL
        .iter()
        .map(|p| list.iter().filter(|t| t.phase == *p).collect())
        .collect();
    let rows = by_phase.iter().map(Vec::len).max().unwrap_or(0);
    for row in 0..rows {
        for line in 0..2 {
            let mut text = String::new();
            for column in &by_phase {
                let cell = match (column.get(row), line) {
                    (Some(t), 0) => t.spec_id.clone(),
                    (Some(t), _) => format!(" {}", card_detail(t)),
                    (None, _) => String::new(),
                };
                text.push_str(&clip(&cell, width));
                text.push(' ');
            }
            println!("{}", text.trim_end());
        }
    }
    if list.is_empty() {
        println!("(no tasks)");
    }
}

fn print_stop(json: bool, report: &StopReport) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_value(report).unwrap_or_default());
    } else {
        println!(
            "stopped task {} ({} processes signalled)",
            report.task.id,
            report.signalled.len()
        );
        for p in &report.signalled {
            println!("  {:>7}  {}", p.pid, p.command);
        }
    }
    Failure::survivors(&format!("task {}", report.task.id), &report.survivors)
}

fn event_text(e: &Event) -> String {
    let what = match &e.kind {
        EventKind::TaskCreated {
            task_id, spec_id, ..
        } => format!("{task_id} created (spec {spec_id})"),
        EventKind::TaskPhase {
            task_id,
            from,
            to,
            reason,
        } => format!("{task_id} {} -> {} ({reason})", from.as_str(), to.as_str()),
        EventKind::TaskProgress {
            task_id,
            progress,
            note,
        } => {
            let mut text = format!("{task_id} progress");
            if let Some(p) = progress.percent {
                let _ = write!(text, " {p}%");
            }
            if let (Some(d), Some(n)) = (progress.subtasks_done, progress.subtasks_total) {
                let _ = write!(text, " {d}/{n}");
            }
            if let Some(note) = note {
                let _ = write!(text, ": {note}");
            }
            text
        }
        EventKind::TaskStalled { task_id, evidence } => format!(
            "{task_id} stalled: no output since {}, no progress since {}, process {}",
            evidence.last_output_at.as_deref().unwrap_or("start"),
            evidence.last_progress_at.as_deref().unwrap_or("start"),
            evidence.process_state.as_deref().unwrap_or("gone")
        ),
        EventKind::TaskWaitingInput { task_id, prompt } => {
            format!("{task_id} waits for input: {prompt}")
        }
        EventKind::TaskExited {
            task_id,
            session_id,
            exit,
            restart_in_ms,
            failure,
            resources,
        } => {
            let mut how = exit
                .as_ref()
                .map(|e| e.describe())
                .unwrap_or_else(|| "ended".into());
            if let Some(failure) = failure {
                let _ = write!(how, " ({}: {})", failure.kind, failure.message);
            }
            if let Some(r) = resources {
                let _ = write!(how, " [{}]", resources_text(r));
            }
            match restart_in_ms {
                Some(ms) => format!("{task_id} agent ({session_id}) {how}; restarting in {ms} ms"),
                None => format!("{task_id} agent ({session_id}) {how}"),
            }
        }
        EventKind::TaskRemoved { task_id } => format!("{task_id} removed"),
        EventKind::TaskAgent { task_id, entry } => format!(
            "{task_id} agent #{}: {}",
            entry.seq,
            transcript::one_line_summary(&entry.event, 100)
        ),
        EventKind::SessionOutputBlocked {
            session_id,
            blocked,
        } => format!(
            "{session_id} output blocked since {}: {} (its program is held; free space in its panes root)",
            blocked.since, blocked.reason
        ),
        EventKind::SessionOutputResumed { session_id } => {
            format!("{session_id} output resumed")
        }
        other => format!("{other:?}"),
    };
    format!("{:>6}  {what}", e.seq)
}

async fn watch(
    cli: &Cli,
    client: &aifactory_common::Client,
    task: Option<&str>,
    after: Option<u64>,
    until: Option<TaskPhase>,
) -> Result<(), Failure> {
    let mut stream = client.subscribe(Request::SubscribeEvents { after }).await?;
    if let (Some(id), Some(phase)) = (task, until) {
        // It may be there already.
        let t = client.task_show(id).await?;
        if t.phase == phase {
            return Ok(());
        }
    }
    while let Some(item) = stream.next().await {
        let event = match item {
            StreamItem::Event(event) => event,
            StreamItem::Lagged { missed } => {
                eprintln!("aifactoryctl: {missed} events were missed (pruned or dropped)");
                continue;
            }
            _ => continue,
        };
        if task.is_some() && event.kind.task_id() != task {
            continue;
        }
        if cli.json {
            println!("{}", serde_json::to_value(&event).unwrap_or_default());
        } else {
            println!("{}", event_text(&event));
        }
        if let (Some(phase), EventKind::TaskPhase { to, .. }) = (until, &event.kind)
            && *to == phase
        {
            return Ok(());
        }
    }
    Err(Failure {
        code: FAILED,
        message: "the event stream ended: the daemon closed the connection".into(),
    })
}

#[cfg(test)]
mod tests {
    use aifactory_common::protocol::{AgentEvent, TranscriptEntry};

    use super::*;

    #[test]
    fn watch_describes_an_agent_event_in_one_line() {
        let event = Event {
            seq: 12,
            at_ms: 0,
            kind: EventKind::TaskAgent {
                task_id: "t-1".into(),
                entry: TranscriptEntry {
                    seq: 4,
                    attempt: 1,
                    at: "2026-12-03T14:05:17.000Z".into(),
                    event: AgentEvent::Denied {
                        tool: "Bash".into(),
                        summary: "rm -rf /".into(),
                    },
                },
            },
        };
        assert_eq!(
            event_text(&event),
            "    12  t-1 agent #4: ✗ denied Bash: rm -rf /"
        );
    }
}
