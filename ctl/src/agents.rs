//! `aifactoryctl agents ...`: the daemon's agent profiles and what is wrong with them.

use aifactory_common::protocol::AgentInfo;

use crate::cli::{AgentsCommand, Cli};
use crate::connect::connect;
use crate::exit::{FAILED, Failure};

pub async fn run(cli: &Cli, command: &AgentsCommand) -> Result<(), Failure> {
    let client = connect(cli).await?;
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
