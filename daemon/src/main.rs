//! The shipped `aifactoryd` binary: the daemon without any hook ([`aifactoryd::entry::main`]
//! does the rest).

use std::process::ExitCode;

fn main() -> ExitCode {
    aifactoryd::entry::main(aifactoryd::Hooks::default())
}
