//! What every `aifactoryd` binary runs, given its [`Hooks`]: parses the command line, answers
//! the one-shot subcommands (`migrate`, `check`, the man page) by printing what the library
//! returns, else loads the config, sets up logging and runs the daemon. The shipped binary
//! (`src/main.rs`) passes no hooks; the test suite's `aifactoryd-hooked` passes its own.

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, DaemonCommand};
use crate::migrate::{Known, MigrateError, report};
use crate::{Config, Hooks, Overrides, check, cli};

pub fn main(hooks: Hooks) -> ExitCode {
    let cli = Cli::parse();
    if let Some(DaemonCommand::Manpage) = cli.command {
        return match cli::manpage(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("aifactoryd: cannot write the man page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(DaemonCommand::Check) = cli.command {
        let facts = check::local_facts(
            &Overrides {
                config: cli.config.clone(),
                socket: cli.socket.clone(),
                state_dir: cli.state_dir.clone(),
            },
            Known::new(&hooks),
        );
        println!("{}", serde_json::to_string(&facts).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    // Everything the daemon creates is private unless it says otherwise (e.g. the socket's mode).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let overrides = Overrides {
        config: cli.config.clone(),
        socket: cli.socket.clone(),
        state_dir: cli.state_dir.clone(),
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("aifactoryd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Some(DaemonCommand::Migrate {
        status,
        dry_run,
        json,
    }) = cli.command
    {
        return match migrate_command(&config, status, dry_run, json, Known::new(&hooks)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("aifactoryd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let logging = match aifactory_common::logging::init(cli.log, &config.log_level) {
        Ok(logging) => logging,
        Err(e) => {
            eprintln!("aifactoryd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aifactoryd")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::run(config, overrides, logging, hooks)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `aifactoryd migrate [--status [--json] | --dry-run]`: prints what the library found or did.
fn migrate_command(
    config: &Config,
    status: bool,
    dry_run: bool,
    json: bool,
    known: Known,
) -> Result<(), MigrateError> {
    let state_dir = &config.state_dir;
    match (status, dry_run) {
        (true, _) if json => {
            let status = report::status(state_dir, known)?.status;
            println!("{}", serde_json::to_string(&status).unwrap_or_default());
        }
        (true, _) => print!("{}", report::status(state_dir, known)?),
        (_, true) => print!("{}", report::dry_run(state_dir, known)?),
        _ => print!(
            "{}",
            report::apply(state_dir, config.migrate_lock_timeout, known)?
        ),
    }
    Ok(())
}
