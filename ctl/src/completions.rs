//! `aifactoryctl completions SHELL`: completion scripts generated from the clap definition.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Failure;

pub fn run(shell: clap_complete::Shell) -> Result<(), Failure> {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "aifactoryctl",
        &mut std::io::stdout(),
    );
    Ok(())
}
