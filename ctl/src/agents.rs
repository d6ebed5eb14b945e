//! `aifactoryctl agents ...`: the daemon's agent profiles and what is wrong with them.

use aifactory_common::protocol::{AgentInfo, SandboxInfo};

use crate::cli::{AgentsCommand, Cli};
use crate::connect::connect;
use crate::exit::{FAILED, Failure};

pub async fn run(cli: &Cli, command: &AgentsCommand) -> Result<(), Failure> {
    let client = connect(cli).await?;
    if let AgentsCommand::Show { name } = command {
        let detail = client.agent_show(name.as_str()).await?;
        if cli.json {
            let mut json = to_json(&detail.agent);
            if let Some(fields) = json.as_object_mut() {
                fields.insert(
                    "sandbox".into(),
                    serde_json::to_value(&detail.sandbox).unwrap_or_default(),
                );
            }
            println!("{json}");
        } else {
            print_agent(&detail.agent);
            print_sandbox(&detail.sandbox);
        }
        return Ok(());
    }
    let agents = client.agent_list().await?;
    if cli.json {
        let json: Vec<serde_json::Value> = agents.iter().map(to_json).collect();
        println!("{}", serde_json::Value::Array(json));
    } else {
        for a in &agents {
            print_agent(a);
        }
    }
    let invalid: Vec<&str> = agents
        .iter()
        .filter(|a| !a.problems.is_empty())
        .map(|a| a.name.as_str())
        .collect();
    match command {
        AgentsCommand::Check if !invalid.is_empty() => Err(Failure {
            code: FAILED,
            message: format!(
                "{} of {} agent profiles cannot run: {}",
                invalid.len(),
                agents.len(),
                invalid.join(", ")
            ),
        }),
        _ => Ok(()),
    }
}

/// The profile as on the wire, except that `problems` stays the list of sentences it always was;
/// `problem_reasons` has the same, typed.
fn to_json(a: &AgentInfo) -> serde_json::Value {
    let mut json = serde_json::to_value(a).unwrap_or_default();
    if let Some(fields) = json.as_object_mut() {
        let reasons = fields.remove("problems").unwrap_or_default();
        let sentences: Vec<String> = a.problems.iter().map(ToString::to_string).collect();
        fields.insert("problems".into(), sentences.into());
        fields.insert("problem_reasons".into(), reasons);
    }
    json
}

fn print_agent(a: &AgentInfo) {
    let default = if a.default { " (default)" } else { "" };
    let verdict = if a.problems.is_empty() {
        "ok"
    } else {
        "INVALID"
    };
    println!("{}{default}: {} — {verdict}", a.name, a.kind.as_str());
    println!("  command   {}", a.command.join(" "));
    if a.effective_command != a.command {
        println!(
            "  runs      {} (test override)",
            a.effective_command.join(" ")
        );
    }
    println!(
        "  restart   {}, at most {} attempts; on stall: {} after {} s{}",
        a.restart,
        a.max_attempts,
        a.on_stall,
        a.stall_after_s,
        if a.headless { "; headless" } else { "" }
    );
    for p in &a.problems {
        println!("  problem   {p}");
    }
}

fn print_sandbox(s: &SandboxInfo) {
    let origin = if s.from_profile {
        "the profile's"
    } else {
        "the run mode's default"
    };
    println!("  sandbox   {} ({origin}): {}", s.mode, s.outcome);
    println!("  landlock  {}", s.landlock);
    for path in &s.read_write {
        println!("  rw        {path}");
    }
    for path in &s.read_only {
        println!("  ro        {path}");
    }
    match &s.connect_ports {
        None => println!("  tcp       any port"),
        Some(ports) if ports.is_empty() => println!("  tcp       none"),
        Some(ports) => {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            println!("  tcp       only to port {}", ports.join(", "));
        }
    }
    println!(
        "  socket    {}",
        if s.allow_control_socket {
            "the control socket is allowed (allow_control_socket = true)"
        } else {
            "the control socket is refused to the agent's processes"
        }
    );
    println!("  not yet   per-task cgroups (memory, CPU, process limits) are not applied");
}
