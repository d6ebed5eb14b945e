//! What is generated from the clap definition: `aifactoryctl completions SHELL` (completion
//! scripts) and the hidden `aifactoryctl manpage` (the man page the package ships).

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::{FAILED, Failure};

pub fn run(shell: clap_complete::Shell) -> Result<(), Failure> {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "aifactoryctl",
        &mut std::io::stdout(),
    );
    Ok(())
}

pub fn manpage() -> Result<(), Failure> {
    clap_mangen::Man::new(Cli::command())
        .section("1")
        .manual("aifactory")
        .render(&mut std::io::stdout().lock())
        .map_err(|e| Failure {
            code: FAILED,
            message: format!("cannot write the man page: {e}"),
        })
}
