//! `aifactoryctl agents ...`: the daemon's agent profiles and what is wrong with them.

use aifactory_common::protocol::AgentInfo;

use crate::cli::{AgentsCommand, Cli};
use crate::connect::connect;
use crate::exit::{FAILED, Failure};

pub async fn run(cli: &Cli, command: &AgentsCommand) -> Result<(), Failure> {
    let client = connect(cli).await?;
    let agents = client.agent_list().await?;
    if cli.json {
        println!("{}", serde_json::to_value(&agents).unwrap_or_default());
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
        "  restart   {:?}, at most {} attempts; on stall: {:?} after {} s{}",
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
