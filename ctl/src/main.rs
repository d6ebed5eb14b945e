//! aifactoryctl: the operator's command line over the daemon's socket. A thin client: every
//! shape it prints comes from `aifactory-common`.

mod agents;
mod cli;
mod completions;
mod connect;
mod contexts;
mod dial_stdio;
mod doctor;
mod exit;
mod hosts;
mod projects;
mod sessions;
mod status;
mod tasks;
mod transcript;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A byte relay needs no runtime, and must not wait for a blocked stdin read at its end.
    if let Command::DialStdio = cli.command {
        return match dial_stdio::run(&cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => failure.report(),
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("aifactoryctl: error: cannot start the async runtime: {e}");
            return exit::FAILED.into();
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Status => status::run(&cli).await,
            Command::Projects(command) => projects::run(&cli, command).await,
            Command::Sessions(command) => sessions::run(&cli, command).await,
            Command::Tasks(command) => tasks::run(&cli, command).await,
            Command::Agents(command) => agents::run(&cli, command).await,
            Command::Doctor {
                http,
                state_dir,
                config,
            } => doctor::run(&cli, http, state_dir.as_deref(), config.as_deref()).await,
            Command::Hosts(command) => hosts::run(&cli, command).await,
            Command::DialStdio => Ok(()),
            Command::Completions { shell } => completions::run(*shell),
            Command::Manpage => completions::manpage(),
        }
    });
    // A blocking stdin read (attach) must not keep the process alive after the command ended.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
